"""Small helpers over pglast's JSON parse tree (libpg_query: the server's own grammar).

The JSON form is used where code only needs to look for node types anywhere in a tree
(functions called, statements nested in a string); the typed AST (``pglast.parse_sql``)
where code reads statements field by field.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

from pglast.parser import ParseError, parse_sql_json


def parse_json(sql: str) -> list[dict[str, Any]]:
    """The statements of ``sql`` as JSON trees (raises :class:`pglast.parser.ParseError`)."""
    return json.loads(parse_sql_json(sql)).get("stmts", [])


def fold_identifier(name: str) -> str:
    """An unquoted identifier as the server stores it: ``A``-``Z`` folded to lower case, nothing else (the
    server's ``downcase_identifier`` leaves non-ASCII letters alone in a UTF8 database, so ``Ökill`` stays
    ``Ökill``; Python's ``str.lower`` would make it ``ökill``, another name). Every guard that folds a name it
    read from text folds it here."""
    return name.translate(_ASCII_LOWER)


_ASCII_LOWER = str.maketrans("ABCDEFGHIJKLMNOPQRSTUVWXYZ", "abcdefghijklmnopqrstuvwxyz")


UNTAGGED = {"RangeVar": "relname"}
"""Node types pglast's JSON may leave untagged (a field the grammar types as one), by a field only they have."""


def untagged(key: str, value: dict[str, Any], node_type: str = "RangeVar") -> bool:
    """``value``, under field ``key``, is an untagged ``node_type`` node."""
    return key[:1].islower() and UNTAGGED.get(node_type, "\0") in value


def walk(tree: Any) -> Iterator[tuple[str, dict[str, Any]]]:
    """Yield ``(node_type, fields)`` for every node of a JSON parse tree, depth first.

    A field the server's grammar types as a ``RangeVar`` (a write's target ``InsertStmt.relation``, ``CREATE
    TABLE``'s name, a foreign key's ``pktable``, ``INTO``'s ``rel``…) has no tag in pglast's JSON: it is yielded as
    ``"RangeVar"`` too, so that every walker sees every relation a statement names."""
    stack = [tree]
    while stack:
        item = stack.pop()
        if isinstance(item, dict):
            for key, value in item.items():
                if isinstance(value, dict):
                    if key[:1].isupper():
                        yield key, value
                    elif "relname" in value:  # UNTAGGED
                        yield "RangeVar", value
                    stack.append(value)
                elif isinstance(value, list):  # a scalar has nothing below it: not stacked
                    stack.append(value)
        elif isinstance(item, list):
            stack.extend(item)


def qualified_name(names: list[dict[str, Any]]) -> str:
    """``[{"String": {"sval": "pg_catalog"}}, {"String": {"sval": "now"}}]`` → ``pg_catalog.now``."""
    return ".".join(n.get("String", {}).get("sval", "") for n in names)


def function_names(expression: str) -> set[str]:
    """Unqualified names of the functions an SQL expression calls; empty if it does not parse."""
    try:
        stmts = parse_json(f"SELECT {expression}")
    except ParseError:
        return set()
    return {
        qualified_name(fields["funcname"]).rsplit(".", 1)[-1]
        for stmt in stmts
        for node, fields in walk(stmt)
        if node == "FuncCall"
    }
