"""Publishing stages: where a finished message leaves the glue (every stage by name:
../registry.py)."""
