"""`realtime-glue readers` (glue-readers.service): a round of reader counts every interval.

Each round the unit holding the lease (lease.py) asks every push node for its
readers per channel at once, sums them (tally.py), sets the gauges, and publishes
on the readers channel what changed since the last message; every
`snapshot_interval`, and first after it takes the lease, a full snapshot instead
(messages.py). A node that does not answer in time counts nothing this round (its
browsers are failing over to the other nodes anyway) and is logged once when it
starts and once when it stops failing; if no node answers, nothing is published.
The messages go to every node with the same Event-ID, so a page that fails over
resumes with Last-Event-ID like on any channel.

Supervised like the pipelines: the round loop is watched for progress (a round
stuck longer than `[queue] progress_timeout` stops the watchdog pings) and its
death stops the process (exit 70) for systemd to restart it.
"""

from __future__ import annotations

import logging
import time

import gevent

from ..config import GlueConfig
from ..errors import ConfigError
from ..jobqueue import new_worker_id
from ..logs import fields
from ..notify import SystemdNotifier
from ..process import SupervisedProcess
from ..redis_connection import connect_redis
from ..supervisor import pause, progress
from .lease import Lease
from .messages import Round, readers_messages
from .metrics import ReadersMetrics
from .node_client import NodeClient
from .tally import Tally, sum_readers, top_channels

log = logging.getLogger(__name__)


