"""Apply a pattern phase by phase on a real server, observing the locks each phase takes.

Transactional phases run in one transaction: each statement through
:func:`agent19.db.observe.observe`, which reads this session's ``pg_locks`` after it. Statements
that refuse a transaction block (``CREATE INDEX CONCURRENTLY`` …) and backfills are watched from a
second session that samples ``pg_locks`` for the running backend. Either way the strongest lock
seen on a table is compared with the phase's declaration (:attr:`Phase.lock`). A phase whose lock
wait times out is retried (that is what ``lock_timeout`` is for).
"""

from __future__ import annotations

import threading
import time
from typing import Any

import psycopg
from psycopg import sql
from pydantic import BaseModel, Field

from agent19.db import catalog_first
from agent19.db.locks import LOCK_RANK, strongest_mode
from agent19.db.observe import observe
from agent19.errors import Agent19Error
from agent19.migrate.backfill.executor import CHECKPOINT_TABLE, BackfillResult, BackfillSpec, Progress, run_backfill
from agent19.migrate.patterns.model import Pattern, Phase, weaker_or_equal
from agent19.migrate.patterns.sqlnames import qname

RETRYABLE = {"55P03", "40P01"}
_WATCHED_KINDS = {"r", "p", "m"}

Q_WATCH = """
SELECT l.mode, c.relkind::text AS relkind, c.relname
  FROM pg_locks l LEFT JOIN pg_class c ON c.oid = l.relation
 WHERE l.pid = %s AND l.locktype = 'relation' AND l.granted AND l.relation >= 16384
"""


class PhaseFailed(Agent19Error):
    """A phase failed (after its retries) or its validation query returned false."""


class StepRun(BaseModel):
    sql: str
    skipped: bool = Field(default=False, description="its only_if query was false")
    observed: str | None = Field(default=None, description="strongest table lock held so far in the phase")


class PhaseRun(BaseModel):
    name: str
    order: int
    declared_lock: str | None
    observed_lock: str | None
    within_declared: bool
    attempts: int
    steps: list[StepRun] = []
    validated: bool | None = None
    backfill: BackfillResult | None = None


class LockWatcher:
    """Samples ``pg_locks`` of one backend from another session until stopped."""

    def __init__(self, dsn: str, pid: int, ignore: set[str], interval_s: float = 0.002) -> None:
        self.dsn, self.pid, self.ignore, self.interval = dsn, pid, ignore, interval_s
        self.modes: set[str] = set()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._ready = threading.Event()

    def _run(self) -> None:
        with catalog_first.connect(self.dsn, autocommit=True) as conn:
            self._ready.set()
            while not self._stop.is_set():
                for mode, relkind, relname in conn.execute(Q_WATCH, (self.pid,)).fetchall():
                    # relkind NULL: a relation this backend created and has not committed yet
                    # (invisible to others, so nobody can wait for it)
                    if relkind in _WATCHED_KINDS and relname not in self.ignore:
                        self.modes.add(mode)
                time.sleep(self.interval)

    def __enter__(self) -> LockWatcher:
        self._thread.start()
        self._ready.wait(10)
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join(10)


def _true(conn: psycopg.Connection[Any], query: str) -> bool:
    row = conn.execute(query).fetchone()
    value = row if row is None else (next(iter(row.values())) if isinstance(row, dict) else row[0])
    return bool(value)


def _max(a: str | None, b: str | None) -> str | None:
    return strongest_mode({m for m in (a, b) if m})


def run_phase(conn: psycopg.Connection[Any], phase: Phase, *, dsn: str, retries: int = 5,
              progress: Progress | None = None) -> PhaseRun:
    """Run one phase on ``conn`` (autocommit); ``dsn`` opens the watching session."""
    attempts = 0
    while True:
        attempts += 1
        try:
            run = _attempt(conn, phase, dsn, progress)
            break
        except psycopg.Error as exc:
            if conn.info.transaction_status != psycopg.pq.TransactionStatus.IDLE:
                conn.rollback()
            if getattr(exc, "sqlstate", None) in RETRYABLE and attempts <= retries:
                time.sleep(0.2 * attempts)
                continue
            raise PhaseFailed(f"phase {phase.order} ({phase.name}) failed: {str(exc).strip()}",
                              "; ".join(phase.notes) or "fix the cause and run the phase again") from exc
    run.attempts = attempts
    if phase.validation:
        run.validated = _true(conn, phase.validation)
        if not run.validated:
            raise PhaseFailed(f"phase {phase.order} ({phase.name}) ran but its validation is false: "
                              f"{phase.validation}")
    return run


def _attempt(conn: psycopg.Connection[Any], phase: Phase, dsn: str, progress: Progress | None) -> PhaseRun:
    steps: list[StepRun] = []
    observed: str | None = None
    backfill: BackfillResult | None = None
    timeout = sql.SQL("SET lock_timeout = {}").format(sql.Literal(phase.lock_timeout))
    if phase.backfill is not None:
        b = phase.backfill
        with LockWatcher(dsn, conn.info.backend_pid, {CHECKPOINT_TABLE}) as watch:
            backfill = run_backfill(conn, BackfillSpec(table=qname(b.table), set=b.set, where=b.where), progress)
        observed = strongest_mode(watch.modes)
    elif phase.transactional and all(s.in_transaction for s in phase.operations):
        with conn.transaction():
            conn.execute(sql.SQL("SET LOCAL lock_timeout = {}").format(sql.Literal(phase.lock_timeout)))
            for step in phase.operations:
                if step.only_if and not _true(conn, step.only_if):
                    steps.append(StepRun(sql=step.sql, skipped=True, observed=observed))
                    continue
                obs = observe(conn, step.sql)
                observed = _max(observed, obs.strongest_overall)
                steps.append(StepRun(sql=step.sql, observed=observed))
    else:
        conn.execute(timeout)
        try:
            for step in phase.operations:
                if step.only_if and not _true(conn, step.only_if):
                    steps.append(StepRun(sql=step.sql, skipped=True, observed=observed))
                    continue
                with LockWatcher(dsn, conn.info.backend_pid, set()) as watch:
                    conn.execute(step.sql)
                observed = _max(observed, strongest_mode(watch.modes))
                steps.append(StepRun(sql=step.sql, observed=observed))
        finally:
            conn.execute("RESET lock_timeout")
    return PhaseRun(name=phase.name, order=phase.order, declared_lock=phase.lock, observed_lock=observed,
                    within_declared=weaker_or_equal(observed, phase.lock), attempts=1, steps=steps,
                    backfill=backfill)


def run_pattern(conn: psycopg.Connection[Any], pattern: Pattern, *, dsn: str,
                between: Any = None) -> list[PhaseRun]:
    """Every phase in order; ``between(phase)`` is called after each (e.g. to deploy when it says so)."""
    runs = []
    for phase in sorted(pattern.phases, key=lambda p: p.order):
        runs.append(run_phase(conn, phase, dsn=dsn))
        if between is not None:
            between(phase)
    return runs


__all__ = ["LOCK_RANK", "LockWatcher", "PhaseFailed", "PhaseRun", "StepRun", "run_pattern", "run_phase"]
