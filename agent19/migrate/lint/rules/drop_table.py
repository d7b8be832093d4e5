"""A19015 drop-table: dropping a table (or a view: its readers fail) that exists before this migration."""

from __future__ import annotations

from collections.abc import Iterator

from agent19.migrate.lint.rules._base import Hit, Rule, StatementContext, rel_name, short


def check(ctx: StatementContext) -> Iterator[Hit]:
    f = ctx.fields
    if ctx.node != "DropStmt" or f.get("removeType") not in ("OBJECT_TABLE", "OBJECT_MATVIEW", "OBJECT_VIEW"):
        return
    objects = f.get("objects", [])
    # the tables as the classification resolved them, before this DROP freed their names (resolved again now, an
    # unqualified name would find the next schema of the search_path holding one)
    resolved = ctx.operations[0].tables[:len(objects)] if ctx.operations else []
    for i, obj in enumerate(objects):
        names = [n.get("String", {}).get("sval", "") for n in obj.get("List", {}).get("items", [])]
        table = resolved[i] if len(resolved) == len(objects) else rel_name(
            {"schemaname": names[0], "relname": names[1]} if len(names) > 1 else {"relname": names[-1]})
        if ctx.is_new(table):
            continue
        if f.get("removeType") == "OBJECT_VIEW":  # no rows lost, but its readers fail
            yield Hit(f"dropping view {short(table)}: running clients that query it fail",
                      "-- drop it in a later release, once no client (report, service, old deploy) queries it",
                      severity="warning")
            continue
        yield Hit(
            f"dropping {short(table)} loses all its rows, and running clients that use it fail",
            f"-- rename it away first and drop it in a later release, once nothing has failed:\n"
            f"ALTER TABLE {short(table)} RENAME TO {table.rpartition('.')[2]}_deprecated;\n"
            f"-- or keep a dump: pg_dump --table={table} --format=custom > {table}.dump",
        )


RULE = Rule(
    code="A19015",
    name="drop-table",
    title="Dropping a table loses its data",
    severity="error",
    why="DROP TABLE removes the rows for good (only a backup brings them back) and breaks any client still "
    "using the table; it also waits for an AccessExclusiveLock.",
    alternative="Stop every client from using the table first; rename it (cheap to undo) and drop it in a "
    "later release; keep a dump.",
    bad="DROP TABLE legacy_orders;",
    good="CREATE TABLE scratch (id bigint);\nDROP TABLE scratch;",
    check=check,
    nodes=("DropStmt",),
    aliases=("ban-drop-table",),  # squawk's rule name(s)
)
