"""Work that must happen when agent19 stops serving, before the interpreter's own exit.

Python joins running worker threads *before* it runs ``atexit`` handlers, so a tool still busy
when its MCP client disappears (e.g. a dry run in the middle of a long statement) would keep the
process — and whatever it created, such as a scratch database — alive until that work ends. The
server calls :func:`shutdown` as soon as its transport closes; engine modules register what must
be undone with :func:`on_shutdown`. Hooks must be idempotent and must not raise.
"""

from __future__ import annotations

import atexit
import logging
import os
import signal
import threading
from collections.abc import Callable
from typing import Any

from agent19 import children

log = logging.getLogger(__name__)

_HOOKS: list[Callable[[], None]] = []


def on_shutdown(hook: Callable[[], None]) -> Callable[[], None]:
    if hook not in _HOOKS:
        _HOOKS.append(hook)
    return hook


def shutdown() -> None:
    """Stop agent19's child processes (:mod:`agent19.children`), then run every registered hook, newest first."""
    children.stop_all()
    for hook in reversed(_HOOKS):
        try:
            hook()
        except Exception:  # a failing hook must not stop the others
            log.exception("shutdown hook %r failed", hook)


_ON_SIGNAL: list[Callable[[], None]] = []


def cleanup_on_exit(hook: Callable[[], None]) -> None:
    """Run ``hook`` when agent19 stops in any ordinary way: at interpreter exit, when the MCP server's
    transport closes (:func:`on_shutdown`), and on SIGTERM/SIGHUP — after which the signal's previous
    handler runs, or the default action (the process ends with that signal). Each way, agent19's child processes
    are stopped first (:func:`agent19.children.stop_all`): a pg_dump blocked on a pipe would make a scratch
    database's drop wait for ever.

    Signal handlers can only be installed from the main thread; elsewhere the exit hooks are still
    registered. Idempotent per hook.
    """
    if hook not in _HOOKS:  # first call: exit and transport-close hooks
        atexit.register(_after_children, hook)
        on_shutdown(hook)
    if hook in _ON_SIGNAL or threading.current_thread() is not threading.main_thread():
        return
    _ON_SIGNAL.append(hook)
    for sig in (signal.SIGTERM, signal.SIGHUP):
        previous = signal.getsignal(sig)

        def handler(signum: int, frame: Any, previous: Any = previous) -> None:
            _after_children(hook)
            if callable(previous):
                previous(signum, frame)
                return
            if previous == signal.SIG_IGN:
                return
            signal.signal(signum, signal.SIG_DFL)
            os.kill(os.getpid(), signum)

        signal.signal(sig, handler)


def _after_children(hook: Callable[[], None]) -> None:
    children.stop_all()
    hook()
