"""A19008 unique-without-index: PRIMARY KEY or UNIQUE added without USING INDEX."""

from __future__ import annotations

from collections.abc import Iterator

from agent19.migrate.lint.rules._base import Hit, Rule, StatementContext, ident, short
from agent19.migrate.patterns.sqlnames import split_name


def check(ctx: StatementContext) -> Iterator[Hit]:
    if ctx.is_new(ctx.relation):
        return
    for _, subtype, cmd in ctx.alter_cmds():
        con = cmd.get("def", {}).get("Constraint", {})
        contype = con.get("contype")
        if subtype != "AT_AddConstraint" or contype not in ("CONSTR_PRIMARY", "CONSTR_UNIQUE"):
            continue
        if con.get("indexname"):
            continue
        cols = [k.get("String", {}).get("sval", "") for k in con.get("keys", [])]
        base = split_name(ctx.relation or "t")[1]
        kind = "PRIMARY KEY" if contype == "CONSTR_PRIMARY" else "UNIQUE"
        name = con.get("conname") or f"{base}_{'_'.join(cols)}_{'pkey' if kind == 'PRIMARY KEY' else 'key'}"[:63]
        table, collist = short(ctx.relation), ", ".join(ident(c) for c in cols)
        yield Hit(
            f"adding {kind} builds its unique index while holding an AccessExclusiveLock on {table}: reads and "
            "writes wait for the build"
            + (" (and PRIMARY KEY also scans for NULLs unless the columns are already NOT NULL)"
               if kind == "PRIMARY KEY" else ""),
            f"CREATE UNIQUE INDEX CONCURRENTLY {ident(name)} ON {table} ({collist});\n"
            f"ALTER TABLE {table} ADD CONSTRAINT {ident(name)} {kind} USING INDEX {ident(name)};",
        )


RULE = Rule(
    code="A19008",
    name="unique-without-index",
    title="PRIMARY KEY or UNIQUE added without USING INDEX builds an index under an AccessExclusiveLock",
    severity="error",
    why="ADD PRIMARY KEY / ADD UNIQUE builds the index inside the ALTER TABLE, holding an AccessExclusiveLock "
    "for the whole build: no reads, no writes.",
    alternative="Build the unique index with CREATE UNIQUE INDEX CONCURRENTLY, then attach it with "
    "ADD CONSTRAINT ... USING INDEX, which is instant (for a PRIMARY KEY, make the columns NOT NULL first, "
    "through a validated CHECK).",
    bad="ALTER TABLE orders ADD CONSTRAINT orders_number_key UNIQUE (number);",
    good="CREATE UNIQUE INDEX CONCURRENTLY orders_number_key ON orders (number);\n"
    "ALTER TABLE orders ADD CONSTRAINT orders_number_key UNIQUE USING INDEX orders_number_key;",
    check=check,
    nodes=("AlterTableStmt",),
    subcommands=("AT_AddConstraint",),
    aliases=("disallowed-unique-constraint",),  # squawk's rule name(s)
)
