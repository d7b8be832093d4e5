"""A19046 require-schema (style): tables named without their schema in DDL."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

from agent19.migrate.lint.rules._base import Hit, StatementContext
from agent19.migrate.lint.rules._style import style_rule

DDL = {"CreateStmt", "AlterTableStmt", "IndexStmt", "ViewStmt", "CreateTableAsStmt", "CreateTrigStmt",
       "RenameStmt", "TruncateStmt", "CreateSeqStmt", "AlterSeqStmt"}


def check(ctx: StatementContext) -> Iterator[Hit]:
    if ctx.node not in DDL:
        return
    unqualified: list[str] = []
    stack: list[Any] = [ctx.statement.tree]
    while stack:  # RangeVars appear both wrapped ({"RangeVar": …}) and bare (a statement's "relation")
        item = stack.pop()
        if isinstance(item, dict):
            if "relname" in item and "relpersistence" in item and not item.get("schemaname"):
                unqualified.append(item["relname"])
            stack.extend(item.values())
        elif isinstance(item, list):
            stack.extend(item)
    if unqualified:
        names = ", ".join(dict.fromkeys(unqualified))
        yield Hit(f"{names} named without a schema: which table this changes depends on the session's search_path "
                  "(the migration tool's role, its settings, a SET earlier in the file)",
                  "qualify each name, e.g. public.orders")


RULE = style_rule(
    code="A19046",
    name="require-schema",
    aliases=("require-table-schema", "require-schema-qualified"),
    title="Name tables with their schema in DDL (style)",
    why="An unqualified name resolves through search_path, which differs between roles, tools and sessions; "
    "in a database with several schemas the migration can change or create the wrong table.",
    alternative="Write schema.table in every DDL statement (teams with one schema can leave this off).",
    bad="ALTER TABLE orders ADD COLUMN note text;",
    good="ALTER TABLE public.orders ADD COLUMN note text;",
    check=check,
)
