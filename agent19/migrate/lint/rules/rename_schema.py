"""A19034 rename-schema: ALTER SCHEMA … RENAME under running clients."""

from __future__ import annotations

from collections.abc import Iterator

from agent19.migrate.lint.rules._base import Hit, Rule, StatementContext
from agent19.migrate.patterns.sqlnames import ident


def check(ctx: StatementContext) -> Iterator[Hit]:
    f = ctx.fields
    if ctx.node != "RenameStmt" or f.get("renameType") != "OBJECT_SCHEMA":
        return
    old, new = ident(f.get("subname", "")), ident(f.get("newname", ""))
    yield Hit(
        f"renaming schema {old} to {new} breaks every client, view body in other schemas' code, function and "
        f"search_path that names {old}: all of them at once",
        f"-- create {new} and move objects one at a time (ALTER TABLE ... SET SCHEMA {new}), leaving views in {old} "
        f"for the clients that still use the old names; drop {old} once nothing uses it",
    )


RULE = Rule(
    code="A19034",
    name="rename-schema",
    title="Renaming a schema breaks every client that names it",
    severity="error",
    why="ALTER SCHEMA ... RENAME is instant, but every query, function body, role search_path and connection "
    "option that names the old schema fails from that moment, across every table in it.",
    alternative="Create the new schema and move objects gradually, leaving views under the old names until "
    "every client has moved.",
    bad="ALTER SCHEMA billing RENAME TO invoicing;",
    good="CREATE SCHEMA invoicing;",
    check=check,
    nodes=("RenameStmt",),
)
