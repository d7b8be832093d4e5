"""Worker processes for the MCP server's CPU-heavy calls, so that one large call never stalls the others.

Parsing, classifying and linting SQL is pure-Python work: in a thread it still holds the interpreter (the GIL),
so a large lint in the server process makes every other session of an HTTP server wait. Tools declared
``heavy`` (lint, plan, runbook: they parse the migration they are given) run in a small pool of worker
processes instead, when their input is large (:data:`INLINE_MAX_CHARACTERS`); a small call stays in the
server process, where it is cheaper than the round trip to a worker.

The pool is bounded: at most :attr:`WorkPool.workers` calls run and :attr:`WorkPool.queue` wait; one more is
refused at once with :class:`ServerBusy` ("retry in a few seconds") rather than queued without limit.
A worker that dies (killed for memory, crashed) is replaced and the call fails with a clear error.

Sizes: ``AGENT19_WORKERS`` (default: the CPUs but one, 1 to 4) and ``AGENT19_WORKER_QUEUE`` (default: twice
the workers, at least 4). Each worker opens its own database connections for a call and closes them after it
(an idle session to the target would stop a dry run from copying it with ``CREATE DATABASE … TEMPLATE``).

Nothing here knows MCP: the server adapts :func:`WorkPool.run`'s outcome to MCP content.
"""

from __future__ import annotations

import asyncio
import logging
import multiprocessing
import multiprocessing.connection
import os
import threading
from concurrent.futures import ProcessPoolExecutor
from concurrent.futures.process import BrokenProcessPool
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from agent19.config import Settings
from agent19.errors import Agent19Error
from agent19.responses import RESPONSE_BUDGET, ResultStore, Shaped, shape
from agent19.sizes import characters

log = logging.getLogger(__name__)

INLINE_MAX_CHARACTERS = 20_000
"""Up to this many characters of input (arguments, plus the size of files they name) a heavy call runs in the
server process: a 50-statement migration plans in tens of milliseconds, less than a worker's round trip costs
in copying; a larger one goes to a worker."""


HEAVY_TOOLS = frozenset({"lint_migration", "plan_migration", "generate_runbook"})
"""The tools whose work is parsing and judging the SQL they are given (CPU, no waiting on a server): the ones
a worker runs when their input is large."""


class ServerBusy(Agent19Error):
    """Every worker is busy and the queue is full."""


@dataclass
class Outcome:
    """A worker's answer: the shaped result and the parts it kept for resources, or the error to show."""

    shaped: Shaped | None = None
    kept: list[tuple[str, dict[str, tuple[str, str]]]] | None = None
    error: str | None = None


def _count(env: str, default: int, low: int, high: int) -> int:
    raw = os.environ.get(env, "").strip()
    if not raw:
        return default
    try:
        value = int(raw)
    except ValueError:
        raise Agent19Error(f"{env}={raw!r} is not a whole number", f"set {env} to a number from {low} to {high}") \
            from None
    if not low <= value <= high:
        raise Agent19Error(f"{env}={value} is out of range", f"set {env} to a number from {low} to {high}")
    return value


def input_size(arguments: dict[str, Any]) -> int:
    """Characters of text in ``arguments``, plus the bytes of the files a ``file``/``paths`` argument names
    (a directory counts as large: its files are not walked here)."""
    size = characters(arguments)
    named = [arguments.get("file")] + list(arguments.get("paths") or [])
    for name in named:
        if not isinstance(name, str) or not name:
            continue
        try:
            path = Path(name)
            size += path.stat().st_size if path.is_file() else (INLINE_MAX_CHARACTERS + 1 if path.is_dir() else 0)
        except OSError:
            continue  # the tool itself says what is wrong with the path
    return size



