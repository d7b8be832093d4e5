"""Which statements can lose data — judged on the pglast parse tree, never on keywords.

:func:`detect` splits the SQL into statements (PostgreSQL's own grammar, so comments, strings and
dollar quotes cannot hide or fake a statement) and returns a :class:`Finding` per destructive
operation: its kind, risk level, whether data loss is possible, and the objects at stake.

What cannot be verified before running — a ``DO`` block, a procedure ``CALL``, ``EXECUTE`` of a
prepared statement, a call of a volatile function for its side effects — is reported as
``unverifiable``, which counts as destructive. With :class:`~agent19.safety.facts.Facts` from the
live catalog, detection also sees ``WHERE id IS NOT NULL`` on a NOT NULL column, narrowing type
changes and user-defined volatile functions; without them it is more cautious.

What a statement destroys is not decided here: each statement is classified into its form of the
knowledge table (:func:`agent19.migrate.classification.classify.rows_of`, on the statement alone),
and a row that :attr:`~agent19.migrate.classification.behaviour.Behaviour.destroys` an object gives
the finding's kind, risk and the data it loses. What depends on the data or the catalog is judged
here: DELETE/UPDATE reaching every row (also inside CTEs and EXPLAIN ANALYZE), narrowing type
changes, volatile calls, code that cannot be read before it runs.
"""

from __future__ import annotations

from enum import StrEnum
from typing import Any

from pydantic import BaseModel, Field

from agent19.migrate.classification.behaviour import Behaviour
from agent19.migrate.classification.classify import rows_of
from agent19.migrate.parse import Statement, parse_sql
from agent19.safety import kinds, type_facts
from agent19.safety import types as sqltypes
from agent19.safety.facts import Facts, range_var_name
from agent19.safety.function_facts import SIDE_EFFECT
from agent19.safety.where import always_true, row_independent, truth
from agent19.sqltree import qualified_name, walk


class Risk(StrEnum):
    CRITICAL = "critical"
    HIGH = "high"
    MEDIUM = "medium"


class Target(BaseModel):
    kind: str = Field(description="table, database, schema, column, index, view, materialized view, type, ...")
    name: str = Field(description="as written in the statement (schema-qualified when it was)")
    column: str | None = None


class Finding(BaseModel):
    statement: int = Field(description="0-based index of the statement in the input")
    line: int
    kind: str = Field(description="e.g. drop_table, truncate, delete_all, update_all, drop_column, unverifiable")
    risk: Risk
    data_loss: bool = Field(description="whether data can be lost (not only definitions)")
    cascade: bool = False
    targets: list[Target] = []
    reason: str


RISK_OF = {"low": Risk.MEDIUM, "medium": Risk.MEDIUM, "high": Risk.HIGH, "critical": Risk.CRITICAL}
"""A knowledge-table row's risk as a finding's: anything that destroys is at least medium."""
# Volatile built-ins that change no data: calling them is not "for side effects".
HARMLESS_VOLATILE = {
    "random", "random_normal", "setseed", "clock_timestamp", "timeofday", "gen_random_uuid", "uuid_generate_v4",
    "pg_sleep", "pg_sleep_for", "pg_sleep_until", "nextval", "currval", "lastval", "txid_current",
    "pg_current_xact_id", "txid_current_if_assigned", "pg_current_xact_id_if_assigned",
}
EVALUATING_NODES = {"DeleteStmt", "UpdateStmt", "SelectStmt", "InsertStmt", "ExplainStmt", "MergeStmt",
                    "CreateTableAsStmt", "CopyStmt", "DeclareCursorStmt"}
"""Statements that evaluate expressions when they run (so the functions they call run too)."""
UNVERIFIABLE_NODES = {
    "DoStmt": "a DO block runs procedural code (possibly dynamic EXECUTE format(...)) that cannot be verified "
              "before it runs",
    "CallStmt": "CALL runs a procedure whose statements cannot be verified before it runs",
    "ExecuteStmt": "EXECUTE runs a prepared statement whose text is not given here",
}


def detect(sql: str | list[Statement], facts: Facts | None = None) -> list[Finding]:
    """Every destructive (or unverifiable) operation in ``sql``, in statement order."""
    statements = parse_sql(sql) if isinstance(sql, str) else sql
    findings: list[Finding] = []
    for st in statements:
        findings.extend(judge(st, facts))
    return findings


