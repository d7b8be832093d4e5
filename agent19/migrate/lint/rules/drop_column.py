"""A19014 drop-column: dropping a column (data loss; running clients break)."""

from __future__ import annotations

from collections.abc import Iterator

from agent19.migrate.lint.rules._base import Hit, Rule, StatementContext, ident, short


def _key(ctx: StatementContext) -> tuple[str, str]:
    """The columns that identify a row for the backup copy, and a note when they had to be guessed."""
    t = ctx.table(ctx.relation)
    if t is not None:
        pk = next((c for c in t.constraints if c.type == "primary_key"), None)
        if pk and pk.columns:
            return ", ".join(ident(c) for c in pk.columns), ""
        return "ctid", f"  -- {short(ctx.relation)} has no primary key: ctid identifies rows only until they change"
    return "<primary key>", (f"  -- <primary key>: the table's key columns; find them with \\d {short(ctx.relation)} "
                             "or pass --dsn so agent19 fills them in")


def check(ctx: StatementContext) -> Iterator[Hit]:
    if ctx.is_new(ctx.relation):
        return
    for sub, subtype, cmd in ctx.alter_cmds():
        op = ctx.op(sub)
        if subtype == "AT_DropColumn" and not (op is not None and op.created_here):  # added earlier: loses nothing
            col = cmd.get("name", "")
            base = ctx.relation.rpartition(".")[2] if ctx.relation else "t"
            key, note = _key(ctx)
            yield Hit(
                f"dropping column {col} of {short(ctx.relation)} loses its data, and running clients that still "
                "select or insert it fail",
                f"-- 1. stop every client from using {ident(col)} (deploy that first);\n"
                f"-- 2. keep a copy if it may be needed: CREATE TABLE {ident(f'{base}_{col}_backup')}"
                f" AS SELECT {key}, {ident(col)} FROM {short(ctx.relation)};{note}\n"
                f"-- 3. then drop it in a later migration, with lock_timeout set:\n{ctx.sql};",
            )


RULE = Rule(
    code="A19014",
    name="drop-column",
    title="Dropping a column loses data and breaks clients that still use it",
    severity="error",
    why="DROP COLUMN is instant (the column is only marked dropped), but the data is gone for good, and any "
    "running application code that names the column - or does SELECT * into a fixed structure - fails.",
    alternative="First deploy code that no longer uses the column (for ORMs, mark it ignored), back the data up "
    "if it may be needed, then drop the column in a later migration.",
    bad="ALTER TABLE orders DROP COLUMN legacy_code;",
    good="-- the column is dropped in a later release, after no client uses it\nSELECT 1;",
    check=check,
    nodes=("AlterTableStmt",),
    subcommands=("AT_DropColumn",),
    aliases=("ban-drop-column",),  # squawk's rule name(s)
)
