"""Child processes (pg_dump, pg_restore, psql, initdb, pg_basebackup…) that are stopped before anything they use
is cleaned up.

Why the order matters: a cleanup's ``DROP DATABASE … WITH (FORCE)`` waits until every backend of the server has
absorbed a signal barrier; a backend blocked sending ``COPY`` to a pg_dump that is itself blocked writing to a pipe
agent19 no longer reads never does — the drop, and Ctrl-C, hang. And a killed initdb leaves its own
``postgres --boot`` child writing into the directory being removed. So:

* :func:`start` runs a program in a process group of its own (its helpers — pg_dump's parallel workers, initdb's
  bootstrap server — are in it too) and registers it until it ends;
* :func:`stop` ends one: SIGTERM to its group, SIGKILL after a short grace, then closes agent19's ends of its pipes;
* :func:`stop_all` ends every registered one: the first thing the exit and signal cleanups do
  (:mod:`agent19.lifecycle`), before they drop scratch databases or remove work directories;
* :func:`run` is ``subprocess.run`` with the same guarantees (an interruption stops the program and its helpers);
* :func:`owned_by` marks the children a thread starts as one piece of work's, and :func:`stop_owned` ends just
  those: a piece of work cancelled while the process goes on (an interrupted dry run's scratch database being
  made: its pg_dump and loading psql), where :func:`stop_all` would end every other one's too.
"""

from __future__ import annotations

import os
import signal
import subprocess
import threading
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

GRACE_S = 1.0  # after SIGTERM: pg_dump and pg_restore exit at once; what has not by then is killed

_RUNNING: dict[int, subprocess.Popen[bytes]] = {}
_OWNED: dict[int, object] = {}  # pid -> the work it belongs to (owned_by)
_LOCK = threading.RLock()  # re-entrant: the SIGTERM handler (stop_all) runs on the main thread, also inside start()
_OWNER = threading.local()  # .owner: the work the children this thread starts belong to


@contextmanager
def owned_by(owner: object) -> Iterator[None]:
    """The children this thread starts within the block belong to ``owner`` (:func:`stop_owned`). A thread this one
    starts does not inherit it: pass :func:`owner` on."""
    previous = getattr(_OWNER, "owner", None)
    _OWNER.owner = owner
    try:
        yield
    finally:
        _OWNER.owner = previous


def owner() -> object | None:
    """The ``owner`` of this thread's :func:`owned_by` block, if any."""
    return getattr(_OWNER, "owner", None)


def start(cmd: Sequence[str | Path], **popen: Any) -> subprocess.Popen[bytes]:
    """``subprocess.Popen(cmd, **popen)`` in a new process group, registered for :func:`stop_all`."""
    proc: subprocess.Popen[bytes] = subprocess.Popen([str(c) for c in cmd], process_group=0, **popen)
    with _LOCK:
        _RUNNING[proc.pid] = proc
        if (work := owner()) is not None:
            _OWNED[proc.pid] = work
    return proc


def _signal(proc: subprocess.Popen[bytes], sig: int) -> None:
    try:
        os.killpg(proc.pid, sig)  # the group: a helper it started, too (its leader may already be gone)
    except (ProcessLookupError, PermissionError):
        try:
            proc.send_signal(sig)
        except (ProcessLookupError, PermissionError):
            pass


def stop(proc: subprocess.Popen[bytes], grace: float = GRACE_S, close_pipes: bool = True) -> bool:
    """End ``proc`` and its process group (SIGTERM, SIGKILL after ``grace`` s), wait for it, close agent19's ends
    of its pipes (unless ``close_pipes`` is false: a thread still reads them, and sees them end) and unregister it.
    True when it was still running. Idempotent."""
    running = proc.poll() is None
    if running:
        _signal(proc, signal.SIGTERM)
        if not _ended(proc, grace):
            _signal(proc, signal.SIGKILL)
            _ended(proc, grace)
    for pipe in (proc.stdin, proc.stdout, proc.stderr) if close_pipes else ():
        if pipe is not None:
            try:
                pipe.close()
            except (OSError, ValueError):
                pass
    forget(proc)
    return running


def _ended(proc: subprocess.Popen[bytes], timeout: float) -> bool:
    """Whether ``proc`` ended within ``timeout`` s. Polls: a blocking ``wait`` would deadlock in a signal handler
    that interrupted the main thread's own ``wait`` (it holds the Popen's lock)."""
    deadline = time.monotonic() + timeout
    while proc.poll() is None:
        if time.monotonic() > deadline:
            return False
        time.sleep(0.01)
    return True


def forget(proc: subprocess.Popen[bytes]) -> None:
    """Unregister ``proc`` (it ended by itself and was waited for)."""
    with _LOCK:
        _RUNNING.pop(proc.pid, None)
        _OWNED.pop(proc.pid, None)


def stop_all() -> list[str]:
    """Stop every registered child process; returns the names of those that were still running."""
    with _LOCK:
        running = list(_RUNNING.values())
    return [os.path.basename(str(p.args[0])) for p in running if stop(p)]  # type: ignore[index]


def stop_owned(owner: object) -> list[str]:
    """Stop the running children started for ``owner`` (:func:`owned_by`), not the pipes: the threads that started
    them are reading them (in :func:`run`), and return once they end. Returns the names of those still running."""
    with _LOCK:
        running = [_RUNNING[pid] for pid, work in _OWNED.items() if work is owner and pid in _RUNNING]
    return [os.path.basename(str(p.args[0])) for p in running if stop(p, close_pipes=False)]  # type: ignore[index]


def run(cmd: Sequence[str | Path], *, input: bytes | None = None, timeout: float | None = None,
        **popen: Any) -> subprocess.CompletedProcess[bytes]:
    """``subprocess.run(cmd, capture_output=True, …)`` through :func:`start`: on a timeout or an interruption
    (Ctrl-C, an exception from a signal handler) the program and its helpers are stopped before it propagates."""
    proc = start(cmd, stdin=subprocess.PIPE if input is not None else subprocess.DEVNULL, stdout=subprocess.PIPE,
                 stderr=subprocess.PIPE, **popen)
    try:
        out, err = proc.communicate(input, timeout=timeout)
    except BaseException:
        stop(proc)
        raise
    forget(proc)
    return subprocess.CompletedProcess(proc.args, proc.returncode, out, err)
