"""A19047 drop-not-null: dropping NOT NULL from a column of an existing table (squawk: ban-drop-not-null)."""

from __future__ import annotations

from collections.abc import Iterator

from agent19.migrate.lint.rules._base import Hit, Rule, StatementContext, ident, short


def check(ctx: StatementContext) -> Iterator[Hit]:
    if ctx.is_new(ctx.relation):
        return
    for _, subtype, cmd in ctx.alter_cmds():
        if subtype != "AT_DropNotNull":
            continue
        column = ident(cmd.get("name", ""))
        yield Hit(
            f"dropping NOT NULL from {short(ctx.relation or '?')}.{column}: clients that read the column and count "
            "on a value start getting NULLs once a writer stores one",
            f"-- first ship client code that handles NULL in {column}, then:\n{ctx.sql};",
        )


RULE = Rule(
    code="A19047",
    name="drop-not-null",
    title="Dropping NOT NULL lets NULLs reach clients that assume a value",
    severity="warning",
    why="The change is instant, but it widens the column's contract: code written against the old schema "
    "(reports, other services, the previous release during a rolling deploy) may not handle NULL.",
    alternative="Make every reader NULL-safe first, then drop the constraint in a later release.",
    bad="ALTER TABLE users ALTER COLUMN email DROP NOT NULL;",
    good="ALTER TABLE users ALTER COLUMN email SET DEFAULT '';",
    check=check,
    nodes=("AlterTableStmt",),
    subcommands=("AT_DropNotNull",),
    aliases=("ban-drop-not-null",),
)
