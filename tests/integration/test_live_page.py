"""The live page (nginx/live/) in a real browser: Debian's chromium, headless.

redis-server, the real glue process and a push node serving nginx/live/ as its
document root; the page is loaded first, then jobs are enqueued, and what the
page shows is read from its DOM. A screenshot is kept in build/artifacts/.
"""

from __future__ import annotations

import json

import pytest

from support.live_page import ARTIFACTS, STATE, comments_glue, headless_browser, nodes_serving_the_page

pytestmark = pytest.mark.timeout(120)

SCREENSHOT = ARTIFACTS / "live-page.png"
CHANNELS = ("demo", "news", "sports")


@pytest.fixture
def browser():
    with headless_browser("the live page test", width=1280, height=800) as page:
        yield page


@pytest.fixture
def live_node():
    with nodes_serving_the_page() as (node,):
        yield node


@pytest.fixture
def glue(redis_server, live_node):
    with comments_glue(redis_server.url, [live_node]) as process:
        yield process


def enqueue(glue, channel: str, text: str, event: str = "comment") -> str:
    payload = json.dumps({"channel": channel, "event": event, "data": {"text": text, "user": "ada"}})
    done = glue.cli("enqueue", "comments", payload)
    assert done.returncode == 0, done.stderr
    return done.stdout.strip()


def shows(browser, text: str, timeout: float = 20) -> None:
    browser.wait_for(
        f"document.getElementById('messages').innerText.includes({json.dumps(text)})",
        timeout,
        what=repr(text),
    )


@pytest.mark.parametrize("transport", ["ev", "ws"])
def test_the_live_page_shows_new_messages_and_recovers_after_its_node_restarts(
    transport, glue, live_node, browser
):
    browser.navigate(f"{live_node.base_url}/?channel=demo&channels=news,sports&transport={transport}")
    browser.wait_for(f"{STATE} === 'connected'", what="the connected state")
    for channel in CHANNELS:
        live_node.wait_for_subscribers(channel)
    assert "Waiting for messages on demo" in browser.text("#empty")

    job_id = enqueue(glue, "demo", "hello from the glue")
    shows(browser, "hello from the glue")
    entry = browser.text("#messages li")
    assert "comment" in entry and job_id in entry
    # The heatmap counted it on the demo row.
    browser.wait_for("document.querySelector('.row[data-channel=demo] .rate').innerText.startsWith('1 ')")

    # The node goes away: the page says so, and comes back by itself.
    live_node.stop()
    browser.wait_for(f"{STATE} === 'reconnecting'", what="the reconnecting state")
    assert "reconnecting" in browser.text("#status")
    live_node.start()
    browser.wait_for(f"{STATE} === 'connected'", timeout=30, what="the connected state again")
    for channel in CHANNELS:
        live_node.wait_for_subscribers(channel)
    assert browser.text("#reconnects") == "reconnects: 1"

    enqueue(glue, "demo", "published after the restart")
    shows(browser, "published after the restart")

    # Some activity across channels for the heatmap in the screenshot.
    batch = [("news", "breaking"), ("sports", "goal"), ("news", "update"), ("demo", "all good")]
    for channel, text in batch:
        enqueue(glue, channel, text)
    shows(browser, "all good")
    browser.wait_for("document.querySelector('.row[data-channel=news] .rate').innerText.startsWith('2 ')")
    assert browser.exceptions == [], browser.exceptions
    # One artifact: the default transport, EventSource.
    if transport == "ev":
        print(f"screenshot: {browser.screenshot(SCREENSHOT)}")
