"""The webpush stage in the real `realtime-glue run` process, against test push services.

redis-server, the glue, and push services on loopback (support/push_service.py)
that check every request as a real one does (VAPID JWT, TTL, the body opens with
the browser's key) and answer what the test scripts: 201, 404, 410, 429 with
Retry-After, 500, 400. Browsers are registered the way a page does it: through
the subscription endpoint the pipeline's process serves, with a token.
"""

from __future__ import annotations

import json
import tempfile
import time
from pathlib import Path

import pytest

from realtime_glue.jobqueue import JobFeed
from realtime_glue.webpush.token import make_token
from realtime_glue.webpush.vapid import VapidKey
from support.glue_process import feed_counts, wait_until
from support.push_service import PushService
from support.tls import make_certificates
from support.webpush_glue import TOKEN_KEY, WebPushGlue, backlog_of

pytestmark = pytest.mark.timeout(120)


@pytest.fixture
def workdir():
    return Path(tempfile.mkdtemp(prefix="glue-webpush-"))


@pytest.fixture
def certificates(workdir):
    return make_certificates(workdir / "tls")


@pytest.fixture
def push_service(certificates):
    service = PushService(certificates).start()
    print(f"push service {service.origin}, checked by {service.checked_by}")
    yield service
    service.stop()


@pytest.fixture
def other_push_service(certificates):
    service = PushService(certificates).start()
    yield service
    service.stop()


@pytest.fixture
def make_glue(workdir, redis_server, certificates):
    glues = []

    def make(**options) -> WebPushGlue:
        glue = WebPushGlue(workdir, redis_server.url, certificates.ca, **options)
        glues.append(glue)
        return glue.start()

    yield make
    for glue in glues:
        if glue.process.alive():
            glue.process.kill()


def test_a_job_for_a_user_reaches_each_of_their_browsers_encrypted_signed_and_anonymized(
    make_glue, push_service
):
    glue = make_glue()
    laptop, phone = push_service.new_browser("laptop"), push_service.new_browser("phone")
    glue.register("ada", laptop)
    glue.register("ada", phone)
    job_id = glue.notify("ada", "a reply to you", email="ada@example.org")
    push_service.wait_for(lambda: push_service.delivered("laptop") and push_service.delivered("phone"))
    for name in ("laptop", "phone"):
        (received,) = push_service.received(name)
        assert received.problems == []
        assert received.message == {
            "id": job_id,
            "channel": "article-42",
            "event": "comment",
            "data": {"user_id": "ada", "text": "a reply to you"},  # anonymize dropped the email
        }
        assert b"a reply to you" not in received.body  # only the browser can read it
        assert received.headers["ttl"] == "86400" and received.headers["urgency"] == "normal"
        assert received.claims["aud"] == push_service.origin
        assert received.claims["sub"] == "mailto:ops@example.org"
        assert received.headers["authorization"].endswith(f"k={glue.vapid.public_key_b64}")
    glue.wait_finished(1)
    # One thread, one Topic (a burst collapses on the phone); another thread, another Topic.
    glue.notify("ada", "second on the thread")
    glue.notify("ada", "elsewhere", channel="article-7")
    push_service.wait_for(lambda: len(push_service.delivered("phone")) == 3)
    # The two jobs may reach the phone in either order: name each message's Topic by its text.
    topics = {r.message["data"]["text"]: r.headers["topic"] for r in push_service.received("phone")}
    assert topics["a reply to you"] == topics["second on the thread"] != topics["elsewhere"]
    assert all(len(t) == 32 for t in topics.values())
    glue.stop()


def test_gone_subscriptions_are_deleted_and_get_nothing_more(make_glue, push_service, redis_server):
    glue = make_glue()
    for name in ("old-laptop", "old-phone", "tablet"):
        glue.register("ada", push_service.new_browser(name))
    push_service.answer("old-laptop", 410)
    push_service.answer("old-phone", 404)
    glue.notify("ada", "first")
    glue.wait_finished(1)
    listed = json.loads(glue.cli("webpush", "subscriptions", "ada", "--json").stdout)
    assert [s["endpoint"].rsplit("/", 1)[1] for s in listed[0]["subscriptions"]] == ["tablet"]
    glue.notify("ada", "second")
    glue.wait_finished(2)
    assert [len(push_service.received(n)) for n in ("old-laptop", "old-phone")] == [1, 1]
    assert [m["data"]["text"] for m in push_service.delivered("tablet")] == ["first", "second"]
    glue.stop()