class WorkPool:
    """A bounded pool of worker processes running heavy tools for one server (one :class:`Settings`)."""

    def __init__(self, settings: Settings, *, workers: int | None = None, queue: int | None = None) -> None:
        cpus = os.cpu_count() or 2
        self.workers = workers or _count("AGENT19_WORKERS", max(1, min(4, cpus - 1)), 1, 64)
        self.queue = queue if queue is not None else _count("AGENT19_WORKER_QUEUE", max(4, 2 * self.workers), 0, 1000)
        self._settings = settings
        self._lock = threading.Lock()
        self._in_flight = 0
        self._executor = self._new_executor()

    def _new_executor(self) -> ProcessPoolExecutor:
        # spawn, not fork: the server process has threads (connection pools, the event loop's helpers)
        return ProcessPoolExecutor(self.workers, mp_context=multiprocessing.get_context("spawn"),
                                   initializer=_start_worker, initargs=(self._settings,))
        # (no max_tasks_per_child: on Python 3.11 a pool whose worker retires that way was seen to stop running
        # calls at all — the benchmark's 200 calls hung after the first workers retired)

    def warm_up(self) -> None:
        """Start every worker now (each imports the tools once, a second or two) rather than on the first call."""
        for _ in range(self.workers):
            self._executor.submit(_ready)

    @property
    def in_flight(self) -> int:
        return self._in_flight

    async def run(self, tool: str, arguments: Any, full: bool) -> Outcome:
        """Run ``tool`` with ``arguments`` (its validated argument model) in a worker; :class:`ServerBusy` when
        every worker is busy and the queue is full."""
        with self._lock:
            if self._in_flight >= self.workers + self.queue:
                raise ServerBusy(
                    f"the server is busy: {self._in_flight} large calls are running or waiting "
                    f"({self.workers} at a time, {self.queue} more may wait)",
                    "retry in a few seconds; nothing was run")
            self._in_flight += 1
            executor = self._executor
        try:
            future = executor.submit(_run, tool, arguments, full)
        except BaseException:
            self._done()
            raise
        # counted until the worker is really done, not when a cancelled caller stops waiting for it
        future.add_done_callback(lambda _: self._done())
        try:
            return await asyncio.wrap_future(future)
        except BrokenProcessPool:
            self._replace(executor)
            raise Agent19Error(f"{tool}: the worker process running this call died (out of memory?); a new one "
                               "was started", "retry; if it happens again, split the input into smaller "
                               "calls") from None

    def _done(self) -> None:
        with self._lock:
            self._in_flight -= 1

    def _replace(self, broken: ProcessPoolExecutor) -> None:
        with self._lock:
            if self._executor is not broken:
                return  # another call replaced it already
            self._executor = self._new_executor()
        broken.shutdown(wait=False, cancel_futures=True)

    def close(self) -> None:
        """Stop the workers now, a call still running included (the server is going away)."""
        executor = self._executor
        processes = list((getattr(executor, "_processes", None) or {}).values())  # no public way to stop them
        executor.shutdown(wait=False, cancel_futures=True)
        for process in processes:
            if process.is_alive():
                process.terminate()
        for process in processes:
            process.join(timeout=5)


# -- in the worker process -------------------------------------------------------------------------------
_WORKER: dict[str, Any] = {}


def _start_worker(settings: Settings) -> None:
    from agent19.db.connection import Database
    from agent19.tools.registry import all_tools

    parent = multiprocessing.parent_process()
    if parent is not None:  # a server killed outright (SIGKILL, or uvicorn re-raising SIGTERM) runs no cleanup
        threading.Thread(target=_exit_with, args=(parent.sentinel,), name="agent19-parent-watch", daemon=True).start()

    _WORKER["settings"] = settings
    _WORKER["db"] = Database(settings)
    _WORKER["tools"] = {spec.name: spec for spec in all_tools()}


def _exit_with(parent_sentinel: int) -> None:
    """Leave as soon as the server process is gone: a worker must not outlive it."""
    multiprocessing.connection.wait([parent_sentinel])
    os._exit(0)


def _ready() -> bool:
    return True


class _Keeper(ResultStore):
    """Keeps nothing itself: records the parts :func:`shape` stores, for the server's own store."""

    def __init__(self) -> None:
        super().__init__()
        self.kept: list[tuple[str, dict[str, tuple[str, str]]]] = []

    def keep(self, key: str, parts: dict[str, tuple[str, str]]) -> None:
        super().keep(key, parts)
        self.kept.append((key, parts))


def _run(tool: str, arguments: Any, full: bool) -> Outcome:
    import psycopg

    from agent19.errors import postgres_error_text
    from agent19.tools.paths import PathPolicy
    from agent19.tools.registry import ToolContext

    settings, db, spec = _WORKER["settings"], _WORKER["db"], _WORKER["tools"][tool]
    ctx = ToolContext(settings, db, None, None, path_policy=PathPolicy.for_mcp(settings))
    try:
        result = spec.run(ctx, arguments)
        keeper = _Keeper()
        shaped = shape(result, spec.render(result, "text"), keeper, full=full, budget=RESPONSE_BUDGET)
        return Outcome(shaped=shaped, kept=keeper.kept)
    except Agent19Error as exc:
        return Outcome(error=db.redact(str(exc)))
    except psycopg.Error as exc:
        return Outcome(error=db.redact(f"PostgreSQL error: {postgres_error_text(exc)}"))
    finally:
        db.release_idle()

