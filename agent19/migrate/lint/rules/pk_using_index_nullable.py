"""A19036 pk-using-index-nullable: ADD PRIMARY KEY USING INDEX on columns not yet NOT NULL scans the table."""

from __future__ import annotations

from collections.abc import Iterator

from agent19.migrate.lint.rules._base import Hit, Rule, StatementContext, norm, short
from agent19.migrate.lint.rules.set_not_null_scan import not_null_fix, statement_table
from agent19.migrate.patterns.sqlnames import ident


def _index_columns(ctx: StatementContext, table: str, index: str) -> list[str] | None:
    """The index's columns: from an earlier CREATE INDEX in the linted set, else the catalog; None if unknown."""
    for prev in reversed(ctx.state.seen):
        if prev.node == "IndexStmt" and prev.fields.get("idxname") == index:
            return [p.get("IndexElem", {}).get("name") or "" for p in prev.fields.get("indexParams", [])]
    t = ctx.table(table)
    ix = next((i for i in t.indexes if i.name == index), None) if t else None
    return ix.key_names() if ix else None


def _not_null_in_set(ctx: StatementContext, table: str, column: str) -> bool:
    """Declared NOT NULL (or PRIMARY KEY) in a CREATE TABLE, or SET NOT NULL, earlier in the set."""
    for prev in ctx.state.seen:
        if prev.relation is None or norm(prev.relation) != table:
            continue
        if prev.node == "CreateStmt":
            for elt in prev.fields.get("tableElts", []):
                col = elt.get("ColumnDef", {})
                if col.get("colname") == column and any(
                        c.get("Constraint", {}).get("contype") in ("CONSTR_NOTNULL", "CONSTR_PRIMARY")
                        for c in col.get("constraints", [])):
                    return True
        for _, subtype, cmd in prev.alter_cmds():
            if subtype == "AT_SetNotNull" and cmd.get("name") == column:
                return True
    return False


def check(ctx: StatementContext) -> Iterator[Hit]:
    table = norm(ctx.relation or "")
    if ctx.is_new(table):
        return
    for _, subtype, cmd in ctx.alter_cmds():
        con = cmd.get("def", {}).get("Constraint", {})
        if subtype != "AT_AddConstraint" or con.get("contype") != "CONSTR_PRIMARY" or not con.get("indexname"):
            continue
        index = con["indexname"]
        columns = _index_columns(ctx, table, index)
        t = ctx.table(table)
        if columns is None:
            yield Hit(
                f"PRIMARY KEY USING INDEX {ident(index)} sets its columns NOT NULL, reading all of {short(table)} "
                "under an AccessExclusiveLock unless they already are (assumed: the index's columns are unknown "
                "without a database - connect one with --dsn to know)",
                "-- first make each key column NOT NULL without a long lock (a validated CHECK, then SET NOT NULL: "
                "see A19006), then:\n" + ctx.sql + ";",
                severity="warning",
            )
            continue
        nullable = [c for c in columns if not _not_null_in_set(ctx, table, c) and not (
            t is not None and (col := t.column(c)) is not None and not col.nullable)]
        if not nullable:
            continue
        assumed = "" if t is not None else (" (assumed: without a database it is unknown whether they are NOT NULL "
                                            "already - connect one with --dsn to know)")
        yield Hit(
            f"PRIMARY KEY USING INDEX {ident(index)} makes {', '.join(ident(c) for c in nullable)} NOT NULL, reading "
            f"all of {short(table)} under an AccessExclusiveLock{assumed}",
            "\n".join(not_null_fix(statement_table(ctx), c, ctx.major) for c in nullable)
            + f"\n{ctx.sql};  -- now instant",
            severity=None if t is not None else "warning",
        )


RULE = Rule(
    code="A19036",
    name="pk-using-index-nullable",
    title="ADD PRIMARY KEY USING INDEX on nullable columns scans the table",
    severity="error",
    why="Attaching a unique index built CONCURRENTLY as the primary key is instant only when its columns are "
    "already NOT NULL. Otherwise PostgreSQL sets them NOT NULL first, reading every row under the "
    "AccessExclusiveLock of ALTER TABLE (observed on PostgreSQL 15: tests/test_lint_statements.py).",
    alternative="Make the key columns NOT NULL beforehand without the long lock (CHECK ... NOT VALID, VALIDATE, "
    "SET NOT NULL on 12+), then ADD PRIMARY KEY USING INDEX.",
    bad="CREATE UNIQUE INDEX CONCURRENTLY accounts_pkey_idx ON accounts (id);\n"
    "ALTER TABLE accounts ADD CONSTRAINT accounts_pkey PRIMARY KEY USING INDEX accounts_pkey_idx;",
    good="ALTER TABLE accounts ADD CONSTRAINT accounts_id_not_null CHECK (id IS NOT NULL) NOT VALID;\n"
    "ALTER TABLE accounts VALIDATE CONSTRAINT accounts_id_not_null;\n"
    "ALTER TABLE accounts ALTER COLUMN id SET NOT NULL;\n"
    "CREATE UNIQUE INDEX CONCURRENTLY accounts_pkey_idx ON accounts (id);\n"
    "ALTER TABLE accounts ADD CONSTRAINT accounts_pkey PRIMARY KEY USING INDEX accounts_pkey_idx;",
    check=check,
    nodes=("AlterTableStmt",),
    subcommands=("AT_AddConstraint",),
)