def test_a_push_service_that_says_wait_is_retried_later_without_holding_up_anyone_else(
    make_glue, push_service, other_push_service
):
    glue = make_glue()
    ada, bob = push_service.new_browser("ada"), other_push_service.new_browser("bob")
    glue.register("ada", ada)
    glue.register("bob", bob)
    push_service.answer("ada", 429, 500, retry_after=2)
    glue.notify(["ada", "bob"], "one")
    other_push_service.wait_for(lambda: other_push_service.delivered("bob"), what="bob's message")
    backlog = backlog_of(push_service.origin)
    wait_until(lambda: feed_counts(glue.redis, backlog)["items"], what="ada's message held")
    glue.notify("ada", "two")  # queues behind "one" in the backlog of ada's push service
    glue.wait_finished(2)  # held messages do not keep their jobs open
    push_service.wait_for(lambda: len(push_service.delivered("ada")) == 2, timeout=60, what="ada's messages")
    attempts = push_service.received("ada")
    assert [r.status for r in attempts] == [429, 500, 201, 201]
    assert attempts[1].at - attempts[0].at >= 2.0  # not before Retry-After
    assert [m["data"]["text"] for m in push_service.delivered("ada")] == ["one", "two"]
    assert attempts[0].body == attempts[2].body  # held encrypted, sent again as it was
    assert int(attempts[2].headers["ttl"]) <= 86400 - 2  # its TTL counts down while held
    status = json.loads(glue.cli("webpush", "status", "alerts", "--json").stdout)
    assert status["backlog"] == {push_service.origin: {"waiting": 0, "stalled": 0}}
    glue.stop()


def test_held_messages_survive_a_restart_of_the_glue(make_glue, push_service):
    glue = make_glue()
    glue.register("ada", push_service.new_browser("ada"))
    push_service.answer("ada", *[503] * 1000)
    glue.notify("ada", "kept in redis")
    glue.wait_finished(1)
    push_service.wait_for(lambda: push_service.received("ada", status=503), what="the first refusal")
    glue.stop()
    push_service.script["ada"].clear()
    glue.start()
    push_service.wait_for(lambda: push_service.delivered("ada"), timeout=30, what="the held message")
    assert push_service.delivered("ada")[0]["data"]["text"] == "kept in redis"
    glue.stop()


def test_a_held_message_claimed_by_a_glue_that_died_is_taken_back_and_delivered(make_glue, push_service):
    # The backlog's claims are leases like the job feed's: the service's reclaimer
    # returns those of a dead process (after its grace), the heartbeat renews the living's.
    glue = make_glue()
    glue.register("ada", push_service.new_browser("ada"))
    push_service.answer("ada", *[503] * 1000)
    glue.notify("ada", "held by the dead")
    glue.wait_finished(1)
    push_service.wait_for(lambda: push_service.received("ada", status=503), what="the first refusal")
    glue.stop()
    backlog = JobFeed(glue.redis, backlog_of(push_service.origin), worker_id="a-glue-killed-mid-drain")
    assert len(backlog.claim(10)) == 1  # what a drainer killed -9 mid-send leaves behind
    push_service.script["ada"].clear()
    glue.start()
    push_service.wait_for(lambda: push_service.delivered("ada"), timeout=60, what="the reclaimed message")
    assert [m["data"]["text"] for m in push_service.delivered("ada")] == ["held by the dead"]
    wait_until(lambda: feed_counts(glue.redis, backlog.name)["items"] == 0, what="the backlog emptied")
    glue.stop()


def test_a_push_refused_for_good_is_dead_lettered_with_the_reason(make_glue, push_service):
    glue = make_glue()
    glue.register("ada", push_service.new_browser("ada"))
    push_service.answer("ada", 400)
    job_id = glue.notify("ada", "refused")
    glue.wait_finished(1)
    status = json.loads(glue.cli("webpush", "status", "alerts", "--json").stdout)
    assert status["dead_letters"] == 1
    (dead,) = status["newest_dead_letters"]
    assert (dead["job"], dead["user"], dead["status"], dead["origin"]) == (
        "" or job_id,
        "ada",
        400,
        push_service.origin,
    )
    assert dead["reason"].startswith("HTTP 400")
    # The subscription stays: the next message goes through.
    glue.notify("ada", "accepted")
    push_service.wait_for(lambda: push_service.delivered("ada"))
    assert feed_counts(glue.redis, "alerts")["stalled"] == 0
    glue.stop()


def test_a_busy_thread_cannot_flood_a_user(make_glue, push_service):
    glue = make_glue(rate_limit=2, rate_window=60)
    glue.register("ada", push_service.new_browser("ada"))
    glue.register("bob", push_service.new_browser("bob"))
    for n in range(5):
        glue.notify("ada", f"comment {n}")
    glue.notify("bob", "bob's own")
    glue.wait_finished(6)
    push_service.wait_for(lambda: push_service.delivered("bob"))
    assert len(push_service.delivered("ada")) == 2
    glue.stop()


