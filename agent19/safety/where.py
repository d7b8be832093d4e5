"""Whether a DELETE's or UPDATE's WHERE reaches every row, judged on its parse tree: a constant true
(``true``, ``1=1``, ``'t'::bool``), an OR with such a branch, ``col IS NOT NULL`` or ``col = col`` on a NOT NULL
column, or a value that is the same for every row. The destructive-operation check
(:mod:`agent19.safety.detect`) and lint (:func:`agent19.migrate.lint.rules._base.every_row`) both read it here,
so they agree; it imports nothing beyond the parse tree's helpers, so a lint stays quick to start."""

from __future__ import annotations

from typing import Any

from agent19.migrate.classification.knowledge import NON_VOLATILE_FUNCTIONS
from agent19.sqltree import qualified_name, walk

_TRUE_TEXT = {"t", "true", "y", "yes", "on", "1"}
_FALSE_TEXT = {"f", "false", "n", "no", "off", "0"}


def _const(node: dict[str, Any]) -> tuple[bool, Any]:
    """(is a constant, its value) for literals and casts of literals."""
    if "A_Const" in node:
        c = node["A_Const"]
        if c.get("isnull"):
            return True, None
        for key in ("ival", "fval", "sval", "boolval", "bsval"):
            if key in c:
                inner = c[key]
                value = inner.get(key, 0 if key == "ival" else False if key == "boolval" else "")
                return True, float(value) if key == "fval" else value
        return True, None
    if "TypeCast" in node:
        ok, value = _const(node["TypeCast"].get("arg", {}))
        names = [n.get("String", {}).get("sval") for n in node["TypeCast"].get("typeName", {}).get("names", [])]
        if ok and names and names[-1] in {"bool", "boolean"} and isinstance(value, str):
            low = value.strip().lower()
            return True, True if low in _TRUE_TEXT else False if low in _FALSE_TEXT else value
        return ok, value
    return False, None


_OPS = {
    "=": lambda a, b: a == b, "<>": lambda a, b: a != b, "!=": lambda a, b: a != b,
    "<": lambda a, b: a < b, ">": lambda a, b: a > b, "<=": lambda a, b: a <= b, ">=": lambda a, b: a >= b,
}


def truth(node: dict[str, Any], not_null: set[str], names: set[str]) -> bool | None:
    """True / False when the expression has that value for every row; None when it depends."""
    ok, value = _const(node)
    if ok:
        return value if isinstance(value, bool) else None
    if "BoolExpr" in node:
        b = node["BoolExpr"]
        parts = [truth(a, not_null, names) for a in b.get("args", [])]
        if b.get("boolop") == "OR_EXPR":
            return True if True in parts else (False if all(p is False for p in parts) else None)
        if b.get("boolop") == "AND_EXPR":
            return False if False in parts else (True if all(p is True for p in parts) else None)
        if b.get("boolop") == "NOT_EXPR" and parts and parts[0] is not None:
            return not parts[0]
        return None
    if "A_Expr" in node:
        e = node["A_Expr"]
        op = qualified_name(e.get("name", [])).rsplit(".", 1)[-1]
        lok, lval = _const(e.get("lexpr") or {})
        rok, rval = _const(e.get("rexpr") or {})
        if e.get("kind") == "AEXPR_OP" and op in _OPS and lok and rok and None not in (lval, rval):
            try:
                return bool(_OPS[op](lval, rval))
            except TypeError:
                return None
        lcol, rcol = _column(e.get("lexpr") or {}, names), _column(e.get("rexpr") or {}, names)
        if op in {"=", "<=", ">="} and lcol and lcol == rcol and lcol in not_null:
            return True
        return None
    if "NullTest" in node:
        t = node["NullTest"]
        arg = t.get("arg", {})
        col = _column(arg, names)
        aok, aval = _const(arg)
        not_null_arg = (col is not None and col in not_null) or (aok and aval is not None)
        if not_null_arg:
            return t.get("nulltesttype") == "IS_NOT_NULL"
        if aok and aval is None:
            return t.get("nulltesttype") == "IS_NULL"
    return None


def _column(node: dict[str, Any], names: set[str]) -> str | None:
    """The target table's column a ColumnRef names (qualified by the table or its alias, or bare)."""
    fields = node.get("ColumnRef", {}).get("fields")
    if not fields:
        return None
    parts = [p.get("String", {}).get("sval") for p in fields]
    if None in parts:
        return None
    if len(parts) > 1 and parts[-2] not in names:
        return None
    return parts[-1]


def _references_rows(node: Any) -> bool:
    return any(n in {"ColumnRef", "SubLink", "FuncCall"} for n, _ in walk(node))


def row_independent(where: dict[str, Any]) -> bool:
    """Whether ``where`` has the same value for every row: no column, sub-query or parameter, and only
    functions known not to be volatile (``now() > '2020-01-01'``). Unknown functions count as
    depending on the row, since they may read it."""
    nodes = list(walk(where))
    if any(n in {"ColumnRef", "SubLink", "ParamRef"} for n, _ in nodes):
        return False
    called = {qualified_name(f["funcname"]).rsplit(".", 1)[-1].lower() for n, f in nodes if n == "FuncCall"}
    return called <= NON_VOLATILE_FUNCTIONS


def always_true(where: dict[str, Any], not_null: set[str], names: set[str]) -> bool:
    """Whether ``where`` selects every row: a constant true (``true``, ``1=1``, ``'t'::bool``), an OR
    with such a branch, ``col IS NOT NULL`` on a NOT NULL column, ``col = col`` on one."""
    value = truth(where, not_null, names)
    if value is not None:
        return value
    # No column, sub-query or function in it: the same value for every row, so all rows or none.
    return not _references_rows(where) and "ParamRef" not in {n for n, _ in walk(where)}
