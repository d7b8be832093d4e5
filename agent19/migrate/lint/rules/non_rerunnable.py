"""A19030 non-rerunnable: CREATE/DROP/ADD without IF [NOT] EXISTS."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

from pglast import ast
from pglast.enums import AlterTableType

from agent19.migrate.lint.rules._base import Hit, Rule, StatementContext, deparse, typed_tree
from agent19.migrate.lint.rules._shape import by_shape


def rerunnable(sql: str) -> str | None:
    """The statement with IF [NOT] EXISTS added where it lacks it, deparsed from its syntax tree (None: nothing to add).

    Built on the parse tree, never by editing the text: ``ADD CONSTRAINT c …, ADD COLUMN y`` gets its
    ``IF NOT EXISTS`` on the column, where PostgreSQL reads it.
    """
    stmt = typed_tree(sql)
    changed = False
    if isinstance(stmt, ast.CreateStmt) and not stmt.if_not_exists:
        stmt.if_not_exists = changed = True
    elif isinstance(stmt, ast.IndexStmt) and not stmt.if_not_exists and stmt.idxname:
        stmt.if_not_exists = changed = True
    elif isinstance(stmt, ast.DropStmt) and not stmt.missing_ok:
        stmt.missing_ok = changed = True
    elif isinstance(stmt, ast.AlterTableStmt):
        for cmd in stmt.cmds or ():
            if cmd.subtype in (AlterTableType.AT_AddColumn, AlterTableType.AT_DropColumn) and not cmd.missing_ok:
                cmd.missing_ok = changed = True
    return deparse(stmt) if changed else None


_ADD_DROP_COLUMN = ("AT_AddColumn", "AT_DropColumn")


def lacks_if_exists(node: str, fields: dict[str, Any]) -> bool:
    """Whether :func:`rerunnable` has anything to add, read from the parse tree already at hand (re-parsing and
    deparsing every statement to find out was most of a large lint's time)."""
    if node == "CreateStmt":
        return not fields.get("if_not_exists")
    if node == "IndexStmt":
        return bool(fields.get("idxname")) and not fields.get("if_not_exists")
    if node == "DropStmt":
        return not fields.get("missing_ok")
    if node == "AlterTableStmt":
        return any(c.get("AlterTableCmd", {}).get("subtype") in _ADD_DROP_COLUMN
                   and not c["AlterTableCmd"].get("missing_ok") for c in fields.get("cmds", []))
    return False


def check(ctx: StatementContext) -> Iterator[Hit]:
    if not lacks_if_exists(ctx.node, ctx.fields):
        return
    fix = by_shape(ctx.sql, ctx.statement.tree, rerunnable, ctx.statement.tree_text)  # once per shape of statement
    if fix is not None:
        yield Hit("cannot be re-run: a second run (after a partial failure) fails because the object exists "
                  "or is gone", fix + ";")


RULE = Rule(
    code="A19030",
    name="non-rerunnable",
    title="Statement cannot be re-run (no IF [NOT] EXISTS)",
    severity="info",
    why="A migration that fails halfway (a lock timeout, an interrupted CREATE INDEX CONCURRENTLY) outside a "
    "transaction must be re-run; statements that already succeeded then fail. IF [NOT] EXISTS makes them "
    "idempotent. (Beware: IF NOT EXISTS also accepts an INVALID index left by a failed concurrent build.)",
    alternative="Use CREATE ... IF NOT EXISTS, DROP ... IF EXISTS, ADD COLUMN IF NOT EXISTS, DROP COLUMN IF EXISTS.",
    bad="CREATE TABLE audit_log (id bigint PRIMARY KEY);",
    good="CREATE TABLE IF NOT EXISTS audit_log (id bigint PRIMARY KEY);",
    check=check,
    nodes=("CreateStmt", "IndexStmt", "DropStmt", "AlterTableStmt"),
    subcommands=("AT_AddColumn", "AT_DropColumn"),
)
