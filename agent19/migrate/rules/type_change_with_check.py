"""A19029 type-change-with-check: ALTER COLUMN TYPE on a column that CHECK constraints read."""

from __future__ import annotations

from collections.abc import Iterator

from agent19.migrate.rules._base import Hit, Rule, StatementContext, norm, short


def check_columns(ctx: StatementContext) -> set[str]:
    """Columns of ``ctx.relation`` read by validated CHECK constraints (live catalog + this migration)."""
    cols = {c for (t, c) in ctx.state.check_columns if t == norm(ctx.relation or "")}
    t = ctx.table(ctx.relation)
    if t is not None:
        for con in t.constraints:
            if con.type == "check" and con.validated:
                cols.update(con.columns or [c.name for c in t.columns if c.name in con.definition])
    return cols


def check(ctx: StatementContext) -> Iterator[Hit]:
    if ctx.is_new(ctx.relation):
        return
    for sub, subtype, cmd in ctx.alter_cmds():
        op = ctx.op(sub)
        col = cmd.get("name", "")
        if subtype != "AT_AlterColumnType" or op is None or op.rewrite or col not in check_columns(ctx):
            continue  # a rewriting change is reported by A19005
        yield Hit(
            f"{col} is read by CHECK constraints: changing its type re-checks them against every row of "
            f"{short(ctx.relation)} under an AccessExclusiveLock, even though the table is not rewritten",
            "-- drop the CHECK, change the type (no scan), then re-add the CHECK NOT VALID and VALIDATE it in "
            "its own transaction:\n"
            f"ALTER TABLE {short(ctx.relation)} DROP CONSTRAINT <check>, ALTER COLUMN {col} TYPE <type>, "
            "ADD CONSTRAINT <check> CHECK (…) NOT VALID;\n"
            f"ALTER TABLE {short(ctx.relation)} VALIDATE CONSTRAINT <check>;",
        )


RULE = Rule(
    code="A19029",
    name="type-change-with-check",
    title="A type change re-checks the column's CHECK constraints with a full scan",
    severity="error",
    why="When ALTER COLUMN TYPE needs no rewrite (varchar widening, varchar → text…), PostgreSQL still "
    "re-evaluates every CHECK constraint that reads the column against every row, holding the AccessExclusiveLock "
    "(observed on PostgreSQL 15: the check function runs once per row). The change is only instant for "
    "columns without CHECKs.",
    alternative="In one ALTER TABLE, drop the CHECK, change the type and re-add the CHECK NOT VALID; then "
    "VALIDATE it in its own transaction (ShareUpdateExclusiveLock).",
    bad="ALTER TABLE orders ADD COLUMN note varchar(20);\n"
    "ALTER TABLE orders ADD CONSTRAINT orders_note_check CHECK (note <> '') NOT VALID;\n"
    "ALTER TABLE orders VALIDATE CONSTRAINT orders_note_check;\n"
    "ALTER TABLE orders ALTER COLUMN note TYPE varchar(40);",
    good="ALTER TABLE orders ADD COLUMN note varchar(20);\n"
    "ALTER TABLE orders ALTER COLUMN note TYPE varchar(40);  -- no CHECK reads note: instant",
    check=check,
)
