"""The reverse SQL of a change list's operations that classification alone cannot give."""

from __future__ import annotations

import pglast
from pglast.enums import AlterTableType

from agent19.migrate.backfill.scripts import procedure_inverse
from agent19.migrate.planning.model import PlannedOperation


def with_generated_inverses(ops: list[PlannedOperation]) -> list[PlannedOperation]:
    """The change list's operations with the reverse SQL classification cannot give, so the rollback undoes exactly
    what the migration left: the keyset backfill procedure is dropped; a constraint the migration adds and drops
    again itself (the CHECK that proves NOT NULL) has nothing to undo — dropping it on rollback would fail."""
    out = []
    for i, op in enumerate(ops):
        update: dict[str, object] = {}
        if not op.reverse_sql and (drop := procedure_inverse(op.sql)):
            update = {"reverse_sql": drop, "reversible": True}
        added = _constraint(op.sql, "AT_AddConstraint")
        if added and any(_constraint(later.sql, "AT_DropConstraint") == added for later in ops[i + 1:]):
            update = {"reverse_sql": None, "reversible": True}
        dropped = _constraint(op.sql, "AT_DropConstraint")
        if dropped and any(_constraint(earlier.sql, "AT_AddConstraint") == dropped for earlier in ops[:i]):
            update = {"reverse_sql": None, "reversible": True}
        out.append(op.model_copy(update=update) if update else op)
    return out


def _constraint(sql: str, subtype: str) -> tuple[str | None, str, str] | None:
    """(schema, table, constraint) of a one-sub-command ALTER TABLE … ADD / DROP CONSTRAINT name, else None."""
    try:
        stmt = pglast.parse_sql(sql)[0].stmt
    except pglast.parser.ParseError:
        return None
    cmds = getattr(stmt, "cmds", None) or ()
    if type(stmt).__name__ != "AlterTableStmt" or len(cmds) != 1 or cmds[0].subtype != getattr(AlterTableType, subtype):
        return None
    name = cmds[0].name if subtype == "AT_DropConstraint" else getattr(cmds[0].def_, "conname", None)
    return (stmt.relation.schemaname, stmt.relation.relname, name) if name else None
