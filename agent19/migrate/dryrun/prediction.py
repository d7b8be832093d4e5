"""What the classification predicts for a dry run: each statement's operations, which statements need a scratch
database (not in a transaction block, or locks hidden by an earlier statement's), and what stands in for a
non-transactional statement in the target's transaction."""

from __future__ import annotations

import re

from agent19.db.models import SchemaSnapshot
from agent19.migrate.backfill.scripts import stand_in_call
from agent19.migrate.classification.classify import classify
from agent19.migrate.dryrun.ahead import predicted_hidden
from agent19.migrate.layouts.files import has_non_transactional
from agent19.migrate.model import Operation
from agent19.migrate.parse import Statement

CONCURRENTLY = re.compile(r"^(\s*CREATE\s+(?:UNIQUE\s+)?INDEX\s+)CONCURRENTLY\s+", re.IGNORECASE)


def predict(statements: list[Statement], catalog: SchemaSnapshot | None) -> dict[int, list[Operation]]:
    """The prediction for each statement index: the classification's operations (the one call to swap)."""
    out: dict[int, list[Operation]] = {}
    for op in classify(statements, catalog=catalog):
        out.setdefault(op.statement_index, []).append(op)
    return out


def needs_scratch(stmt: Statement, ops: list[Operation]) -> bool:
    """It cannot run in a transaction block, or it writes the target outside the transaction: ANALYZE (and VACUUM)
    overwrite the table's planner statistics in place (``pg_class.reltuples``/``relpages``, ``last_analyze``),
    measured on the rows as the migration left them in the dry run's transaction — a rollback keeps those
    figures. Either runs in the scratch database only."""
    return has_non_transactional([stmt]) or stmt.node == "VacuumStmt" or any(not op.in_transaction for op in ops)


def scratch_note(stmt: Statement) -> str:
    """Why ``stmt`` runs in the scratch database and not in the target's transaction."""
    if stmt.node == "VacuumStmt" and not stmt.fields.get("is_vacuumcmd"):
        return ("ANALYZE writes the table's planner statistics in place, which a rollback does not undo: runs in a "
                "scratch database only")
    return "cannot run in a transaction block: runs in a scratch database"


def stand_in(stmt: Statement) -> tuple[str, str] | None:
    """(SQL with the same effect that may run in a transaction, what stood in), or None."""
    if stmt.node == "IndexStmt" and CONCURRENTLY.match(stmt.sql):
        return CONCURRENTLY.sub(r"\1", stmt.sql, count=1), "the plain CREATE INDEX"
    if stmt.node == "CallStmt" and (call := stand_in_call(stmt.sql)):
        return call, "the same backfill with every batch in the transaction"
    return None


def expects_scratch(statements: list[Statement], preds: dict[int, list[Operation]]) -> bool:
    """The prediction says a scratch database will be needed: a statement cannot run in a transaction block,
    or takes on a relation a mode no stronger than one an earlier statement took there (hidden in pg_locks:
    re-observed in a transaction of its own in the scratch database)."""
    return any_needs_scratch(statements, preds) or bool(predicted_hidden(statements, preds))


def any_needs_scratch(statements: list[Statement], preds: dict[int, list[Operation]]) -> bool:
    return any(needs_scratch(s, preds.get(s.index, [])) for s in statements if s.node != "TransactionStmt")
