"""A19021 not-null-column-without-default: ADD COLUMN … NOT NULL with no default."""

from __future__ import annotations

from collections.abc import Iterator

from agent19.migrate.lint.rules._base import Hit, Rule, StatementContext, column_constraints, ident, short, type_name
from agent19.migrate.lint.rules.add_column_rewrite import SERIALS

_FILLS = {"CONSTR_DEFAULT", "CONSTR_IDENTITY", "CONSTR_GENERATED"}


def check(ctx: StatementContext) -> Iterator[Hit]:
    if ctx.is_new(ctx.relation):
        return
    for _, subtype, cmd in ctx.alter_cmds():
        coldef = cmd.get("def", {}).get("ColumnDef", {})
        if subtype != "AT_AddColumn":
            continue
        kinds = {c.get("contype") for c in column_constraints(coldef)}
        if "CONSTR_NOTNULL" not in kinds and "CONSTR_PRIMARY" not in kinds:
            continue
        if kinds & _FILLS or type_name(coldef.get("typeName", {})) in SERIALS:
            continue
        t = ctx.table(ctx.relation)
        if t is not None and t.row_estimate == 0:
            continue
        col, table = ident(coldef.get("colname", "c")), short(ctx.relation)
        yield Hit(
            f"adding NOT NULL column {col} with no default fails on {table} as soon as it has a row "
            "(\"column contains null values\")",
            f"-- add it with a constant default (instant since PostgreSQL 11):\n"
            f"ALTER TABLE {table} ADD COLUMN {col} <type> NOT NULL DEFAULT <constant>;\n"
            f"-- or add it nullable, backfill in batches, then SET NOT NULL through a validated CHECK",
        )


RULE = Rule(
    code="A19021",
    name="not-null-column-without-default",
    title="Adding a NOT NULL column without a default fails on a populated table",
    severity="error",
    why="Existing rows would get NULL in the new column, which NOT NULL forbids, so the statement fails on any "
    "table with rows — typically only in production, after it passed on an empty development database.",
    alternative="Give the column a constant default (stored in the catalog, no rewrite since PostgreSQL 11), or "
    "add it nullable, backfill, and add NOT NULL through a validated CHECK constraint.",
    bad="ALTER TABLE orders ADD COLUMN currency text NOT NULL;",
    good="ALTER TABLE orders ADD COLUMN currency text NOT NULL DEFAULT 'EUR';",
    check=check,
    aliases=("adding-required-field",),  # squawk's rule name(s)
)