def judge(st: Statement, facts: Facts | None = None) -> list[Finding]:
    """The findings of one statement (nested DML in CTEs and EXPLAIN ANALYZE included)."""
    out: list[Finding] = []

    def add(kind: str, risk: Risk, data_loss: bool, targets: list[Target], reason: str, cascade: bool = False) -> None:
        out.append(Finding(statement=st.index, line=st.line, kind=kind, risk=risk, data_loss=data_loss,
                           cascade=cascade, targets=targets, reason=reason))

    for row, cmd in rows_of(st):  # one row per statement, or per ALTER TABLE sub-command in order
        if row.destroys:
            _destroys(st, row, cmd, add)
        elif cmd is not None and cmd.get("subtype") == "AT_AlterColumnType":
            _type_change(st.fields, cmd, facts, add)
    if st.node in UNVERIFIABLE_NODES:
        add("unverifiable", Risk.HIGH, True, [], UNVERIFIABLE_NODES[st.node])
    if st.node in EVALUATING_NODES:
        _dml(st.tree, facts, add)
        _side_effects(st.tree, facts, add)
    return out


def not_known_safe(st: Statement) -> Finding | None:
    """A finding when ``st``'s kind is not on the allowlist of kinds that lose nothing
    (:mod:`agent19.safety.kinds`): an unknown kind is destructive until shown otherwise."""
    why = kinds.unlisted_reason(st)
    if why is None:
        return None
    return Finding(statement=st.index, line=st.line, kind="not_known_safe", risk=Risk.HIGH, data_loss=True,
                   reason=why)


def _object_name(obj: dict[str, Any]) -> str:
    if "List" in obj:
        return qualified_name(obj["List"].get("items", []))
    if "String" in obj:
        return obj["String"].get("sval", "")
    if "ObjectWithArgs" in obj:
        return qualified_name(obj["ObjectWithArgs"].get("objname", []))
    if "TypeName" in obj:
        return qualified_name(obj["TypeName"].get("names", []))
    return "?"


def _destroys(st: Statement, row: Behaviour, cmd: dict[str, Any] | None, add: Any) -> None:
    """A finding for a statement whose knowledge-table form destroys an object (:attr:`Behaviour.destroys`):
    its kind, risk and data loss are the row's; the names at stake are read from the statement."""
    f = cmd if cmd is not None else st.fields
    kind, what = row.family, row.destroys
    if st.node == "DropStmt" and row.destroys == "object":  # the table's catch-all row: named by the statement
        remove = f.get("removeType", "").removeprefix("OBJECT_").lower()
        kind, what = f"drop_{remove}", remove.replace("_", " ")
    if st.node == "DropStmt":
        verb, targets = f"DROP {what.upper()}", [Target(kind=what, name=_object_name(o)) for o in f.get("objects", [])]
    elif st.node == "DropdbStmt":
        verb, targets = "DROP DATABASE", [Target(kind=what, name=f.get("dbname", ""))]
    elif st.node == "TruncateStmt":
        verb, targets = "TRUNCATE", [Target(kind=what, name=range_var_name(r)) for r in f.get("relations", [])]
    elif cmd is not None and cmd.get("subtype") == "AT_DropColumn":
        table = range_var_name(st.fields.get("relation", {}))
        verb, targets = f"DROP COLUMN {f.get('name')}", [Target(kind=what, name=table, column=f.get("name"))]
    else:
        verb, targets = row.form, []
    cascade = f.get("behavior") == "DROP_CASCADE"
    risk, data_loss = RISK_OF[row.risk], row.data_loss
    reason = f"{verb} removes {row.loses or 'its definition'}"
    if cascade:
        # CASCADE also removes whatever depends on it: columns of other tables, views, rows of referencing tables.
        data_loss = True
        risk = Risk.CRITICAL if row.destroys in {"schema", "table"} else max(risk, Risk.HIGH, key=_rank)
        reason += (", and CASCADE empties every table that references it" if st.node == "TruncateStmt"
                   else ", and CASCADE drops every dependent object")
    add(kind, risk, data_loss, targets, reason, cascade)


def _rank(r: Risk) -> int:
    return [Risk.MEDIUM, Risk.HIGH, Risk.CRITICAL].index(r)


