"""Read the expressions EXPLAIN prints (``Filter: ((lower(email) = 'x'::text) AND …)``).

EXPLAIN prints conditions as SQL expressions, so they are parsed with pglast (the server's own
grammar) rather than matched with regular expressions.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Literal

from pglast import ast, parse_sql
from pglast.parser import ParseError
from pglast.stream import RawStream
from pglast.visitors import Visitor

ProblemKind = Literal["function", "cast", "leading_wildcard"]
_LIKE_OPS = {"~~", "~~*"}


@dataclass(frozen=True)
class FilterProblem:
    kind: ProblemKind
    column: str
    expression: str
    index: str | None


def _tree(expression: str) -> Any | None:
    try:
        return parse_sql(f"SELECT {expression}")
    except ParseError:
        return None


def _column(node: Any) -> str | None:
    if isinstance(node, ast.ColumnRef) and node.fields:
        last = node.fields[-1]
        return last.sval if isinstance(last, ast.String) else None
    return None


def _const_text(node: Any) -> str | None:
    if isinstance(node, ast.TypeCast):
        node = node.arg
    if isinstance(node, ast.A_Const) and isinstance(node.val, ast.String):
        return node.val.sval
    return None


def filter_columns(expression: str) -> list[str]:
    """The columns an expression mentions, in order of first appearance."""
    tree = _tree(expression)
    if tree is None:
        return []
    seen: list[str] = []

    class Columns(Visitor):  # type: ignore[misc]
        def visit_ColumnRef(self, ancestors: Any, node: ast.ColumnRef) -> None:
            name = _column(node)
            if name and name not in seen:
                seen.append(name)

    Columns()(tree)
    return seen


def unusable_filters(expression: str, indexes: dict[str, list[str]]) -> list[FilterProblem]:
    """Predicates of ``expression`` on indexed columns that no index can serve as written.

    ``indexes``: index name → key columns (expression keys as ``pg_get_indexdef`` prints them).
    A column counts as indexed when it leads some index. A leading-wildcard LIKE is reported for any
    column (a btree index never serves it; a trigram index would).
    """
    tree = _tree(expression)
    if tree is None:
        return []
    leading = {keys[0]: name for name, keys in indexes.items() if keys}
    expr_keys = {k.replace(" ", "") for keys in indexes.values() for k in keys}
    problems: list[FilterProblem] = []

    class Finder(Visitor):  # type: ignore[misc]
        def visit_A_Expr(self, ancestors: Any, node: ast.A_Expr) -> None:
            op = node.name[-1].sval if node.name else ""
            col = _column(node.lexpr)
            pattern = _const_text(node.rexpr)
            if op in _LIKE_OPS and col and pattern is not None and pattern[:1] in {"%", "_"}:
                problems.append(FilterProblem("leading_wildcard", col, RawStream()(node), leading.get(col)))

        def visit_FuncCall(self, ancestors: Any, node: ast.FuncCall) -> None:
            text = RawStream()(node)
            if text.replace(" ", "") in expr_keys:
                return
            for arg in node.args or ():
                col = _column(arg)
                if col in leading:
                    problems.append(FilterProblem("function", col, text, leading[col]))

        def visit_TypeCast(self, ancestors: Any, node: ast.TypeCast) -> None:
            col = _column(node.arg)
            target = node.typeName.names[-1].sval if node.typeName and node.typeName.names else ""
            # varchar → text is binary-coercible: a btree index on the varchar column still serves it
            if col in leading and target not in {"text", "varchar"}:
                problems.append(FilterProblem("cast", col, RawStream()(node), leading[col]))

    Finder()(tree)
    return problems
