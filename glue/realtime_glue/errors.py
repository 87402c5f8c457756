"""Errors shared by the config loader and the stages it builds."""


class ConfigError(Exception):
    """A configuration problem, naming the key: `pipelines.comments.concurrency: ...`."""

    def __init__(self, key: str, problem: str):
        super().__init__(f"{key}: {problem}" if key else problem)
        self.key = key
        self.problem = problem

    def under(self, prefix: str) -> "ConfigError":
        return ConfigError(f"{prefix}.{self.key}" if self.key else prefix, self.problem)
