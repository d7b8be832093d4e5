"""A19004 add-column-rewrite: a new column that makes PostgreSQL rewrite an existing table."""

from __future__ import annotations

from collections.abc import Iterator

from agent19.migrate import patterns
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
from agent19.migrate.patterns.sqlnames import comment, literal, qname, qualified, split_name
from agent19.migrate.patterns.sqlnames import short as short_name

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


_KIND = {"CONSTR_PRIMARY": "primary key", "CONSTR_UNIQUE": "unique", "CONSTR_FOREIGN": "foreign key (REFERENCES)",
         "CONSTR_CHECK": "check", "CONSTR_EXCLUSION": "exclusion"}
_CARRIED = {"CONSTR_DEFAULT", "CONSTR_NOTNULL", "CONSTR_NULL", "CONSTR_IDENTITY", "CONSTR_GENERATED"}


def _fix(ctx: StatementContext, sub: int, coldef: dict) -> str:
    """The add_column_volatile_default pattern (nullable column, default for new rows, keyset backfill, NOT NULL
    through a validated CHECK when the column was NOT NULL), after the statement's other sub-commands; what the
    pattern does not carry (the column's own key, foreign key or CHECK) is named."""
    # here, not at the top: every lint loads each rule (the backfill scripts: below, where a catalog knows the key)
    from agent19.migrate.patterns.live import find_table, single_key
    from agent19.migrate.patterns.model import fix_script

    raw_table = _table(ctx)
    table, raw_col = short(ctx.relation), coldef.get("colname", "c")
    col = ident(raw_col)
    t = type_name(coldef.get("typeName", {}))
    kinds = [c.get("contype") for c in column_constraints(coldef)]
    tree = typed_tree(ctx.sql)
    node = tree.cmds[sub].def_
    col_type = _SERIAL_BASE.get(t) or deparse(node.typeName)
    default = next((deparse(c.raw_expr) for c in node.constraints or () if c.raw_expr is not None
                    and c.contype.name == "CONSTR_DEFAULT"), None)
    head: list[str] = []
    if len(tree.cmds) > 1:
        tree.cmds = tuple(c for i, c in enumerate(tree.cmds) if i != sub)
        head += [comment(f"the statement's other sub-commands, without column {col}:"), deparse(tree) + ";"]
    rest = sorted({_KIND.get(k, k.removeprefix("CONSTR_").lower()) for k in kinds if k not in _CARRIED})
    if rest:
        head.append(comment(f"not carried: the column's {', '.join(rest)} constraint - add it once the column is "
                            "filled (agent19 pattern add_unique / add_primary_key / add_foreign_key / add_check)"))
    seq = None
    if t in SERIALS or "CONSTR_IDENTITY" in kinds:
        base = short_name(f"{(ctx.relation or 't').rpartition('.')[2]}_{raw_col}", "_seq")
        seq = qualified(split_name(raw_table)[0], base)
        head.append(f"CREATE SEQUENCE {seq};  -- owned by {col} once it exists")
        default = f"nextval({literal(seq)})"
        if "CONSTR_IDENTITY" in kinds:
            head.append(comment(f"{col} gets a sequence default rather than an identity (ALTER COLUMN ... ADD "
                                "GENERATED ... AS IDENTITY would fill every row again)"))
    if default is None:  # a stored generated column
        return "\n".join([*head, f"ALTER TABLE {table} ADD COLUMN {col} {col_type};  -- no rewrite: NULL for "
                           "existing rows",
                           "-- for a generated value, fill new rows with a trigger and backfill old rows in batches"])
    not_null = bool({"CONSTR_NOTNULL", "CONSTR_PRIMARY", "CONSTR_IDENTITY"} & set(kinds)) or t in SERIALS
    pattern = patterns.add_column_volatile_default(raw_table, raw_col, col_type, default, not_null=not_null,
                                                   pg_version=ctx.major)
    known = find_table(ctx.catalog, raw_table)
    key = single_key(known)
    if key is None:
        head.append(comment("the backfill phase runs with agent19 backfill (keyset batches over the primary key)"
                            + ("" if known is not None else "; with a database (--dsn) it is written out here")))
    backfill = None
    if key is not None:  # a catalog knows the key: the keyset procedure (the scripts load the backfill executor)
        from agent19.migrate.backfill.scripts import keyset_backfill

        backfill = keyset_backfill(*key)
    out = [*head, fix_script(pattern.phases, backfill)]
    if seq is not None:
        out.append(f"ALTER SEQUENCE {seq} OWNED BY {qname(raw_table)}.{col};")
    return "\n".join(out)


def _table(ctx: StatementContext) -> str:
    rel = ctx.fields.get("relation", {})
    return qualified(rel.get("schemaname") or None, rel.get("relname", ""))


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
    subcommands=("AT_AddColumn",),
    aliases=("adding-field-with-default", "adding-serial-primary-key-field"),  # squawk's rule name(s)
)
