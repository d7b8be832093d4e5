"""A19027 enum-value-change: renaming enum values, inserting them mid-order, using a new one too early."""

from __future__ import annotations

from collections.abc import Iterator

from agent19.migrate.rules._base import Hit, Rule, StatementContext
from agent19.sqltree import qualified_name


def check(ctx: StatementContext) -> Iterator[Hit]:
    f = ctx.fields
    if ctx.node != "AlterEnumStmt":
        return
    enum = qualified_name(f.get("typeName", []))
    if f.get("oldVal"):
        yield Hit(
            f"renaming value '{f['oldVal']}' of enum {enum} breaks every client and stored query that still "
            "writes or compares the old label",
            f"ALTER TYPE {enum} ADD VALUE IF NOT EXISTS '{f.get('newVal')}';  -- move clients and rows to the new "
            "value first; enum values cannot be dropped, so keep the old one unused",
        )
        return
    new = f.get("newVal", "")
    if f.get("newValNeighbor"):
        where = "BEFORE" if f.get("newValIsAfter") is False else "AFTER"
        yield Hit(
            f"'{new}' is inserted {where.lower()} '{f['newValNeighbor']}': enum order is sort order, so ORDER BY, "
            f"<, > and range checks on {enum} columns change meaning for existing rows and queries",
            f"ALTER TYPE {enum} ADD VALUE '{new}';  -- appended last, if the order does not matter to any query",
            severity="warning",
        )
    if ctx.tx_group is not None and ctx.major >= 12:
        groups = ctx.migration.transaction_groups()
        me = ctx.statement.index
        for s, g in zip(ctx.migration.statements[me + 1:], groups[me + 1:], strict=False):
            if g == ctx.tx_group and f"'{new}'" in s.sql:
                yield Hit(
                    f"'{new}' is used at line {s.line} in the same transaction that adds it: PostgreSQL refuses "
                    "(\"unsafe use of new value\") until the ALTER TYPE commits",
                    f"ALTER TYPE {enum} ADD VALUE '{new}';\nCOMMIT;  -- then use it in the next transaction",
                )
                return


RULE = Rule(
    code="A19027",
    name="enum-value-change",
    title="Enum value renamed, inserted mid-order, or used in the transaction that adds it",
    severity="error",
    why="Enum labels are part of the contract with clients: RENAME VALUE breaks writers of the old label. "
    "Values sort in declaration order, so ADD VALUE … BEFORE/AFTER changes the result of comparisons and "
    "ORDER BY (warning). From PostgreSQL 12, ADD VALUE can run in a transaction, but the new value cannot "
    "be used until that transaction commits (before 12 it cannot run in one at all: see A19010).",
    alternative="Append new values (ADD VALUE without BEFORE/AFTER) in their own transaction; never rename or "
    "reuse labels; use a lookup table when the set of values changes often.",
    bad="BEGIN;\nALTER TYPE order_status ADD VALUE 'refunded';\nUPDATE orders SET status = 'refunded' "
    "WHERE id = 1;\nCOMMIT;",
    good="ALTER TYPE order_status ADD VALUE 'refunded';\nUPDATE orders SET status = 'refunded' WHERE id = 1;",
    check=check,
)
