"""A19002 drop-index-blocking: DROP INDEX without CONCURRENTLY."""

from __future__ import annotations

import re
from collections.abc import Iterator

from agent19.migrate.lint.rules._base import Hit, Rule, StatementContext

_DROP_INDEX = re.compile(r"^\s*DROP\s+INDEX\b", re.IGNORECASE)


def check(ctx: StatementContext) -> Iterator[Hit]:
    f = ctx.fields
    if ctx.node != "DropStmt" or f.get("removeType") != "OBJECT_INDEX" or f.get("concurrent"):
        return
    if all(ctx.is_new(t) for o in ctx.operations for t in o.tables) and any(o.tables for o in ctx.operations):
        return
    yield Hit(
        "DROP INDEX takes an AccessExclusiveLock on the index's table: brief once granted, but while it "
        "waits for running queries every later query on the table queues behind it",
        _DROP_INDEX.sub("DROP INDEX CONCURRENTLY", ctx.sql, count=1) + ";  -- outside a transaction block, "
        "one index per statement",
    )


RULE = Rule(
    code="A19002",
    name="drop-index-blocking",
    title="DROP INDEX without CONCURRENTLY queues every query on the table",
    severity="warning",
    why="DROP INDEX needs an AccessExclusiveLock on the table. It holds it only briefly, but it must wait for "
    "every running query on the table, and every query that arrives meanwhile waits behind it.",
    alternative="DROP INDEX CONCURRENTLY waits for running transactions without blocking new ones. It runs "
    "outside a transaction block and drops one index per statement.",
    bad="DROP INDEX orders_customer_id_idx;",
    good="DROP INDEX CONCURRENTLY orders_customer_id_idx;",
    check=check,
    nodes=("DropStmt",),
    aliases=("require-concurrent-index-deletion",),  # squawk's rule name(s)
)
