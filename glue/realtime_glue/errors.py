"""Every error the glue raises on purpose, under one base.

GlueError
├── ConfigError           the config file is wrong: names the key
├── ConnectionClosed      a server closed a keep-alive connection with requests unanswered
├── NodeUnreadable        a push node did not give the readers unit its statistics or take its message
├── SigningError          a subscribe URL cannot be signed as asked (the channel, the key)
├── PutNotReplicated      a durable put reached fewer replicas than asked: it may not survive a failover
└── JobError              what happened to one job in a stage
    ├── Reject            it can never be processed as it is: stall it with the reason
    └── TransientFailure  it failed for now: give it back to the queue, failure counted
        └── PublishFailed a push node did not take it (no answer, 5xx, connection lost)
"""

from __future__ import annotations


class GlueError(Exception):
    """The base of every error the glue raises on purpose."""


class ConfigError(GlueError):
    """A configuration problem, naming the key: `pipelines.comments.concurrency: ...`."""

    def __init__(self, key: str, problem: str):
        super().__init__(f"{key}: {problem}" if key else problem)
        self.key = key
        self.problem = problem

    def under(self, prefix: str) -> ConfigError:
        return ConfigError(f"{prefix}.{self.key}" if self.key else prefix, self.problem)


class ConnectionClosed(GlueError, ConnectionError):
    """The server closed the connection before answering every request sent on it."""


class NodeUnreadable(GlueError):
    """A push node did not answer the readers unit as it should (its channel statistics,
    or a message on the readers channel); the message names the node and why."""


class SigningError(GlueError):
    """A subscribe URL cannot be signed as asked: a bad channel or ttl, or no key that may sign it."""


class PutNotReplicated(GlueError):
    """A durable put is queued on the primary, but fewer replicas than asked confirmed
    it in time: it survives a failover only if a replica copied it since."""

    def __init__(self, feed: str, job_ids: list[str], acknowledged: int, wanted: int, timeout: float):
        jobs = f"job {job_ids[0]}" if len(job_ids) == 1 else f"{len(job_ids)} jobs ({job_ids[0]} ...)"
        super().__init__(
            f"{jobs} on feed {feed}: {acknowledged} of {wanted} replica(s) confirmed the put within "
            f"{timeout:g}s. It is queued on the primary and will be delivered unless the primary is "
            "lost before a replica copies it, so it may or may not survive a failover; putting it "
            "again with the same job id adds no copy while the feed holds it"
        )
        self.feed = feed
        self.job_ids = job_ids
        self.acknowledged = acknowledged
        self.wanted = wanted
        self.timeout = timeout


class JobError(GlueError):
    """What a stage says about one job; the worker decides the job's fate from the class."""


class Reject(JobError):
    """The job can never be processed as it is: stall it with this reason."""


class TransientFailure(JobError):
    """The job failed for now: return it to the queue with its failure count raised."""


class PublishFailed(TransientFailure):
    """A push node did not store the message this time; the message names the node."""


class PublishRefused(Reject):
    """A push node refused the message for good (a 4xx answer other than 408 and 429):
    sending it again cannot help. The message is dead-lettered for that node."""

    def __init__(self, node: str, status: int, excerpt: str):
        super().__init__(f"{node}: HTTP {status}: {excerpt}")
        self.node = node
        self.status = status
        # The start of the node's answer, as readable text: why it refused.
        self.excerpt = excerpt

    @property
    def reason(self) -> str:
        """How the node's dead-letter records it."""
        return f"HTTP {self.status}: {self.excerpt}"
