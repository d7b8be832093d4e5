"""A19027 enum-value-change: renaming enum values, using a new one in the transaction that adds it."""

from __future__ import annotations

from collections.abc import Iterator

from agent19.migrate.lint.rules._base import Hit, Rule, StatementContext
from agent19.migrate.patterns.sqlnames import literal
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
            f"ALTER TYPE {enum} ADD VALUE IF NOT EXISTS {literal(f.get('newVal', ''))};  -- move clients and rows to "
            "the new value first; enum values cannot be dropped, so keep the old one unused",
        )
        return
    new = f.get("newVal", "")
    # ADD VALUE … BEFORE/AFTER only places the new label: existing labels keep their order, no table is
    # locked or rewritten (observed: tests/test_lint_history.py), so it is not flagged.
    if ctx.tx_group is not None and ctx.major >= 12:
        groups = ctx.migration.transaction_groups()
        me = ctx.statement.index
        for s, g in zip(ctx.migration.statements[me + 1:], groups[me + 1:], strict=False):
            if g == ctx.tx_group and literal(new) in s.sql:
                yield Hit(
                    f"'{new}' is used at line {s.line} in the same transaction that adds it: PostgreSQL refuses "
                    "(\"unsafe use of new value\") until the ALTER TYPE commits",
                    f"ALTER TYPE {enum} ADD VALUE {literal(new)};\nCOMMIT;  -- then use it in the next transaction",
                )
                return


RULE = Rule(
    code="A19027",
    name="enum-value-change",
    title="Enum value renamed, or used in the transaction that adds it",
    severity="error",
    why="Enum labels are part of the contract with clients: RENAME VALUE breaks writers of the old label. "
    "ADD VALUE (appended, or placed with BEFORE/AFTER) locks no table and rewrites nothing. From PostgreSQL 12 "
    "it can run in a transaction, but the new value cannot be used until that transaction commits (before 12 "
    "it cannot run in one at all: see A19010).",
    alternative="Append new values (ADD VALUE without BEFORE/AFTER) in their own transaction; never rename or "
    "reuse labels; use a lookup table when the set of values changes often.",
    bad="BEGIN;\nALTER TYPE order_status ADD VALUE 'refunded';\nUPDATE orders SET status = 'refunded' "
    "WHERE id = 1;\nCOMMIT;",
    good="ALTER TYPE order_status ADD VALUE 'refunded';\nUPDATE orders SET status = 'refunded' WHERE id = 1;",
    check=check,
    nodes=("AlterEnumStmt",),
)
