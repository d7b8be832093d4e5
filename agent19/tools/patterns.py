"""zero_downtime_pattern and prisma_schema: the safe way to make a change, and schema.prisma."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

from pydantic import BaseModel, Field

from agent19.errors import Agent19Error, InputError
from agent19.migrate.layouts.prisma_migrations import Layout
from agent19.migrate.layouts.prisma_schema import schema_prisma
from agent19.migrate.patterns.model import Pattern, PatternKind
from agent19.tools.registry import ToolContext, tool

if TYPE_CHECKING:
    from agent19.migrate.patterns.live import LiveColumn


class PatternArgs(BaseModel):
    kind: PatternKind = Field(description="which change")
    table: str = Field(description="the table: name or schema.name as the catalog stores it (Order, My Schema.t), or "
                       "as SQL with double quotes (\"My Schema\".\"a.b\"); read as agent19 backfill reads it")
    column: str | None = Field(default=None, description="the column (set_not_null, change_column_type, rename_column, "
                               "add_column_volatile_default)")
    columns: list[str] | None = Field(default=None, description="columns (indexes, unique, primary key, foreign key)")
    new_name: str | None = Field(default=None, description="rename_column / rename_table: the new name")
    type: str | None = Field(default=None, description="change_column_type: the new type; rename_column and "
                             "add_column_volatile_default: the column's type (rename_column: read from the "
                             "database when connected)")
    old_type: str | None = Field(default=None, description="change_column_type: the current type (lets the swap be "
                                 "rolled back without losing writes)")
    using: str | None = Field(default=None, description="change_column_type: conversion expression",
                              json_schema_extra={"user_sql": "text"})
    default: str | None = Field(default=None,
                                description="default expression (set_not_null, add_column_volatile_default)",
                                json_schema_extra={"user_sql": "text"})
    backfill: str | None = Field(default=None, description="set_not_null: value for existing NULLs",
                                 json_schema_extra={"user_sql": "text"})
    not_null: bool | None = Field(default=None, description="the (new) column must end NOT NULL (change_column_type: "
                                  "default the live column's, when connected)")
    references: str | None = Field(default=None, description="add_foreign_key: referenced table")
    ref_columns: list[str] | None = Field(default=None, description="add_foreign_key: referenced columns")
    on_delete: str | None = Field(default=None, description="add_foreign_key: CASCADE, SET NULL, ...")
    name: str | None = Field(default=None, description="constraint or index name")
    expression: str | None = Field(default=None, description="add_check: the condition",
                                   json_schema_extra={"user_sql": "text"})
    unique: bool = Field(default=False, description="create_index: a unique index")
    where: str | None = Field(default=None, description="create_index: partial index predicate",
                              json_schema_extra={"user_sql": "text"})
    index: str | None = Field(default=None, description="drop_index / reindex: the index")
    definition: str | None = Field(default=None, description="reindex before PostgreSQL 12: e.g. 'USING btree "
                                   "(email)'", json_schema_extra={"user_sql": "text"})
    pg_version: int | None = Field(default=None, description="target PostgreSQL major version (default: the connected "
                                   "server's when a DSN is given, else 11, the oldest supported)")
    write_to: str | None = Field(default=None, description="also write the phases as migration files in this directory")
    layout: Layout = Field(default="prisma", description="layout of the written files")


class PatternResult(BaseModel):
    pattern: Pattern
    sql: str = Field(description="the whole pattern as an annotated script")
    files: list[str] = []


def _need(args: PatternArgs, *names: str) -> list[Any]:
    values = [getattr(args, n) for n in names]
    missing = [n for n, v in zip(names, values, strict=True) if v in (None, [])]
    if missing:
        raise InputError(f"{args.kind} needs {', '.join(missing)}")
    return values


def _check_fragments(a: PatternArgs) -> None:
    """Refuse SQL text that is not exactly one type / expression: the pattern pastes it into its statements."""
    from agent19.migrate.patterns import fragments as F

    for name in ("type", "old_type"):
        if getattr(a, name) is not None:
            F.type_name(getattr(a, name), name)
    for name in ("using", "default", "backfill", "expression", "where"):
        if getattr(a, name) is not None:
            F.expression(getattr(a, name), name)
    if a.on_delete is not None:
        a.on_delete = F.fk_action(a.on_delete)
    if a.definition is not None:
        F.index_definition(a.definition, "definition")


def build_pattern(a: PatternArgs, pg: int | None, live: LiveColumn | None = None) -> Pattern:
    from agent19.migrate import patterns as P
    from agent19.migrate.patterns.sqlnames import table_arg

    _check_fragments(a)
    t, k = table_arg(a.table), a.kind
    if k == "set_not_null":
        (col,) = _need(a, "column")
        return P.set_not_null(t, col, default=a.default, backfill=a.backfill, pg_version=pg,
                              already_not_null=live is not None and live.not_null)
    if k == "change_column_type":
        col, typ = _need(a, "column", "type")
        return P.change_column_type(t, col, typ, using=a.using, old_type=a.old_type, not_null=a.not_null,
                                    default=a.default, pg_version=pg, live=live)
    if k == "rename_column":
        col, new = _need(a, "column", "new_name")
        if live is None:
            _need(a, "type")
        return P.rename_column(t, col, new, a.type, not_null=bool(a.not_null), default=a.default, pg_version=pg,
                               live=live)
    if k == "rename_table":
        (new,) = _need(a, "new_name")
        return P.rename_table(t, new, pg_version=pg)
    if k == "add_foreign_key":
        cols, ref, refcols = _need(a, "columns", "references", "ref_columns")
        return P.add_foreign_key(t, cols, table_arg(ref), refcols, name=a.name, on_delete=a.on_delete, pg_version=pg)
    if k == "add_check":
        name, expr = _need(a, "name", "expression")
        return P.add_check(t, name, expr, pg_version=pg)
    if k in ("add_unique", "add_primary_key"):
        (cols,) = _need(a, "columns")
        fn = P.add_unique if k == "add_unique" else P.add_primary_key
        return fn(t, cols, name=a.name, pg_version=pg)
    if k == "create_index":
        (cols,) = _need(a, "columns")
        return P.create_index(t, cols, name=a.name, unique=a.unique, where=a.where, pg_version=pg)
    if k == "drop_index":
        (ix,) = _need(a, "index")
        return P.drop_index(ix, table=t, pg_version=pg)
    if k == "reindex":
        (ix,) = _need(a, "index")
        return P.reindex(ix, table=t, definition=a.definition, pg_version=pg)
    col, typ, default = _need(a, "column", "type", "default")
    return P.add_column_volatile_default(t, col, typ, default, pg_version=pg)


def _server_version(ctx: ToolContext) -> int | None:
    if ctx.settings.dsn_value() is None:
        return None  # do not start the embedded server just to learn its version
    try:
        with ctx.db.read() as conn:
            row = conn.execute("SELECT current_setting('server_version_num')::int AS v").fetchone()
            return int(row["v"]) if row else None
    except Agent19Error:
        return None


@tool(
    name="zero_downtime_pattern",
    briefs={
        "kind": "", "table": "", "column": "", "columns": "", "new_name": "", "type": "new type, or the column's",
        "old_type": "", "using": "", "default": "", "backfill": "value for existing NULLs", "not_null": "",
        "references": "", "ref_columns": "", "on_delete": "", "name": "", "expression": "",
        "unique": "", "where": "partial index predicate", "index": "", "definition": "reindex before PostgreSQL 12",
        "write_to": "directory for phase files", "layout": "",
    },
    title="Zero-downtime change",
    args=PatternArgs,
    result=PatternResult,
    cli="pattern",
    positional=("kind", "table"),
    read_only=False,  # never writes to the database, but `write_to` writes migration files
    render_text=lambda r: r.sql + ("\nwritten:\n" + "\n".join(r.files) if r.files else ""),
    examples=(
        "agent19 pattern set_not_null orders --column customer_id --pg-version 15",
        "agent19 pattern change_column_type orders --column amount --type bigint --old-type integer",
        "agent19 pattern add_unique users --columns email --write-to . --layout prisma",
    ),
)
def zero_downtime_pattern(ctx: ToolContext, args: PatternArgs) -> PatternResult:
    """The safe, phased SQL (lock and rollback per phase) for a change that would lock a busy table.

    The safe, phased way to make a change that would otherwise lock a busy table: rename a column or
    table (expand/contract, compatibility view), change a column type (shadow column + trigger +
    batched backfill + short swap), SET NOT NULL (validated CHECK first), add a foreign key or CHECK
    (NOT VALID, then VALIDATE), unique/primary key (unique index built CONCURRENTLY, then USING
    INDEX), create/drop/reindex CONCURRENTLY (with recovery from an INVALID index), add a column with
    a volatile default. Each phase says its SQL, the lock it takes, whether to deploy before the next,
    how to roll back and a validation query. Version-aware. Optionally writes the phases as migration
    files (Prisma, plain, golang-migrate, Flyway). Generates text only; runs nothing."""
    from agent19.migrate.layouts.prisma_migrations import pattern_migrations, write_migrations
    from agent19.migrate.patterns.live import read_column
    from agent19.migrate.patterns.sqlnames import table_arg

    live = None
    _check_fragments(args)  # refuse a hostile piece before connecting
    if (args.kind in ("change_column_type", "rename_column", "set_not_null") and args.column
            and ctx.settings.dsn_value() is not None):
        # carry NOT NULL, the default, the sequence; name what stays behind; set_not_null: is it NOT NULL already?
        with ctx.db.read() as conn:
            live = read_column(conn, table_arg(args.table), args.column)
    pattern = build_pattern(args, args.pg_version or _server_version(ctx), live)
    files: list[str] = []
    if args.write_to:
        files = [str(p) for p in write_migrations(pattern_migrations(pattern), Path(args.write_to), args.layout)]
    return PatternResult(pattern=pattern, sql=pattern.to_sql(), files=files)


class PrismaArgs(BaseModel):
    schema_name: str = Field(default="public", alias="schema", description="the PostgreSQL schema to model")
    prisma_major: int = Field(default=7, description="Prisma major version (6 puts the url in the datasource)")
    output: str | None = Field(default=None, description="also write the schema to this file")

    model_config = {"populate_by_name": True}


class PrismaSchema(BaseModel):
    schema_prisma: str
    models: int
    enums: int
    written: str | None = None


@tool(
    name="prisma_schema",
    briefs={
        "schema": "", "prisma_major": "", "output": "file",
    },
    title="Prisma schema",
    args=PrismaArgs,
    result=PrismaSchema,
    cli="prisma-schema",
    render_text=lambda r: r.schema_prisma,
    examples=("agent19 prisma-schema --output prisma/schema.prisma",),
)
def prisma_schema(ctx: ToolContext, args: PrismaArgs) -> PrismaSchema:
    """Generate schema.prisma from the live database: models, relations, enums and @map names.

    Generate a Prisma schema (schema.prisma) from the live database: models with scalar and
    native types, @id/@@id, @default (autoincrement, now, dbgenerated), @unique/@@unique, @@index,
    relations from foreign keys with back-relations, enums, and @map/@@map where PostgreSQL's
    snake_case names differ from Prisma's. Reads the catalog only."""
    from agent19.db.catalog import snapshot

    with ctx.db.read() as conn:
        snap = snapshot(conn, schema=args.schema_name)
    text = schema_prisma(snap, schema=args.schema_name, prisma_major=args.prisma_major)
    if args.output:
        Path(args.output).parent.mkdir(parents=True, exist_ok=True)
        Path(args.output).write_text(text)
    return PrismaSchema(schema_prisma=text, models=text.count("\nmodel "), enums=text.count("\nenum "),
                        written=args.output)
