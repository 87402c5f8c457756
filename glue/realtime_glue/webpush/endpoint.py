"""The subscription endpoint: where a page (or an app) registers a browser for a user.

    GET    /webpush/key               {"publicKey": ...}: the page's applicationServerKey (no token)
    POST   /webpush/subscriptions     body: the PushSubscription JSON -> 201 {"id", "user"}
    DELETE /webpush/subscriptions     body: {"endpoint": ...}         -> 204
    GET    /webpush/threads           -> {"threads": [...]}: what the user is notified about
    PUT    /webpush/threads/<thread>  "notify me about this thread"   -> 204
    DELETE /webpush/threads/<thread>  stop                            -> 204

Every request but /key carries `Authorization: Bearer <token>`, a token the
application signed for its signed-in user (token.py). The user is the one the
token names: the body cannot name another, so one user cannot register a
browser, or follow a thread, for someone else. Bodies are small JSON (at most
4 KiB); a subscription is checked (subscriptions.parse_subscription) before
anything is stored; answers are JSON, never cached.

It runs inside the webpush pipeline's glue process (gevent.pywsgi on the
stage's `listen` address, with SO_REUSEPORT so several instances of the
pipeline share the port), and the push nodes' nginx proxies /webpush/ to it,
so a page posts to its own origin.
"""

from __future__ import annotations

import json
import logging
import socket as stdlib_socket
import time
from http import HTTPStatus

from gevent import socket
from gevent.pywsgi import WSGIServer

from ..channels import channel_problem
from ..errors import GlueError
from .subscriptions import InvalidSubscription, SubscriptionStore, parse_subscription, subscription_id
from .token import InvalidToken, check_token

log = logging.getLogger(__name__)

MAX_BODY_BYTES = 4096
MAX_THREADS_PER_USER = 1000
PREFIX = "/webpush/"


class HttpError(GlueError):
    def __init__(self, status: HTTPStatus, message: str):
        super().__init__(message)
        self.status = status
        self.message = message


