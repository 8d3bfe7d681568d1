"""The console: read-only web pages on a port of their own (``serve --console-port``).

Views: the top users (``/``, a topic with ``?topic=``), a user's page
(``/user?id=ID``: the score-history chart, globally and per topic; the readable
explanation; the top contributors; what changed since a chosen day; the user's part of
the moderation report) and the whole moderation report (``/suspects``). Pages are
rendered here from the server's snapshot, history and suspect report; no script runs
in the browser.

Auth is the API's: with tokens, a request needs one whose role may call ``Score``
(every role), sent as ``Authorization: Bearer <token>``, or by a person once as
``?token=`` (answered with a redirect that drops it from the address and an HttpOnly
cookie holding it). The moderation report, like ``ListSuspects``, needs an admin.
With TLS (``Tls``) the console serves HTTPS with the same certificate, and asks for
client certificates when the API does.
"""

from __future__ import annotations

import contextlib
import logging
import os
import ssl
import tempfile
import threading
from collections.abc import Iterator
from dataclasses import dataclass
from http import HTTPStatus
from http.cookies import CookieError, SimpleCookie
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Protocol
from urllib.parse import parse_qs, urlencode, urlsplit

from ..core.engine import Engine
from ..core.errors import NotFound
from ..core.suspects import SuspectWatch
from ..storage.history import History
from . import console_views as views
from .auth import ANONYMOUS, Authenticator, AuthError, Caller
from .console_html import page, text

log = logging.getLogger("scoresvc.service.console")

COOKIE = "scoresvc_console"
#: Security headers on every answer: nothing but inline style loads, no framing.
_HEADERS = {
    "Content-Security-Policy": (
        "default-src 'none'; style-src 'unsafe-inline'; form-action 'self'; "
        "frame-ancestors 'none'; base-uri 'none'"
    ),
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
    "Cache-Control": "no-store",
}


@dataclass(frozen=True)
class ConsoleEndpoint:
    """Where the console listens (port 0 picks a free one)."""

    port: int = 0
    host: str = "127.0.0.1"


class ConsoleSource(Protocol):
    """What the console reads from the server (``server.Refresher``)."""

    engine: Engine
    ready: threading.Event
    suspects: SuspectWatch


@dataclass(frozen=True)
class Answer:
    status: HTTPStatus
    body: str
    headers: tuple[tuple[str, str], ...] = ()


class Console:
    """The console's HTTP server, in a thread of its own from ``start`` to ``stop``."""

    def __init__(
        self,
        source: ConsoleSource,
        history: History,
        authenticator: Authenticator | None = None,
        tls: ssl.SSLContext | None = None,
    ) -> None:
        self.views = views.Views(source, history)
        self.authenticator = authenticator
        self.tls = tls
        self.port = 0
        self._http: ThreadingHTTPServer | None = None
        self._thread: threading.Thread | None = None

    @property
    def url(self) -> str:
        return f"{'https' if self.tls else 'http'}://127.0.0.1:{self.port}/"

    def start(self, endpoint: ConsoleEndpoint) -> Console:
        handler = type("ConsoleHandler", (_Handler,), {"console": self})
        http = ThreadingHTTPServer((endpoint.host, endpoint.port), handler)
        http.daemon_threads = True
        if self.tls is not None:
            # The handshake happens in the request's thread, not in the accept loop.
            http.socket = self.tls.wrap_socket(
                http.socket, server_side=True, do_handshake_on_connect=False
            )
        self._http = http
        self.port = http.server_port
        self._thread = threading.Thread(
            target=http.serve_forever, name="scoresvc-console", daemon=True
        )
        self._thread.start()
        return self

    def stop(self) -> None:
        if self._http is not None:
            self._http.shutdown()
            self._http.server_close()
        if self._thread is not None:
            self._thread.join()

    # ------------------------------------------------------------------ requests

    def caller(self, authorization: str | None) -> Caller:
        """The caller a request's credentials name (``AuthError`` when they do not)."""
        if self.authenticator is None or not self.authenticator.enforcing():
            return ANONYMOUS
        caller = self.authenticator.caller(authorization)
        Authenticator.authorize(caller, "Score")
        return caller

    def answer(self, target: str, authorization: str | None) -> Answer:
        """The answer to ``GET target`` with these credentials."""
        url = urlsplit(target)
        query = {k: v[-1] for k, v in parse_qs(url.query, keep_blank_values=True).items()}
        if "token" in query:  # a person's first visit: keep the token in a cookie
            return self._sign_in(url.path, query)
        try:
            caller = self.caller(authorization)
        except AuthError as error:
            return _refused(error)
        if not self.views.source.ready.is_set():
            return Answer(HTTPStatus.SERVICE_UNAVAILABLE, views.starting())
        try:
            return Answer(HTTPStatus.OK, self._route(url.path, query, caller))
        except NotFound as error:
            return Answer(HTTPStatus.NOT_FOUND, page("Not found", f"<p>{text(error)}</p>"))
        except views.BadRequest as error:
            return Answer(HTTPStatus.BAD_REQUEST, page("Bad request", f"<p>{text(error)}</p>"))
        except AuthError as error:
            return _refused(error)

    def _route(self, path: str, query: dict[str, str], caller: Caller) -> str:
        if path == "/":
            return self.views.top(query.get("topic", ""))
        if path == "/user":
            return self.views.user(query.get("id", ""), query.get("since", ""), caller)
        if path == "/suspects":
            Authenticator.authorize(caller, "ListSuspects")
            return self.views.suspects()
        raise NotFound(f"no page at {path}", "path", "PAGE_NOT_FOUND")

    def _sign_in(self, path: str, query: dict[str, str]) -> Answer:
        token = query.pop("token")
        try:
            self.caller(f"Bearer {token}")
        except AuthError as error:
            return _refused(error)
        secure = "; Secure" if self.tls is not None else ""
        cookie = f"{COOKIE}={token}; Path=/; HttpOnly; SameSite=Lax{secure}"
        where = path + ("?" + urlencode(query) if query else "")
        return Answer(HTTPStatus.SEE_OTHER, "", (("Location", where), ("Set-Cookie", cookie)))


