"""The live page's reader counts and its own reconnects, in Debian's headless chromium.

Readers: two real push nodes serving nginx/live/, Redis and the real `realtime-glue
readers`; the page is open on one node while other readers (EventSource
subscribers) sit on the other, and the page must show the sum, "N reading now",
and the readers heatmap. Reconnects: the node ends every subscription after a few
seconds (a short connection ttl); while the page cannot reconnect (DevTools blocks
its subscription URLs) messages are published, and once it can, it must show each
of them once: it resumed with the id of the last message it had and dropped repeats.
Both run under the nodes' Content-Security-Policy, which must block nothing.
"""

from __future__ import annotations

import json
import tempfile
import urllib.request
from pathlib import Path

import pytest

from support.glue_process import GlueProcess, wait_until, write_config
from support.live_page import ARTIFACTS, STATE, headless_browser, nodes_serving_the_page
from support.ports import free_port

pytestmark = pytest.mark.timeout(150)

SCREENSHOT = ARTIFACTS / "live-page-readers.png"
READING_NOW = "document.getElementById('readers-now').dataset.readers"
# Recorded from the first script of every document on: what the policy blocked.
RECORD_VIOLATIONS = """
window.cspViolations = [];
document.addEventListener('securitypolicyviolation', function (e) {
  window.cspViolations.push(e.violatedDirective + ' ' + e.blockedURI);
});
"""


@pytest.fixture
def browser():
    with headless_browser("the live page's readers test", width=1280, height=800) as page:
        page.call("Page.enable")
        page.call("Page.addScriptToEvaluateOnNewDocument", source=RECORD_VIOLATIONS)
        yield page


@pytest.fixture
def two_nodes():
    with nodes_serving_the_page(2) as nodes:
        yield nodes


@pytest.fixture
def readers_unit(redis_server, two_nodes):
    workdir = Path(tempfile.mkdtemp(prefix="glue-live-readers-"))
    table = f"""
[readers]
interval = 0.2
snapshot_interval = 2
timeout = 1
metrics_listen = "127.0.0.1:{free_port()}"
"""
    config = write_config(workdir, redis_server.url, [n.cluster_url for n in two_nodes], "", extra=table)
    process = GlueProcess(config, "readers", run_args=("readers",)).start()
    yield process
    process.terminate()


def assert_policy_blocked_nothing(browser) -> None:
    assert browser.evaluate("window.cspViolations") == [], (
        "the Content-Security-Policy blocked part of the page"
    )
    assert browser.exceptions == [], browser.exceptions


def test_the_page_shows_readers_summed_over_both_nodes(two_nodes, readers_unit, browser):
    page_node, other_node = two_nodes
    # The page is served with the policy, and no file of it is sniffed.
    for path in ("/", "/live.js", "/live.css"):
        headers = urllib.request.urlopen(page_node.base_url + path, timeout=5).headers
        assert headers["X-Content-Type-Options"] == "nosniff", path
        assert "script-src 'self'" in headers["Content-Security-Policy"], path

    readers = [other_node.events("demo") for _ in range(2)] + [other_node.events("news")]
    try:
        browser.navigate(f"{page_node.base_url}/?channel=demo&channels=news")
        browser.wait_for(f"{STATE} === 'connected'", what="the connected state")
        # The page's own subscription on one node, two readers on the other.
        browser.wait_for(f"{READING_NOW} === '3'", what="3 reading demo")
        assert browser.text("#readers-now") == "3 reading now"
        news = "document.querySelector('#readers-heatmap .row[data-channel=news] .rate')"
        browser.wait_for(f"{news}.dataset.value === '2'", what="2 reading news in the readers heatmap")
        assert browser.text("#readers-heatmap .row[data-channel=demo] .rate") == "3 now"

        # A reader leaves the other node: the page follows.
        readers[0].close()
        browser.wait_for(f"{READING_NOW} === '2'", what="2 reading demo")
        assert browser.text("#readers-now") == "2 reading now"
        # The heatmap's newest cell of demo is lit (it had readers every second).
        assert browser.evaluate(
            "document.querySelector('#readers-heatmap .row[data-channel=demo] .cells').lastElementChild"
            ".style.background !== ''"
        )
        assert_policy_blocked_nothing(browser)
        print(f"screenshot: {browser.screenshot(SCREENSHOT)}")
    finally:
        for stream in readers:
            stream.close()


def message(number: int) -> tuple[str, str]:
    """A message as the glue publishes it: its id in the body and as the Event-ID."""
    event_id = f"resume-test-{number}"
    body = {
        "id": event_id,
        "channel": "demo",
        "event": "comment",
        "data": {"text": f"message number {number}"},
    }
    return event_id, json.dumps(body)


def shown_times(browser, number: int) -> int:
    return browser.evaluate(
        "Array.from(document.querySelectorAll('#messages li'))"
        f".filter(function (li) {{ return li.innerText.includes('message number {number}'); }}).length"
    )


@pytest.mark.parametrize("transport", ["ev", "ws"])
def test_the_page_resumes_after_its_own_reconnect_and_drops_repeats(transport, browser):
    # The node ends each subscription after 3 s: the page reconnects by itself.
    with nodes_serving_the_page(overrides={"push_stream_subscriber_connection_ttl": "3s"}) as (node,):
        if node.flavour != "push_stream":
            why = "nchan keeps message ids of its own: the page cannot resume by the glue's ids"
            print(f"skipping: {why}")
            pytest.skip(why)
        browser.navigate(f"{node.base_url}/?channel=demo&channels=&readers=&transport={transport}")
        browser.wait_for(f"{STATE} === 'connected'", what="the connected state")
        node.wait_for_subscribers("demo")

        for number in (1, 2):
            event_id, body = message(number)
            node.publish("demo", body, event_id=event_id)
        # The same message again (a glue retry): shown once.
        event_id, body = message(2)
        node.publish("demo", body, event_id=event_id)
        event_id, body = message(3)
        node.publish("demo", body, event_id=event_id)
        browser.wait_for("document.getElementById('messages').innerText.includes('message number 3')")

        # The page loses its subscription and cannot get a new one for a while.
        browser.call("Network.enable")
        browser.call("Network.setBlockedURLs", urls=["*/ev/*", "*/ws/*"])
        browser.wait_for(f"{STATE} === 'reconnecting'", what="the reconnecting state")
        for number in (4, 5):
            event_id, body = message(number)
            node.publish("demo", body, event_id=event_id)
        browser.call("Network.setBlockedURLs", urls=[])
        browser.wait_for(
            "document.getElementById('messages').innerText.includes('message number 5')",
            timeout=30,
            what="the messages published while the page was away",
        )
        assert [shown_times(browser, n) for n in (1, 2, 3, 4, 5)] == [1, 1, 1, 1, 1]
        # It asked the node for what came after the last message it had (logged
        # when that subscription ends: after the connection ttl).
        wait_until(
            lambda: f"/{transport}/demo?last_event_id=resume-test-3 " in node.access_log,
            10,
            what="the resuming request in the access log",
        )
        assert_policy_blocked_nothing(browser)
