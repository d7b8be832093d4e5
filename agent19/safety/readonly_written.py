"""What a statement's text names, before resolution (:mod:`agent19.safety.readonly_catalog`)."""

from __future__ import annotations

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
        if node in WRITES and isinstance(target := f.get("relation"), dict):  # walked as a RangeVar too
            w.targets.append(target)
    return w


