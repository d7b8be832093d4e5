"""Classify parsed statements into :class:`~agent19.migrate.model.Operation`s.

    ops = classify(parse_sql(sql), catalog=None, pg_version=110000)

For each statement (and each sub-command of a multi-command ``ALTER TABLE``) a small function
reads pglast's JSON tree and picks a *form*; the knowledge table
(:mod:`agent19.migrate.classification.knowledge_table`) says what that form locks, rewrites and scans on the
given PostgreSQL version. Risk starts from the row's level and is refined by the table's size
(with a catalog) or by the assumption that every pre-existing table is large (without one),
and drops to low for tables created earlier in the same migration. The state carried between
statements is described in :mod:`agent19.migrate.classification.state`.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from agent19.db.locks import strongest_mode
from agent19.migrate.classification.alter import decide_alter
from agent19.migrate.classification.behaviour import MAX_VERSION
from agent19.migrate.classification.knowledge import Behaviour, lookup
from agent19.migrate.classification.other import decide_statement, render_subcommands
from agent19.migrate.classification.state import Context, Decision, MigrationState, one_session, range_name
from agent19.migrate.model import Operation, Risk, max_risk
from agent19.migrate.parse import Statement

if TYPE_CHECKING:  # annotations only: the catalog models load where a catalog is read
    from agent19.db.models import SchemaSnapshot

LARGE_BYTES = 1 << 30
LARGE_ROWS = 10_000_000
BLOCKING = {"AccessExclusiveLock", "ExclusiveLock", "ShareRowExclusiveLock", "ShareLock"}


def classify(
    statements: list[Statement],
    catalog: SchemaSnapshot | None = None,
    pg_version: int = 110000,
    session_timezone_utc: bool = True,
    state: MigrationState | None = None,
) -> list[Operation]:
    """One :class:`Operation` per statement, or per sub-command of a multi-command ALTER TABLE.

    ``pg_version`` is ``server_version_num`` (e.g. ``150004``) or a major version (``15``); with a
    catalog, the catalog's version is used. ``session_timezone_utc`` decides timestamp ↔
    timestamptz changes (no rewrite only under UTC, 12+). ``state`` carries what earlier migrations of
    the same set did (tables created, columns, validated CHECKs) into this one; a fresh one by default.
    """
    major = pg_version // 10000 if pg_version >= 1000 else pg_version
    if catalog is not None:
        major = catalog.major_version
    ctx = Context(catalog=catalog, pg_major=major, session_utc=session_timezone_utc,
                  state=state if state is not None else MigrationState())
    ops: list[Operation] = []
    with one_session(ctx):  # unqualified names: on the session's search_path (offline: public) until a SET
        for stmt in statements:
            if stmt.node == "AlterTableStmt" and stmt.fields.get("objtype", "OBJECT_TABLE") == "OBJECT_TABLE":
                ops.extend(_alter_table(stmt, ctx))
                continue
            decision = decide_statement(stmt, ctx)
            ops.append(build(stmt, decision, ctx, sub_index=None, sql=stmt.sql))
    return ops


def rows_of(stmt: Statement) -> list[tuple[Behaviour, dict[str, Any] | None]]:
    """The knowledge-table row of ``stmt`` (one per sub-command of an ALTER TABLE, with the sub-command),
    judged on the statement alone: no catalog and nothing an earlier statement did, so nothing can excuse it.

    Safety detection (:mod:`agent19.safety.detect`) reads what a statement destroys and loses from these
    rows, so the table is the one place that says it. Rows are those of the newest version known.

    They depend on the statement alone, so a statement whose tree is held keeps them until its tree is let go
    (:meth:`~agent19.migrate.parse.Statement.release_tree`): a plan judges its statements twice (without and
    with live facts) and classifies them once for that.
    """
    kept = stmt.__dict__.get("_rows_of")
    if kept is not None:
        return kept  # type: ignore[no-any-return]
    ctx = Context(catalog=None, pg_major=MAX_VERSION, session_utc=True, state=MigrationState())
    fields = stmt.fields
    rows: list[tuple[Behaviour, dict[str, Any] | None]]
    if stmt.node == "AlterTableStmt":  # every relation kind: ALTER FOREIGN TABLE … DROP COLUMN drops one too
        table = range_name(fields.get("relation", {}))
        cmds = [c["AlterTableCmd"] for c in fields.get("cmds", []) if "AlterTableCmd" in c]
        rows = [(lookup(decide_alter(cmd, table, ctx).form, MAX_VERSION), cmd) for cmd in cmds]
    else:
        rows = [(lookup(decide_statement(stmt, ctx).form, MAX_VERSION), None)]
    if stmt.__dict__.get("_tree") is not None:  # the sub-commands are parts of the held tree
        stmt.__dict__["_rows_of"] = rows
    return rows


def _alter_table(stmt: Statement, ctx: Context) -> list[Operation]:
    fields = stmt.fields
    table = range_name(fields.get("relation", {}))
    cmds = [c["AlterTableCmd"] for c in fields.get("cmds", []) if "AlterTableCmd" in c]
    if len(cmds) == 1:
        return [build(stmt, decide_alter(cmds[0], table, ctx), ctx, sub_index=None, sql=stmt.sql)]
    texts = render_subcommands(stmt.sql, len(cmds))
    return [build(stmt, decide_alter(cmd, table, ctx), ctx, sub_index=i, sql=texts[i]) for i, cmd in enumerate(cmds)]


def build(stmt: Statement, decision: Decision, ctx: Context, sub_index: int | None, sql: str) -> Operation:
    """An :class:`Operation` from the chosen form's knowledge row and the decision's specifics."""
    row = lookup(decision.form, ctx.pg_major)
    locks: dict[str, str] = {}
    target_lock = decision.lock or row.lock
    for rel in decision.others:
        if row.other_lock:
            locks[rel] = row.other_lock
    for rel in decision.targets:
        if target_lock:
            locks[rel] = strongest_mode({target_lock, locks[rel]}) if rel in locks else target_lock  # type: ignore[assignment]
    tables = list(dict.fromkeys(decision.targets + decision.others))
    notes = [row.note, *decision.notes] if row.note else list(decision.notes)
    reversible = decision.reversible if decision.reversible is not None else (
        row.reversible and decision.inverse is not None)
    new_table = bool(tables) and ctx.state.created.issuperset(tables)
    risk = _risk(row, decision, locks, tables, ctx, notes, new_table)
    if not row.in_transaction and ctx.state.explicit_transaction:
        notes.append("this runs inside the migration's BEGIN ... COMMIT, where it fails: it cannot run in a "
                     "transaction block")
    lock = (next(iter(locks.values())) if len(locks) == 1 else strongest_mode(set(locks.values()))) if locks else None
    if ctx.state.lock_timeout is None and lock == "AccessExclusiveLock" and not new_table:
        notes.append("no SET lock_timeout before it in this migration: waiting for the lock queues every query")
    return Operation(
        statement_index=stmt.index, sub_index=sub_index, file=stmt.file, line=stmt.line, sql=sql,
        category=row.category, kind=row.kind, tables=tables, locks=locks,
        lock=lock, rewrite=row.rewrite, scan=row.scan,
        in_transaction=row.in_transaction, reversible=reversible, inverse_sql=decision.inverse if reversible else None,
        data_loss=row.data_loss and not decision.created_here, risk=risk, notes=notes, form=decision.form,
        lock_timeout=ctx.state.lock_timeout, explicit_transaction=ctx.state.explicit_transaction, new_table=new_table,
        created_here=decision.created_here,
    )


def _risk(row: Behaviour, decision: Decision, locks: dict[str, str], tables: list[str], ctx: Context,
          notes: list[str], new_table: bool) -> Risk:
    base: Risk = decision.risk or row.risk
    if new_table:
        notes.append("every table it touches was created earlier in this migration: nobody is using it yet")
        return "low"
    if not (row.rewrite or row.scan) or row.category == "data_migration":
        return base
    blocking = [t for t, mode in locks.items() if mode in BLOCKING and t not in ctx.state.created]
    if not blocking:
        return base
    large, sizes = _large_tables(blocking, ctx)
    if sizes:
        notes.append(sizes)
    if not large:
        return base
    if strongest_mode({locks[t] for t in large}) == "AccessExclusiveLock":
        return "critical"
    return max_risk([base, "high"])


def _large_tables(tables: list[str], ctx: Context) -> tuple[list[str], str]:
    if ctx.catalog is None:
        return tables, "no database: every pre-existing table is assumed large (connect one for real sizes)"
    large, described = [], []
    for name in tables:
        t = ctx.catalog.table(name)
        if t is None:
            large.append(name)
            described.append(f"{name} is not in the catalog (assumed large)")
            continue
        rows = t.row_estimate or 0
        described.append(f"{name}: {t.total_bytes / 1e6:.1f} MB, ~{rows} rows")
        if t.total_bytes > LARGE_BYTES or rows > LARGE_ROWS:
            large.append(name)
    return large, "; ".join(described)

