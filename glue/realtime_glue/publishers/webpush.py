"""webpush: a notification to the browsers of the users a job names, site open or not.

For a job addressed to users (a field the operator names, by default
`data.user_id`: one id or a list), each user's push subscriptions are looked
up, the message body (the format stage's JSON) is encrypted for each browser
(RFC 8291) and POSTed to its push service with a VAPID signature (RFC 8292),
`TTL`, `Urgency` and a `Topic` per thread (the job's channel), so a burst on
one thread collapses into one notification on a phone that was asleep.

    201/202        sent
    404/410        the subscription is deleted
    429, 5xx       held in the origin's backlog (Redis) and retried with
                   backoff, never before Retry-After; other origins, and so
                   other users, carry on
    other 4xx      dead-lettered with the reason (`realtime-glue webpush status`)

A user gets at most `rate_limit` notifications per `rate_window` seconds; the
rest are dropped and counted. With `followed_threads_only`, a user gets a
job only if they asked to be notified about its channel. A job naming no
user passes through untouched, so the stage can stand beside `http`.

With `listen`, the pipeline's process also serves the subscription endpoint
(webpush/endpoint.py). The job finishes once every delivery is sent,
settled, dropped or held; if Redis is away it is retried later.
"""

from __future__ import annotations

import logging
import os
from collections import defaultdict

from ..errors import ConfigError, Reject, TransientFailure
from ..keyfile import read_private_key
from ..message import Message
from ..stage import Stage
from ..webpush import ece
from ..webpush.backlog import OriginBacklogs
from ..webpush.deadletter import DeadLetters
from ..webpush.delivery import Deliverer, now_ms
from ..webpush.endpoint import EndpointServer, SubscriptionEndpoint, parse_listen
from ..webpush.metrics import WebPushMetrics
from ..webpush.ratelimit import UserRateLimit
from ..webpush.request import URGENCIES, PushRequest, TopicMaker, build_request
from ..webpush.sender import RETRY, PushSender
from ..webpush.subscriptions import (
    DEFAULT_ENDPOINT_HOSTS,
    DEFAULT_MAX_PER_USER,
    SubscriptionStore,
    endpoint_problem,
)
from ..webpush.token import KEY_BYTES, user_problem
from ..webpush.vapid import VapidKey, VapidSigner, check_subject

log = logging.getLogger(__name__)

_ENVELOPE_FIELDS = ("channel", "event", "data")
MAX_TTL = 28 * 24 * 3600


