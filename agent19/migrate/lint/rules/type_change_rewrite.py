"""A19005 type-change-rewrite: ALTER COLUMN TYPE that rewrites an existing table."""

from __future__ import annotations

from collections.abc import Iterator
from typing import TYPE_CHECKING

from pglast.enums import AlterTableType

from agent19.errors import InputError
from agent19.migrate import patterns
from agent19.migrate.classification.alter import type_of
from agent19.migrate.classification.knowledge import ColumnType
from agent19.migrate.lint.config import ASSUME_WIDEN
from agent19.migrate.lint.rules._base import Hit, LazyText, Rule, StatementContext, deparse, short, typed_tree
from agent19.migrate.lint.rules._shape import by_names, by_shape
from agent19.migrate.patterns.sqlnames import comment, literal, qualified, split_name

if TYPE_CHECKING:  # annotations only: the catalog models load where a catalog is read
    from agent19.db.models import SchemaSnapshot


def widening_condition(new: ColumnType, major: int) -> str | None:
    """The old types from which changing to ``new`` rewrites nothing (PostgreSQL's binary-coercible widenings,
    as :func:`agent19.migrate.classification.knowledge.rewrite_free_change` decides them),
    or None when no such type exists."""
    if new.array:
        return None
    n = new.mods[0] if new.mods else None
    if new.base == "text":
        return "it is varchar (any length) or text already"
    if new.base in ("varchar", "varbit"):
        return f"it is {new.base}(m) with m <= {n}" if n else f"it is {new.base}(n) or text" if new.base == "varchar" \
            else "it is varbit(n)"
    if new.base == "numeric":
        scale = new.mods[1] if len(new.mods) > 1 else 0
        return f"it is numeric(q,{scale}) with q <= {n}" if n else "it is numeric(p,s)"
    if new.base == "inet":
        return "it is cidr"
    if new.base in ("timestamp", "timestamptz"):
        other = "timestamptz" if new.base == "timestamp" else "timestamp"
        same = f"{new.base}(p) with p <= {n}" if n is not None else f"{new.base} of any precision"
        return f"it is {same}" + (f", or {other} and the migration's session TimeZone is UTC" if major >= 12 else "")
    if new.base in ("time", "timetz", "interval") and n is not None:
        return f"it is {new.base}(p) with p <= {n}"
    return None


def check(ctx: StatementContext) -> Iterator[Hit]:
    if ctx.is_new(ctx.relation):
        return
    for sub, subtype, cmd in ctx.alter_cmds():
        op = ctx.op(sub)
        if subtype != "AT_AlterColumnType" or op is None or not op.rewrite:
            continue  # a change that only re-checks CHECK constraints is A19029
        col = cmd.get("name", "c")
        coldef = cmd.get("def", {}).get("ColumnDef", {})
        using = coldef.get("raw_default")
        plain = using is None or using.get("ColumnRef", {}).get("fields", [{}])[-1].get("String", {}).get("sval") == col
        condition = widening_condition(type_of(coldef.get("typeName", {})), ctx.major) if plain else None
        if (op.form or "").endswith(".unknown") and condition:
            if ASSUME_WIDEN in ctx.assume:
                continue  # the team states its type changes are widenings
            yield Hit(
                f"changing the type of {col} rewrites {short(ctx.relation)} under an AccessExclusiveLock unless "
                f"{condition} (assumed: the old type is unknown - connect a database (--dsn) to know, or state "
                f"it with --assume {ASSUME_WIDEN})",
                f"-- check the current type: SELECT format_type(atttypid, atttypmod) FROM pg_attribute WHERE "
                f"attrelid = {literal(_table(ctx))}::regclass AND attname = {literal(col)};\n"
                "-- if it is not one of those, expand and contract instead (see A19005's docs)",
                severity="warning",
            )
            continue
        new_type, using_text = by_shape(ctx.sql, ctx.statement.tree, type_changes, ctx.statement.tree_text)[sub]  # type: ignore[misc]
        using_sql = None if plain else using_text
        assumed = ""
        if (op.form or "").endswith(".unknown"):
            assumed = (" (assumed: the old type is unknown - connect a database (--dsn) to know; no other type "
                       f"becomes {new_type} without a rewrite)")
        yield Hit(
            f"changing the type of {col} rewrites the table and rebuilds its indexes under an AccessExclusiveLock "
            f"on {short(ctx.relation)}: reads and writes wait for a time that grows with the table{assumed}",
            LazyText(shadow_column_fix, _table(ctx), ctx.catalog, ctx.major, col, new_type, using_sql),
        )


