"""A19020 refresh-matview-blocking: REFRESH MATERIALIZED VIEW without CONCURRENTLY."""

from __future__ import annotations

import re
from collections.abc import Iterator

from agent19.migrate.lint.rules._base import Hit, Rule, StatementContext, short

_REFRESH = re.compile(r"^\s*REFRESH\s+MATERIALIZED\s+VIEW\b", re.IGNORECASE)


def check(ctx: StatementContext) -> Iterator[Hit]:
    f = ctx.fields
    if ctx.node != "RefreshMatViewStmt" or f.get("concurrent") or f.get("skipData") or ctx.is_new(ctx.relation):
        return
    yield Hit(
        f"REFRESH MATERIALIZED VIEW holds an AccessExclusiveLock on {short(ctx.relation)} while the query reruns: "
        "nobody can read the view meanwhile",
        f"-- needs a unique index on the view (CREATE UNIQUE INDEX CONCURRENTLY ... ON {short(ctx.relation)} (...));\n"
        + _REFRESH.sub("REFRESH MATERIALIZED VIEW CONCURRENTLY", ctx.sql, count=1) + ";",
    )


RULE = Rule(
    code="A19020",
    name="refresh-matview-blocking",
    title="REFRESH MATERIALIZED VIEW without CONCURRENTLY blocks reads of the view",
    severity="error",
    why="A plain refresh replaces the view's contents under an AccessExclusiveLock: every SELECT on the view "
    "waits for the whole query to rerun.",
    alternative="REFRESH MATERIALIZED VIEW CONCURRENTLY takes an ExclusiveLock, which lets reads go on; it needs "
    "a unique index on the view and a populated view.",
    bad="REFRESH MATERIALIZED VIEW daily_sales;",
    good="REFRESH MATERIALIZED VIEW CONCURRENTLY daily_sales;",
    check=check,
    nodes=("RefreshMatViewStmt",),
)
