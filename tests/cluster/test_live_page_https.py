"""The live page of the cluster in headless Chromium over HTTPS: served by a push
node under its own name with its ACME certificate, which Chromium trusts through
pebble's root in an NSS database of its profile (no certificate error is
ignored); the names resolve by --host-resolver-rules, as the cluster's DNS is the
CA's own. Jobs go in on the glue node.

- EventSource and wss:// WebSocket show a message;
- twelve EventSource subscriptions of one page all receive theirs and share one
  HTTP/2 connection (one $connection serial in the node's access log);
- a certificate renewal forced while the page subscribes (certbot renew
  --force-renewal; its deploy hook reloads nginx) loses no message.
"""

from __future__ import annotations

import json
import re
import time
import uuid

import pytest

from support import browser as chromium
from support.glue_process import wait_until

pytestmark = pytest.mark.timeout(300)
STATE = "document.getElementById('status').dataset.state"
LISTED_IDS = "Array.from(document.querySelectorAll('#messages li .id')).map(e => e.innerText)"


@pytest.fixture
def node(push_nodes):
    first = push_nodes[0]
    if first.tls is None:
        pytest.skip("the cluster's push nodes have no HTTPS (push_stream_tls_mode: none)")
    return first


@pytest.fixture
def browser(push_nodes, node):
    why = chromium.missing(https=True)
    if why:
        print(f"skipping the cluster's HTTPS live page test: {why}")
        pytest.skip(why)
    page = chromium.Chromium(
        width=1280,
        height=900,
        trust=[node.tls.trust_path],
        hosts={n.tls.name: n.host for n in push_nodes},
    ).start()
    yield page
    page.cleanup()


def comment(channel: str, text: str) -> str:
    return json.dumps({"channel": channel, "event": "comment", "data": {"text": text}})


def open_page(browser, node, channels: list[str], transport: str = "ev") -> None:
    query = f"channel={channels[0]}&channels={','.join(channels[1:])}&transport={transport}"
    browser.navigate(f"{node.base_url}/?{query}")
    assert browser.evaluate("location.protocol") == "https:"
    browser.wait_for(f"{STATE} === 'connected'", timeout=30, what="the connected state")
    for channel in channels:
        node.wait_for_subscribers(channel, timeout=20)


def shows(browser, text: str, timeout: float = 30) -> None:
    browser.wait_for(
        f"document.getElementById('messages').innerText.includes({json.dumps(text)})",
        timeout,
        what=repr(text),
    )


@pytest.mark.parametrize("transport", ["ev", "ws"])
def test_the_live_page_over_https_shows_a_job(transport, cluster, node, browser, channel):
    open_page(browser, node, [channel], transport)
    job_id = cluster.enqueue(comment(channel, f"over {transport} from the glue"))
    shows(browser, f"over {transport} from the glue")
    assert job_id in browser.text("#messages li")
    assert browser.exceptions == [], browser.exceptions


def test_twelve_eventsource_subscriptions_share_one_http2_connection(cluster, node, browser):
    if node.flavour != "push_stream":
        reason = "nchan serves HTTPS without HTTP/2 (push_stream_tls_http2 is off for nchan)"
        print(reason)
        pytest.skip(reason)
    tag = uuid.uuid4().hex[:6]
    channels = [f"h2-{tag}-{n}" for n in range(12)]
    open_page(browser, node, channels)
    for channel in channels:
        cluster.enqueue(comment(channel, f"to {channel}"))
    for channel in channels:
        browser.wait_for(
            f"document.querySelector('.row[data-channel=\"{channel}\"] .rate').innerText.startsWith('1 ')",
            timeout=30,
            what=f"a message counted on {channel}",
        )
    browser.stop()  # the connection closes; nginx logs each stream as it ends

    def ev_lines() -> list[str]:
        log = node.host_entry.run(f"grep -F '/ev/h2-{tag}-' /var/log/nginx/access.log || true").stdout
        return log.splitlines()

    wait_until(lambda: len(ev_lines()) >= 12, 30, what="12 EventSource requests in the node's access log")
    lines = ev_lines()
    serials = {re.search(r"connection=(\d+)", line).group(1) for line in lines}
    print(f"12 EventSource requests on {node.tls.name}, connection serials {sorted(serials)}")
    assert len(lines) == 12 and all('HTTP/2.0"' in line for line in lines), lines
    assert len(serials) == 1, lines


def test_a_forced_certificate_renewal_during_a_subscription_loses_nothing(cluster, node, browser, channel):
    if node.flavour != "push_stream":
        reason = (
            "nchan keeps no message store across a reload (slact/nchan#290): what is published "
            "while the page reconnects is lost; push-stream recovers it (the default flavour)"
        )
        print(reason)
        pytest.skip(reason)
    host = node.host_entry
    serial = "openssl x509 -noout -serial -in /etc/letsencrypt/live/realtime-glue-push/cert.pem"
    master = "systemctl show -p MainPID --value nginx.service"
    serial_before, master_before = host.run(serial).stdout, host.run(master).stdout
    open_page(browser, node, [channel])

    producer = cluster.produce(channel, rate=10, count=150)
    try:
        wait_until(lambda: len(producer.ids) >= 30, 60, what="30 jobs before the renewal")
        # What certbot.timer runs (with its unit's environment: the test CA's
        # bundle) when a renewal is due, forced now.
        renewal = host.run(
            "env $(systemctl show -p Environment --value certbot.service) "
            "certbot renew --force-renewal --no-random-sleep-on-renew",
            timeout=180,
        )
        ids = producer.wait()
    finally:
        producer.stop()
    deadline = time.monotonic() + 60
    while not set(ids) <= set(browser.evaluate(LISTED_IDS)) and time.monotonic() < deadline:
        time.sleep(0.5)
    listed = browser.evaluate(LISTED_IDS)
    missing = [job_id for job_id in ids if job_id not in listed]
    said = renewal.stdout.strip().splitlines()[-1:]
    page = browser.text("#reconnects")
    print(f"renewal on {node.name}: {said}; page {page}; {len(ids)} jobs, {len(missing)} missing")
    assert host.run(serial).stdout != serial_before, "the certificate was renewed"
    assert host.run(master).stdout == master_before, "nginx was reloaded, not restarted"
    assert missing == []
    assert browser.exceptions == [], browser.exceptions
