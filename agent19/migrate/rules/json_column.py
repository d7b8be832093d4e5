"""A19023 json-column: a column of type json (rather than jsonb)."""

from __future__ import annotations

from collections.abc import Iterator

from agent19.migrate.rules._base import Hit, Rule, StatementContext, type_name


def check(ctx: StatementContext) -> Iterator[Hit]:
    for node, fields in ctx.walk():
        if node == "ColumnDef" and type_name(fields.get("typeName", {})) == "json":
            col = fields.get("colname")
            yield Hit(
                f"column {col or ''} is json: stored as text, reparsed on every access, no equality operator "
                "(so no DISTINCT, GROUP BY or UNIQUE) and no GIN indexing".replace("column  ", "column "),
                "use jsonb instead of json (unless you must keep key order, duplicate keys or exact whitespace)",
            )


RULE = Rule(
    code="A19023",
    name="json-column",
    aliases=("prefer-jsonb",),
    group="style",
    title="Prefer jsonb to json (style)",
    severity="warning",
    why="json keeps the input text verbatim and reparses it for every operation; it has no equality operator "
    "and cannot be indexed with GIN. jsonb is parsed once, supports containment operators and indexes.",
    alternative="Use jsonb, unless the exact text (key order, duplicates, whitespace) must be preserved.",
    bad="ALTER TABLE orders ADD COLUMN meta json;",
    good="ALTER TABLE orders ADD COLUMN meta jsonb;",
    check=check,
)
