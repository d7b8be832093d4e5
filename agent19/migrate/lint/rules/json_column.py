"""A19023 json-column: a column of type json (rather than jsonb)."""

from __future__ import annotations

from collections.abc import Iterator

from agent19.migrate.lint.rules._base import Hit, Rule, StatementContext, type_name


def check(ctx: StatementContext) -> Iterator[Hit]:
    existing = ctx.node == "AlterTableStmt" and not ctx.is_new(ctx.relation)
    for fields in ctx.nodes("ColumnDef"):
        if type_name(fields.get("typeName", {})) == "json":
            col = fields.get("colname")
            clients = (" — and on an existing table, queries already running against it with SELECT DISTINCT, "
                       "UNION or GROUP BY over its columns start failing (\"could not identify an equality operator "
                       "for type json\")") if existing else ""
            yield Hit(
                f"column {col or ''} is json: stored as text, reparsed on every access, no equality operator "
                f"(so no DISTINCT, GROUP BY or UNIQUE) and no GIN indexing{clients}".replace("column  ", "column "),
                "use jsonb instead of json (unless you must keep key order, duplicate keys or exact whitespace)",
                severity="warning" if existing else None,
            )


RULE = Rule(
    code="A19023",
    name="json-column",
    aliases=("prefer-jsonb",),
    title="Prefer jsonb to json",
    severity="info",
    why="json keeps the input text verbatim and reparses it for every operation; it has no equality operator "
    "and cannot be indexed with GIN. jsonb is parsed once, supports containment operators and indexes. Added "
    "to an existing table it is a warning: running queries that use SELECT DISTINCT (or UNION, GROUP BY) over "
    "the table's columns fail from then on.",
    alternative="Use jsonb, unless the exact text (key order, duplicates, whitespace) must be preserved.",
    bad="ALTER TABLE orders ADD COLUMN meta json;",
    good="ALTER TABLE orders ADD COLUMN meta jsonb;",
    check=check,
)
