"""The one-time confirmation page: where a human, not the model, types the phrase.

``agent19 serve`` (execute mode) starts a tiny HTTP server bound to 127.0.0.1 on a free port. For
each challenge token that needs an out-of-band confirmation, :func:`offer` makes a page at an
unguessable path (``/confirm/<256 random bits>``); its URL goes to the model to show the human.
The page shows the statement and its impact, read again from the live database (database text is
escaped: it is data), and a form for the phrase.

Defences: loopback only; the ``Host`` header must name the loopback address and port (DNS
rebinding); a POST needs the page's own CSRF value (a second random secret, only inside the page)
and, when the browser sends them, an ``Origin`` of this server and ``Sec-Fetch-Site: same-origin``;
``Content-Security-Policy: default-src 'none'`` and ``frame-ancestors 'none'`` (no scripts, no
framing); ``Cache-Control: no-store``; ``Referrer-Policy: same-origin`` (the secret path never
leaves it). A page serves one approval (then answers 410 Gone), three wrong phrases close it, and
it expires with its token.

Written on the standard library's ``http.server``: a handful of routes, no framework needed.
"""

from __future__ import annotations

import hmac
import html
import secrets
import threading
import time
from dataclasses import dataclass, field
from datetime import datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import TYPE_CHECKING, Any
from urllib.parse import parse_qs

if TYPE_CHECKING:
    from agent19.config import Settings
    from agent19.db.connection import Database

CHANNEL = "loopback page"
MAX_ATTEMPTS = 3
MAX_BODY = 16_384
HEADERS = {
    "Content-Security-Policy": "default-src 'none'; style-src 'unsafe-inline'; form-action 'self'; "
                               "frame-ancestors 'none'; base-uri 'none'",
    "X-Frame-Options": "DENY",
    "X-Content-Type-Options": "nosniff",
    "Cache-Control": "no-store",
    "Referrer-Policy": "same-origin",  # (no-referrer would make the browser send ``Origin: null`` on the form)
}


@dataclass
class _Page:
    token: str
    csrf: str
    expires: float
    attempts: int = 0
    done: bool = False


@dataclass
class _State:
    settings: Settings
    db: Database
    httpd: ThreadingHTTPServer
    pages: dict[str, _Page] = field(default_factory=dict)
    by_token: dict[str, str] = field(default_factory=dict)
    lock: threading.Lock = field(default_factory=threading.Lock)

    @property
    def port(self) -> int:
        return int(self.httpd.server_address[1])


_state: _State | None = None


def start(settings: Settings, db: Database, port: int = 0) -> int:
    """Serve confirmation pages on 127.0.0.1 (a free port by default); returns the port."""
    global _state
    if _state is not None:
        return _state.port
    httpd = ThreadingHTTPServer(("127.0.0.1", port), _Handler)
    httpd.daemon_threads = True
    _state = _State(settings, db, httpd)
    threading.Thread(target=httpd.serve_forever, name="agent19-confirm-page", daemon=True).start()
    return _state.port


def stop() -> None:
    global _state
    if _state is not None:
        _state.httpd.shutdown()
        _state.httpd.server_close()
        _state = None


def offer(token: str, expires_at: datetime | None) -> str | None:
    """The URL of a one-time page for ``token`` (the same one when offered again); None when no page
    server runs in this process (the CLI)."""
    state = _state
    if state is None or not token:
        return None
    with state.lock:
        path = state.by_token.get(token)
        if path is None or state.pages[path].done:
            path = secrets.token_urlsafe(32)
            expires = expires_at.timestamp() if expires_at else time.time() + 900
            state.pages[path] = _Page(token=token, csrf=secrets.token_urlsafe(32), expires=expires)
            state.by_token[token] = path
    return f"http://127.0.0.1:{state.port}/confirm/{path}"


