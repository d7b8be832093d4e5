"""A19033 drop-database-or-schema: DROP DATABASE, and DROP SCHEMA of a schema that exists before the set."""

from __future__ import annotations

from collections.abc import Iterator

from agent19.migrate.lint.rules._base import Hit, Rule, StatementContext
from agent19.migrate.patterns.sqlnames import ident, literal


def _schemas(ctx: StatementContext) -> list[str]:
    return [o.get("String", {}).get("sval", "") for o in ctx.fields.get("objects", []) if "String" in o]


def _created_schemas(ctx: StatementContext) -> set[str]:
    """Schemas created earlier in the linted set (``CREATE SCHEMA`` seen before this statement)."""
    return {prev.fields.get("schemaname", "") for prev in ctx.state.seen if prev.node == "CreateSchemaStmt"}


def check(ctx: StatementContext) -> Iterator[Hit]:
    f = ctx.fields
    if ctx.node == "DropdbStmt":
        db = ident(f.get("dbname", ""))
        yield Hit(
            f"DROP DATABASE {db} deletes every table, row and object in it at once, with no undo but a backup; "
            "every session connected to it fails (it even refuses to run while one is connected, unless FORCE)",
            f"-- a migration should not drop databases; if it must go, take a backup first and drop it by hand:\n"
            f"-- pg_dump --format=custom --dbname={db} --file={f.get('dbname', 'db')}.dump",
        )
        return
    if ctx.node != "DropStmt" or f.get("removeType") != "OBJECT_SCHEMA":
        return
    new = _created_schemas(ctx)
    for schema in (s for s in _schemas(ctx) if s not in new):
        name = ident(schema)
        if f.get("behavior") == "DROP_CASCADE":
            yield Hit(
                f"DROP SCHEMA {name} CASCADE drops every table, view, function and type in it, with their rows - "
                "and the objects in other schemas that depend on them",
                f"-- list what it would drop, and drop those objects one by one, each reviewed:\n"
                f"SELECT relname, relkind FROM pg_class WHERE relnamespace = {literal(name)}::regnamespace;",
            )
        else:
            yield Hit(
                f"DROP SCHEMA {name} fails unless the schema is empty, and clients or search_path entries that "
                "name it break",
                f"-- make sure nothing uses it first, then:\nDROP SCHEMA IF EXISTS {name};",
                severity="warning",
            )


RULE = Rule(
    code="A19033",
    name="drop-database-or-schema",
    title="DROP DATABASE, DROP SCHEMA: whole namespaces of data lost",
    severity="error",
    why="DROP DATABASE and DROP SCHEMA ... CASCADE remove every object and row they contain in one statement; "
    "only a backup brings them back. A plain DROP SCHEMA fails on a schema that still holds objects "
    "(warning), and breaks clients that name it.",
    alternative="Keep drops of whole databases out of migrations; drop a schema's objects one by one after "
    "checking each is unused, then the empty schema.",
    bad="DROP SCHEMA billing CASCADE;",
    good="CREATE SCHEMA scratch;\nDROP SCHEMA scratch CASCADE;",
    check=check,
    nodes=("DropdbStmt", "DropStmt"),
    aliases=("ban-drop-database",),  # squawk's rule name(s)
)
