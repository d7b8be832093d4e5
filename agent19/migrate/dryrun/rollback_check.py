"""Verified rollback: apply up, snapshot, apply down, snapshot, and compare with the start.

Where it runs: in a transaction on the target that is always rolled back, when every statement of up
and down may run in a transaction block; otherwise in a scratch database (schema-only copy), where
each statement commits and the database is dropped afterwards. Either way nothing persists.

"Verified" means the catalog after up+down equals the catalog before (tables, columns with types,
defaults and nullability, constraints, indexes, triggers, views, sequences, enum values —
:mod:`agent19.migrate.dryrun.schema_diff`). Column order and a sequence moved forward (``nextval``: gaps) are
reported as ``info`` and do not fail the check; a sequence up+down left moved *backward* (a ``RESTART`` the down
does not undo, a ``setval`` by a path the screen does not see) is an error — the rollback did not restore it,
and ``nextval`` would hand out numbers already used — as in the dry run. Data is not compared. A statement the
dry-run screen does not run as untestable (``setval``, code agent19 cannot read: :mod:`agent19.safety.trial`)
makes the result "could not test", never "verified"; one that ran code agent19 cannot read because the operator
set ``--allow-unreadable-code`` is named in ``notes``. Code another session changed meanwhile (the fingerprint read
with the screen differs from the target's afterwards: :mod:`agent19.safety.fingerprint`) makes it "not verified":
what ran is not what was checked.
"""

from __future__ import annotations

from typing import Any

import psycopg
from psycopg.rows import dict_row

from agent19.config import AccessMode
from agent19.db import catalog_first
from agent19.db.catalog import snapshot
from agent19.db.connection import Database
from agent19.migrate.dryrun.checks import refuse_standby
from agent19.migrate.dryrun.cluster_guard import Blocked, ClusterWrite, screen, shared_writes
from agent19.migrate.dryrun.model import RollbackResult, ScratchInfo, StatementError, statement_error
from agent19.migrate.dryrun.schema_diff import diff_snapshots, errors_only
from agent19.migrate.dryrun.scratch import MISSING_OBJECT, drop_leftovers, scratch_database
from agent19.migrate.layouts.files import has_non_transactional
from agent19.migrate.parse import Statement
from agent19.safety.fingerprint import CHANGED, CODE

QUALIFIED_SQL = True  # its statements name functions, operators, types, catalog relations pg_catalog.-qualified
Q_CODE = f"SELECT {CODE} AS code"
"""The fingerprint of the code the server may run, read again on the target after the check (:func:`_code_changed`)."""
SET_TIMEOUT, BEGIN, ROLLBACK = "SET statement_timeout = {}", "BEGIN", "ROLLBACK"


def _apply(conn: psycopg.Connection[Any], statements: list[Statement], savepoints: bool,
           blocked: dict[int, Blocked]) -> list[StatementError]:
    """Run ``statements``; never cluster-wide or escaping ones (``blocked``), and undo any that the server
    shows writing a shared catalog (its savepoint, or in a scratch database its own transaction)."""
    errors = []
    for stmt in statements:
        if stmt.node == "TransactionStmt":
            continue
        if stmt.index in blocked:
            if blocked[stmt.index].refused:
                errors.append(statement_error(stmt, message=blocked[stmt.index].note))
            continue
        try:
            if savepoints or not has_non_transactional([stmt]):
                with conn.transaction():
                    conn.execute(stmt.sql)
                    if wrote := shared_writes(conn):
                        raise ClusterWrite(wrote)
            else:
                conn.execute(stmt.sql)
        except ClusterWrite as exc:
            errors.append(statement_error(stmt, message=exc.note))
        except psycopg.Error as exc:
            errors.append(statement_error(stmt, exc))
    return errors


def _verify(conn: psycopg.Connection[Any], up: list[Statement], down: list[Statement], savepoints: bool,
            blocked: tuple[dict[int, Blocked], dict[int, Blocked]]) -> tuple[list[Any], int, list[StatementError]]:
    start = snapshot(conn)
    errors = _apply(conn, up, savepoints, blocked[0])
    after_up = snapshot(conn)
    errors += _apply(conn, down, savepoints, blocked[1])
    end = snapshot(conn)
    # a sequence up+down left set back (an ALTER SEQUENCE … RESTART the down does not undo, a setval the screen
    # did not see) is not restored: an error, as in the dry run
    return (diff_snapshots(start, end, backward_is_error=True, backward_cause="the rollback did not restore it"),
            len(errors_only(diff_snapshots(start, after_up))), errors)