def _refused(error: AuthError) -> Answer:
    status = HTTPStatus.FORBIDDEN if error.permission else HTTPStatus.UNAUTHORIZED
    headers = () if error.permission else (("WWW-Authenticate", 'Bearer realm="scoresvc"'),)
    return Answer(status, views.refused(str(error), ask_token=not error.permission), headers)


class _Handler(BaseHTTPRequestHandler):
    console: Console
    server_version = "scoresvc-console"
    sys_version = ""
    timeout = 60  # seconds a connection may stay silent (the TLS handshake included)

    def do_GET(self) -> None:
        answer = self.console.answer(self.path, self._authorization())
        body = answer.body.encode("utf-8")
        self.send_response(answer.status)
        for name, value in (*_HEADERS.items(), *answer.headers):
            self.send_header(name, value)
        self.send_header("Content-Type", "text/html; charset=utf-8")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def _authorization(self) -> str | None:
        """The Authorization header, else the token of the sign-in cookie."""
        header = self.headers.get("Authorization")
        if header:
            return header
        try:
            jar = SimpleCookie(self.headers.get("Cookie", ""))
        except CookieError:
            return None
        morsel = jar.get(COOKIE)
        return f"Bearer {morsel.value}" if morsel is not None and morsel.value else None

    def log_message(self, format: str, *args: object) -> None:
        log.debug("%s " + format, self.address_string(), *args)


def tls_context(
    certificate_chain: bytes, private_key: bytes, client_ca: bytes | None
) -> ssl.SSLContext:
    """An HTTPS context for PEM bytes (``server.Tls``'s); with ``client_ca``, client
    certificates it signed are required."""
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    with _pem_files(certificate_chain, private_key) as (chain, key):
        context.load_cert_chain(chain, key)
    if client_ca is not None:
        context.load_verify_locations(cadata=client_ca.decode("ascii"))
        context.verify_mode = ssl.CERT_REQUIRED
    return context


@contextlib.contextmanager
def _pem_files(*contents: bytes) -> Iterator[list[str]]:
    """``ssl`` loads keys only from files: these in a private directory, removed after."""
    with tempfile.TemporaryDirectory(prefix="scoresvc-tls-") as directory:
        paths = []
        for i, content in enumerate(contents):
            path = Path(directory) / f"{i}.pem"
            fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
            with os.fdopen(fd, "wb") as f:
                f.write(content)
            paths.append(str(path))
        yield paths
