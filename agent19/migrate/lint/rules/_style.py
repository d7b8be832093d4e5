"""What the style rules share: the columns a statement declares (CREATE TABLE, ADD COLUMN, ALTER COLUMN TYPE)."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

from agent19.migrate.lint.rules._base import Rule, StatementContext, column_constraints, short, type_name
from agent19.migrate.patterns.sqlnames import ident

KEY_CONSTRAINTS = {"CONSTR_PRIMARY", "CONSTR_UNIQUE", "CONSTR_FOREIGN"}


@dataclass(frozen=True)
class DeclaredColumn:
    table: str
    name: str
    type: str
    """the type's last name part as PostgreSQL's parser spells it: int4, serial, varchar, bpchar, timestamp…"""
    typmods: int
    """how many modifiers the type has, e.g. 1 for varchar(20)"""
    key: bool
    """part of a primary key, unique constraint or foreign key, or named like one (id, …_id)"""
    primary: bool
    action: str
    """how it is declared: "column" (CREATE TABLE / ADD COLUMN) or "type" (ALTER COLUMN … TYPE)"""

    @property
    def label(self) -> str:
        return f"{short(self.table)}.{ident(self.name)}"


def _names(items: list[dict[str, Any]]) -> set[str]:
    return {i.get("String", {}).get("sval", "") for i in items}


def declared_columns(ctx: StatementContext) -> Iterator[DeclaredColumn]:
    table = ctx.relation or ""
    defs: list[tuple[dict[str, Any], str]] = []
    table_keys: set[str] = set()
    table_pk: set[str] = set()
    if ctx.node == "CreateStmt":
        for elt in ctx.fields.get("tableElts", []):
            if "ColumnDef" in elt:
                defs.append((elt["ColumnDef"], "column"))
            con = elt.get("Constraint", {})
            if con.get("contype") in KEY_CONSTRAINTS:
                cols = _names(con.get("keys", []) or con.get("fk_attrs", []))
                table_keys |= cols
                if con.get("contype") == "CONSTR_PRIMARY":
                    table_pk |= cols
    for _, subtype, cmd in ctx.alter_cmds():
        if subtype == "AT_AddColumn":
            defs.append((cmd.get("def", {}).get("ColumnDef", {}), "column"))
        elif subtype == "AT_AlterColumnType":
            defs.append((dict(cmd.get("def", {}).get("ColumnDef", {}), colname=cmd.get("name", "")), "type"))
        elif subtype == "AT_AddConstraint":
            con = cmd.get("def", {}).get("Constraint", {})
            if con.get("contype") in KEY_CONSTRAINTS:
                table_keys |= _names(con.get("keys", []) or con.get("fk_attrs", []))
    for coldef, action in defs:
        name = coldef.get("colname", "")
        kinds = {c.get("contype") for c in column_constraints(coldef)}
        tn = coldef.get("typeName", {})
        yield DeclaredColumn(
            table=table, name=name, type=type_name(tn), typmods=len(tn.get("typmods", [])),
            key=bool(kinds & KEY_CONSTRAINTS) or name in table_keys or name == "id" or name.endswith("_id"),
            primary="CONSTR_PRIMARY" in kinds or name in table_pk, action=action,
        )


def style_rule(**fields: Any) -> Rule:
    """A :class:`Rule` in the style group (off by default; warning unless the config says otherwise)."""
    return Rule(severity="warning", group="style", pg_version=160000, **fields)
