"""A19017 delete-without-where: DELETE of every row of an existing table."""

from __future__ import annotations

from collections.abc import Iterator

from agent19.migrate.lint.rules._base import Hit, Rule, StatementContext, every_row, short


def check(ctx: StatementContext) -> Iterator[Hit]:
    if ctx.node != "DeleteStmt" or ctx.is_new(ctx.relation) or (how := every_row(ctx)) is None:
        return
    table = short(ctx.relation)
    yield Hit(
        f"DELETE {how} removes every row of {table}",
        f"-- say which rows, and delete in batches (repeat until 0 rows):\n"
        f"DELETE FROM {table} WHERE ctid IN (SELECT ctid FROM {table} WHERE <condition> LIMIT 10000);",
    )


RULE = Rule(
    code="A19017",
    name="delete-without-where",
    title="DELETE without WHERE removes every row",
    severity="error",
    why="A DELETE with no WHERE empties the table, row by row: all data is lost and, on a large table, it holds "
    "row locks on everything for a long time and bloats the table.",
    alternative="State which rows to delete, delete them in batches, back up first.",
    bad="DELETE FROM orders;",
    good="DELETE FROM orders WHERE created_at < '2015-01-01';",
    check=check,
    nodes=("DeleteStmt",),
)
