"""A19040 prefer-bigint-keys (style): int/smallint for key columns."""

from __future__ import annotations

from collections.abc import Iterator

from agent19.migrate.lint.rules._base import Hit, StatementContext
from agent19.migrate.lint.rules._style import declared_columns, style_rule

SMALL = {"int4": "integer", "int2": "smallint", "serial": "serial", "serial4": "serial", "smallserial": "smallserial",
         "serial2": "smallserial"}
BIG = {"int4": "bigint", "int2": "bigint", "serial": "bigserial", "serial4": "bigserial", "smallserial": "bigserial",
       "serial2": "bigserial"}


def check(ctx: StatementContext) -> Iterator[Hit]:
    for col in declared_columns(ctx):
        if col.type in SMALL and col.key and not (col.primary and ctx.node == "CreateStmt"):  # PKs: A19022
            yield Hit(f"key column {col.label} is {SMALL[col.type]}: keys outgrow 32 bits (2,147,483,647) and "
                      "widening one later rewrites the table and every table that references it",
                      f"declare {col.name} as {BIG[col.type]}")


RULE = style_rule(
    code="A19040",
    name="prefer-bigint-keys",
    aliases=("prefer-bigint-over-int", "prefer-bigint-over-smallint", "prefer-big-int"),
    title="Key columns should be bigint, not integer or smallint (style)",
    why="Identifiers and the columns that reference them grow with the data; a 32-bit key can run out, and "
    "widening it is a rewrite of each table involved. bigint costs 4 more bytes per row. (Primary keys of new "
    "tables are A19022.)",
    alternative="Use bigint (bigint identity for generated keys) for key and foreign-key columns.",
    bad="ALTER TABLE order_lines ADD COLUMN product_id integer REFERENCES products (id);",
    good="ALTER TABLE order_lines ADD COLUMN product_id bigint REFERENCES products (id);",
    check=check,
)
