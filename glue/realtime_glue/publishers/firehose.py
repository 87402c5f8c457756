"""firehose: publish every message to each customer's own channel, and count per customer.

A firehose pipeline reads a feed that the chosen live pipelines mirror their
jobs into (their `mirror_feed`), anonymizes and formats each message as the
live page would see it, and publishes it to `firehose-<customer>` on every
push node, one copy per customer. That channel is private: it opens only with
a URL signed by the customer's own key (a key set entry scoped to it, see
../signing.py), so revoking a customer is removing its key and its name here,
and touches no other customer.

Why one channel per customer rather than one shared channel: push-stream can
end the streams of a channel, not of some of its subscribers, so only a
channel of its own lets a revoked customer's open stream be ended while the
others carry on; and the glue can count what each customer's channel was
given from its own publishes, where a shared channel would need the nodes'
access logs (which count bytes, not messages). The cost is one publish per
customer per message, small beside a node's fan-out to browsers.

Everything else is the http stage's (this stage is one): every node, claim
order per channel, a backlog per node, dead letters, the same Event-ID on every
node, so a customer reconnecting with Last-Event-ID (to any node) gets what it
missed within the node's window.

A customer removed from `customers` has its channel deleted on every node
when the pipeline starts (the stream ends; its messages are dropped), and is
forgotten once every node answered; a node that did not is tried again at the
next start.
"""

from __future__ import annotations

import logging
from collections import Counter
from dataclasses import replace

from prometheus_client import Counter as PrometheusCounter
from redis.exceptions import RedisError

from ..backoff import Backoff
from ..channels import channel_problem
from ..errors import ConfigError, PublishFailed, PublishRefused
from ..firehose.customers import DEFAULT_CHANNEL_PREFIX, customer_channel, customer_problem
from ..firehose.ledger import FirehoseLedger
from ..message import Message
from ..supervisor import pause
from .http import HttpPublish

log = logging.getLogger(__name__)


class FirehosePublish(HttpPublish):
    name = "firehose"

    def configure(self) -> None:
        self.channel_prefix = self.option(
            "channel_prefix",
            str,
            DEFAULT_CHANNEL_PREFIX,
            lambda v: channel_problem(v + "x", wildcard_prefix="") is None,
            "a channel name prefix",
        )
        self.customers = self.string_list("customers")
        if not self.customers:
            raise ConfigError("customers", "at least one customer is needed")
        for customer in self.customers:
            problem = customer_problem(customer, self.channel_prefix)
            if problem:
                raise ConfigError("customers", problem)
        if len(set(self.customers)) != len(self.customers):
            raise ConfigError("customers", f"a customer is listed twice: {self.customers!r}")
        super().configure()
        redis = self.context.redis
        self.ledger = FirehoseLedger(redis, self.context.pipeline) if redis is not None else None
        self._deliveries = None
        if self.context.metrics is not None:
            self._deliveries = PrometheusCounter(
                "glue_firehose_deliveries_total",
                "Messages published to a firehose customer's channel (on at least one push node)",
                ["pipeline", "customer"],
                registry=self.context.metrics.registry,
            ).labels

    def channel(self, customer: str) -> str:
        return customer_channel(self.channel_prefix, customer)

    def start(self) -> None:
        super().start()
        if self.ledger is not None:
            self.close_removed_customers()

    def close_removed_customers(self) -> None:
        """Delete, on every node, the channel of each customer no longer configured."""
        try:
            known = self.ledger.customers()
            self.ledger.serve({customer: self.channel(customer) for customer in self.customers})
        except RedisError as exc:
            log.warning("firehose: cannot read its customers from Redis (%s); next start tries again", exc)
            return
        for customer, channel in sorted(known.items()):
            if customer in self.customers:
                continue
            closed = True
            for node in self.nodes:
                try:
                    existed = node.delete_channel(channel)
                except (PublishFailed, PublishRefused) as exc:
                    closed = False
                    log.warning(
                        "firehose: customer %s was removed, but its channel %s could not be closed on %s: %s"
                        " (tried again at the next start)",
                        customer,
                        channel,
                        node.label,
                        exc,
                    )
                    continue
                log.info(
                    "firehose: customer %s was removed: channel %s %s on %s",
                    customer,
                    channel,
                    "closed, its streams ended" if existed else "was not there",
                    node.label,
                )
            if closed:
                try:
                    self.ledger.closed(customer)
                except RedisError as exc:
                    log.warning("firehose: cannot record that %s is closed (%s)", customer, exc)

    def process_batch(self, messages: list[Message]) -> list[Exception | None]:
        """One copy of each message per customer; a message's error is its first copy's error."""
        copies, owners = [], []
        for index, message in enumerate(messages):
            for customer in self.customers:
                copies.append(replace(message, channel=self.channel(customer)))
                owners.append((index, customer))
        outcomes = super().process_batch(copies)
        errors: list[Exception | None] = [None] * len(messages)
        delivered: Counter[str] = Counter()
        for (index, customer), error in zip(owners, outcomes, strict=True):
            if error is None:
                delivered[customer] += 1
            elif errors[index] is None:
                errors[index] = error
        self._count(delivered)
        return errors

    def _count(self, delivered: Counter[str]) -> None:
        if self._deliveries is not None:
            for customer, count in delivered.items():
                self._deliveries(pipeline=self.context.pipeline, customer=customer).inc(count)
        if self.ledger is None or not delivered:
            return
        backoff = Backoff()
        while True:
            try:
                self.ledger.count(dict(delivered))
                return
            except (RedisError, OSError) as exc:
                if self.stopping:
                    log.error("firehose: stopping with deliveries uncounted (%s): %s", exc, dict(delivered))
                    return
                log.warning("firehose: cannot count deliveries (%s); retrying", exc)
                pause(backoff.failed())

    def status(self) -> dict:
        status = super().status()
        if self.ledger is not None:
            status["firehose"] = {
                "customers": {customer: self.channel(customer) for customer in self.customers},
                "delivered": self.ledger.delivered(),
                "closing": sorted(set(self.ledger.customers()) - set(self.customers)),
            }
        return status
