"""The live page's service worker (nginx/live/sw.js): what a push shows and what a click on
the notification opens. Run under node in a fake service worker scope
(js/service_worker_harness.js): a real browser shows the notification in
tests/integration/test_live_page_webpush.py, but no browser automation can click one."""

from __future__ import annotations

import json
import shutil
import subprocess
from pathlib import Path

import pytest

HERE = Path(__file__).resolve().parent
SW = HERE.parents[1] / "nginx" / "live" / "sw.js"
NODE = shutil.which("node") or shutil.which("nodejs")
ORIGIN = "https://push.example"

pytestmark = pytest.mark.skipif(NODE is None, reason="node is not installed (make deps installs nodejs)")


def run(steps: list[dict], clients: list[str] = ()) -> list[dict]:
    scenario = {"origin": ORIGIN, "clients": list(clients), "steps": steps}
    done = subprocess.run(
        [NODE, str(HERE / "js" / "service_worker_harness.js"), str(SW), json.dumps(scenario)],
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout)


def comment(**data) -> dict:
    return {"id": "j1", "channel": "article-7", "event": "comment", "data": data}


def test_a_click_opens_the_thread_the_message_names():
    calls = run([{"push": comment(text="Nice post", url="/threads/7")}, {"click": 0}])
    assert calls[0]["showNotification"] == "New comment on article-7"
    assert calls[0]["options"]["body"] == "Nice post"
    assert calls[0]["options"]["data"] == {"url": f"{ORIGIN}/threads/7"}
    assert {"close": "New comment on article-7"} in calls
    assert calls[-1] == {"openWindow": f"{ORIGIN}/threads/7"}


def test_a_click_focuses_the_tab_already_on_that_thread_instead_of_opening_another():
    calls = run([{"push": comment(url="/threads/7")}, {"click": 0}], clients=[f"{ORIGIN}/threads/7"])
    assert {"focus": f"{ORIGIN}/threads/7"} in calls
    assert not [c for c in calls if "openWindow" in c]


def test_a_click_never_leaves_the_site_a_message_naming_another_one_opens_the_live_page():
    calls = run([{"push": comment(url="https://evil.example/phish")}, {"click": 0}])
    assert calls[-1] == {"openWindow": f"{ORIGIN}/?channel=article-7"}


def test_without_a_url_a_click_opens_the_live_page_on_the_channel():
    calls = run([{"push": {"channel": "news", "event": "post", "data": {"title": "Breaking"}}}, {"click": 0}])
    assert calls[0]["showNotification"] == "Breaking"
    assert calls[-1] == {"openWindow": f"{ORIGIN}/?channel=news"}
