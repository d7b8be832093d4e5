"""Dry-run a migration on a real server: what each statement locks, rewrites and costs, then undo it all.

How it runs (``dry_run``):

1. Leftover scratch databases of killed runs are dropped (:func:`scratch.drop_leftovers`) and the cluster is
   fingerprinted, on a session of their own while the target's catalog is snapshotted
   (:mod:`agent19.migrate.dryrun.cluster_side`); the classification predicts each statement's locks and rewrite.
2. On a dedicated session to the target: ``BEGIN``; the ``before`` checks; then every statement in order, each
   under a ``SAVEPOINT`` (an error is recorded with its file position; as a migration in one transaction would,
   the statements after it are not run: the transaction is rolled back at once, releasing the locks), observed
   by :func:`agent19.db.observe.observe` (locks this statement added — held from its start to the rollback —,
   relfilenode rewrites, rows, notices, wall time); the ``after`` checks; then ``ROLLBACK`` — always, in ``finally``.
   Transaction control in the file (``BEGIN``, ``COMMIT``…) is never sent. PostgreSQL shows a lock mode once per
   transaction, so a statement whose predicted mode an earlier statement already took is re-observed in a
   transaction of its own in the scratch database (below), where the earlier statements were committed — its
   locks are then exact.
3. Statements that cannot run in a transaction block run in a scratch database
   (:mod:`agent19.migrate.dryrun.scratch`), with the migration's statements replayed there in order and the
   non-transactional ones watched from other sessions (:mod:`agent19.migrate.dryrun.watch`). In the target's
   transaction a ``CREATE INDEX CONCURRENTLY`` is stood in for by the plain ``CREATE INDEX`` (same
   schema effect) so later statements see the index. Cluster-wide statements (``ALTER SYSTEM``,
   ``CREATE DATABASE``, tablespaces) are never run.
4. The target is snapshotted again and compared with the first snapshot — every sequence's position too (read by
   the same catalog query): one set backward is a difference (``target_unchanged`` false); ``nextval`` moving one
   forward is not (gaps are normal; reported as ``info``). The other sessions of the login's role, read at the
   start and after the rollback (:mod:`agent19.safety.aftermath`, shared with every rolled-back trial): ones gone
   are a warning; sequences the login may set but not read are said (``info``).

When the prediction says a scratch database will be needed only schema-deep (a re-observation, or a
``schema``/``empty`` copy), it is made while step 2 runs (:mod:`agent19.migrate.dryrun.early_scratch`; a running
server keeps the next one ready: :mod:`agent19.migrate.dryrun.scratch_pool`), and the target is re-read (step 4)
while the scratch database works. When it is needed only to re-observe hidden locks — or is a schema-only or empty
copy asked for (``scratch_copy``), where durations say nothing of the real tables — its part is done there while
step 2 runs (:mod:`agent19.migrate.dryrun.ahead`): the replay, the re-observations, the statements watched there and
the drop overlap the target's transaction instead of following it. A statement that runs for more than a second
reports its progress while it runs (:mod:`agent19.migrate.dryrun.progress`).

Caveat for live databases: inside the dry run's transaction the target's tables are locked exactly as the migration
locks them, until the rollback. ``lock_timeout`` applies; prefer a staging copy. Sequences advanced by ``nextval``
are not rolled back by PostgreSQL (reported as ``info``). What is never run (cluster-wide statements, escapes,
``setval`` and code the guard cannot read, reported as not tested): :mod:`agent19.migrate.dryrun.cluster_guard`.
"""

from __future__ import annotations

import sys
import time
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from functools import partial
from typing import Any

import psycopg

