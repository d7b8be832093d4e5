"""The scratch-database part of a dry run: statements that cannot run in a transaction block, and the
optional blocking measurement.

The migration's statements are replayed in the scratch database in order (each commits there: the
database is thrown away), up to the last one that needs it (when that one is only re-observed, its own
rolled-back transaction is all it gets: nothing comes after it). An early scratch database comes with its
replaying session already open. The ones that need it — and, with
``measure_blocking``, every one — are watched from other sessions (:mod:`agent19.migrate.dryrun.watch`).
When the scratch database holds only a sample of rows, durations are also extrapolated linearly to
the target's row count (an index build grows a little faster than linearly: n·log n).

Statements whose lock mode an earlier statement of the dry run's transaction already held (which
hides it in ``pg_locks``) are observed here again, each in a transaction of its own that is rolled
back before the statement is replayed: their locks are then exactly their own.
"""

from __future__ import annotations

from collections.abc import Callable
from functools import partial
from typing import Any

import psycopg
from psycopg.conninfo import make_conninfo

from agent19.db.connection import Database
from agent19.db.models import SchemaSnapshot
from agent19.db.observe import observe, own_reads
from agent19.migrate.dryrun.cluster_guard import (
    Q_SESSION_READS,
    Q_SHARED_WRITES,
    guarded,
    pin_path,
    shared_writes,
)
from agent19.migrate.dryrun.early_scratch import EarlyScratch
from agent19.migrate.dryrun.model import ScratchInfo, StatementResult, statement_error
from agent19.migrate.dryrun.progress import ServerProgress, run_reporting
from agent19.migrate.dryrun.scratch import (
    MISSING_OBJECT,
    CopyMode,
    ScratchDatabase,
    list_scratch,
    replay_session,
    scratch_database,
)
from agent19.migrate.dryrun.watch import Reporter, Watched, watch_statement
from agent19.migrate.model import Operation
from agent19.migrate.parse import Statement

Progress = Callable[[float, float | None, str | None], None]


def range_vars(tree: object) -> list[str]:
    """Relations named anywhere in a parse tree (``schema.name``; unqualified names as written)."""
    found: list[str] = []

    def walk(node: object) -> None:
        if isinstance(node, dict):
            if "relname" in node and isinstance(node["relname"], str):
                schema = node.get("schemaname")
                found.append(f"{schema}.{node['relname']}" if schema else node["relname"])
            for value in node.values():
                walk(value)
        elif isinstance(node, list):
            for value in node:
                walk(value)

    walk(tree)
    return list(dict.fromkeys(found))


def _tables(stmt: Statement, ops: list[Operation]) -> list[str]:
    return list(dict.fromkeys([t for op in ops for t in op.tables] + range_vars(stmt.tree)))


def _extrapolate(res: StatementResult, scratch: ScratchDatabase, tables: list[str], before: SchemaSnapshot) -> None:
    if res.duration_ms is None or scratch.strategy == "template":
        return
    for t in tables:
        sample = scratch.sampled_rows.get(t)
        table = before.table(t)
        real = table.row_estimate if table else None
        if sample and real and real > sample:
            res.extrapolated_ms = round(res.duration_ms * real / sample, 3)
            res.extrapolation = (f"{res.duration_ms:.1f} ms on {sample:,} sampled rows x {real:,}/{sample:,} "
                                 f"(rows of {t}, linear; index builds grow n*log n)")
            return
    if scratch.strategy != "template" and not scratch.has_data:
        res.extrapolation = "ran on an empty copy of the schema: the duration says nothing about the real table"


def _apply(res: StatementResult, watched: Watched, stmt: Statement, scratch: ScratchDatabase) -> None:
    res.locks, res.duration_ms, res.rows = watched.locks, watched.duration_ms, watched.rows
    res.notices, res.rewritten = watched.notices, watched.rewritten
    if watched.error and scratch.unfaithful and watched.sqlstate in MISSING_OBJECT:
        # the copy lacks what the target has: this says nothing about the migration on the target
        res.locks, res.duration_ms = [], None
        res.untested = (f"no faithful scratch copy of the target ({'; '.join(scratch.unfaithful)}); there the "
                        f"statement failed with: {watched.error}")
    elif watched.error:
        res.error = statement_error(stmt, message=watched.error, sqlstate=watched.sqlstate, position=watched.position)


def _isolated(conn: psycopg.Connection[Any], res: StatementResult, stmt: Statement) -> None:
    """Observe ``stmt`` in a transaction of its own (earlier statements are committed here)."""
    conn.execute("BEGIN")
    try:
        obs = observe(conn, stmt.sql)
        res.locks, res.isolated, res.held_before = obs.named_locks(), True, []
    finally:
        conn.execute("ROLLBACK")


