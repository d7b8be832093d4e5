"""What each migration statement changes, read from PostgreSQL's own parse tree (pglast).

The runbook, the QA cases and the security review need more than a plan operation says: which
column is added and with which type, which index is built, which grant or policy is touched.
:func:`statement_facts` reads that from the statement; :func:`verification` turns one fact into a
catalog query that returns one row with a boolean ``ok`` (true when the change is in place).
"""

from __future__ import annotations

from typing import Any, Literal

import pglast
from pglast.enums import AlterTableType, ConstrType, ObjectType
from pglast.parser import ParseError
from pglast.stream import RawStream
from pydantic import BaseModel, Field

from agent19.migrate.patterns.sqlnames import ident, literal

FactKind = Literal[
    "add_column", "drop_column", "set_not_null", "drop_not_null", "alter_type", "set_default", "add_constraint",
    "validate_constraint", "drop_constraint", "create_index", "drop_index", "create_table", "drop_table",
    "truncate", "rename_column", "rename_table", "grant", "revoke", "policy", "rls", "function",
    "create_extension", "data_change", "other",
]


class ColumnFact(BaseModel):
    name: str
    type: str
    nullable: bool = True
    default: str | None = None


class StatementFact(BaseModel):
    kind: FactKind
    table: str | None = Field(default=None, description="the relation as written (schema-qualified if it was)")
    schema_name: str | None = None
    column: ColumnFact | None = None
    columns: list[ColumnFact] = []
    name: str | None = Field(default=None, description="index / constraint / function / extension / new name")
    unique: bool = False
    not_valid: bool = False
    constraint_type: str | None = None
    privileges: list[str] = []
    grantees: list[str] = []
    security_definer: bool = False
    sql: str = ""


def _rel(rv: Any) -> tuple[str, str | None]:
    name = ident(rv.relname)
    return (f"{ident(rv.schemaname)}.{name}" if rv.schemaname else name), rv.schemaname


def _column(coldef: Any) -> ColumnFact:
    nullable, default = True, None
    for c in coldef.constraints or ():
        if c.contype in (ConstrType.CONSTR_NOTNULL, ConstrType.CONSTR_PRIMARY):
            nullable = False
        elif c.contype == ConstrType.CONSTR_DEFAULT and c.raw_expr is not None:
            default = RawStream()(c.raw_expr)
    return ColumnFact(name=coldef.colname, type=RawStream()(coldef.typeName), nullable=nullable, default=default)


_ALTER = {
    AlterTableType.AT_DropColumn: "drop_column",
    AlterTableType.AT_SetNotNull: "set_not_null",
    AlterTableType.AT_DropNotNull: "drop_not_null",
    AlterTableType.AT_ColumnDefault: "set_default",
    AlterTableType.AT_ValidateConstraint: "validate_constraint",
    AlterTableType.AT_DropConstraint: "drop_constraint",
    AlterTableType.AT_EnableRowSecurity: "rls",
    AlterTableType.AT_DisableRowSecurity: "rls",
    AlterTableType.AT_ForceRowSecurity: "rls",
    AlterTableType.AT_NoForceRowSecurity: "rls",
}


def _alter_facts(stmt: Any, sql: str) -> list[StatementFact]:
    table, schema = _rel(stmt.relation)
    out: list[StatementFact] = []
    for cmd in stmt.cmds or ():
        base = {"table": table, "schema_name": schema, "sql": sql}
        st = cmd.subtype
        if st == AlterTableType.AT_AddColumn:
            col = _column(cmd.def_)
            out.append(StatementFact(kind="add_column", column=col, **base))
        elif st == AlterTableType.AT_AlterColumnType:
            col = ColumnFact(name=cmd.name, type=RawStream()(cmd.def_.typeName))
            out.append(StatementFact(kind="alter_type", column=col, **base))
        elif st == AlterTableType.AT_AddConstraint:
            con = cmd.def_
            out.append(StatementFact(
                kind="add_constraint", name=con.conname, not_valid=bool(con.skip_validation),
                constraint_type=ConstrType(con.contype).name.removeprefix("CONSTR_").lower(), **base))
        elif st in _ALTER:
            kind = _ALTER[st]
            column = ColumnFact(name=cmd.name, type="") if kind.endswith(("column", "null", "default")) else None
            name = cmd.name if kind.endswith("constraint") else None
            out.append(StatementFact(kind=kind, column=column, name=name, **base))  # type: ignore[arg-type]
        else:
            out.append(StatementFact(kind="other", **base))
    return out


