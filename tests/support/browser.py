"""Debian's chromium, headless, driven over the DevTools protocol for tests.

Chromium starts with `--remote-debugging-port=0` and writes the port it chose to
DevToolsActivePort in its (fresh, temporary) profile; the test talks to the
page target over that WebSocket with a few CDP calls: navigate, evaluate,
screenshot. No WebDriver in between.

    browser = Chromium().start()
    browser.navigate("http://127.0.0.1:8080/")
    browser.wait_for("document.title !== ''")
    browser.screenshot(Path("page.png"))
    browser.stop()

HTTPS with a test CA: `Chromium(trust=[ca.pem])` puts the CA into an NSS
database in the browser's own home (chromium on Linux reads `$HOME/.pki/nssdb`,
as it would a CA an administrator installed), and `hosts={"push1.example":
"172.30.210.21"}` resolves names without DNS. Certificate errors stay errors.

Plain module, no pytest dependency: tests import it and wrap it in fixtures.
"""

from __future__ import annotations

import base64
import itertools
import json
import os
import shutil
import signal
import subprocess
import tempfile
import time
import urllib.request
from collections import deque
from pathlib import Path

CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"

# Headless, no sandbox (tests run as root), and no traffic of its own: nothing
# may leave loopback.
FLAGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--no-default-browser-check",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--disable-dev-shm-usage",
    "--remote-debugging-address=127.0.0.1",
    "--remote-debugging-port=0",
]


CERTUTIL = shutil.which("certutil") or "/usr/bin/certutil"


def missing(https: bool = False) -> str | None:
    """Why a browser test cannot run here, or None when it can."""
    if not os.path.exists(CHROMIUM):
        return "chromium is not installed (apt package `chromium`, see tests/setup/apt-packages.txt)"
    if https and not os.path.exists(CERTUTIL):
        return "certutil is not installed (apt package `libnss3-tools`): chromium cannot trust the test CA"
    try:
        import websocket  # noqa: F401
    except ImportError:
        return "the websocket-client package is missing (tests/requirements-tools.txt)"
    return None


class BrowserError(RuntimeError):
    pass


