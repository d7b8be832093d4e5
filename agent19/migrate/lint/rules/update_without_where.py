"""A19018 update-without-where: a full-table UPDATE as a data migration."""

from __future__ import annotations

from collections.abc import Iterator

from agent19.migrate.lint.rules._base import Hit, Rule, StatementContext, short, where_clause


def batched(sql: str, table: str, batch: int = 10_000) -> str:
    return (f"-- one batch per transaction, repeated until it updates 0 rows (e.g. from a script):\n"
            f"{sql}\n  WHERE ctid IN (SELECT ctid FROM {table} WHERE <row not yet migrated> LIMIT {batch});")


def check(ctx: StatementContext) -> Iterator[Hit]:
    if ctx.node != "UpdateStmt" or where_clause(ctx.fields) or ctx.is_new(ctx.relation):
        return
    table = short(ctx.relation)
    yield Hit(
        f"UPDATE without WHERE rewrites every row of {table} in one transaction: each row stays locked against "
        "other writers until it commits, the table doubles in size, and replicas fall behind",
        batched(ctx.sql, table),
    )


RULE = Rule(
    code="A19018",
    name="update-without-where",
    title="Full-table UPDATE in a migration: batch it",
    severity="error",
    why="An UPDATE of every row in one transaction writes a new version of each row, holds a row lock on each "
    "until COMMIT (concurrent updates of those rows wait), bloats the table and its indexes, and produces a "
    "burst of WAL that replicas must replay.",
    alternative="Backfill in batches of a few thousand rows, each in its own transaction, with a WHERE that "
    "skips migrated rows, outside the schema migration.",
    bad="UPDATE orders SET status = 'open';",
    good="UPDATE orders SET status = 'open' WHERE id BETWEEN 1 AND 10000 AND status IS NULL;",
    check=check,
)
