"""Sending push requests, concurrently, and acting on the answers that are final.

Used by the webpush stage for new messages and by each origin's backlog for
held ones, so both treat an answer the same way:

    sent      counted
    gone      the subscription is deleted (the browser unsubscribed, or it expired)
    refused   dead-lettered with the push service's reason
    retry     not settled here: the caller holds it in the origin's backlog
"""

from __future__ import annotations

import logging
import time

import gevent
from gevent.pool import Pool

from .deadletter import DeadLetters
from .metrics import WebPushMetrics
from .request import PushRequest
from .sender import GONE, REFUSED, RETRY, SENT, Answer, PushSender
from .subscriptions import SubscriptionStore
from .vapid import VapidSigner

log = logging.getLogger(__name__)


def now_ms() -> int:
    return int(time.time() * 1000)


class Deliverer:
    def __init__(
        self,
        sender: PushSender,
        signer: VapidSigner,
        store: SubscriptionStore | None,
        dead_letters: DeadLetters | None,
        metrics: WebPushMetrics,
        concurrency: int = 256,
    ):
        self.sender = sender
        self.signer = signer
        self.store = store
        self.dead_letters = dead_letters
        self.metrics = metrics
        self.pool = Pool(concurrency)

    def _send_one(self, request: PushRequest) -> Answer:
        try:
            headers = request.headers(self.signer.authorization(request.origin), now_ms())
            return self.sender.send(request.endpoint, request.body, headers)
        except Exception as exc:  # never let one request take the batch down
            log.exception("push to %s failed unexpectedly", request.origin)
            return Answer(RETRY, None, f"{type(exc).__name__}: {exc}")

    def send(self, requests: list[PushRequest]) -> list[Answer]:
        """POST every request at once (at most `concurrency` in flight); the answers in order."""
        if not requests:
            return []
        greenlets = [self.pool.spawn(self._send_one, r) for r in requests]
        # The sender's own timeouts end every request; this is a backstop.
        gevent.joinall(greenlets, timeout=3 * self.sender.timeout + 5)
        answers = []
        for greenlet in greenlets:
            if greenlet.ready() and greenlet.successful():
                answers.append(greenlet.value)
            else:
                greenlet.kill(block=False)
                answers.append(Answer(RETRY, None, "no answer in time"))
        return answers

    def settle(self, settled: list[tuple[PushRequest, Answer]]) -> None:
        """Act on final answers (sent, gone, refused); a Redis error is logged, not raised:
        a gone subscription answers 410 again next time, and is deleted then."""
        dead = []
        for request, answer in settled:
            if answer.outcome == SENT:
                self.metrics.count("sent")
            elif answer.outcome == GONE:
                self.metrics.count("gone")
                log.info(
                    "user %s: subscription %s at %s is gone (%s); deleting it",
                    request.user,
                    request.subscription_id,
                    request.origin,
                    answer.reason,
                )
                if self.store is not None:
                    try:
                        self.store.remove(request.user, request.subscription_id)
                    except Exception as exc:
                        log.warning("cannot delete subscription %s: %s", request.subscription_id, exc)
            elif answer.outcome == REFUSED:
                self.metrics.count("refused")
                log.warning(
                    "job %s: %s refused the push for user %s (%s); dead-lettered",
                    request.job_id,
                    request.origin,
                    request.user,
                    answer.reason,
                )
                dead.append(
                    {
                        "job": request.job_id,
                        "user": request.user,
                        "sub": request.subscription_id,
                        "origin": request.origin,
                        "status": answer.status,
                        "reason": answer.reason,
                    }
                )
        if dead and self.dead_letters is not None:
            try:
                self.dead_letters.add(dead)
            except Exception as exc:
                log.warning("cannot write %d dead letters: %s", len(dead), exc)
