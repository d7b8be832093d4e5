"""A planned CREATE INDEX the live catalog already answers: an index (or table) of that name in the table's schema
makes the statement fail (``relation … already exists``; with IF NOT EXISTS it does nothing), and an index on the
same columns under another name is a duplicate — writes and space for no new read. Plain column lists only: an
expression or a predicate is not compared (it would be a guess)."""

from __future__ import annotations

from typing import Any

from agent19.db.models import SchemaSnapshot, Table
from agent19.migrate.lint.rules._base import rel_name
from agent19.migrate.parse import Statement
from agent19.migrate.patterns.live import find_table
from agent19.migrate.planning.model import PlanFinding


def existing_index_findings(statements: list[Statement], catalog: SchemaSnapshot | None) -> list[PlanFinding]:
    if catalog is None:
        return []
    out: list[PlanFinding] = []
    dropped: set[str] = set()  # names an earlier DROP INDEX of the script frees
    for i, s in enumerate(statements):
        f = s.fields
        if s.node == "DropStmt" and f.get("removeType") == "OBJECT_INDEX":
            dropped |= {_last(o) for o in f.get("objects") or []}
            continue
        rel = f.get("relation")
        if s.node != "IndexStmt" or not isinstance(rel, dict):
            continue
        table = find_table(catalog, rel_name(rel))
        if table is None:
            continue
        name = f.get("idxname")
        same_schema = [t for t in catalog.tables if t.schema_name == table.schema_name]
        taken = {ix.name: t for t in same_schema for ix in t.indexes} | {t.name: t for t in same_schema}
        if name and name in taken and name not in dropped:
            where = f"{table.schema_name}.{name}"
            out.append(PlanFinding(
                rule="already-exists", operation=i + 1, severity="info" if f.get("if_not_exists") else "error",
                message=f"line {s.line}: {where} already exists"
                + (" (IF NOT EXISTS: the statement does nothing, whatever the existing index's definition)"
                   if f.get("if_not_exists") else ": the statement fails (relation already exists)"),
                fix="leave the statement out, or drop the existing index first if its definition is wrong "
                f"(DROP INDEX CONCURRENTLY {where})"))
            continue
        same = _same_definition(f, table)
        if same is not None:
            out.append(PlanFinding(
                rule="duplicate-index", operation=i + 1, severity="warning",
                message=f"line {s.line}: {table.schema_name}.{same} already indexes "
                f"{table.qualified_name} ({', '.join(same_cols(f))}) the same way: a second index slows every "
                "write and takes space, and serves no read the first does not",
                fix=f"leave the statement out (the index {same} exists)"))
    return out


def same_cols(f: dict[str, Any]) -> list[str]:
    return [p["IndexElem"].get("name") or "?" for p in f.get("indexParams") or []]


def _same_definition(f: dict[str, Any], table: Table) -> str | None:
    params = [p.get("IndexElem", {}) for p in f.get("indexParams") or []]
    if f.get("whereClause") or f.get("indexIncludingParams") or not params or any(
            set(p) - {"name", "ordering", "nulls_ordering"} or p.get("ordering") != "SORTBY_DEFAULT"
            or p.get("nulls_ordering") != "SORTBY_NULLS_DEFAULT" for p in params):
        return None
    cols = [p["name"] for p in params]
    method = f.get("accessMethod") or "btree"
    for ix in table.indexes:
        if (ix.key_names() == cols and ix.method == method and not ix.partial and ix.valid
                and (ix.unique or ix.primary) >= bool(f.get("unique"))):
            return ix.name
    return None


def _last(obj: Any) -> str:
    items = obj.get("List", {}).get("items", []) if isinstance(obj, dict) else []
    return items[-1]["String"]["sval"] if items and "String" in items[-1] else ""