from agent19.config import AccessMode
from agent19.db.catalog import snapshot
from agent19.db.connection import Database
from agent19.db.models import SchemaSnapshot
from agent19.db.observe import Node, after_state, observe
from agent19.migrate.classification.session_path import transaction_end_paths
from agent19.migrate.dryrun import lasting, scratch_pool, verdict
from agent19.migrate.dryrun import scratch as scratch_mod
from agent19.migrate.dryrun.ahead import AheadReplay, predicted_hidden
from agent19.migrate.dryrun.checks import refuse_standby, run_check
from agent19.migrate.dryrun.cluster_guard import (
    Q_SESSION_READS,
    Q_SHARED_WRITES,
    Blocked,
    ClusterWrite,
    SessionChanged,
    pin_path,
    screen,
    session_changed,
    shared_writes,
)
from agent19.migrate.dryrun.cluster_side import ClusterSide
from agent19.migrate.dryrun.cluster_state import diff_cluster
from agent19.migrate.dryrun.compare import hidden_locks, longest_lock, predicted_locks, summary_text
from agent19.migrate.dryrun.early_scratch import EarlyScratch, catalog_snapshot
from agent19.migrate.dryrun.model import (
    CheckResult,
    DryRunResult,
    Finding,
    PriorLock,
    StatementResult,
    after_trial,
    statement_error,
)
from agent19.migrate.dryrun.outside_transaction import run_in_scratch
from agent19.migrate.dryrun.prediction import (
    any_needs_scratch,
    expects_scratch,
    needs_scratch,
    predict,
    scratch_note,
    stand_in,
)
from agent19.migrate.dryrun.progress import never_back, run_reporting
from agent19.migrate.dryrun.schema_diff import diff_snapshots, left_behind
from agent19.migrate.model import Operation
from agent19.migrate.parse import Statement
from agent19.migrate.planning.model import ValidationCheck
from agent19.safety import aftermath

QUALIFIED_SQL = True  # its statements name functions, operators, types, catalog relations pg_catalog.-qualified

Progress = Callable[[float, float | None, str | None], None]
Q_PATH = "SELECT pg_catalog.current_setting('search_path') AS p"
SET_PATH = "SELECT pg_catalog.set_config('search_path', %s, true)"
"""The search_path a migration's COMMIT or ROLLBACK leaves, set in its place (local to the dry run's transaction)."""
BEGIN, ROLLBACK = "BEGIN", "ROLLBACK"



def _base(stmt: Statement, ops: list[Operation]) -> StatementResult:
    return StatementResult(index=stmt.index, file=stmt.file, line=stmt.line, sql=stmt.sql,
                           kind=ops[0].kind if ops else None, ran_in="transaction")


def _stopped(previous: StatementResult) -> str | None:
    """Why the statement after ``previous`` is not run: it failed (not refused before it ran), or was not run
    for that reason itself."""
    if previous.ran_in == "skipped":
        return previous.note if previous.note and previous.note.startswith("not run: statement ") else None
    if previous.error is None:
        return None
    return (f"not run: statement {previous.index + 1} failed (a migration in one transaction stops there; rolled "
            "back at once, releasing its locks)")


