"""The glue's client for push services (webpush/sender.py, connections.py) against a test push service."""

from __future__ import annotations

import tempfile
import time
from pathlib import Path

import pytest

from realtime_glue.webpush import ece
from realtime_glue.webpush.request import build_request
from realtime_glue.webpush.sender import RETRY, SENT, PushSender
from realtime_glue.webpush.subscriptions import Subscription
from realtime_glue.webpush.vapid import VapidKey, VapidSigner
from support.ports import free_port
from support.push_service import PushService
from support.tls import make_certificates

pytestmark = pytest.mark.timeout(60)


@pytest.fixture
def push_service():
    service = PushService(make_certificates(Path(tempfile.mkdtemp(prefix="webpush-sender-")))).start()
    yield service
    service.stop()


SIGNER = VapidSigner(VapidKey.generate(), "mailto:ops@example.org")


def post(sender: PushSender, browser, text: bytes = b'{"text":"hi"}'):
    """What the stage sends: encrypted for the browser, signed, with TTL."""
    subscription = Subscription(browser.endpoint, ece.public_bytes(browser.private_key), browser.auth)
    now = int(time.time() * 1000)
    request = build_request("ada", subscription, text, 60, "normal", None, "job", now)
    return sender.send(
        request.endpoint, request.body, request.headers(SIGNER.authorization(request.origin), now)
    )


def test_one_keep_alive_connection_carries_one_request_after_another(push_service):
    browser = push_service.new_browser("a")
    sender = PushSender(timeout=5, ca_file=str(push_service.certificates.ca))
    answers = [post(sender, browser, b'{"n":%d}' % n) for n in range(5)]
    assert [a.outcome for a in answers] == [SENT] * 5
    assert [m["n"] for m in push_service.delivered("a")] == [0, 1, 2, 3, 4]
    assert push_service.connections == 1
    sender.close()


def test_a_connection_the_service_closed_while_idle_is_replaced_without_losing_the_request(push_service):
    browser = push_service.new_browser("a")
    push_service.close_connections = True
    sender = PushSender(timeout=5, ca_file=str(push_service.certificates.ca))
    answers = [post(sender, browser) for _ in range(3)]
    assert [a.status for a in answers] == [201, 201, 201]
    assert len(push_service.received("a")) == 3  # each request arrived once
    assert push_service.connections == 3
    sender.close()


def test_nobody_listening_or_no_answer_in_time_means_try_again_later(push_service):
    sender = PushSender(timeout=1, ca_file=str(push_service.certificates.ca))
    answer = sender.send(f"https://127.0.0.1:{free_port()}/push/x", b"body", {"TTL": "60"})
    assert answer.outcome == RETRY and answer.reason.startswith("no answer: ConnectionRefusedError")
    push_service.delay = 2.0
    browser = push_service.new_browser("slow")
    answer = post(sender, browser)
    assert answer.outcome == RETRY and "timed out" in answer.reason
    sender.close()


def test_a_certificate_the_glue_does_not_trust_is_no_push_service(push_service):
    sender = PushSender(timeout=5)  # the system's CAs only
    answer = post(sender, push_service.new_browser("a"))
    assert answer.outcome == RETRY and "CERTIFICATE_VERIFY_FAILED" in answer.reason
    assert push_service.received("a") == []
    sender.close()