def _privileges(stmt: Any) -> list[str]:
    return [p.priv_name for p in stmt.privileges] if stmt.privileges else ["all"]


def _one(stmt: Any, sql: str) -> list[StatementFact]:  # noqa: C901 — one branch per statement kind
    node = type(stmt).__name__
    if node == "AlterTableStmt":
        return _alter_facts(stmt, sql)
    if node == "IndexStmt":
        table, schema = _rel(stmt.relation)
        name = ident(stmt.idxname) if stmt.idxname else None
        if name and schema:
            name = f"{ident(schema)}.{name}"
        cols = [ColumnFact(name=p.name, type="") for p in stmt.indexParams or () if p.name]
        return [StatementFact(kind="create_index", table=table, schema_name=schema, name=name,
                              unique=bool(stmt.unique), columns=cols, sql=sql)]
    if node == "CreateStmt":
        table, schema = _rel(stmt.relation)
        cols = [_column(e) for e in stmt.tableElts or () if type(e).__name__ == "ColumnDef"]
        return [StatementFact(kind="create_table", table=table, schema_name=schema, columns=cols, sql=sql)]
    if node == "DropStmt":
        kinds = {ObjectType.OBJECT_TABLE: "drop_table", ObjectType.OBJECT_INDEX: "drop_index"}
        kind = kinds.get(stmt.removeType, "other")
        out = []
        for obj in stmt.objects or ():
            names = [n.sval for n in obj] if isinstance(obj, tuple) else []
            name = ".".join(ident(n) for n in names) or None
            out.append(StatementFact(kind=kind, table=name if kind == "drop_table" else None,  # type: ignore[arg-type]
                                     name=name, sql=sql))
        return out or [StatementFact(kind="other", sql=sql)]
    if node == "TruncateStmt":
        return [StatementFact(kind="truncate", table=_rel(r)[0], schema_name=r.schemaname, sql=sql)
                for r in stmt.relations]
    if node == "RenameStmt" and stmt.relation is not None:
        table, schema = _rel(stmt.relation)
        if stmt.renameType == ObjectType.OBJECT_COLUMN:
            return [StatementFact(kind="rename_column", table=table, schema_name=schema,
                                  column=ColumnFact(name=stmt.subname, type=""), name=stmt.newname, sql=sql)]
        if stmt.renameType == ObjectType.OBJECT_TABLE:
            return [StatementFact(kind="rename_table", table=table, schema_name=schema, name=stmt.newname, sql=sql)]
    if node == "GrantStmt":
        objects = [_rel(o)[0] for o in stmt.objects or () if type(o).__name__ == "RangeVar"]
        return [StatementFact(kind="grant" if stmt.is_grant else "revoke", table=", ".join(objects) or None,
                              privileges=_privileges(stmt),
                              grantees=[g.rolename or "PUBLIC" for g in stmt.grantees or ()], sql=sql)]
    if node in ("CreatePolicyStmt", "AlterPolicyStmt"):
        table, schema = _rel(stmt.table)
        return [StatementFact(kind="policy", table=table, schema_name=schema, name=stmt.policy_name, sql=sql)]
    if node == "CreateFunctionStmt":
        definer = any(o.defname == "security" and bool(o.arg.boolval) for o in stmt.options or ())
        name = ".".join(n.sval for n in stmt.funcname)
        return [StatementFact(kind="function", name=name, security_definer=definer, sql=sql)]
    if node == "CreateExtensionStmt":
        return [StatementFact(kind="create_extension", name=stmt.extname, sql=sql)]
    if node in ("UpdateStmt", "DeleteStmt", "InsertStmt"):
        table, schema = _rel(stmt.relation)
        return [StatementFact(kind="data_change", table=table, schema_name=schema, sql=sql)]
    return [StatementFact(kind="other", sql=sql)]


def statement_facts(sql: str) -> list[StatementFact]:
    """The facts of every statement in ``sql``; SQL that does not parse gives one ``other`` fact."""
    try:
        stmts = pglast.parse_sql(sql)
    except ParseError:
        return [StatementFact(kind="other", sql=sql)]
    out: list[StatementFact] = []
    for raw in stmts:
        out.extend(_one(raw.stmt, sql))
    return out


