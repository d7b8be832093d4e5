"""What a statement's text names, before resolution (:mod:`agent19.safety.readonly_catalog`)."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

from agent19.sqltree import walk

IMPLICIT_OPERATORS = ("=", "<>", "<", ">", "<=", ">=")
WRITES = ("InsertStmt", "UpdateStmt", "DeleteStmt", "MergeStmt")


@dataclass
class Written:
    """What the statement's text names, before resolution."""

    functions: list[list[str]] = field(default_factory=list)
    operators: set[str] = field(default_factory=set)
    relations: list[dict[str, Any]] = field(default_factory=list)
    targets: list[dict[str, Any]] = field(default_factory=list)
    """Relations written (INSERT/UPDATE/DELETE/MERGE): the rewriter adds their defaults and rules."""
    casts: list[list[str]] = field(default_factory=list)
    columns: set[str] = field(default_factory=set)


def _names(items: list[dict[str, Any]]) -> list[str]:
    return [n.get("String", {}).get("sval", "") for n in items]


def untagged_relations(f: dict[str, Any]) -> Iterator[tuple[str, dict[str, Any]]]:
    """``RangeVar`` fields of a node that pglast's JSON leaves without their tag (``InsertStmt.relation``…):
    :func:`agent19.sqltree.walk` does not yield them."""
    for key, value in f.items():
        if key[:1].islower() and isinstance(value, dict) and "relname" in value:
            yield key, value


def written(tree: Any) -> Written:
    w = Written(operators=set(IMPLICIT_OPERATORS))
    for node, f in walk(tree):
        if node == "FuncCall":
            w.functions.append(_names(f.get("funcname", [])))
        elif node in ("A_Expr", "SubLink", "SortBy"):  # x op y; x op ANY (SELECT …); ORDER BY x USING op
            op = _names(f.get("name") or f.get("operName") or f.get("useOp") or [])
            if op:
                w.operators.add(op[-1])
        elif node == "RangeVar":
            w.relations.append(f)
        elif node in ("TypeCast", "ColumnDef", "RangeTableFuncCol"):  # x::t, AS f(col t), XMLTABLE columns
            w.casts.append(_names(f.get("typeName", {}).get("names", [])))
        elif node == "ColumnRef":
            w.columns |= {n for n in _names(f.get("fields", [])) if n}
        for key, value in untagged_relations(f):  # a write's target: pglast leaves its RangeVar untagged
            w.relations.append(value)
            if key == "relation" and node in WRITES:
                w.targets.append(value)
    return w


