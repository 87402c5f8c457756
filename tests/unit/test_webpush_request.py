"""One push request: RFC 8030 headers, a Topic per thread, what a push service's answer means."""

from __future__ import annotations

import re

import pytest
from cryptography.hazmat.primitives.asymmetric import ec

from realtime_glue.webpush import ece
from realtime_glue.webpush.request import PushRequest, TopicMaker, build_request
from realtime_glue.webpush.sender import GONE, REFUSED, RETRY, SENT, classify, parse_retry_after
from realtime_glue.webpush.subscriptions import Subscription

BROWSER = ec.generate_private_key(ec.SECP256R1())
SUB = Subscription("https://push.example/s/1", ece.public_bytes(BROWSER), b"0123456789abcdef")


def test_a_request_carries_ttl_urgency_topic_and_an_encrypted_body():
    request = build_request("ada", SUB, b'{"text":"hi"}', 3600, "high", "T" * 32, "job-1", now_ms=1_000_000)
    headers = request.headers("vapid t=x, k=y", now_ms=1_000_000)
    assert headers == {
        "TTL": "3600",
        "Urgency": "high",
        "Topic": "T" * 32,
        "Content-Encoding": "aes128gcm",
        "Content-Type": "application/octet-stream",
        "Authorization": "vapid t=x, k=y",
    }
    assert ece.decrypt(request.body, BROWSER, SUB.auth) == b'{"text":"hi"}'
    # Held in a backlog for 10 minutes, it asks the push service to keep it 10 minutes less.
    assert request.headers("a", now_ms=1_000_000 + 600_000)["TTL"] == "3000"
    assert PushRequest.from_record(request.to_record()) == request


def test_one_thread_one_topic_and_nobody_can_tell_which_thread():
    topics = TopicMaker(b"our secret")
    first = topics.topic("article-42")
    assert first == topics.topic("article-42") != topics.topic("article-43")
    assert re.fullmatch(r"[A-Za-z0-9_-]{32}", first)
    assert TopicMaker(b"another key").topic("article-42") != first


@pytest.mark.parametrize(
    ("status", "outcome"),
    [
        *[(201, SENT), (202, SENT), (404, GONE), (410, GONE), (429, RETRY), (500, RETRY), (503, RETRY)],
        *[(400, REFUSED), (401, REFUSED), (403, REFUSED), (413, REFUSED), (301, REFUSED)],
    ],
)
def test_what_each_answer_means(status, outcome):
    assert classify(status).outcome == outcome


def test_retry_after_in_seconds_or_as_a_date_capped_at_an_hour():
    assert classify(429, "30").retry_after == 30
    assert parse_retry_after("Wed, 21 Oct 2015 07:28:00 GMT", now=1445412470) == 10
    assert parse_retry_after("999999") == 3600
    assert parse_retry_after("soon") is None
    assert classify(400, "30", "bad header\n").reason == "HTTP 400: bad header"
