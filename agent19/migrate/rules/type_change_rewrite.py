"""A19005 type-change-rewrite: ALTER COLUMN TYPE that rewrites an existing table."""

from __future__ import annotations

from collections.abc import Iterator

from agent19.migrate.rules._base import Hit, Rule, StatementContext, deparse, ident, short, typed_tree


def check(ctx: StatementContext) -> Iterator[Hit]:
    if ctx.is_new(ctx.relation):
        return
    for sub, subtype, cmd in ctx.alter_cmds():
        op = ctx.op(sub)
        if subtype != "AT_AlterColumnType" or op is None or not op.rewrite:
            continue  # a change that only re-checks CHECK constraints is A19029
        col = cmd.get("name", "c")
        try:
            new_type = deparse(typed_tree(ctx.sql).cmds[sub].def_.typeName)
        except Exception:  # noqa: BLE001
            new_type = "<new type>"
        table, c, new = short(ctx.relation), ident(col), ident(f"{col}_new")
        assumed = ""
        if (op.form or "").endswith(".unknown"):
            assumed = (" (assumed: the old type is unknown — connect a database (--dsn) to know; a binary-coercible "
                       "change such as varchar(n) → varchar(m > n) or text rewrites nothing)")
        yield Hit(
            f"changing the type of {col} rewrites the table and rebuilds its indexes under an AccessExclusiveLock "
            f"on {table}: reads and writes wait for a time that grows with the table{assumed}",
            "\n".join([
                f"ALTER TABLE {table} ADD COLUMN {new} {new_type};",
                f"-- keep {new} in step with {c} for new writes (a trigger), then backfill in batches:",
                f"--   UPDATE {table} SET {new} = {c}::{new_type} WHERE ctid IN "
                f"(SELECT ctid FROM {table} WHERE {new} IS NULL AND {c} IS NOT NULL LIMIT 10000);",
                f"-- switch the application to {new}, then in a later migration drop {c} and rename {new}",
            ]),
        )


RULE = Rule(
    code="A19005",
    name="type-change-rewrite",
    title="Changing a column's type rewrites the table",
    severity="error",
    why="ALTER COLUMN TYPE rewrites the whole table and rebuilds its indexes under an AccessExclusiveLock unless "
    "the new type is binary-coercible (varchar(n) → varchar(m>n) or text, numeric(p,s) → numeric(q>p,s), "
    "timestamp ↔ timestamptz when the session time zone is UTC on 12+). int → bigint is a full rewrite.",
    alternative="Expand and contract: add a column of the new type, keep it in step with a trigger, backfill "
    "it in batches, move the application over, then drop the old column. Widenings that PostgreSQL "
    "can do without a rewrite are not flagged.",
    bad="ALTER TABLE orders ALTER COLUMN id TYPE bigint;",
    good="ALTER TABLE orders ADD COLUMN note varchar(20);\n"
    "ALTER TABLE orders ALTER COLUMN note TYPE text;  -- varchar → text: binary-coercible, no rewrite",
    check=check,
)
