"""A push service on loopback for tests: RFC 8030's side of Web Push, as FCM or Mozilla's would be.

It serves https (support/tls.py) on https://127.0.0.1:PORT/push/<browser>. A test
makes browsers (a P-256 key pair and an auth secret, what pushManager.subscribe()
makes), scripts what each browser's endpoint answers (201 unless told: 404, 410,
429 with Retry-After, 500, 400, in turn) and reads what arrived. Every request is
checked as a push service checks it:

- the VAPID JWT (`Authorization: vapid t=..., k=...`): signed ES256 by the k= key,
  aud = this origin, exp in the future and at most 24 h away, a sub; else 403;
- TTL present, Content-Encoding aes128gcm; else 400;
- the body opens with the browser's private key; else 400.

The JWT is checked with PyJWT and the body opened with http_ece, independent
implementations from PyPI (tests/requirements-tools.txt), when they are installed;
otherwise with the glue's own code, and `checked_by` says which.

    service = PushService(make_certificates(tmp)).start()
    ada = service.new_browser("ada")          # ada.subscription() is the PushSubscription JSON
    service.answer("ada", 429, 201, retry_after=2)
    ... service.received("ada")[0].plaintext
    service.stop()

Plain module, no pytest dependency.
"""

from __future__ import annotations

import json
import ssl
import threading
import time
from collections import defaultdict, deque
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.asymmetric.utils import encode_dss_signature

from realtime_glue.webpush import ece
from realtime_glue.webpush.base64url import b64url_decode, b64url_encode
from support.tls import CertificatePaths

try:
    import http_ece
except ImportError:
    http_ece = None
try:
    import jwt as pyjwt
except ImportError:
    pyjwt = None

MAX_JWT_LIFETIME = 24 * 3600


@dataclass
class Browser:
    name: str
    private_key: ec.EllipticCurvePrivateKey
    auth: bytes
    endpoint: str

    def subscription(self) -> dict:
        """What PushSubscription.toJSON() gives a page."""
        return {
            "endpoint": self.endpoint,
            "expirationTime": None,
            "keys": {
                "p256dh": b64url_encode(ece.public_bytes(self.private_key)),
                "auth": b64url_encode(self.auth),
            },
        }

    def decrypt(self, body: bytes) -> bytes:
        if http_ece is not None:
            return http_ece.decrypt(
                body, private_key=self.private_key, auth_secret=self.auth, version="aes128gcm"
            )
        return ece.decrypt(body, self.private_key, self.auth)


@dataclass
class Received:
    browser: str
    at: float  # time.monotonic()
    headers: dict[str, str]  # names lower-cased
    body: bytes
    status: int  # what the service answered
    plaintext: bytes | None = None
    claims: dict | None = None
    problems: list[str] = field(default_factory=list)

    @property
    def message(self) -> dict:
        return json.loads(self.plaintext)


