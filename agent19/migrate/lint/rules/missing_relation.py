"""A19049 missing-relation: connected, the statement names a table or view that will not exist when it runs."""

from __future__ import annotations

from collections.abc import Iterator

from agent19.migrate.lint.rules._base import Hit, Rule, StatementContext


def check(ctx: StatementContext) -> Iterator[Hit]:
    for m in ctx.missing:  # found before the statement was classified (agent19.migrate.classification.existence)
        where = f" (search_path: {', '.join(m.path)})" if m.path else ""
        what = "was dropped or renamed away earlier in this migration" if m.gone else "does not exist"
        yield Hit(f"{m.kind} {m.name} {what}{where}: the migration would fail here",
                  f"-- check the name{' and the schema' if m.path else ''}, create {m.name} earlier in the migration, "
                  "or lint against the database the migration is for")


RULE = Rule(
    code="A19049",
    name="missing-relation",
    title="The statement names a table that does not exist (connected)",
    severity="error",
    why="With a database connected, lint knows its tables: a statement that alters, drops, indexes, truncates, "
    "writes or references a table or view that neither exists (looked up on the login's search_path, or the "
    "migration's SET search_path) nor is created earlier in the migration fails when it runs - a typo, the wrong "
    "schema or the wrong database. IF EXISTS statements are left alone; offline nothing is known.",
    alternative="Name the table as the database has it (schema-qualified, or on the search_path the migration runs "
    "with), create it earlier in the migration, or point --dsn at the database the migration is for.",
    bad="ALTER TABLE nosuch ADD COLUMN c int;",
    good="CREATE TABLE things (id bigint);\nALTER TABLE things ADD COLUMN c int;",
    check=check,
    live=True,
)