class _Handler(BaseHTTPRequestHandler):
    server_version = "agent19"
    sys_version = ""

    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 - the stdlib's signature
        pass  # paths are secrets: never logged

    def _send(self, status: int, body: str) -> None:
        data = body.encode()
        self.send_response(status)
        self.send_header("Content-Type", "text/html; charset=utf-8")
        self.send_header("Content-Length", str(len(data)))
        for k, v in HEADERS.items():
            self.send_header(k, v)
        self.end_headers()
        self.wfile.write(data)

    def _page(self) -> tuple[_State, str, _Page] | None:
        state = _state
        if state is None:
            self._send(503, _doc("Unavailable", "<p>agent19 is stopping.</p>"))
            return None
        host = self.headers.get("Host", "")
        if host not in {f"127.0.0.1:{state.port}", f"localhost:{state.port}"}:
            self._send(421, _doc("Wrong host", "<p>This page is served on the loopback address only.</p>"))
            return None
        prefix = "/confirm/"
        path = self.path.split("?", 1)[0]
        key = path[len(prefix):] if path.startswith(prefix) else ""
        with state.lock:
            page = state.pages.get(key)
        if page is None:
            self._send(404, _doc("Not found", "<p>No such confirmation page.</p>"))
            return None
        if page.done or page.expires < time.time():
            self._send(410, _doc("Closed", "<p>This confirmation page was already used, or it expired.</p>"))
            return None
        return state, key, page

    def do_GET(self) -> None:  # noqa: N802 - the stdlib's name
        found = self._page()
        if found is not None:
            state, _, page = found
            self._send(200, _review(state, page, ""))

    def do_POST(self) -> None:  # noqa: N802
        found = self._page()
        if found is None:
            return
        state, _, page = found
        origin = self.headers.get("Origin")
        site = self.headers.get("Sec-Fetch-Site")
        if (origin is not None and origin not in {f"http://127.0.0.1:{state.port}", f"http://localhost:{state.port}"}
                or site not in (None, "same-origin")):
            self._send(403, _doc("Refused", "<p>Cross-site request refused.</p>"))
            return
        length = int(self.headers.get("Content-Length") or 0)
        kind = self.headers.get("Content-Type", "").split(";")[0].strip()
        if length > MAX_BODY or kind != "application/x-www-form-urlencoded":
            self._send(400, _doc("Bad request", "<p>Unexpected form.</p>"))
            return
        form = parse_qs(self.rfile.read(length).decode(errors="replace"))
        csrf = (form.get("csrf") or [""])[0]
        if not hmac.compare_digest(csrf.encode(), page.csrf.encode()):
            self._send(403, _doc("Refused", "<p>The form did not come from this page.</p>"))
            return
        from agent19.safety.protocol import Protocol

        phrase = (form.get("phrase") or [""])[0]
        outcome = Protocol(state.settings, state.db).approve(page.token, phrase, CHANNEL)
        with state.lock:
            if outcome.outcome == "approved":
                page.done = True
            else:
                page.attempts += 1
                page.done = page.attempts >= MAX_ATTEMPTS
        if outcome.outcome == "approved":
            self._send(200, _doc("Confirmed", "<p id='approved'>Confirmed. Go back to your assistant: it can now "
                                 "run the statement with its token. This page is closed.</p>"))
        elif page.done:
            self._send(200, _doc("Closed", "<p id='refused'>" + html.escape("; ".join(outcome.reasons))
                                 + ". Too many attempts: this page is closed; ask for a new challenge.</p>"))
        else:
            self._send(200, _review(state, page, "; ".join(outcome.reasons)))


def _review(state: _State, page: _Page, error: str) -> str:
    from agent19.safety import challenge
    from agent19.safety.protocol import Protocol

    try:
        _, _, report = Protocol(state.settings, state.db).review(page.token)
    except challenge.TokenInvalid as exc:
        return _doc("Cannot confirm", f"<p id='refused'>{html.escape(str(exc))}</p>")
    e = html.escape
    items = "".join(f"<li><b>{e(f.risk.value)}</b>: {e(f.reason)}</li>" for f in report.findings)
    for t in report.impact.targets if report.impact else []:
        rows = f", {e(t.rows_text)} rows" if t.rows is not None else ""
        touched = f", {t.rows_touched} of them touched (measured)" if t.rows_touched is not None else ""
        items += f"<li>{e(t.kind)} {e(t.name)}{rows}{touched}, {len(t.dependents)} dependent objects</li>"
    checks = "".join(f"<li>[{e(c.status)}] {e(c.item)} - {e(c.detail)}</li>" for c in report.checklist)
    err = f"<p id='error' class='err'>{e(error)}</p>" if error else ""
    body = (f"<p>An assistant asks to run this statement on database "
            f"<b>{e(report.impact.database.name if report.impact else '?')}</b>:</p>"
            f"<pre id='statement'>{e(report.statement)}</pre><ul id='impact'>{items}</ul>"
            f"<p>Before confirming:</p><ul>{checks}</ul>{err}"
            f"<p>To proceed, type exactly:</p><pre id='phrase'>{e(report.phrase or '')}</pre>"
            f"<form method='post'><input type='hidden' name='csrf' value='{e(page.csrf)}'>"
            "<input id='phrase-input' name='phrase' size='100' autocomplete='off' autofocus> "
            "<button id='confirm' type='submit'>Confirm</button></form>"
            "<p>To cancel, close this page.</p>")
    return _doc("Confirm a destructive statement", body)


def _doc(title: str, body: str) -> str:
    return (f"<!doctype html><html><head><meta charset='utf-8'><title>agent19 - {html.escape(title)}</title>"
            "<style>body{font-family:sans-serif;max-width:60em;margin:2em auto}pre{background:#eee;padding:.5em;"
            "white-space:pre-wrap}.err{color:#a00}</style></head>"
            f"<body><h1>{html.escape(title)}</h1>{body}</body></html>")
