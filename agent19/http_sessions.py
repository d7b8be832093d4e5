"""A session's DELETE after the messages its client sent before it, over streamable HTTP.

The MCP SDK (mcp 2.3) answers a POSTed notification with 202 Accepted *before* it hands the message to the
session. A client that closes a session right after opening it (the SDK's own client sends
``notifications/initialized`` and, at once, the DELETE that ends the session, on another connection) races the
two: when the DELETE closes the session between the 202 and the hand-over, the SDK logs "Error handling POST
request" and then tries to answer the POST a second time, which uvicorn refuses with "Exception in ASGI
application … after response already completed" — two tracebacks for a session that ended normally (about one
in ten sessions opened and closed at once, and formatting them was a fifth of the server's CPU then). Known
upstream: the v2 rewrite of ``_handle_post_request`` lost 1.x's guard (python-sdk PR #2934's review, #2983).

:class:`SessionOrder` keeps that race from happening instead of hiding its log: per session id, a DELETE waits
until the POSTs of that session already under way have either begun a stream (their answer is the stream: a
tool call the DELETE must be able to end) or handed their message over (the POST returned); a POST that
arrives while a DELETE of its session runs waits for the DELETE, and is then answered as the SDK answers a
request to an ended session (404). Errors are untouched: whatever a request raises still reaches the log.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, MutableMapping
from typing import Any

import anyio

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
App = Callable[[Scope, Receive, Send], Awaitable[None]]

SESSION_HEADER = b"mcp-session-id"
WAIT_SECONDS = 5.0
"""The longest a DELETE waits for its session's POSTs (or a POST for a DELETE): a hand-over takes milliseconds;
past this the request goes on as it would without this ordering."""


class _Session:
    """What runs for one session id: POSTs that have not yet handed their message over, and a DELETE."""

    def __init__(self) -> None:
        self.posts = 0
        self.posts_done = anyio.Event()
        self.deleted: anyio.Event | None = None


class SessionOrder:
    """ASGI middleware putting each session's DELETE after the POSTs already under way for that session."""

    def __init__(self, app: App, wait_seconds: float = WAIT_SECONDS) -> None:
        self.app = app
        self.wait_seconds = wait_seconds
        self._sessions: dict[bytes, _Session] = {}

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        method = scope.get("method") if scope["type"] == "http" else None
        session_id = _session_id(scope) if method in ("POST", "DELETE") else None
        if session_id is None:
            await self.app(scope, receive, send)
        elif method == "DELETE":
            await self._delete(session_id, scope, receive, send)
        else:
            await self._post(session_id, scope, receive, send)

    def _session(self, session_id: bytes) -> _Session:
        return self._sessions.setdefault(session_id, _Session())

    def _forget_if_idle(self, session_id: bytes, session: _Session) -> None:
        if session.posts == 0 and session.deleted is None and self._sessions.get(session_id) is session:
            del self._sessions[session_id]

    async def _delete(self, session_id: bytes, scope: Scope, receive: Receive, send: Send) -> None:
        session = self._session(session_id)
        if session.deleted is not None:  # a second DELETE of the same session: no ordering to keep
            await self.app(scope, receive, send)
            return
        session.deleted = done = anyio.Event()
        try:
            if session.posts:
                with anyio.move_on_after(self.wait_seconds):
                    await session.posts_done.wait()
            await self.app(scope, receive, send)
        finally:
            done.set()
            session.deleted = None
            self._forget_if_idle(session_id, session)

    async def _post(self, session_id: bytes, scope: Scope, receive: Receive, send: Send) -> None:
        session = self._session(session_id)
        if session.deleted is not None:  # the session is ending: this POST is answered after it ended
            with anyio.move_on_after(self.wait_seconds):
                await session.deleted.wait()
            await self.app(scope, receive, send)
            return
        session.posts += 1
        settled = False

        def settle() -> None:
            nonlocal settled
            if settled:
                return
            settled = True
            session.posts -= 1
            if session.posts == 0:
                session.posts_done.set()
                session.posts_done = anyio.Event()
                self._forget_if_idle(session_id, session)

        async def sending(message: Message) -> None:
            # An answer other than 202 is the POST's own (a stream or a JSON answer): from then on a DELETE may
            # end it. A 202 is sent before the message is handed over: the POST settles when it returns.
            if message["type"] == "http.response.start" and message.get("status") != 202:
                settle()
            await send(message)

        try:
            await self.app(scope, receive, sending)
        finally:
            settle()


def _session_id(scope: Scope) -> bytes | None:
    for name, value in scope.get("headers") or ():
        if name == SESSION_HEADER:
            return bytes(value)
    return None