class Chromium:
    """One headless chromium with one page, viewport `width` x `height`."""

    def __init__(
        self,
        width: int = 1280,
        height: int = 800,
        trust: list[Path] = (),
        hosts: dict[str, str] | None = None,
    ):
        self.width = width
        self.height = height
        self.trust = list(trust)
        self.hosts = hosts or {}
        self.profile = Path(tempfile.mkdtemp(prefix="chromium-profile-"))
        self.home = self.profile / "home"
        self.log_path = self.profile / "chromium.log"
        self.exceptions: list[str] = []  # uncaught page errors, as the console shows them
        self.events: deque[dict] = deque(maxlen=1000)  # the latest DevTools events, oldest first
        self._process: subprocess.Popen | None = None
        self._socket = None
        self._ids = itertools.count(1)

    def start(self, timeout: float = 30) -> Chromium:
        import websocket

        self._log = open(self.log_path, "ab")
        self._trust_test_cas()
        resolve = [f"--host-resolver-rules={', '.join(f'MAP {n} {a}' for n, a in self.hosts.items())}"]
        self._process = subprocess.Popen(
            [
                CHROMIUM,
                *FLAGS,
                *(resolve if self.hosts else []),
                f"--user-data-dir={self.profile}",
                f"--window-size={self.width},{self.height}",
                "about:blank",
            ],
            stdout=self._log,
            stderr=subprocess.STDOUT,
            env={**os.environ, "HOME": str(self.home)},
            start_new_session=True,  # its renderer and helper processes go with it on stop()
        )
        port = self._devtools_port(timeout)
        targets = json.load(urllib.request.urlopen(f"http://127.0.0.1:{port}/json/list", timeout=10))
        page = next(t for t in targets if t["type"] == "page")
        # Chromium refuses DevTools WebSockets that carry an Origin it does not know.
        self._socket = websocket.create_connection(
            page["webSocketDebuggerUrl"], timeout=timeout, suppress_origin=True
        )
        self.call("Page.enable")
        self.call("Runtime.enable")
        self.call(
            "Emulation.setDeviceMetricsOverride",
            width=self.width,
            height=self.height,
            deviceScaleFactor=1,
            mobile=False,
        )
        return self

    def _trust_test_cas(self) -> None:
        """An NSS database in the browser's home that trusts `trust` for servers."""
        database = self.home / ".pki" / "nssdb"
        database.mkdir(parents=True, exist_ok=True)
        if not self.trust:
            return
        subprocess.run([CERTUTIL, "-N", "-d", f"sql:{database}", "--empty-password"], check=True)
        for number, ca in enumerate(self.trust):
            subprocess.run(
                [
                    CERTUTIL,
                    "-A",
                    "-d",
                    f"sql:{database}",
                    "-n",
                    f"test-ca-{number}",
                    "-t",
                    "C,,",
                    "-i",
                    str(ca),
                ],
                check=True,
            )

    def _devtools_port(self, timeout: float) -> int:
        active = self.profile / "DevToolsActivePort"
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self._process.poll() is not None:
                raise BrowserError(f"chromium exited ({self._process.returncode}):\n{self.log()}")
            if active.exists():
                first_line = active.read_text().split("\n", 1)[0].strip()
                if first_line.isdigit():
                    return int(first_line)
            time.sleep(0.1)
        raise BrowserError(f"chromium opened no DevTools port in {timeout} s:\n{self.log()}")

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")[-4000:] if self.log_path.exists() else ""

    # --- DevTools protocol -------------------------------------------------------

    def call(self, method: str, **params) -> dict:
        """One CDP command; returns its result. Events that arrive meanwhile are
        kept in `events` (uncaught page exceptions also in `exceptions`)."""
        call_id = next(self._ids)
        self._socket.send(json.dumps({"id": call_id, "method": method, "params": params}))
        while True:
            message = json.loads(self._socket.recv())
            if "method" in message:
                self.events.append(message)
            if message.get("method") == "Runtime.exceptionThrown":
                details = message["params"]["exceptionDetails"]
                self.exceptions.append(details.get("exception", {}).get("description") or details["text"])
            if message.get("id") == call_id:
                if "error" in message:
                    raise BrowserError(f"{method}: {message['error']}")
                return message.get("result", {})

    def navigate(self, url: str, timeout: float = 20) -> None:
        result = self.call("Page.navigate", url=url)
        if result.get("errorText"):
            raise BrowserError(f"loading {url}: {result['errorText']}")
        self.wait_for("document.readyState === 'complete'", timeout, what=f"{url} to load")

    def evaluate(self, expression: str, await_promise: bool = False):
        """The value of a JavaScript expression in the page (with await_promise,
        what the promise it gives resolves to)."""
        result = self.call(
            "Runtime.evaluate", expression=expression, returnByValue=True, awaitPromise=await_promise
        )
        if "exceptionDetails" in result:
            raise BrowserError(f"{expression}: {result['exceptionDetails'].get('text')}")
        return result["result"].get("value")

    def wait_for(self, expression: str, timeout: float = 20, what: str | None = None):
        """Polls until the expression is truthy in the page; returns its value."""
        deadline = time.monotonic() + timeout
        while True:
            value = self.evaluate(expression)
            if value:
                return value
            if time.monotonic() > deadline:
                raise TimeoutError(f"the page never showed {what or expression} in {timeout} s")
            time.sleep(0.1)

    def text(self, selector: str) -> str:
        """The visible text of the first element matching a CSS selector ('' if none)."""
        return self.evaluate(f"(document.querySelector({json.dumps(selector)}) || {{}}).innerText || ''")

    def screenshot(self, path: Path) -> Path:
        data = self.call("Page.captureScreenshot", format="png")["data"]
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(base64.b64decode(data))
        return path

    # --- stop ----------------------------------------------------------------------

    def stop(self, timeout: float = 10) -> None:
        if self._socket is not None:
            self._socket.close()
            self._socket = None
        if self._process is not None:
            self._signal_group(signal.SIGTERM)
            try:
                self._process.wait(timeout)
            except subprocess.TimeoutExpired:
                self._signal_group(signal.SIGKILL)
                self._process.wait()
            self._signal_group(signal.SIGKILL)  # helpers left behind by the browser
            self._process = None
            self._log.close()

    def _signal_group(self, signum: int) -> None:
        try:
            os.killpg(self._process.pid, signum)
        except ProcessLookupError:
            pass

    def cleanup(self) -> None:
        self.stop()
        shutil.rmtree(self.profile, ignore_errors=True)

    def __enter__(self) -> Chromium:
        return self.start()

    def __exit__(self, *exc) -> None:
        self.cleanup()
