"""A19016 truncate: TRUNCATE of an existing table."""

from __future__ import annotations

from collections.abc import Iterator

from agent19.migrate.lint.rules._base import Hit, Rule, StatementContext, rel_name, short


def check(ctx: StatementContext) -> Iterator[Hit]:
    if ctx.node != "TruncateStmt":
        return
    tables = [rel_name(r.get("RangeVar", {})) for r in ctx.fields.get("relations", [])]
    tables = [t for t in tables if not ctx.is_new(t)]
    if tables:
        yield Hit(
            f"TRUNCATE deletes every row of {', '.join(short(t) for t in tables)} (and is not MVCC-safe: "
            "concurrent transactions see an empty table) under an AccessExclusiveLock",
            "-- if only some rows must go, DELETE them with a WHERE clause, in batches; keep a backup first",
        )


RULE = Rule(
    code="A19016",
    name="truncate",
    title="TRUNCATE deletes every row",
    severity="error",
    why="TRUNCATE removes all rows at once under an AccessExclusiveLock; it cannot be undone after COMMIT, and "
    "with CASCADE it empties referencing tables too.",
    alternative="Delete only what must go, with a WHERE clause, in batches, after a backup.",
    bad="TRUNCATE orders;",
    good="CREATE TABLE staging (id bigint);\nTRUNCATE staging;",
    check=check,
    nodes=("TruncateStmt",),
    aliases=("ban-truncate-cascade",),  # squawk's rule name(s)
)