class WebPushPublish(Stage):
    name = "webpush"

    def configure(self) -> None:
        self.user_field = self.option(
            "user_field",
            str,
            "data.user_id",
            lambda v: v.split(".")[0] in _ENVELOPE_FIELDS and all(v.split(".")),
            "a dotted path starting with channel, event or data",
        )
        self.vapid_key = VapidKey.from_file(self.option("vapid_key_file", str), "vapid_key_file")
        subject = self.option("vapid_subject", str)
        if check_subject(subject):
            raise ConfigError("vapid_subject", check_subject(subject))
        self.ttl = self.option("ttl", int, 86400, lambda v: 0 <= v <= MAX_TTL, f"seconds from 0 to {MAX_TTL}")
        self.urgency = self.option("urgency", str, "normal", lambda v: v in URGENCIES, " | ".join(URGENCIES))
        self.collapse_threads = self.option("topic", bool, True)
        self.followed_threads_only = self.option("followed_threads_only", bool, False)
        self.rate_limit = self.option("rate_limit", int, 10, lambda v: v >= 0, "0 (no limit) or more")
        self.rate_window = self.option("rate_window", float, 60.0, lambda v: v > 0, "seconds > 0")
        self.max_users = self.option("max_users_per_job", int, 100, lambda v: v >= 1, "at least 1")
        max_per_user = self.option("max_subscriptions_per_user", int, DEFAULT_MAX_PER_USER, lambda v: v >= 1)
        self.endpoint_hosts = self.string_list("endpoint_hosts", DEFAULT_ENDPOINT_HOSTS)
        self._endpoint_problems: dict[str, str | None] = {}
        timeout = self.option("timeout", float, 10.0, lambda v: v > 0, "seconds > 0")
        connections = self.option("connections_per_origin", int, 16, lambda v: v >= 1, "at least 1")
        concurrency = self.option("concurrency", int, 256, lambda v: v >= 1, "at least 1")
        ca_file = self.option("ca_file", str, "")
        if ca_file and not os.access(ca_file, os.R_OK):
            raise ConfigError("ca_file", f"cannot read {ca_file}")
        listen = self.option("listen", str, "")
        token_key_file = self.option("token_key_file", str, "")
        self.endpoint = None
        if listen:
            try:
                parse_listen(listen)
            except ValueError as exc:
                raise ConfigError("listen", str(exc)) from None
            if not token_key_file:
                raise ConfigError(
                    "token_key_file", "required with `listen`: the key that signs subscription tokens"
                )
        token_key = (
            read_private_key(token_key_file, "token_key_file", size=KEY_BYTES) if token_key_file else None
        )

        redis = self.context.redis
        self.metrics = WebPushMetrics(self.context.metrics, self.context.pipeline)
        self.topics = TopicMaker(self.vapid_key.pem())
        self.sender = PushSender(timeout, connections, ca_file or None)
        self.store = SubscriptionStore(redis, max_per_user) if redis is not None else None
        dead_letters = DeadLetters(redis, self.context.pipeline) if redis is not None else None
        self.deliverer = Deliverer(
            self.sender,
            VapidSigner(self.vapid_key, subject),
            self.store,
            dead_letters,
            self.metrics,
            concurrency,
        )
        self.rate = (
            UserRateLimit(redis, self.context.pipeline, self.rate_limit, self.rate_window) if redis else None
        )
        self.backlogs = (
            OriginBacklogs(
                redis, self.context.pipeline, self.context.worker_id or None, self.deliverer, self.metrics
            )
            if redis is not None
            else None
        )
        if listen and self.store is not None:
            app = SubscriptionEndpoint(
                self.store, token_key, self.vapid_key.public_key_b64, self.endpoint_hosts
            )
            self.endpoint = EndpointServer(app, listen)

    def backlog_holders(self) -> list:
        """Each origin's backlog feed and the records its drainer holds (for the heartbeat)."""
        return self.backlogs.holders() if self.backlogs is not None else []

    def start(self) -> None:
        if self.backlogs is not None:
            self.backlogs.start()
        if self.endpoint is not None:
            self.endpoint.start()

    def close(self) -> None:
        if self.endpoint is not None:
            self.endpoint.stop()
        if self.backlogs is not None:
            self.backlogs.stop()
        self.sender.close()

    # --- addressing ----------------------------------------------------------------

    def users_of(self, message: Message) -> list[str]:
        """The user ids the job names (none: not addressed to anyone); Reject if malformed."""
        head, *rest = self.user_field.split(".")
        value = {"channel": message.channel, "event": message.event, "data": message.data}[head]
        for part in rest:
            value = value.get(part) if isinstance(value, dict) else None
        if value is None:
            return []
        values = value if isinstance(value, list) else [value]
        users = []
        for v in values:
            if isinstance(v, int) and not isinstance(v, bool):
                v = str(v)
            problem = user_problem(v)
            if problem:
                raise Reject(f"webpush: {self.user_field}: {problem}")
            if v not in users:
                users.append(v)
        if len(users) > self.max_users:
            raise Reject(
                f"webpush: {self.user_field} names {len(users)} users, the limit is {self.max_users}"
            )
        return users

    # --- publishing ----------------------------------------------------------------

    def process(self, message: Message) -> Message:
        (error,) = self.process_batch([message])
        if error is not None:
            raise error
        return message

    def process_batch(self, messages: list[Message]) -> list[Exception | None]:
        errors: list[Exception | None] = [None] * len(messages)
        targets: list[tuple[int, str]] = []
        for index, message in enumerate(messages):
            if message.body is None:
                errors[index] = Reject("webpush: the message has no body (put a format stage before webpush)")
                continue
            if len(message.body) > ece.MAX_PLAINTEXT_BYTES:
                errors[index] = Reject(
                    f"webpush: the message is {len(message.body)} bytes; one push message holds"
                    f" {ece.MAX_PLAINTEXT_BYTES} (send a link, not the content)"
                )
                continue
            try:
                targets += [(index, user) for user in self.users_of(message)]
            except Reject as exc:
                errors[index] = exc
        if not targets:
            return errors
        try:
            if self.store is None:
                raise RuntimeError("no Redis connection")
            targets = self._addressed(messages, targets)
            subscriptions = self.store.for_users(sorted({user for _, user in targets}))
        except Exception as exc:  # Redis away: the whole batch is retried later
            failure = TransientFailure(f"webpush: cannot look subscriptions up: {exc}")
            for index, _ in targets:
                errors[index] = failure
            return errors

        requests: list[tuple[int, PushRequest]] = []
        stamp = now_ms()
        for index, user in targets:
            message = messages[index]
            topic = self.topics.topic(message.channel) if self.collapse_threads and message.channel else None
            for subscription in subscriptions[user]:
                problem = self._endpoint_problem(subscription.endpoint)
                if problem:  # stored before endpoint_hosts changed
                    log.warning("user %s: subscription %s skipped: %s", user, subscription.id, problem)
                    continue
                try:
                    request = build_request(
                        user, subscription, message.body, self.ttl, self.urgency, topic, message.job_id, stamp
                    )
                except ValueError as exc:  # a stored key that is no P-256 point: not through the endpoint
                    log.warning("user %s: subscription %s skipped: %s", user, subscription.id, exc)
                    continue
                requests.append((index, request))

        # An origin with a backlog gets new messages behind the held ones.
        held: dict[str, list[tuple[int, PushRequest]]] = defaultdict(list)
        reason: dict[str, str] = {}
        retry_after: dict[str, float] = {}
        failed: set[str] = set()  # origins that refused some of these for now
        sending = []
        for index, request in requests:
            if self.backlogs.is_down(request.origin):
                held[request.origin].append((index, request))
                reason.setdefault(request.origin, "its backlog is not empty yet")
            else:
                sending.append((index, request))
        answers = self.deliverer.send([r for _, r in sending])
        settled = []
        for (index, request), answer in zip(sending, answers, strict=True):
            if answer.outcome != RETRY:
                settled.append((request, answer))
                continue
            held[request.origin].append((index, request))
            reason[request.origin] = answer.reason
            failed.add(request.origin)
            if answer.retry_after is not None:
                retry_after[request.origin] = max(retry_after.get(request.origin, 0.0), answer.retry_after)
        self.deliverer.settle(settled)
        for origin, items in held.items():
            try:
                self.backlogs.hold(
                    origin, [r for _, r in items], reason[origin], origin in failed, retry_after.get(origin)
                )
            except Exception as exc:  # Redis away: the job is retried later
                failure = TransientFailure(f"webpush: cannot hold messages for {origin}: {exc}")
                for index, _ in items:
                    errors[index] = failure
        return errors

    def _endpoint_problem(self, endpoint: str) -> str | None:
        """endpoint_problem, remembered: the same browsers get message after message."""
        if endpoint not in self._endpoint_problems:
            if len(self._endpoint_problems) > 100_000:
                self._endpoint_problems.clear()
            self._endpoint_problems[endpoint] = endpoint_problem(endpoint, self.endpoint_hosts)
        return self._endpoint_problems[endpoint]

    def _addressed(self, messages: list[Message], targets: list[tuple[int, str]]) -> list[tuple[int, str]]:
        """The (message, user) pairs to send: followed threads only (if so set), within the rate limit."""
        if self.followed_threads_only:
            follows = self.store.following([(user, messages[index].channel) for index, user in targets])
            targets = [t for t, followed in zip(targets, follows, strict=True) if followed]
        allowed = self.rate.allow([user for _, user in targets])
        limited = [t for t, ok in zip(targets, allowed, strict=True) if not ok]
        if limited:
            self.metrics.count("rate_limited", len(limited))
            log.info(
                "rate limit (%d per %gs): %d notification(s) dropped for %s",
                self.rate_limit,
                self.rate_window,
                len(limited),
                ", ".join(sorted({user for _, user in limited})),
            )
        return [t for t, ok in zip(targets, allowed, strict=True) if ok]