def test_with_followed_threads_only_a_user_hears_about_the_threads_they_chose(make_glue, push_service):
    glue = make_glue(followed_threads_only=True)
    glue.register("ada", push_service.new_browser("ada"))
    assert glue.request("PUT", "/webpush/threads/article-1", user="ada")[0] == 204
    assert glue.request("GET", "/webpush/threads", user="ada") == (200, {"threads": ["article-1"]})
    glue.notify("ada", "on the followed thread", channel="article-1")
    glue.notify("ada", "elsewhere", channel="article-2")
    glue.wait_finished(2)
    push_service.wait_for(lambda: push_service.delivered("ada"))
    assert [m["channel"] for m in push_service.delivered("ada")] == ["article-1"]
    assert glue.request("DELETE", "/webpush/threads/article-1", user="ada")[0] == 204
    glue.notify("ada", "no longer followed", channel="article-1")
    glue.wait_finished(3)
    assert len(push_service.delivered("ada")) == 1
    glue.stop()


def test_the_endpoint_registers_a_browser_only_for_the_user_its_token_names(make_glue, push_service):
    glue = make_glue()
    browser = push_service.new_browser("b")
    assert glue.request("GET", "/webpush/key") == (200, {"publicKey": glue.vapid.public_key_b64})
    # No token, a forged one, an expired one.
    assert glue.request("POST", "/webpush/subscriptions", browser.subscription())[0] == 401
    forged = make_token(bytes(32), "ada", int(time.time()) + 600)
    assert glue.request("POST", "/webpush/subscriptions", browser.subscription(), token=forged)[0] == 401
    expired = make_token(TOKEN_KEY, "ada", int(time.time()) - 1)
    status, answer = glue.request("POST", "/webpush/subscriptions", browser.subscription(), token=expired)
    assert (status, answer) == (401, {"error": "token expired"})
    # Bob's token registers for bob, whatever the body says.
    body = {**browser.subscription(), "user": "ada"}
    assert glue.request("POST", "/webpush/subscriptions", body, user="bob")[0] == 201
    listed = json.loads(glue.cli("webpush", "subscriptions", "--json").stdout)
    assert [(row["user"], len(row["subscriptions"])) for row in listed] == [("bob", 1)]
    # What is not a subscription a push service would give.
    bad = {**browser.subscription(), "endpoint": "http://127.0.0.1/push/b"}
    assert glue.request("POST", "/webpush/subscriptions", bad, user="bob") == (
        400,
        {"error": "subscription: endpoint must be https, got http"},
    )
    elsewhere = {**browser.subscription(), "endpoint": "https://169.254.169.254/latest/meta-data"}
    status, answer = glue.request("POST", "/webpush/subscriptions", elsewhere, user="bob")
    assert status == 400 and "not a known push service" in answer["error"]
    status, _ = glue.request("POST", "/webpush/subscriptions", b"x" * 5000, user="bob")
    assert status == 413
    # Unsubscribing: only one's own.
    gone = {"endpoint": browser.endpoint}
    assert glue.request("DELETE", "/webpush/subscriptions", gone, user="ada")[0] == 404
    assert glue.request("DELETE", "/webpush/subscriptions", gone, user="bob")[0] == 204
    assert json.loads(glue.cli("webpush", "subscriptions", "--json").stdout) == []
    glue.stop()


def test_the_cli_makes_keys_and_tokens_and_sends_a_test_notification(make_glue, push_service, workdir):
    glue = make_glue()
    vapid, token_key = workdir / "new-vapid.pem", workdir / "new-token.key"
    made = glue.cli("webpush", "keygen", "--vapid", str(vapid), "--token-key", str(token_key))
    assert made.returncode == 0, made.stderr
    assert "applicationServerKey" in made.stdout
    assert oct(vapid.stat().st_mode & 0o777) == oct(token_key.stat().st_mode & 0o777) == "0o600"
    assert VapidKey.from_file(str(vapid)).public_key_b64 in made.stdout
    again = glue.cli("webpush", "keygen", "--vapid", str(vapid))
    assert again.returncode != 0 and "exists" in again.stderr
    token = glue.cli("webpush", "token", "alerts", "carol").stdout.strip()
    status, _ = glue.request(
        "POST", "/webpush/subscriptions", push_service.new_browser("c").subscription(), token=token
    )
    assert status == 201
    sent = glue.cli("webpush", "send-test", "alerts", "carol", "--text", "does it work?")
    assert sent.returncode == 0, sent.stdout + sent.stderr
    assert " sent " in sent.stdout
    assert push_service.delivered("c")[0]["data"] == {"title": "realtime-glue", "text": "does it work?"}
    glue.stop()
