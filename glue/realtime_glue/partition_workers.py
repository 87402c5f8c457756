"""The workers of the partitions this instance processes: one PipelineWorker per partition,
sharing the instance's pipeline; each has `concurrency` slots of its own (a partition is a
queue of its own: one shared set of slots made smaller batches, and cost 15-25 % more CPU
per job in a measurement with 6 partitions).

The balancer opens a partition (its worker starts claiming under the lease)
and closes it (the worker claims no more, lets what it holds finish within
the shutdown grace, gives the rest back to the front of the queue in claim
order, and only then returns, so the lease is released after its claims
are settled). The heartbeat renews what each worker holds until it is gone.
"""

from __future__ import annotations

from collections.abc import Callable

from .jobqueue import JobFeed
from .worker import PipelineWorker


class PartitionWorkers:
    def __init__(
        self,
        make_worker: Callable[[JobFeed], PipelineWorker],
        grace: float,
    ):
        self.make_worker = make_worker
        self.grace = grace
        self.workers: dict[str, PipelineWorker] = {}

    def open(self, feed: JobFeed) -> None:
        worker = self.make_worker(feed)
        self.workers[feed.name] = worker
        worker.start()

    def close(self, feed: JobFeed) -> None:
        worker = self.workers.get(feed.name)
        if worker is None:
            return
        try:
            worker.stop(self.grace)
        finally:
            # Only now: until its claims are settled, the heartbeat renews them.
            if self.workers.get(feed.name) is worker:
                del self.workers[feed.name]

    def holders(self) -> list[tuple[JobFeed, Callable[[], list[str]]]]:
        return [(worker.feed, worker.held_ids) for worker in list(self.workers.values())]

    def in_flight(self) -> int:
        return sum(len(worker.held) for worker in list(self.workers.values()))
