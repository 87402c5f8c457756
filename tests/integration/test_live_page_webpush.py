"""The live page's "notify me about this thread" in a real browser (Debian's chromium, headless).

redis-server, the real glue with a webpush pipeline, a test push service, and a
push node serving nginx/live/ that proxies /webpush/ to the glue. The page
registers its service worker (http://127.0.0.1 is a secure context) and, through
nginx, registers a subscription and follows the thread with the token in its URL.
A job for the user goes through the glue to the push service, which decrypts it
as the browser would; DevTools then delivers that message to the service worker
(ServiceWorker.deliverPushMessage), standing in for the browser's own push
service, which headless chromium cannot reach. The notification is read back
with registration.getNotifications(). A screenshot is kept in build/artifacts/.
"""

from __future__ import annotations

import json
import tempfile
from pathlib import Path

import pytest

from support.live_page import ARTIFACTS, headless_browser, nodes_serving_the_page
from support.push_service import PushService
from support.tls import make_certificates
from support.webpush_glue import WebPushGlue

pytestmark = pytest.mark.timeout(120)

SCREENSHOT = ARTIFACTS / "live-page-webpush.png"
BUTTON = "document.getElementById('notify')"


@pytest.fixture
def browser():
    with headless_browser("the live page's Web Push test", width=1280, height=800) as page:
        yield page


@pytest.fixture
def workdir():
    return Path(tempfile.mkdtemp(prefix="glue-live-webpush-"))


@pytest.fixture
def push_service(workdir):
    service = PushService(make_certificates(workdir / "tls")).start()
    yield service
    service.stop()


@pytest.fixture
def glue(workdir, redis_server, push_service):
    process = WebPushGlue(workdir, redis_server.url, push_service.certificates.ca, followed_threads_only=True)
    process.start()
    yield process
    process.stop()


@pytest.fixture
def live_node(glue):
    with nodes_serving_the_page(overrides={"push_stream_webpush_upstream": glue.endpoint}) as (node,):
        yield node


def registration_id(browser, scope: str) -> str:
    for event in reversed(browser.events):
        if event["method"] == "ServiceWorker.workerRegistrationUpdated":
            for registration in event["params"]["registrations"]:
                if registration["scopeURL"] == scope and not registration["isDeleted"]:
                    return registration["registrationId"]
    raise AssertionError(f"no service worker registered for {scope}")


def test_a_reader_asks_for_notifications_on_a_thread_and_a_push_message_shows_one(
    glue, live_node, push_service, browser
):
    origin = live_node.base_url
    browser.call("Browser.grantPermissions", permissions=["notifications"], origin=origin)
    browser.call("ServiceWorker.enable")
    browser.navigate(f"{origin}/?channel=article-42&push_token={glue.token('ada')}")
    browser.wait_for(f"{BUTTON}.dataset.worker === 'ready'", what="the service worker")
    assert browser.text("#notify") == "notify me about this thread"

    # What the button does once the browser has a subscription: post it and follow the thread.
    phone = push_service.new_browser("ada-phone")
    browser.evaluate(
        f"window.realtimeGlueNotify.register({json.dumps(phone.subscription())})"
        ".then(() => window.realtimeGlueNotify.follow())",
        await_promise=True,
    )
    assert browser.text("#notify") == "notifications on · stop"
    listed = json.loads(glue.cli("webpush", "subscriptions", "ada", "--json").stdout)
    assert listed[0]["threads"] == ["article-42"]
    assert [s["endpoint"] for s in listed[0]["subscriptions"]] == [phone.endpoint]

    job_id = glue.notify("ada", "Nice article, and a question", title="Grace replied")
    glue.notify("ada", "a thread ada does not follow", channel="article-7")
    (message,) = push_service.wait_for(lambda: push_service.received("ada-phone"), what="the push message")
    assert message.problems == []

    browser.call(
        "ServiceWorker.deliverPushMessage",
        origin=origin,
        registrationId=registration_id(browser, f"{origin}/"),
        data=message.plaintext.decode(),
    )
    browser.wait_for(
        "document.getElementById('notify-inbox').innerText.includes('Nice article')", what="the notification"
    )
    shown = browser.evaluate(
        "navigator.serviceWorker.ready.then(r => r.getNotifications())"
        ".then(ns => ns.map(n => ({title: n.title, body: n.body, tag: n.tag, url: n.data.url})))",
        await_promise=True,
    )
    assert shown == [
        {
            "title": "Grace replied",
            "body": "Nice article, and a question",
            "tag": "article-42",
            "url": f"{origin}/?channel=article-42",
        }
    ]
    assert browser.evaluate("document.querySelector('#notify-inbox li').dataset.id") == job_id
    print(f"screenshot: {browser.screenshot(SCREENSHOT)}")

    # Pressed again: no more notifications about the thread.
    browser.evaluate(f"{BUTTON}.click()")
    browser.wait_for(f"{BUTTON}.dataset.state === 'off'", what="notifications off")
    assert glue.request("GET", "/webpush/threads", user="ada") == (200, {"threads": []})
    assert browser.exceptions == [], browser.exceptions
