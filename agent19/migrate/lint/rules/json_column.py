"""A19023 json-column: a column of type json (rather than jsonb)."""

from __future__ import annotations

from collections.abc import Iterator

from pglast import ast

from agent19.migrate.lint.rules._base import Hit, Rule, StatementContext, deparse, type_name, typed_tree
from agent19.migrate.patterns.sqlnames import comment, ident


def with_jsonb(sql: str) -> str:
    """The statement with every json column jsonb (built on its syntax tree; nothing else changes)."""
    # here, not at the top: every lint loads each rule; pglast's visitors (and its printers) load for a json column
    from pglast.visitors import Visitor

    class Jsonb(Visitor):  # type: ignore[misc]
        def visit_ColumnDef(self, ancestors: object, node: ast.ColumnDef) -> None:
            if node.typeName is not None and node.typeName.names[-1].sval == "json":
                node.typeName = ast.TypeName(names=(ast.String("jsonb"),), arrayBounds=node.typeName.arrayBounds)

    tree = typed_tree(sql)
    Jsonb()(tree)
    return deparse(tree)


def check(ctx: StatementContext) -> Iterator[Hit]:
    if not ctx.statement.may_contain("json"):  # a type name json is a string "json" in the tree's text
        return
    existing = ctx.node == "AlterTableStmt" and not ctx.is_new(ctx.relation)
    fix: str | None = None
    for fields in ctx.nodes("ColumnDef"):
        if type_name(fields.get("typeName", {})) == "json":
            col = fields.get("colname")
            clients = (" - and on an existing table, queries already running against it with SELECT DISTINCT, "
                       "UNION or GROUP BY over its columns start failing (\"could not identify an equality operator "
                       "for type json\")") if existing else ""
            fix = fix or "\n".join([comment("jsonb, unless you must keep key order, duplicate keys or exact "
                                             "whitespace:"), with_jsonb(ctx.sql) + ";"])
            yield Hit(
                f"column {ident(col) + ' ' if col else ''}is json: stored as text, reparsed on every access, no "
                f"equality operator (so no DISTINCT, GROUP BY or UNIQUE) and no GIN indexing{clients}",
                fix,
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
