"""Work that must happen when agent19 stops serving, before the interpreter's own exit.

Python joins running worker threads *before* it runs ``atexit`` handlers, so a tool still busy
when its MCP client disappears (e.g. a dry run in the middle of a long statement) would keep the
process — and whatever it created, such as a scratch database — alive until that work ends. The
server calls :func:`shutdown` as soon as its transport closes; engine modules register what must
be undone with :func:`on_shutdown`. Hooks must be idempotent and must not raise.
"""

from __future__ import annotations

import logging
from collections.abc import Callable

log = logging.getLogger(__name__)

_HOOKS: list[Callable[[], None]] = []


def on_shutdown(hook: Callable[[], None]) -> Callable[[], None]:
    if hook not in _HOOKS:
        _HOOKS.append(hook)
    return hook


def shutdown() -> None:
    """Run every registered hook, newest first."""
    for hook in reversed(_HOOKS):
        try:
            hook()
        except Exception:  # a failing hook must not stop the others
            log.exception("shutdown hook %r failed", hook)