def type_changes(sql: str) -> list[tuple[str, str | None] | None]:
    """For each sub-command of an ALTER TABLE: (new type, USING expression) as SQL for a type change, else None."""
    return [(deparse(c.def_.typeName), None if c.def_.raw_default is None else deparse(c.def_.raw_default))
            if c.subtype == AlterTableType.AT_AlterColumnType else None for c in typed_tree(sql).cmds]


def _table(ctx: StatementContext) -> str:
    rel = ctx.fields.get("relation", {})
    return qualified(rel.get("schemaname") or None, rel.get("relname", ""))


def shadow_column_fix(table: str, catalog: SchemaSnapshot | None, major: int, col: str, new_type: str,
                      using: str | None) -> str:
    """The change_column_type pattern's phases (shadow column, sync trigger, keyset backfill, swap, contract),
    filled with what the catalog knows about the column and the table's key. Written when the finding is read
    (a :class:`LazyText`): several kB per finding, from the names alone — without a catalog and a USING, once per
    type for plain names (:func:`~agent19.migrate.lint.rules._shape.by_names`)."""
    if catalog is None and using is None:
        schema, rel = split_name(table)
        return by_names(_fix_by_names, (rel, col) if schema is None else (schema, rel, col), major, new_type)
    return _fix(table, catalog, major, col, new_type, using)


def _fix_by_names(names: tuple[str, ...], major: int, new_type: str) -> str:
    return _fix(qualified(*names[:-1]), None, major, names[-1], new_type, None)


def _fix(table: str, catalog: SchemaSnapshot | None, major: int, col: str, new_type: str, using: str | None) -> str:
    # here, not at the top: every lint loads each rule (the backfill scripts: below, where a catalog knows the key)
    from agent19.migrate.patterns.live import find_table, live_from_snapshot, single_key
    from agent19.migrate.patterns.model import fix_script

    known = find_table(catalog, table)
    live = live_from_snapshot(catalog, known, col) if catalog is not None and known is not None else None
    try:
        pattern = patterns.change_column_type(table, col, new_type, using=using, pg_version=major, live=live)
    except InputError as exc:  # a column the pattern cannot move (primary key, generated…): say so, and what to do
        return comment(f"no zero-downtime pattern: {exc}")
    key = single_key(known)
    head = [comment(f"note: {n}") for n in pattern.notes]
    if key is None:
        head.append(comment("the backfill phase runs with agent19 backfill (keyset batches over the primary key)"
                            + ("" if known is not None else "; with a database (--dsn) it is written out here")))
    backfill = None
    if key is not None:  # a catalog knows the key: the keyset procedure (the scripts load the backfill executor)
        from agent19.migrate.backfill.scripts import keyset_backfill

        backfill = keyset_backfill(*key)
    return "\n".join([*head, fix_script(pattern.phases, backfill)])


RULE = Rule(
    code="A19005",
    name="type-change-rewrite",
    title="Changing a column's type rewrites the table",
    severity="error",
    why="ALTER COLUMN TYPE rewrites the whole table and rebuilds its indexes under an AccessExclusiveLock unless "
    "the new type is binary-coercible (varchar(n) -> varchar(m>n) or text, numeric(p,s) -> numeric(q>p,s), "
    "timestamp <-> timestamptz when the session time zone is UTC on 12+). int -> bigint is a full rewrite.",
    alternative="Expand and contract: add a column of the new type, keep it in step with a trigger, backfill "
    "it in batches, move the application over, then drop the old column. Widenings that PostgreSQL "
    "can do without a rewrite are not flagged.",
    bad="ALTER TABLE orders ALTER COLUMN id TYPE bigint;",
    good="ALTER TABLE orders ADD COLUMN note varchar(20);\n"
    "ALTER TABLE orders ALTER COLUMN note TYPE text;  -- varchar -> text: binary-coercible, no rewrite",
    check=check,
    nodes=("AlterTableStmt",),
    subcommands=("AT_AlterColumnType",),
    aliases=("changing-column-type",),  # squawk's rule name(s)
)
