"""Publishing stages: where a finished message leaves the glue."""
