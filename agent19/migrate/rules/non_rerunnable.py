"""A19030 non-rerunnable: CREATE/DROP/ADD without IF [NOT] EXISTS."""

from __future__ import annotations

import re
from collections.abc import Iterator

from agent19.migrate.rules._base import Hit, Rule, StatementContext


def _fix(sql: str, pattern: str, insert: str) -> str:
    return re.sub(pattern, lambda m: m.group(0) + insert, sql, count=1, flags=re.IGNORECASE)


def check(ctx: StatementContext) -> Iterator[Hit]:
    f, sql = ctx.fields, ctx.sql
    fix: str | None = None
    if ctx.node == "CreateStmt" and not f.get("if_not_exists"):
        fix = _fix(sql, r"^\s*CREATE\s+(?:(?:GLOBAL|LOCAL)\s+)?(?:TEMP(?:ORARY)?\s+|UNLOGGED\s+)?TABLE",
                   " IF NOT EXISTS")
    elif ctx.node == "IndexStmt" and not f.get("if_not_exists") and f.get("idxname"):
        fix = _fix(sql, r"^\s*CREATE\s+(?:UNIQUE\s+)?INDEX(?:\s+CONCURRENTLY)?", " IF NOT EXISTS")
    elif ctx.node == "DropStmt" and not f.get("missing_ok"):
        fix = _fix(sql, r"^\s*DROP\s+(?:MATERIALIZED\s+VIEW|FOREIGN\s+TABLE|\w+)(?:\s+CONCURRENTLY)?", " IF EXISTS")
    elif ctx.node == "AlterTableStmt":
        for _, subtype, cmd in ctx.alter_cmds():
            if subtype == "AT_AddColumn" and not cmd.get("missing_ok"):
                fix = _fix(sql, r"\bADD\s+(?:COLUMN\s+)?", "COLUMN IF NOT EXISTS ").replace(
                    "COLUMN COLUMN IF NOT EXISTS", "COLUMN IF NOT EXISTS")
            elif subtype == "AT_DropColumn" and not cmd.get("missing_ok"):
                fix = _fix(sql, r"\bDROP\s+(?:COLUMN\s+)?", "COLUMN IF EXISTS ").replace(
                    "COLUMN COLUMN IF EXISTS", "COLUMN IF EXISTS")
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
    alternative="Use CREATE … IF NOT EXISTS, DROP … IF EXISTS, ADD COLUMN IF NOT EXISTS, DROP COLUMN IF EXISTS.",
    bad="CREATE TABLE audit_log (id bigint PRIMARY KEY);",
    good="CREATE TABLE IF NOT EXISTS audit_log (id bigint PRIMARY KEY);",
    check=check,
)