def _in_transaction(conn: Any, stmts: list[Statement], preds: dict[int, list[Operation]],
                    results: list[StatementResult], progress: Progress, ran: list[str],
                    isolate: list[int], scratch_needed: list[int], blocked: dict[int, Blocked],
                    took_at: dict[int, float], live: Progress | None = None, dsn: str = "",
                    paths: dict[int, str | None] | None = None,
                    denied: Callable[[psycopg.Error], str | None] | None = None) -> None:
    """Run every statement in the open transaction on ``conn``, each under a savepoint; never those in
    ``blocked`` (cluster-wide or escaping: :mod:`agent19.migrate.dryrun.cluster_guard`), nor one the server shows
    writing a shared catalog (rolled back to its savepoint). With ``live``, a statement that runs for more than
    a second reports its progress while it runs (:mod:`agent19.migrate.dryrun.progress`; ``dsn``: the target).
    ``paths``: the search_path the migration's COMMIT or ROLLBACK leaves, where it changes it
    (:func:`~agent19.migrate.classification.session_path.transaction_end_paths`): set in their place. ``denied``:
    why a permission error says nothing of the target, if it does not (:attr:`Database.denied_in_copy`).
    ``took_at``: filled with the time each statement that ran started (its locks are held from then on). It stops
    at the first statement that fails, as a migration in one transaction does: the rest are not run (the caller
    rolls back at once, releasing the locks)."""
    row = conn.execute(Q_PATH).fetchone() if paths else None
    session_path = (row["p"] if isinstance(row, dict) else row[0]) if row else None
    first_taken: dict[tuple[str, str], int] = {}  # (relation, mode) -> the statement that took it first
    held_now: set[tuple[str, str]] | None = None  # the locks held now, when known without asking the server
    nodes_now: dict[int, Node] | None = None  # the relations' file nodes now, when known likewise

    def note_held(index: int, held: set[tuple[str, str]] | None = None,
                  nodes: dict[int, Node] | None = None) -> set[tuple[str, str]]:
        nonlocal held_now, nodes_now
        if held is None:  # both in one round trip: the next statement's observation need not read the file nodes
            nodes, locks = after_state(conn)
            held = {(lk.relation, lk.mode) for lk in locks}
        for pair in held:
            first_taken.setdefault(pair, index)
        held_now, nodes_now = held, nodes
        return held

    note_held(-1)  # the 'before' checks
    for stmt in stmts:
        ops = preds.get(stmt.index, [])
        res = _base(stmt, ops)
        results.append(res)
        if len(results) > 1 and (why := _stopped(results[-2])):
            res.ran_in, res.note = "skipped", why
            if results[-2].untested:  # not run for the reason an earlier one could not be tested: nor can this
                res.untested = why
            continue
        label = f"statement {stmt.index + 1}/{len(stmts)} (line {stmt.line})"
        progress(stmt.index, len(stmts), label)
        if stmt.node == "TransactionStmt":
            res.ran_in, res.note = "skipped", "transaction control: the dry run wraps the migration itself"
            if paths and stmt.index in paths:  # a SET LOCAL ends, a rolled-back SET is undone: as they will be
                path = paths[stmt.index]
                conn.execute(SET_PATH, (session_path if path is None else path,))
                res.note += "; the search_path it leaves was set in its place"
            continue
        if (why := blocked.get(stmt.index)) is not None:
            res.ran_in, res.note = "skipped", why.note
            if why.refused:
                res.error = statement_error(stmt, message=why.note)
            elif why.untested:
                res.untested = why.note
            continue
        if needs_scratch(stmt, ops):
            res.ran_in, res.note = "scratch", scratch_note(stmt)
            scratch_needed.append(stmt.index)
            substitute = stand_in(stmt)
            if substitute:
                try:
                    with conn.transaction():
                        run_reporting(partial(conn.execute, substitute[0]), conn=conn, dsn=dsn, progress=live,
                                      done=stmt.index, total=len(stmts), label=label + ", its stand-in")
                    ran.append(substitute[0])
                    note_held(stmt.index)
                    res.note += f"; in the target's transaction {substitute[1]} stood in for it"
                except psycopg.Error as exc:
                    if stmt.node == "CallStmt":  # the same UPDATEs on the target's rows: the CALL fails on them too
                        # (a scratch copy without the data — others connected, or too big — never sees the row)
                        err = statement_error(stmt, exc)
                        res.error = err.model_copy(update={"message": f"on the target's rows ({substitute[1]}): "
                                                                      f"{err.message}"})
            continue
        # what an earlier statement left held: known from its own observation unless a stand-in ran since
        held_before = held_now if held_now is not None else note_held(stmt.index - 1)
        nodes_before = nodes_now
        held_now = nodes_now = None  # from here until this statement's observation, unknown (it may fail half-way)
        took_at[stmt.index] = time.perf_counter()
        try:
            with conn.transaction():
                obs = run_reporting(partial(observe, conn, stmt.sql, before=nodes_before,
                                            also=(Q_SHARED_WRITES, Q_SESSION_READS)),
                                    conn=conn, dsn=dsn, progress=live, done=stmt.index, total=len(stmts), label=label)
                if wrote := shared_writes(conn, obs.also[0]):  # read with its locks, in one round trip
                    raise ClusterWrite(wrote)  # rolls back to the savepoint
                if changed := session_changed(obs.also[1]):
                    raise SessionChanged(changed)  # likewise
                res.note = pin_path(conn, obs.also[1])  # a path that lists pg_catalog late: pinned, not refused
        except ClusterWrite as exc:
            res.ran_in, res.note = "skipped", exc.note
            continue
        except SessionChanged as exc:
            res.ran_in, res.note = "skipped", exc.note
            res.error = statement_error(stmt, message=exc.note)
            continue
        except psycopg.Error as exc:
            if exc.sqlstate == "25001":  # cannot run inside a transaction block
                res.ran_in, res.note = "scratch", "the server refused it in a transaction block: scratch database"
                scratch_needed.append(stmt.index)
            elif exc.sqlstate == "42501":  # this login may not; the role that applies migrations may
                res.untested = (denied and denied(exc)) or (
                    f"this login lacks a privilege ({statement_error(stmt, exc).message}): dry-run as the role that "
                    "applies migrations (the owner of the objects)")
            elif exc.sqlstate in scratch_mod.MISSING_OBJECT and any(r.untested for r in results[:-1]):
                first = next(r for r in results[:-1] if r.untested)
                res.untested = (f"depends on statement {first.index + 1}, which could not be tested "
                                f"({statement_error(stmt, exc).message})")
            else:
                res.error = statement_error(stmt, exc)
            continue
        ran.append(stmt.sql)
        res.duration_ms = round(obs.duration_ms, 3)
        res.rows, res.notices, res.rewritten, res.dropped = obs.rows, obs.notices, obs.rewritten, obs.dropped
        res.renamed = [f"{before} -> {now}" for now, before in sorted(obs.renamed.items())]
        mine = {lk.relation for lk in obs.locks if (lk.relation, lk.mode) not in held_before}
        names = {**obs.gone_names, **obs.renamed}  # a lock on what it dropped or renamed, by its name before
        res.locks = [lk.model_copy(update={"relation": names.get(lk.relation, lk.relation)}) for lk in obs.locks
                     if (lk.relation, lk.mode) not in held_before]
        # observe() read pg_locks and the file nodes after the statement (after_state); releasing its savepoint
        # keeps every lock and changes no relation, and shared_writes only reads: that read is what is there now
        note_held(stmt.index, {(lk.relation, lk.mode) for lk in obs.locks}, obs.filenodes_after)
        mine |= set(predicted_locks(ops)) | {t for op in ops for t in op.tables}
        res.held_before = [PriorLock(relation=rel, mode=mode, since=first_taken.get((rel, mode), -1))
                           for rel, mode in sorted(held_before) if rel in mine and not rel.startswith("pg_toast.")]
        if hidden_locks(res):
            isolate.append(stmt.index)