def _replay(conn: psycopg.Connection[Any], stmt: Statement) -> list[str]:
    """Commit ``stmt`` in the scratch database, unless the server shows it writing a shared catalog
    (roles, settings, databases…: that would outlive the scratch database): then roll it back and
    return those catalogs. Read under pg_catalog, pg_temp (:func:`agent19.db.observe.own_reads`) with the
    search_path it left, which is pinned as in the target's transaction when it lists pg_catalog after another
    schema (:func:`agent19.migrate.dryrun.cluster_guard.pin_path`: a replayed ``RESET search_path``)."""
    conn.execute("BEGIN")
    try:
        conn.execute(stmt.sql)
        shared, session = own_reads(conn, (Q_SHARED_WRITES, Q_SESSION_READS))
        if not (wrote := shared_writes(conn, shared)):
            pin_path(conn, session)
    except BaseException:
        conn.execute("ROLLBACK")
        raise
    conn.execute("ROLLBACK" if wrote else "COMMIT")
    return wrote


def _reporter(live: Progress | None, index: int, total: int, label: str) -> Reporter | None:
    """What :func:`watch_statement` calls about once a second while the statement runs."""
    if live is None:
        return None

    def report(elapsed_s: float, server: ServerProgress | None) -> None:
        share = server.share if server is not None else None
        live(index + (min(share, 1.0) if share is not None else 0.0), total,
             f"{label}: {elapsed_s:.0f} s" + (f"; {server}" if server is not None else ""))

    return report


def run_in_scratch(
    db: Database, statements: list[Statement], preds: dict[int, list[Operation]], results: list[StatementResult],
    before: SchemaSnapshot, *, scratch_needed: set[int], isolate: set[int], measure_blocking: bool,
    probe_timeout_ms: int, copy: CopyMode, sample_rows: int, progress: Progress, early: EarlyScratch | None = None,
    live: Progress | None = None,
) -> ScratchInfo:
    """Replay ``statements`` in a new scratch database (``early``'s when given: made while the transaction ran),
    watching those in ``scratch_needed``; drop it. With ``live``, long statements report progress as they run."""
    existing = {t.qualified_name for t in before.tables}
    touched = sorted({t for ops in preds.values() for op in ops for t in op.tables if t in existing})
    last = len(statements) - 1 if measure_blocking else max(scratch_needed | isolate)
    timeout = db.settings.statement_timeout_ms
    made = (early.use(touched, sample_rows) if early is not None
            else scratch_database(db, copy=copy, sample_tables=touched, sample_rows=sample_rows))
    with made as scratch:
        info = ScratchInfo(name=scratch.name, strategy=scratch.strategy, sampled_rows=scratch.sampled_rows,
                           notes=list(scratch.notes), dropped=False)
        session = early.take_session() if early is not None else None  # opened while the transaction ran
        with session or replay_session(scratch.dsn, timeout) as conn:
            for stmt in statements[: last + 1]:
                res = results[stmt.index]
                if res.ran_in == "skipped":
                    continue  # never replayed: statements the target's pass did not run (transaction control,
                    # cluster-wide, refused)
                ops = preds.get(stmt.index, [])
                if stmt.index in scratch_needed or measure_blocking:
                    label = f"statement {stmt.index + 1}/{len(statements)} in the scratch database"
                    progress(stmt.index, len(statements), label)
                    tables = _tables(stmt, ops)
                    # a statement that may run in a transaction commits only if it wrote no shared catalog
                    text = stmt.sql if stmt.index in scratch_needed else guarded(stmt.sql)
                    watched = watch_statement(scratch.dsn, text, tables, statement_timeout_ms=timeout,
                                              measure_blocking=measure_blocking, probe_timeout_ms=probe_timeout_ms,
                                              report=_reporter(live, stmt.index, len(statements), label))
                    res.probes = watched.probes
                    if stmt.index in scratch_needed:
                        _apply(res, watched, stmt, scratch)
                        _extrapolate(res, scratch, tables, before)
                    elif watched.error:
                        info.notes.append(f"statement {stmt.index + 1} failed in the scratch database: {watched.error}")
                    continue
                try:
                    # with a TEMPLATE copy a replayed statement works on every row again: it reports progress too
                    label = f"statement {stmt.index + 1}/{len(statements)} replayed in the scratch database"
                    if stmt.index in isolate:
                        run_reporting(partial(_isolated, conn, res, stmt), conn=conn, dsn=scratch.dsn, progress=live,
                                      done=stmt.index, total=len(statements), label=label + " (its locks alone)")
                        if stmt.index == last:
                            continue  # nothing comes after it here: committing it too would only cost its time
                    if wrote := run_reporting(partial(_replay, conn, stmt), conn=conn, dsn=scratch.dsn, progress=live,
                                              done=stmt.index, total=len(statements), label=label):
                        info.notes.append(f"statement {stmt.index + 1} wrote {', '.join(wrote)} (cluster-wide) in the "
                                          "scratch database: rolled back there, not replayed")
                except psycopg.Error as exc:
                    first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
                    info.notes.append(f"replaying statement {stmt.index + 1} in the scratch database failed: {first}")
    # the early scratch's owner session saw it gone; otherwise the server is asked again
    info.dropped = early.dropped if early is not None else scratch.name not in list_scratch(make_conninfo(db.dsn))
    return info
