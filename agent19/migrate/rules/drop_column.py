"""A19014 drop-column: dropping a column (data loss; running clients break)."""

from __future__ import annotations

from collections.abc import Iterator

from agent19.migrate.rules._base import Hit, Rule, StatementContext, ident, short


def check(ctx: StatementContext) -> Iterator[Hit]:
    if ctx.is_new(ctx.relation):
        return
    for _, subtype, cmd in ctx.alter_cmds():
        if subtype == "AT_DropColumn":
            col = cmd.get("name", "")
            base = ctx.relation.rpartition(".")[2] if ctx.relation else "t"
            yield Hit(
                f"dropping column {col} of {short(ctx.relation)} loses its data, and running clients that still "
                "select or insert it fail",
                f"-- 1. stop every client from using {ident(col)} (deploy that first);\n"
                f"-- 2. keep a copy if it may be needed: CREATE TABLE {base}_{col}_backup"
                f" AS SELECT <primary key>, {ident(col)} FROM {short(ctx.relation)};\n"
                f"-- 3. then drop it in a later migration, with lock_timeout set:\n{ctx.sql};",
            )


RULE = Rule(
    code="A19014",
    name="drop-column",
    title="Dropping a column loses data and breaks clients that still use it",
    severity="error",
    why="DROP COLUMN is instant (the column is only marked dropped), but the data is gone for good, and any "
    "running application code that names the column — or does SELECT * into a fixed structure — fails.",
    alternative="First deploy code that no longer uses the column (for ORMs, mark it ignored), back the data up "
    "if it may be needed, then drop the column in a later migration.",
    bad="ALTER TABLE orders DROP COLUMN legacy_code;",
    good="-- the column is dropped in a later release, after no client uses it\nSELECT 1;",
    check=check,
)