def _code_changed(db: Database, checked: str | None) -> bool:
    """The code the server may run on the target is not what the screen read (another session changed it)."""
    with db.session() as target:
        row = target.execute(Q_CODE).fetchone()
    return checked is not None and (row["code"] if isinstance(row, dict) else row[0]) != checked


def verify_rollback(db: Database, up: list[Statement], down: list[Statement]) -> RollbackResult:
    """Apply ``up`` then ``down`` where nothing persists, and say whether the schema came back."""
    db.require(AccessMode.DRY_RUN, "verifying a rollback")
    with db.session() as target:  # what must not run, decided on the target's catalog before anything runs
        refuse_standby(target, "verifying a rollback")
        (up_blocked, up_ran, checked), (down_blocked, down_ran, _) = screen(db, target, up), screen(db, target, down)
        blocked = (up_blocked, down_blocked)
    notes = [f"{side} statement {i + 1}: {note}" for side, ran in (("up", up_ran), ("down", down_ran))
             for i, note in sorted(ran.items())]
    scratch_info = None
    unfaithful: list[str] = []
    if has_non_transactional([*up, *down]):
        where = "scratch"
        drop_leftovers(db)
        with scratch_database(db, copy="schema") as scratch:
            with catalog_first.connect(scratch.dsn, autocommit=True, row_factory=dict_row,
                                 application_name="agent19 rollback-check") as conn:
                conn.execute(SET_TIMEOUT.format(int(db.settings.statement_timeout_ms)))
                differences, up_changes, errors = _verify(conn, up, down, savepoints=False, blocked=blocked)
            scratch_info = ScratchInfo(name=scratch.name, strategy=scratch.strategy, notes=scratch.notes, dropped=False)
            unfaithful = scratch.unfaithful
        scratch_info.dropped = True
    else:
        where = "transaction"
        conn = db.connect()
        try:
            conn.execute(BEGIN)
            try:
                differences, up_changes, errors = _verify(conn, up, down, savepoints=True, blocked=blocked)
            finally:
                conn.execute(ROLLBACK)
        finally:
            conn.close()
    if _code_changed(db, checked):
        return RollbackResult(verified=False, where=where, differences=differences, up_changes=up_changes,
                              errors=errors, scratch=scratch_info, notes=notes,
                              summary=f"rollback not verified: {CHANGED}")
    failing = errors_only(differences)
    verified = not failing and not errors
    not_run = [f"{side} statement {i + 1}: {b.note}" for side, screened in zip(("up", "down"), blocked, strict=True)
               for i, b in sorted(screened.items()) if b.untested]
    if verified and not_run:  # a statement not run (setval, code agent19 cannot read) proves nothing either way
        return RollbackResult(verified=False, where=where, differences=differences, up_changes=up_changes,
                              errors=errors, scratch=scratch_info, untested=not_run[0], notes=notes,
                              summary=f"could not test the rollback: {not_run[0]}")
    if where == "scratch" and unfaithful and errors and all(e.sqlstate in MISSING_OBJECT for e in errors):
        why = f"no faithful scratch copy of the target ({'; '.join(unfaithful)}); there: {errors[0].message}"
        return RollbackResult(verified=False, where=where, differences=differences, up_changes=up_changes,
                              errors=errors, scratch=scratch_info, untested=why, notes=notes,
                              summary=f"could not test the rollback: {why}")
    if verified and up_changes == 0:
        summary = "rollback verified (the up migration changed no schema; data changes are not compared)"
    elif verified:
        summary = f"rollback verified: the down migration undoes all {up_changes} schema change(s) of the up migration"
    elif errors:
        summary = f"rollback not verified: {len(errors)} statement(s) failed (first: line {errors[0].line}: " \
                  f"{errors[0].message})"
    else:
        summary = "rollback not verified: " + "; ".join(str(d) for d in failing)
    return RollbackResult(verified=verified, where=where, differences=differences, up_changes=up_changes,
                          errors=errors, scratch=scratch_info, notes=notes, summary=summary)
