"""A19032 add-column-inline-constraint: ADD COLUMN with an inline CHECK, UNIQUE or PRIMARY KEY on an existing table."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

from agent19.migrate.lint.rules._base import (
    Hit,
    Rule,
    StatementContext,
    column_constraints,
    deparse,
    short,
    typed_tree,
)
from agent19.migrate.patterns.sqlnames import ident

INDEXED = {"CONSTR_UNIQUE": "UNIQUE", "CONSTR_PRIMARY": "PRIMARY KEY"}


def _pieces(ctx: StatementContext, sub: int) -> tuple[str, str, str | None]:
    """(column type, other column options kept on the bare ADD COLUMN, the CHECK expression) as SQL."""
    try:
        node = typed_tree(ctx.sql).cmds[sub].def_
    except Exception:  # noqa: BLE001 — a fix is a suggestion; the finding stands without it
        return "<type>", "", None
    kept, check = [], None
    for c in node.constraints or ():
        kind = c.contype.name
        if kind == "CONSTR_CHECK" and check is None:
            check = deparse(c.raw_expr)
        elif kind == "CONSTR_DEFAULT":
            kept.append(f"DEFAULT {deparse(c.raw_expr)}")
        elif kind == "CONSTR_NOTNULL":
            kept.append("NOT NULL")
    return deparse(node.typeName), "".join(f" {k}" for k in kept), check


def _fix(ctx: StatementContext, sub: int, column: str, kinds: list[str]) -> str:
    table = short(ctx.relation)
    base = (ctx.relation or "t").rpartition(".")[2]
    col_type, options, check = _pieces(ctx, sub)
    col = ident(column)
    lines = [f"ALTER TABLE {table} ADD COLUMN {col} {col_type}{options};  -- the column alone: no scan"]
    if "CONSTR_CHECK" in kinds:
        name = ident(f"{base}_{column}_check"[:63])
        lines += [f"ALTER TABLE {table} ADD CONSTRAINT {name} CHECK ({check or '...'}) NOT VALID;  -- no scan",
                  f"ALTER TABLE {table} VALIDATE CONSTRAINT {name};  -- scans under ShareUpdateExclusiveLock: "
                  "reads and writes go on"]
    for kind in (k for k in kinds if k in INDEXED):
        suffix = "pkey" if kind == "CONSTR_PRIMARY" else "key"
        index = ident(f"{base}_{column}_{suffix}"[:63])
        if kind == "CONSTR_PRIMARY":
            lines.append(f"ALTER TABLE {table} ALTER COLUMN {col} SET NOT NULL;  -- PRIMARY KEY USING INDEX needs it "
                         "(set it before rows arrive, or via a validated CHECK: see A19006)")
        lines += [f"CREATE UNIQUE INDEX CONCURRENTLY IF NOT EXISTS {index} ON {table} ({col});  -- outside a "
                  "transaction block",
                  f"ALTER TABLE {table} ADD CONSTRAINT {index} {INDEXED[kind]} USING INDEX {index};  -- instant"]
    return "\n".join(lines)


def check(ctx: StatementContext) -> Iterator[Hit]:
    if ctx.is_new(ctx.relation):
        return
    for sub, subtype, cmd in ctx.alter_cmds():
        if subtype != "AT_AddColumn":
            continue
        coldef: dict[str, Any] = cmd.get("def", {}).get("ColumnDef", {})
        kinds = [c.get("contype", "") for c in column_constraints(coldef)]
        found = [k for k in kinds if k == "CONSTR_CHECK" or k in INDEXED]
        if not found:
            continue
        column = coldef.get("colname", "c")
        what = []
        if "CONSTR_CHECK" in found:
            what.append("its inline CHECK is verified by reading every row")
        what += [f"its inline {INDEXED[k]} builds a unique index over every row" for k in dict.fromkeys(found)
                 if k in INDEXED]
        yield Hit(
            f"ADD COLUMN {column} on {short(ctx.relation)}: " + " and ".join(what)
            + ", while the AccessExclusiveLock of ADD COLUMN is held - reads and writes wait for a time that grows "
            "with the table",
            _fix(ctx, sub, column, found),
        )


RULE = Rule(
    code="A19032",
    name="add-column-inline-constraint",
    title="ADD COLUMN with an inline CHECK, UNIQUE or PRIMARY KEY scans or indexes the table under its lock",
    severity="error",
    why="ADD COLUMN takes an AccessExclusiveLock. Alone, without a volatile default, it is instant; an inline "
    "CHECK makes PostgreSQL read the whole table to verify it (even though the new column is NULL everywhere), "
    "and an inline UNIQUE or PRIMARY KEY builds an index over the whole table - both while that lock blocks "
    "every read and write (observed on PostgreSQL 15: tests/test_lint_statements.py).",
    alternative="Add the bare column; add the CHECK as NOT VALID and VALIDATE it separately; build the unique "
    "index CONCURRENTLY and attach it with ADD CONSTRAINT ... UNIQUE / PRIMARY KEY USING INDEX.",
    bad="ALTER TABLE orders ADD COLUMN code text UNIQUE;",
    good="ALTER TABLE orders ADD COLUMN code text;\n"
    "CREATE UNIQUE INDEX CONCURRENTLY IF NOT EXISTS orders_code_key ON orders (code);\n"
    "ALTER TABLE orders ADD CONSTRAINT orders_code_key UNIQUE USING INDEX orders_code_key;",
    check=check,
    nodes=("AlterTableStmt",),
    subcommands=("AT_AddColumn",),
)
