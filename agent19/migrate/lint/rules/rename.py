"""A19013 rename: renaming a table or column, or moving a table to another schema, under running clients."""

from __future__ import annotations

from collections.abc import Iterator

from agent19.migrate.lint.rules._base import Hit, Rule, StatementContext, ident, rel_name, short


def check(ctx: StatementContext) -> Iterator[Hit]:
    f = ctx.fields
    if ctx.node == "AlterObjectSchemaStmt" and f.get("objectType") in ("OBJECT_TABLE", "OBJECT_VIEW", "OBJECT_MATVIEW"):
        rel = rel_name(f.get("relation", {}))
        if rel and not ctx.is_new(rel):
            old, schema = short(rel), ident(f.get("newschema", ""))
            yield Hit(
                f"moving {old} to schema {schema} breaks every running client that names it by its old schema "
                "or finds it through search_path",
                f"ALTER TABLE {old} SET SCHEMA {schema};\nCREATE VIEW {old} AS SELECT * FROM "
                f"{schema}.{ident(rel.rsplit('.', 1)[-1])};  -- old clients keep working; drop it once none uses it",
            )
        return
    if ctx.node != "RenameStmt" or ctx.is_new(ctx.relation):
        return
    kind = f.get("renameType")
    if kind in ("OBJECT_TABLE", "OBJECT_VIEW", "OBJECT_MATVIEW") and ctx.relation:
        old, new = short(ctx.relation), ident(f.get("newname", ""))
        yield Hit(
            f"renaming {old} to {new} breaks every running client that still uses the old name",
            f"ALTER TABLE {old} RENAME TO {new};\nCREATE VIEW {old} AS SELECT * FROM {new};  "
            "-- simple views are updatable: old clients keep working\n"
            f"-- once every client uses {new}: DROP VIEW {old};",
        )
    elif kind == "OBJECT_COLUMN":
        table, old, new = short(ctx.relation), ident(f.get("subname", "")), ident(f.get("newname", ""))
        yield Hit(
            f"renaming column {old} to {new} breaks every running client that reads or writes {old}",
            f"-- expand and contract instead:\nALTER TABLE {table} ADD COLUMN {new} <type of {old}>;\n"
            f"-- a trigger copies {old} to {new} (and back) on write; backfill {new} in batches;\n"
            f"-- move the clients to {new}; then, in a later migration: ALTER TABLE {table} DROP COLUMN {old};",
        )


RULE = Rule(
    code="A19013",
    name="rename",
    title="Renaming a table or column, or moving a table to another schema, breaks running clients",
    severity="error",
    why="The rename is instant, but application servers still running the old code (during a rolling deploy, "
    "or ones you forgot) fail on every query that uses the old name.",
    alternative="Expand and contract: for a table, rename it and leave an updatable view with the old name; "
    "for a column, add the new column, keep both in step with a trigger, move the clients, then drop the old one.",
    bad="ALTER TABLE orders RENAME COLUMN total TO amount;",
    good="ALTER TABLE orders ADD COLUMN amount numeric(12,2);",
    check=check,
    aliases=("renaming-column", "renaming-table"),  # squawk's rule name(s)
)