class PushService:
    def __init__(self, certificates: CertificatePaths, host: str = "127.0.0.1"):
        self.certificates = certificates
        self.host = host
        self.browsers: dict[str, Browser] = {}
        self.script: dict[str, deque[int]] = defaultdict(deque)
        self.retry_after: dict[str, str] = {}
        self.log: list[Received] = []
        self.lock = threading.Lock()
        self.connections = 0  # TLS connections accepted
        self.close_connections = False  # close each connection after one answer, unannounced
        self.delay = 0.0  # seconds before each answer
        self.checked_by = (
            ("PyJWT" if pyjwt else "realtime_glue") + " + " + ("http_ece" if http_ece else "realtime_glue")
        )
        self._server: ThreadingHTTPServer | None = None

    @property
    def port(self) -> int:
        return self._server.server_address[1]

    @property
    def origin(self) -> str:
        return f"https://{self.host}:{self.port}"

    def start(self) -> PushService:
        service = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def setup(self):
                super().setup()
                with service.lock:
                    service.connections += 1

            def do_POST(self):
                length = int(self.headers.get("Content-Length", 0))
                body = self.rfile.read(length)
                status, headers = service.handle(self.path, dict(self.headers.items()), body)
                time.sleep(service.delay)
                self.send_response(status)
                for name, value in headers.items():
                    self.send_header(name, value)
                self.send_header("Content-Length", "0")
                self.end_headers()
                # Closing without saying so, as a server does to an idle keep-alive connection.
                self.close_connection = service.close_connections

            def log_message(self, *args):
                pass

        context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        context.load_cert_chain(self.certificates.cert, self.certificates.key)
        self._server = ThreadingHTTPServer((self.host, 0), Handler)
        self._server.daemon_threads = True
        self._server.socket = context.wrap_socket(self._server.socket, server_side=True)
        threading.Thread(target=self._server.serve_forever, daemon=True).start()
        return self

    def stop(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None

    # --- what the test sets up ---------------------------------------------------------

    def new_browser(self, name: str) -> Browser:
        browser = Browser(
            name,
            ec.generate_private_key(ec.SECP256R1()),
            (name.encode() * 16)[:16],
            f"{self.origin}/push/{name}",
        )
        self.browsers[name] = browser
        return browser

    def answer(self, name: str, *statuses: int, retry_after: str | int | None = None) -> None:
        """The browser's endpoint answers these statuses in turn, then 201 again."""
        with self.lock:
            self.script[name].extend(statuses)
            if retry_after is not None:
                self.retry_after[name] = str(retry_after)

    # --- what arrived ------------------------------------------------------------------

    def received(self, name: str | None = None, status: int | None = None) -> list[Received]:
        with self.lock:
            return [
                r
                for r in self.log
                if (name is None or r.browser == name) and (status is None or r.status == status)
            ]

    def delivered(self, name: str) -> list[dict]:
        """The messages the browser got (answered 201), decrypted and parsed."""
        return [r.message for r in self.received(name, status=201)]

    def wait_for(self, predicate, timeout: float = 20, what: str = "the push service to receive it"):
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            value = predicate()
            if value:
                return value
            time.sleep(0.05)
        raise TimeoutError(f"timed out waiting for {what}; received: {self.received()}")

    # --- the protocol --------------------------------------------------------------------

    def handle(self, path: str, headers: dict[str, str], body: bytes) -> tuple[int, dict]:
        headers = {k.lower(): v for k, v in headers.items()}
        name = path.removeprefix("/push/")
        received = Received(name, time.monotonic(), headers, body, 0)
        browser = self.browsers.get(name) if path.startswith("/push/") else None
        status = 404 if browser is None else self._check(browser, received)
        extra = {}
        with self.lock:
            if status == 201 and self.script[name]:
                status = self.script[name].popleft()
                if status == 429 or status >= 500:
                    extra = {"Retry-After": self.retry_after[name]} if name in self.retry_after else {}
            received.status = status
            self.log.append(received)
        return status, extra

    def _check(self, browser: Browser, received: Received) -> int:
        problems = received.problems
        claims = self._check_vapid(received.headers.get("authorization", ""), problems)
        received.claims = claims
        if problems:
            return 403
        if not received.headers.get("ttl", "").isdigit():
            problems.append("no TTL header")
        if received.headers.get("content-encoding") != "aes128gcm":
            problems.append(f"Content-Encoding {received.headers.get('content-encoding')!r}, not aes128gcm")
        if problems:
            return 400
        try:
            received.plaintext = browser.decrypt(received.body)
        except Exception as exc:
            problems.append(f"body does not decrypt: {type(exc).__name__}: {exc}")
            return 400
        return 201

    def _check_vapid(self, authorization: str, problems: list[str]) -> dict | None:
        scheme, _, params = authorization.partition(" ")
        if scheme.lower() != "vapid":
            problems.append(f"Authorization is not vapid: {authorization[:40]!r}")
            return None
        fields = dict(p.strip().split("=", 1) for p in params.split(",") if "=" in p)
        if "t" not in fields or "k" not in fields:
            problems.append("Authorization lacks t= or k=")
            return None
        try:
            public = ece.load_public_key(b64url_decode(fields["k"]))
            claims = self._verified_claims(fields["t"], public)
        except Exception as exc:
            problems.append(f"VAPID JWT does not verify: {type(exc).__name__}: {exc}")
            return None
        if claims.get("aud") != self.origin:
            problems.append(f"JWT aud {claims.get('aud')!r} is not {self.origin}")
        if not 0 < claims.get("exp", 0) - time.time() <= MAX_JWT_LIFETIME:
            problems.append(f"JWT exp {claims.get('exp')} is not within the next 24 hours")
        if not str(claims.get("sub", "")).startswith(("mailto:", "https:")):
            problems.append(f"JWT sub {claims.get('sub')!r} is no contact")
        return claims

    def _verified_claims(self, token: str, public: ec.EllipticCurvePublicKey) -> dict:
        if pyjwt is not None:
            return pyjwt.decode(token, key=public, algorithms=["ES256"], options={"verify_aud": False})
        head, payload, signature = token.split(".")
        raw = b64url_decode(signature)
        der = encode_dss_signature(int.from_bytes(raw[:32], "big"), int.from_bytes(raw[32:], "big"))
        public.verify(der, f"{head}.{payload}".encode(), ec.ECDSA(hashes.SHA256()))
        if json.loads(b64url_decode(head)).get("alg") != "ES256":
            raise ValueError("alg is not ES256")
        return json.loads(b64url_decode(payload))