def _attr(f: StatementFact, column: str) -> str:
    return (f"FROM pg_attribute WHERE attrelid = to_regclass({literal(f.table or '')}) "
            f"AND attname = {literal(column)} AND NOT attisdropped")


def verification(f: StatementFact) -> tuple[str, str] | None:
    """``(query, expected)`` proving ``f`` is in place, or None when no catalog check applies.

    Every query returns one row with one boolean column ``ok``.
    """
    t = literal(f.table or "")
    col = f.column.name if f.column else ""
    if f.kind == "add_column" or (f.kind == "rename_column" and f.name):
        name = f.name if f.kind == "rename_column" and f.name else col
        return f"SELECT EXISTS (SELECT 1 {_attr(f, name)}) AS ok", "ok = true (the column exists)"
    if f.kind == "drop_column":
        return f"SELECT NOT EXISTS (SELECT 1 {_attr(f, col)}) AS ok", "ok = true (the column is gone)"
    if f.kind in ("set_not_null", "drop_not_null"):
        want = "" if f.kind == "set_not_null" else "NOT "
        return (f"SELECT coalesce((SELECT {want}attnotnull {_attr(f, col)}), false) AS ok",
                f"ok = true (the column is {'NOT NULL' if not want else 'nullable'})")
    if f.kind == "alter_type" and f.column:
        return (f"SELECT coalesce((SELECT atttypid = to_regtype({literal(f.column.type)}) {_attr(f, col)}), false)"
                " AS ok", f"ok = true (the column's type is {f.column.type})")
    if f.kind in ("add_constraint", "validate_constraint") and f.name:
        valid = "true" if f.not_valid else "convalidated"
        what = "exists (NOT VALID until validated)" if f.not_valid else "exists and is validated"
        return (f"SELECT coalesce((SELECT {valid} FROM pg_constraint WHERE conrelid = to_regclass({t}) "
                f"AND conname = {literal(f.name)}), false) AS ok", f"ok = true (the constraint {what})")
    if f.kind == "drop_constraint" and f.name:
        return (f"SELECT NOT EXISTS (SELECT 1 FROM pg_constraint WHERE conrelid = to_regclass({t}) "
                f"AND conname = {literal(f.name)}) AS ok", "ok = true (the constraint is gone)")
    if f.kind == "create_index" and f.name:
        return (f"SELECT coalesce((SELECT indisvalid AND indisready FROM pg_index "
                f"WHERE indexrelid = to_regclass({literal(f.name)})), false) AS ok",
                "ok = true (the index exists and is valid; false means a failed build left it INVALID)")
    if f.kind == "create_index" and f.columns:
        return (f"SELECT EXISTS (SELECT 1 FROM pg_index i JOIN pg_attribute a ON a.attrelid = i.indrelid "
                f"AND a.attnum = i.indkey[0] WHERE i.indrelid = to_regclass({t}) "
                f"AND a.attname = {literal(f.columns[0].name)} AND i.indisvalid) AS ok",
                f"ok = true (a valid index on {f.columns[0].name} exists)")
    if f.kind in ("create_table", "drop_table", "drop_index"):
        name = f.table if f.kind != "drop_index" else f.name
        exists = f.kind == "create_table"
        test = "IS NOT NULL" if exists else "IS NULL"
        state = "exists" if exists else "is gone"
        return f"SELECT to_regclass({literal(name or '')}) {test} AS ok", f"ok = true ({name} {state})"
    if f.kind == "rename_table" and f.name:
        new = f"{ident(f.schema_name)}.{ident(f.name)}" if f.schema_name else ident(f.name)
        return (f"SELECT to_regclass({literal(new)}) IS NOT NULL AND to_regclass({t}) IS NULL AS ok",
                f"ok = true (the table is now {new})")
    if f.kind == "create_extension" and f.name:
        return (f"SELECT EXISTS (SELECT 1 FROM pg_extension WHERE extname = {literal(f.name)}) AS ok",
                f"ok = true (extension {f.name} is installed)")
    if f.kind == "rls" and f.table:
        return (f"SELECT relrowsecurity AS ok FROM pg_class WHERE oid = to_regclass({t})",
                "ok = true when row-level security was enabled (false when disabled)")
    return None