def _early_scratch(db: Database, statements: list[Statement], preds: dict[int, list[Operation]],
                   copy: scratch_mod.CopyMode, measure_blocking: bool, server_version: int) -> EarlyScratch | None:
    """Start making the scratch database now, while the transaction runs, when it will be needed and need not
    be a TEMPLATE copy of the target (:mod:`agent19.migrate.dryrun.early_scratch`). With ``copy="auto"`` a
    migration that needs one only to re-observe hidden locks gets a schema-only copy: locks do not depend on
    rows, and replaying the earlier statements on empty tables is quick where a TEMPLATE copy would rewrite
    every row again."""
    if copy == "template" or not expects_scratch(statements, preds):
        return None
    if copy == "auto" and (measure_blocking or any_needs_scratch(statements, preds)):
        return None  # statements timed in the scratch database: a TEMPLATE copy (with the rows), after the rollback
    return EarlyScratch(db, "empty" if copy == "empty" else "schema", server_version // 10000)


def dry_run(
    db: Database, statements: list[Statement], *, checks: list[ValidationCheck] | None = None,
    measure_blocking: bool = False, probe_timeout_ms: int = 2000, scratch_copy: scratch_mod.CopyMode = "auto",
    sample_rows: int = 0, progress: Progress | None = None,
) -> DryRunResult:
    """Dry-run ``statements`` (in order) against ``db``; nothing persists. See the module docstring."""
    db.require(AccessMode.DRY_RUN, "test_migration (a dry run)")
    progress = never_back(progress) if progress is not None else None
    report: Progress = progress or (lambda done, total, message: None)
    statements = [s.with_index(i) for i, s in enumerate(statements)]
    started = time.perf_counter()
    results: list[StatementResult] = []
    findings: list[Finding] = []
    check_results: list[CheckResult] = []
    isolate: list[int] = []
    scratch_needed: list[int] = []
    ran: list[str] = []
    took_at: dict[int, float] = {}
    conn = db.connect()
    early: EarlyScratch | None = None
    side: ClusterSide | None = None
    ahead: AheadReplay | None = None
    reread: ThreadPoolExecutor | None = None
    try:
        refuse_standby(conn, "test_migration (a dry run)")
        watched = aftermath.state(conn)  # before agent19's own sessions (pg_dump, cluster side) start
        # first, so that pg_dump (100-200 ms whatever the schema) runs while the catalog is read: the prediction
        # from the SQL alone is enough to decide (a wrong guess only costs a database made in the background)
        early = made = _early_scratch(db, statements, predict(statements, None), scratch_copy, measure_blocking,
                                      conn.info.server_version)
        side = ClusterSide(db)  # leftovers dropped and the cluster fingerprinted on its own session, meanwhile:
        before = catalog_snapshot(conn, early)  # with the kept schema dump's digest, when there is one
        preds = predict(statements, before)
        blocked, allowed, checked = screen(db, conn, statements)  # checked: the code's fingerprint, read with it
        leftovers, cluster_before = side.before(conn)
        existing = {t.qualified_name for t in before.tables} | {f"{v.schema_name}.{v.name}" for v in before.views}
        if early is not None:
            early.wait_dumped()  # pg_dump's ACCESS SHARE locks are gone before the migration's locks are taken
            skip = {s.index for s in statements if s.node == "TransactionStmt"} | set(blocked)
            outside = {s.index for s in statements if s.index not in skip and needs_scratch(s, preds.get(s.index, []))}
            hidden = predicted_hidden(statements, preds)
            if scratch_copy == "auto" and outside:  # timed in the scratch database: a TEMPLATE copy, after the rollback
                hidden, outside = set(), set()
            if not measure_blocking and not sample_rows and (hidden or outside):  # meanwhile (module ahead)
                ahead = AheadReplay(early, statements, hidden, skip, db.settings.statement_timeout_ms, outside, preds)
                early = None  # the replay ahead owns it now
        sizes_before = lasting.read(conn)
        conn.execute(BEGIN)
        try:
            check_results += [run_check(conn, c) for c in (checks or []) if c.phase == "before"]
            _in_transaction(conn, statements, preds, results, report, ran, isolate, scratch_needed, blocked, took_at,
                            live=progress, dsn=db.dsn, paths=transaction_end_paths(statements, before),
                            denied=db.denied_in_copy)
            check_results += [run_check(conn, c) for c in (checks or []) if c.phase == "after"]
        finally:
            conn.execute(ROLLBACK)
            for i, at in took_at.items():  # locks are held from the statement's start until now
                results[i].locks_held_ms = round((time.perf_counter() - at) * 1000, 3)
        findings += after_trial(aftermath.after_rollback(conn, watched, checked))  # sequences: the catalog diff
        sizes_after = lasting.read(conn)
        if ahead is not None and verdict.stopped(results):  # it replays what the target never ran: not waited for
            ahead.join(cancel=True)
        if early is not None and scratch_copy == "auto" and (scratch_needed or measure_blocking):
            early.discard()  # not predicted: these statements' timings need the TEMPLATE copy (with the data)
            early = None
        scratch_info = None
        after: SchemaSnapshot | None = None
        if ahead is not None:  # the target is read again while the replay ahead ends (it may still be dropping)
            side.start_after()
            after = snapshot(conn)
            scratch_info = ahead.apply(results, isolate, scratch_needed, before)
            if scratch_info is None and not scratch_needed and scratch_copy == "auto":
                scratch_copy = "schema"  # the copy the early scratch database was, made again (a misprediction)
        later: Future[SchemaSnapshot] | None = None
        if scratch_info is None and (scratch_needed or isolate or measure_blocking):
            if early is None:
                conn.close()  # a TEMPLATE copy needs the target free of sessions, agent19's own included
            else:  # the target is read again while the scratch database works (nothing runs there any more)
                reread = ThreadPoolExecutor(1, thread_name_prefix="agent19-after")
                later = reread.submit(snapshot, conn)
                side.start_after()
            try:
                scratch_info = run_in_scratch(
                    db, statements, preds, results, before, scratch_needed=set(scratch_needed), isolate=set(isolate),
                    measure_blocking=measure_blocking, probe_timeout_ms=probe_timeout_ms, copy=scratch_copy,
                    sample_rows=sample_rows, progress=report, early=early, live=progress)
            except psycopg.Error as exc:
                reason = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
                for i in scratch_needed:
                    results[i].untested = f"no scratch database ({reason})"
                findings.append(Finding(kind="skipped", severity="warning", message=(
                    f"a scratch database could not be created or used ({reason}): statements that cannot run in a "
                    "transaction were not observed and isolated lock checks were skipped; grant CREATEDB")))
        if reread is not None and later is not None:
            after = later.result()
        elif after is None:
            if conn.closed:
                conn = db.connect()
            side.start_after()
            after = snapshot(conn)
        if conn.closed:  # a misprediction's TEMPLATE copy closed it; read here only without an admin session
            conn = db.connect()
        cluster_after = side.after(conn)
    finally:
        if ahead is not None:  # its scratch database is dropped before the dry run returns, whatever happened
            ahead.join(cancel=sys.exc_info()[0] is not None)
        if side is not None:
            side.close()
        if early is not None:  # made for a re-observation that turned out not to be needed (or never used);
            early.discard(cancel=sys.exc_info()[0] is not None)  # failing or interrupted: not waited for
        if reread is not None:
            reread.shutdown()  # its read of the target ends before the session closes
        conn.close()
    differences = (diff_snapshots(before, after, backward_is_error=True, measured=True)
                   + diff_cluster(cluster_before, cluster_after))
    if cluster_before.unreadable:
        findings.append(Finding(kind="skipped", severity="info", message=(
            "cluster state not compared where this login may not read it: " + ", ".join(cluster_before.unreadable))))
    effects, unmeasured = lasting.effects(sizes_before, sizes_after)
    differences += effects
    findings += verdict.statement_findings(results, preds, existing, statements, allowed)
    findings += verdict.check_findings(check_results, results) + verdict.target_findings(differences, unmeasured)
    longest = longest_lock(results)
    passed = not any(f.severity == "error" for f in findings)
    complete = all(r.locks_complete for r in results)
    total_ms = round((time.perf_counter() - started) * 1000, 3)
    summary = summary_text(passed, results, findings, longest, total_ms)
    report(len(statements), len(statements), "dry run finished")
    return scratch_pool.after_dry_run(made, DryRunResult(  # a running server prepares the next scratch database
        passed=passed, complete=complete, summary=summary, database=db.display_dsn,
        server_version=before.server_version,
        total_ms=total_ms, statements=results, findings=findings, checks=check_results, longest_lock=longest,
        scratch=scratch_info, target_unchanged=not left_behind(differences), target_differences=differences,
        leftovers_dropped=leftovers,
    ))