def _type_change(f: dict[str, Any], c: dict[str, Any], facts: Facts | None, add: Any) -> None:
    """A type change loses data or not by the old and new types: judged here, on the types the server resolves
    (:mod:`agent19.safety.type_facts`: a domain's base type, an array's elements), or on the names as written
    when there are no facts. (DROP CONSTRAINT loses a guarantee, DROP NOT NULL / DROP DEFAULT keep every value:
    not destructive.)"""
    table = range_var_name(f.get("relation", {}))
    tfacts = facts.table(table) if facts else None
    col = c.get("name")
    type_name = c.get("def", {}).get("ColumnDef", {}).get("typeName", {})
    new = sqltypes.from_type_name(type_name)
    shown = sqltypes.describe(new)
    target = [Target(kind="column", name=table, column=col)]
    if c.get("def", {}).get("ColumnDef", {}).get("raw_default") is not None:
        add("alter_column_type", Risk.HIGH, True, target,
            f"ALTER COLUMN {col} TYPE {shown} USING ... rewrites every value with an "
            "expression that cannot be verified to keep it")
        return
    if facts is not None and (k := type_facts.key(type_name)) in facts.types:
        resolved = facts.types[k]
        if resolved is None:
            add("alter_column_type", Risk.HIGH, True, target,
                f"ALTER COLUMN {col} TYPE {type_facts.written(type_name) or shown}: the server knows no such type "
                "(yet), so it may be narrowing")
            return
        new, shown = resolved.sql_type, resolved.describe()
    cf = tfacts.columns.get(col or "") if tfacts else None
    if cf is None:
        if new.name != "text" or new.array:
            add("alter_column_type", Risk.HIGH, True, target,
                f"ALTER COLUMN {col} TYPE {shown}: the column's current type is unknown "
                "here, so it may be narrowing")
        return
    current = facts.column_types.get((table, col or "")) if facts else None
    old = current.sql_type if current is not None else sqltypes.from_catalog(cf.type_name, cf.typmod)
    if sqltypes.loses_data(old, new):
        was = current.describe() if current is not None else cf.formatted
        measured = facts.changed.get((table, col or "", type_facts.key(type_name))) if facts else None
        counted = "" if measured is None else (
            f"; measured now: {measured[0]:,} of {measured[1]:,} rows change" if measured[0] else
            f"; measured now: none of {measured[1]:,} rows changes (a row written before it runs still can)")
        add("alter_column_type", Risk.HIGH, True, target,
            f"ALTER COLUMN {col} TYPE {was} -> {shown} narrows the type: values "
            f"can be truncated, rounded or fail to convert{counted}")


def _dml(tree: dict[str, Any], facts: Facts | None, add: Any) -> None:
    for node, f in walk(tree):
        if node not in {"DeleteStmt", "UpdateStmt"}:
            continue
        table = range_var_name(f.get("relation", {}))
        alias = (f.get("relation", {}).get("alias") or {}).get("aliasname")
        tfacts = facts.table(table) if facts else None
        not_null = tfacts.not_null() if tfacts else set()
        where = f.get("whereClause")
        verb = "DELETE" if node == "DeleteStmt" else "UPDATE"
        kind, risk = ("delete_all", Risk.CRITICAL) if node == "DeleteStmt" else ("update_all", Risk.HIGH)
        if where is None:
            why = f"{verb} without WHERE affects every row of {table}"
        elif always_true(where, not_null, names := {table.rsplit('.', 1)[-1], alias} - {None}):
            why = f"{verb} with a WHERE that is true for every row affects every row of {table}"
        elif truth(where, not_null, names) is None and row_independent(where):
            why = (f"{verb} with a WHERE that does not depend on the row (only constants and stable functions "
                   f"such as now()) affects every row of {table}, or none")
        else:
            continue
        add(kind, risk, True, [Target(kind="table", name=table)], why)


def _side_effects(tree: dict[str, Any], facts: Facts | None, add: Any) -> None:
    seen: set[str] = set()
    for node, f in walk(tree):
        if node != "FuncCall":
            continue
        written = qualified_name(f.get("funcname", []))
        name = written.rsplit(".", 1)[-1]
        if written in seen or name in HARMLESS_VOLATILE:
            continue
        known = facts.functions.get(written) if facts else None
        if name in SIDE_EFFECT or (known is not None and known.volatile):
            seen.add(written)
            add("unverifiable", Risk.HIGH, True, [Target(kind="function", name=written)],
                f"calls {written}(), a volatile function, for its side effects: what it changes cannot be verified")
        elif facts is not None and known is None:
            seen.add(written)
            add("unverifiable", Risk.HIGH, True, [Target(kind="function", name=written)],
                f"calls {written}(), which agent19 cannot resolve in the catalog as the server would: what it "
                "changes cannot be verified")