class SubscriptionEndpoint:
    """The WSGI application."""

    def __init__(self, store: SubscriptionStore, token_key: bytes, public_key: str, endpoint_hosts):
        self.store = store
        self.token_key = token_key
        self.public_key = public_key
        self.endpoint_hosts = endpoint_hosts

    def __call__(self, environ, start_response):
        try:
            status, body = self.route(environ)
        except HttpError as exc:
            status, body = exc.status, {"error": exc.message}
        except Exception as exc:  # Redis away and the like: the client may retry
            log.warning(
                "subscription endpoint: %s %s failed: %s",
                environ.get("REQUEST_METHOD"),
                environ.get("PATH_INFO"),
                exc,
            )
            status, body = HTTPStatus.SERVICE_UNAVAILABLE, {"error": "try again later"}
        payload = b"" if body is None else json.dumps(body).encode()
        headers = [("Cache-Control", "no-store"), ("Content-Length", str(len(payload)))]
        if payload:
            headers.append(("Content-Type", "application/json"))
        if status == HTTPStatus.UNAUTHORIZED:
            headers.append(("WWW-Authenticate", 'Bearer realm="webpush"'))
        start_response(f"{status.value} {status.phrase}", headers)
        return [payload]

    def route(self, environ) -> tuple[HTTPStatus, dict | None]:
        method = environ["REQUEST_METHOD"]
        path = environ.get("PATH_INFO", "")
        if not path.startswith(PREFIX):
            raise HttpError(HTTPStatus.NOT_FOUND, "not found")
        resource = path[len(PREFIX) :]
        if resource == "key":
            self._allow(method, "GET")
            return HTTPStatus.OK, {"publicKey": self.public_key}
        if resource == "subscriptions":
            self._allow(method, "POST", "DELETE")
            user = self._user(environ)
            if method == "POST":
                return self.subscribe(user, self._json(environ))
            return self.unsubscribe(user, self._json(environ))
        if resource == "threads":
            self._allow(method, "GET")
            return HTTPStatus.OK, {"threads": self.store.threads(self._user(environ))}
        if resource.startswith("threads/"):
            self._allow(method, "PUT", "DELETE")
            user = self._user(environ)
            thread = resource[len("threads/") :]
            problem = channel_problem(thread)
            if problem:
                raise HttpError(HTTPStatus.BAD_REQUEST, f"thread: {problem}")
            if method == "PUT":
                if len(self.store.threads(user)) >= MAX_THREADS_PER_USER:
                    raise HttpError(
                        HTTPStatus.CONFLICT, f"a user follows at most {MAX_THREADS_PER_USER} threads"
                    )
                self.store.follow(user, thread)
            else:
                self.store.unfollow(user, thread)
            return HTTPStatus.NO_CONTENT, None
        raise HttpError(HTTPStatus.NOT_FOUND, "not found")

    def subscribe(self, user: str, data) -> tuple[HTTPStatus, dict]:
        try:
            subscription = parse_subscription(data, self.endpoint_hosts, created_ms=int(time.time() * 1000))
        except InvalidSubscription as exc:
            raise HttpError(HTTPStatus.BAD_REQUEST, f"subscription: {exc}") from None
        dropped = self.store.add(user, subscription)
        log.info(
            "user %s registered subscription %s at %s%s",
            user,
            subscription.id,
            subscription.origin,
            f" (dropped the oldest: {', '.join(dropped)})" if dropped else "",
        )
        return HTTPStatus.CREATED, {"id": subscription.id, "user": user}

    def unsubscribe(self, user: str, data) -> tuple[HTTPStatus, None]:
        endpoint = data.get("endpoint") if isinstance(data, dict) else None
        if not isinstance(endpoint, str) or not endpoint:
            raise HttpError(HTTPStatus.BAD_REQUEST, 'body must be {"endpoint": ...}')
        if not self.store.remove(user, subscription_id(endpoint)):
            raise HttpError(HTTPStatus.NOT_FOUND, "no such subscription for this user")
        return HTTPStatus.NO_CONTENT, None

    @staticmethod
    def _allow(method: str, *allowed: str) -> None:
        if method not in allowed:
            raise HttpError(HTTPStatus.METHOD_NOT_ALLOWED, f"use {' or '.join(allowed)}")

    def _user(self, environ) -> str:
        scheme, _, token = environ.get("HTTP_AUTHORIZATION", "").partition(" ")
        if scheme.lower() != "bearer" or not token.strip():
            raise HttpError(HTTPStatus.UNAUTHORIZED, "needs Authorization: Bearer <token>")
        try:
            return check_token(self.token_key, token.strip())
        except InvalidToken as exc:
            raise HttpError(HTTPStatus.UNAUTHORIZED, str(exc)) from None

    @staticmethod
    def _json(environ):
        length = environ.get("CONTENT_LENGTH") or ""
        if length and (not length.isdigit() or int(length) > MAX_BODY_BYTES):
            raise HttpError(HTTPStatus.REQUEST_ENTITY_TOO_LARGE, f"body over {MAX_BODY_BYTES} bytes")
        raw = environ["wsgi.input"].read(MAX_BODY_BYTES + 1)
        if len(raw) > MAX_BODY_BYTES:
            raise HttpError(HTTPStatus.REQUEST_ENTITY_TOO_LARGE, f"body over {MAX_BODY_BYTES} bytes")
        try:
            return json.loads(raw)
        except (ValueError, UnicodeDecodeError):
            raise HttpError(HTTPStatus.BAD_REQUEST, "body is not JSON") from None


def parse_listen(listen: str) -> tuple[str, int]:
    """("host", port) of "host:port" or "[v6]:port"; ValueError otherwise."""
    host, _, port = listen.rpartition(":")
    if not host or not port.isdigit() or not 0 < int(port) < 65536:
        raise ValueError(f"expected host:port, got {listen!r}")
    return host.strip("[]"), int(port)


def listening_socket(listen: str):
    """A listening socket on `listen`, shared with other processes of the pipeline (SO_REUSEPORT)."""
    host, port = parse_listen(listen)
    family = stdlib_socket.AF_INET6 if ":" in host else stdlib_socket.AF_INET
    sock = socket.socket(family, stdlib_socket.SOCK_STREAM)
    sock.setsockopt(stdlib_socket.SOL_SOCKET, stdlib_socket.SO_REUSEADDR, 1)
    sock.setsockopt(stdlib_socket.SOL_SOCKET, stdlib_socket.SO_REUSEPORT, 1)
    sock.bind((host, port))
    sock.listen(128)
    return sock


class EndpointServer:
    def __init__(self, app: SubscriptionEndpoint, listen: str):
        self.app = app
        self.listen = listen
        self.server: WSGIServer | None = None

    def start(self) -> None:
        self.server = WSGIServer(listening_socket(self.listen), self.app, log=None, error_log=log)
        self.server.start()
        log.info("webpush subscription endpoint on %s", self.listen)

    def stop(self) -> None:
        if self.server is not None:
            self.server.stop(timeout=2)
            self.server = None
