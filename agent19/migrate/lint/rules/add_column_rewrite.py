"""A19004 add-column-rewrite: a new column that makes PostgreSQL rewrite an existing table."""

from __future__ import annotations

from collections.abc import Iterator

from agent19.migrate.lint.rules._base import (
    Hit,
    Rule,
    StatementContext,
    column_constraints,
    deparse,
    ident,
    short,
    type_name,
    typed_tree,
)

SERIALS = {"serial", "serial4", "bigserial", "serial8", "smallserial", "serial2"}
_SERIAL_BASE = {"serial": "integer", "serial4": "integer", "bigserial": "bigint", "serial8": "bigint",
                "smallserial": "smallint", "serial2": "smallint"}


def _why(coldef: dict) -> str:
    t = type_name(coldef.get("typeName", {}))
    if t in SERIALS:
        return f"{t} fills every existing row from a sequence"
    for c in column_constraints(coldef):
        if c.get("contype") == "CONSTR_IDENTITY":
            return "an identity column fills every existing row from a sequence"
        if c.get("contype") == "CONSTR_GENERATED":
            return "a stored generated column is computed for every existing row"
    return "its default is volatile, so it is computed for every existing row (only constant defaults are " \
        "stored once, PostgreSQL 11+)"


def _fix(ctx: StatementContext, sub: int, coldef: dict) -> str:
    table, col = short(ctx.relation), ident(coldef.get("colname", "c"))
    t = type_name(coldef.get("typeName", {}))
    try:
        node = typed_tree(ctx.sql).cmds[sub].def_
        col_type = _SERIAL_BASE.get(t) or deparse(node.typeName)
        default = next((deparse(c.raw_expr) for c in node.constraints or () if c.raw_expr is not None
                        and c.contype.name == "CONSTR_DEFAULT"), None)
    except Exception:  # noqa: BLE001 — a fix is a suggestion; the finding stands without it
        col_type, default = _SERIAL_BASE.get(t, t), None
    seq = ident(f"{ctx.relation.rpartition('.')[2] if ctx.relation else 't'}_{coldef.get('colname', 'c')}_seq")
    lines = [f"ALTER TABLE {table} ADD COLUMN {col} {col_type};  -- no rewrite: NULL for existing rows"]
    if t in SERIALS or any(c.get("contype") == "CONSTR_IDENTITY" for c in column_constraints(coldef)):
        lines += [f"CREATE SEQUENCE {seq} OWNED BY {table}.{col};",
                  f"ALTER TABLE {table} ALTER COLUMN {col} SET DEFAULT nextval('{seq}');  -- new rows only"]
        default = f"nextval('{seq}')"
    elif default:
        lines.append(f"ALTER TABLE {table} ALTER COLUMN {col} SET DEFAULT {default};  -- new rows only")
    else:
        lines.append("-- for a generated value, fill new rows with a trigger and backfill old rows in batches")
    if default:
        lines.append(f"-- backfill in batches, e.g. repeat until 0 rows: UPDATE {table} SET {col} = {default} "
                     f"WHERE ctid IN (SELECT ctid FROM {table} WHERE {col} IS NULL LIMIT 10000);")
    return "\n".join(lines)


def check(ctx: StatementContext) -> Iterator[Hit]:
    if ctx.is_new(ctx.relation):
        return
    for sub, subtype, cmd in ctx.alter_cmds():
        op = ctx.op(sub)
        if subtype != "AT_AddColumn" or op is None or not op.rewrite:
            continue
        coldef = cmd.get("def", {}).get("ColumnDef", {})
        yield Hit(
            f"adding column {coldef.get('colname')} rewrites {short(ctx.relation)} under an AccessExclusiveLock: "
            f"{_why(coldef)}; reads and writes wait for the whole rewrite",
            _fix(ctx, sub, coldef),
        )


RULE = Rule(
    code="A19004",
    name="add-column-rewrite",
    title="Adding a column with a volatile default, identity, serial or stored generated value rewrites the table",
    severity="error",
    why="Since PostgreSQL 11 a constant default is stored once in the catalog and ADD COLUMN is instant. A "
    "volatile default (now() is stable and fine; random(), clock_timestamp(), gen_random_uuid(), nextval() are "
    "not), an identity or serial column, or a STORED generated column must be computed for every existing row: "
    "the table is rewritten under an AccessExclusiveLock and nobody can read or write it meanwhile.",
    alternative="Add the column without the value (instant), set the default for new rows, backfill existing "
    "rows in small batches, then add NOT NULL through a validated CHECK. For a stored generated column, "
    "fill it with a trigger and backfill.",
    bad="ALTER TABLE orders ADD COLUMN token uuid DEFAULT gen_random_uuid();",
    good="ALTER TABLE orders ADD COLUMN token uuid;\n"
    "ALTER TABLE orders ALTER COLUMN token SET DEFAULT gen_random_uuid();",
    check=check,
    nodes=("AlterTableStmt",),
    aliases=("adding-field-with-default", "adding-serial-primary-key-field"),  # squawk's rule name(s)
)
