"""A19010 concurrently-in-transaction: a statement that cannot run in a transaction block, inside one."""

from __future__ import annotations

from collections.abc import Iterator

from agent19.migrate.layouts.files import has_non_transactional
from agent19.migrate.lint.rules._base import Hit, Rule, StatementContext


def check(ctx: StatementContext) -> Iterator[Hit]:
    if ctx.tx_group is None:
        return
    refuses = has_non_transactional([ctx.statement]) or any(not o.in_transaction for o in ctx.operations)
    if ctx.node == "AlterEnumStmt" and ctx.major < 12 and not ctx.fields.get("oldVal"):
        refuses = True
    if not refuses:
        return
    how = {
        "flyway": "Flyway runs such a file outside a transaction only when every statement in it can; "
        "move it to a migration file of its own",
        "golang-migrate": "golang-migrate sends the file as one multi-statement query, which PostgreSQL runs as "
        "one transaction; put it in a migration file of its own",
        "prisma": "Prisma runs migration.sql as one script (one transaction); put it in a migration of its own",
    }.get(ctx.migration.convention, "run it outside BEGIN ... COMMIT")
    yield Hit(
        "this statement cannot run inside a transaction block, and here it does: it fails with "
        "\"cannot run inside a transaction block\"",
        f"-- {how}:\n{ctx.sql};",
    )


RULE = Rule(
    code="A19010",
    name="concurrently-in-transaction",
    title="CONCURRENTLY (and other non-transactional statements) inside a transaction block fail",
    severity="error",
    why="CREATE/DROP INDEX CONCURRENTLY, REINDEX CONCURRENTLY, DETACH PARTITION CONCURRENTLY, VACUUM, and ALTER "
    "TYPE ... ADD VALUE before PostgreSQL 12 refuse to run in a transaction block. Migration tools often wrap "
    "a whole file in one (golang-migrate and Prisma send it as one multi-statement query, which PostgreSQL "
    "runs as one implicit transaction).",
    alternative="Put the statement in a migration of its own, outside BEGIN ... COMMIT.",
    bad="BEGIN;\nCREATE INDEX CONCURRENTLY orders_customer_id_idx ON orders (customer_id);\nCOMMIT;",
    good="CREATE INDEX CONCURRENTLY orders_customer_id_idx ON orders (customer_id);",
    check=check,
    aliases=("ban-concurrent-index-creation-in-transaction",),  # squawk's rule name(s)
)
