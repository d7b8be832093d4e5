"""A19003 reindex-blocking: REINDEX without CONCURRENTLY."""

from __future__ import annotations

import re
from collections.abc import Iterator

from agent19.migrate.lint.rules._base import Hit, Rule, StatementContext

_REINDEX = re.compile(r"^\s*REINDEX\s+(\([^)]*\)\s*)?(INDEX|TABLE|SCHEMA|DATABASE|SYSTEM)\b", re.IGNORECASE)


def _concurrent(fields: dict[str, object]) -> bool:
    params = fields.get("params") or []
    return any(isinstance(p, dict) and p.get("DefElem", {}).get("defname") == "concurrently" for p in params)


def check(ctx: StatementContext) -> Iterator[Hit]:
    if ctx.node != "ReindexStmt" or _concurrent(ctx.fields):
        return
    if ctx.relation and ctx.is_new(ctx.relation):
        return  # a table or index created earlier in the linted set: nobody waits on it
    fix = None
    if ctx.major >= 12:
        fix = _REINDEX.sub(lambda m: f"REINDEX {m.group(2).upper()} CONCURRENTLY", ctx.sql, count=1) + ";"
    yield Hit(
        "REINDEX locks the table against writes (ShareLock) and the index against every use "
        "(AccessExclusiveLock) until the rebuild ends, which grows with the table"
        + ("" if fix else "; PostgreSQL before 12 has no REINDEX CONCURRENTLY: build a new index "
           "CONCURRENTLY, then drop the old one"),
        fix,
    )


RULE = Rule(
    code="A19003",
    name="reindex-blocking",
    title="REINDEX without CONCURRENTLY blocks writes, and queries that use the index",
    severity="error",
    why="REINDEX rebuilds from scratch while holding a ShareLock on the table (writes wait) and an "
    "AccessExclusiveLock on the index (queries that would use it wait).",
    alternative="REINDEX ... CONCURRENTLY (PostgreSQL 12+) rebuilds beside the old index and swaps; before 12, "
    "CREATE INDEX CONCURRENTLY a copy and DROP INDEX CONCURRENTLY the old one.",
    bad="REINDEX INDEX orders_customer_id_idx;",
    good="REINDEX INDEX CONCURRENTLY orders_customer_id_idx;",
    check=check,
    nodes=("ReindexStmt",),
)
