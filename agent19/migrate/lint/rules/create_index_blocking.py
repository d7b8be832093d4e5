"""A19001 create-index-blocking: CREATE INDEX without CONCURRENTLY on an existing table."""

from __future__ import annotations

import re
from collections.abc import Iterator

from agent19.migrate.lint.rules._base import Hit, Rule, StatementContext, short

_CREATE_INDEX = re.compile(r"^\s*CREATE\s+(UNIQUE\s+)?INDEX\b", re.IGNORECASE)


def concurrent_sql(sql: str) -> str:
    return _CREATE_INDEX.sub(lambda m: f"CREATE {m.group(1) or ''}INDEX CONCURRENTLY", sql, count=1)


def check(ctx: StatementContext) -> Iterator[Hit]:
    if ctx.node != "IndexStmt" or ctx.fields.get("concurrent") or ctx.is_new(ctx.relation):
        return
    yield Hit(
        f"CREATE INDEX takes a ShareLock on {short(ctx.relation)}: every INSERT, UPDATE and DELETE waits "
        "until the whole index is built, which grows with the table",
        f"{concurrent_sql(ctx.sql)};  -- outside a transaction block; if it fails, DROP INDEX CONCURRENTLY the "
        "INVALID index it leaves and retry",
    )


RULE = Rule(
    code="A19001",
    name="create-index-blocking",
    title="CREATE INDEX without CONCURRENTLY blocks writes",
    severity="error",
    why="A plain CREATE INDEX holds a ShareLock on the table for the whole build: reads go on, but every "
    "write waits, for minutes to hours on a large table.",
    alternative="CREATE INDEX CONCURRENTLY takes a ShareUpdateExclusiveLock, which lets reads and writes "
    "continue. It must run outside a transaction block, takes longer, and leaves an INVALID index if it "
    "fails (drop it and retry). A table created in the same migration needs no CONCURRENTLY.",
    bad="CREATE INDEX orders_customer_id_idx ON orders (customer_id);",
    good="CREATE INDEX CONCURRENTLY orders_customer_id_idx ON orders (customer_id);",
    check=check,
    nodes=("IndexStmt",),
    aliases=("require-concurrent-index-creation",),  # squawk's rule name(s)
)