class ReadersService(SupervisedProcess):
    process_name = "the readers unit"

    def __init__(self, config: GlueConfig, notifier: SystemdNotifier | None = None, redis=None):
        self.config = config
        self.settings = settings = config.readers
        if not settings.nodes:
            raise ConfigError("readers.nodes", "no push node to read: list them in [push] nodes or here")
        try:
            self.nodes = [NodeClient(url, settings.timeout, config.push_ca_file) for url in settings.nodes]
        except ValueError as exc:
            raise ConfigError("readers.nodes", str(exc)) from None
        super().__init__(config.progress_timeout, notifier)
        self.redis = redis if redis is not None else connect_redis(config)
        self.metrics = ReadersMetrics()
        # Long enough to outlast a round whose nodes all time out, so the holder
        # keeps it through a slow round.
        self.lease = Lease(
            self.redis, settings.channel, new_worker_id(), ttl=2 * (settings.interval + settings.timeout) + 1
        )
        self.tally = Tally()
        self.publishing = False
        self._last_full: float | None = None
        # Why each node failed last, or None while it answers (logged on change only).
        self._failing: dict[str, str | None] = {node.label: None for node in self.nodes}
        self._status = ""

    # --- one round ---------------------------------------------------------------

    def read_nodes(self) -> dict[str, dict[str, int]]:
        """Readers per channel of every node that answered in time, by node."""
        asked = {node.label: gevent.spawn(node.channel_readers) for node in self.nodes}
        gevent.joinall(list(asked.values()), timeout=self.settings.timeout + 1)
        answered = {}
        for label, job in asked.items():
            if job.successful():
                answered[label] = job.value
                self._node_answered(label)
            else:
                job.kill(block=False)
                why = job.exception if job.ready() else f"no answer within {self.settings.timeout:g}s"
                self._node_failed(label, f"cannot read its readers: {why}")
        return answered

    def round_once(self) -> None:
        if not self.lease.hold():
            if self.publishing:
                log.info("another readers unit holds the lease now; standing by")
            self.publishing = False
            self.metrics.publishing.set(0)
            # What the other unit told the channel is not ours to know: a snapshot first.
            self.tally.forget()
            self._show_status("standing by: another readers unit publishes the counts")
            return
        if not self.publishing:
            log.info("holding the readers lease: publishing the counts on %s", self.settings.channel)
        self.publishing = True
        self.metrics.publishing.set(1)
        at = time.time()
        per_node = self.read_nodes()
        for node in self.nodes:
            self.metrics.node_up.labels(node=node.label).set(1 if node.label in per_node else 0)
        if not per_node:
            self._show_status("no push node gave its statistics: nothing published")
            return
        readers = sum_readers(per_node, exclude=self.settings.channel)
        found = Round(
            at=at,
            nodes=len(self.nodes),
            answered=len(per_node),
            total=sum(readers.values()),
            channels=len(readers),
        )
        self._set_gauges(per_node, readers, found)
        now = time.monotonic()
        full = (
            self.tally.told is None
            or self._last_full is None
            or now - self._last_full >= self.settings.snapshot_interval
        )
        messages = readers_messages(
            readers if full else self.tally.changes(readers),
            full=full,
            channel=self.settings.channel,
            found=found,
            serial=f"readers-{int(at * 1000)}",
            max_size=self.settings.max_message_size,
        )
        for event_id, body in messages:
            self.publish(event_id, body)
        self.metrics.messages.labels(kind="full" if full else "changes").inc(len(messages))
        if full:
            self._last_full = now
        self.tally.told_all(readers)
        self._show_status(
            f"publishing: {found.total} readers on {found.channels} channels,"
            f" {found.answered} of {found.nodes} push nodes counted"
        )

    def publish(self, event_id: str, body: bytes) -> None:
        """One message to every node at once (the same Event-ID on each)."""
        sent = {
            node.label: gevent.spawn(node.publish, self.settings.channel, event_id, body)
            for node in self.nodes
        }
        gevent.joinall(list(sent.values()), timeout=self.settings.timeout + 1)
        for label, job in sent.items():
            if not job.successful():
                job.kill(block=False)
                why = job.exception if job.ready() else f"no answer within {self.settings.timeout:g}s"
                self._node_failed(label, f"did not take the counts: {why}")

    def _set_gauges(self, per_node: dict[str, dict[str, int]], readers: dict[str, int], found: Round) -> None:
        self.metrics.total.set(found.total)
        self.metrics.channels.set(found.channels)
        for label, counts in per_node.items():
            self.metrics.per_node.labels(node=label).set(
                sum(n for channel, n in counts.items() if channel != self.settings.channel)
            )
        self.metrics.show_channels(top_channels(readers, self.settings.top_channels))
        self.metrics.last_round.set(found.at)

    def _node_failed(self, label: str, why: str) -> None:
        if self._failing[label] is None:
            log.warning("push node %s %s; not counted until it answers", label, why, extra=fields(node=label))
        self._failing[label] = why

    def _node_answered(self, label: str) -> None:
        if self._failing[label] is not None:
            log.info("push node %s answers again", label, extra=fields(node=label))
        self._failing[label] = None

    def _show_status(self, status: str) -> None:
        if status != self._status:
            self._status = status
            self.notifier.status(status)

    # --- the process ---------------------------------------------------------------

    def _rounds(self) -> None:
        while True:
            started = time.monotonic()
            progress()
            self.round_once()
            pause(max(0.0, self.settings.interval - (time.monotonic() - started)))

    def run(self) -> int:
        """Run until SIGTERM (0) or until the round loop dies (70); returns the exit status."""
        self.begin()
        if self.settings.metrics_listen:
            self.metrics.serve(self.settings.metrics_listen)
        rounds = self.supervisor.spawn("readers rounds", self._rounds)
        labels = ", ".join(node.label for node in self.nodes)
        log.info(
            "ready: readers of %s every %gs, published on %s",
            labels,
            self.settings.interval,
            self.settings.channel,
        )
        self.notifier.ready(f"reading {len(self.nodes)} push nodes every {self.settings.interval:g}s")
        self.wait_for_stop()
        self.notifier.stopping("stopping")
        rounds.kill(block=True, timeout=5)
        if self.publishing:
            self.lease.release()
        for node in self.nodes:
            node.close()
        return self.end()

    def count_once(self) -> dict:
        """One round's counts without the lease or a publish (`realtime-glue readers --once`)."""
        per_node = self.read_nodes()
        readers = sum_readers(per_node, exclude=self.settings.channel)
        return {
            "nodes": {node.label: self._failing[node.label] or "ok" for node in self.nodes},
            "total": sum(readers.values()),
            "readers": dict(sorted(readers.items())),
        }
