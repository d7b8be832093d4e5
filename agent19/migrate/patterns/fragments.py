"""Checks for the pieces of SQL text a caller hands a generator: a type, an expression, a SET list.

Patterns and change lists paste these pieces into the statements they write (``ADD COLUMN x
<type>``, ``SET DEFAULT <expression>``, ``CHECK (<expression>)``, ``UPDATE … SET <assignments>``),
and into the comment lines of the scripts they print. A piece that is not exactly one type, one
expression or one assignment list — ``1; DROP TABLE t``, ``true) NOT VALID; …``, a trailing ``--``
that comments out the rest of the line, a line break that ends a comment line — would turn the
generated script into something else. Each check parses the piece in a frame with PostgreSQL's own
grammar (pglast) and refuses anything else, with what to write instead.
"""

from __future__ import annotations

from typing import Any

import pglast
from pglast.parser import scan

from agent19.errors import InputError

FK_ACTIONS = ("NO ACTION", "RESTRICT", "CASCADE", "SET NULL", "SET DEFAULT")


def _lexical(text: str, what: str) -> str:
    if not isinstance(text, str) or not text.strip():
        raise InputError(f"{what} is empty", f"give the {what} as SQL text")
    if "\x00" in text:
        raise InputError(f"{what} {text[:60]!r} contains a NUL byte", "remove the NUL character")
    if "\n" in text or "\r" in text:
        raise InputError(f"{what} {text[:60]!r} spans lines; generated scripts quote it in comment lines",
                         "write it on one line (a line break inside a string: E'a\\nb')")
    try:
        tokens = scan(text)
    except pglast.parser.ParseError as e:
        raise InputError(f"{what} {text[:60]!r} is not valid SQL: {e}", f"give one {what}") from None
    if any(t.name in ("SQL_COMMENT", "C_COMMENT") for t in tokens):
        raise InputError(f"{what} {text[:60]!r} contains a comment", "remove the comment (-- or /* */)")
    depth = 0
    for t in tokens:
        depth += {"ASCII_40": 1, "ASCII_41": -1, "ASCII_91": 1, "ASCII_93": -1}.get(t.name, 0)
        if depth < 0:
            break
    if depth != 0:
        raise InputError(f"{what} {text[:60]!r} has unbalanced parentheses or brackets",
                         "close every ( and [ inside it, and open none it does not close")
    return text.strip()


def _parsed_as(frame: str, text: str, what: str, kind: str, node: str, hint: str | None = None) -> Any:
    """The one statement ``frame`` (``text`` pasted into it) parses to, refused unless it is a ``node``."""
    try:
        stmts = pglast.parse_sql(frame)
    except pglast.parser.ParseError:
        raise InputError(f"{what} {text[:60]!r} is not one {kind}",
                         f"give exactly one {kind}, nothing before or after it") from None
    if len(stmts) != 1:
        raise InputError(f"{what} {text[:60]!r} holds more than one statement",
                         f"give exactly one {kind}, without ';'")
    stmt = stmts[0].stmt
    if type(stmt).__name__ != node:
        raise InputError(f"{what} {text[:60]!r} is not {'a' if kind[0] not in 'aeiou' else 'an'} {kind}",
                         hint or f"give exactly one {kind}, nothing before or after it")
    return stmt


_SELECT_EXTRAS = ("fromClause", "whereClause", "groupClause", "havingClause", "windowClause", "sortClause",
                  "limitCount", "limitOffset", "lockingClause", "withClause", "intoClause", "distinctClause",
                  "valuesLists", "larg", "rarg")


def _bare_select(stmt: Any, text: str, what: str, kind: str) -> Any:
    extras = [k for k in _SELECT_EXTRAS if getattr(stmt, k, None)]
    targets = getattr(stmt, "targetList", None) or ()
    if extras or len(targets) != 1 or targets[0].name:
        raise InputError(f"{what} {text[:60]!r} is not one {kind}",
                         f"give exactly one {kind}, nothing before or after it")
    return targets[0].val


def expression(text: str, what: str = "expression") -> str:
    """``text`` when it is exactly one SQL expression (``now()``, ``'it''s'``, ``a > 0 AND b IS NOT NULL``)."""
    body = _lexical(text, what)
    _bare_select(_parsed_as(f"SELECT ({body})", body, what, "expression", "SelectStmt"), body, what, "expression")
    return body


def type_name(text: str, what: str = "type") -> str:
    """``text`` when it is exactly one type name (``bigint``, ``numeric(12,2)``, ``"My Type"[]``)."""
    body = _lexical(text, what)
    val = _bare_select(_parsed_as(f"SELECT CAST(NULL AS {body})", body, what, "type", "SelectStmt"), body, what,
                       "type")
    if type(val).__name__ != "TypeCast":
        raise InputError(f"{what} {body[:60]!r} is not a type name", "give a type, e.g. bigint or numeric(12,2)")
    return body


def assignments(text: str, what: str = "SET list") -> str:
    """``text`` when it is exactly an ``UPDATE … SET`` list (``status = 'x', n = n + 1``), nothing more."""
    body = _lexical(text, what)
    stmt = _parsed_as(f"UPDATE agent19_t SET {body}", body, what, "SET list", "UpdateStmt")
    extras = [k for k in ("whereClause", "fromClause", "returningList", "returningClause", "withClause")
              if getattr(stmt, k, None)]
    if extras:
        raise InputError(f"{what} {body[:60]!r} is not only assignments",
                         "give col = value pairs; the filter goes in `where`")
    return body


def fk_action(text: str) -> str:
    """``ON DELETE`` action, upper-cased: one of NO ACTION, RESTRICT, CASCADE, SET NULL, SET DEFAULT."""
    action = " ".join(str(text).upper().split())
    if action not in FK_ACTIONS:
        raise InputError(f"ON DELETE {text[:40]!r} is not an action", "give one of " + ", ".join(FK_ACTIONS))
    return action


def index_definition(text: str, what: str = "index definition") -> str:
    """``USING btree (email)``-style tail of CREATE INDEX: exactly one index, nothing after it."""
    body = _lexical(text, what)
    _parsed_as(f"CREATE INDEX agent19_i ON agent19_t {body}", body, what, "index definition", "IndexStmt",
               "give e.g. USING btree (email)")
    return body


def references(text: str, what: str = "references") -> str:
    """A column's ``REFERENCES`` target: ``table(column)`` or ``schema.table (column)``, nothing more."""
    body = _lexical(text, what)
    _parsed_as(f"CREATE TABLE agent19_t (c int REFERENCES {body})", body, what, "table(column)", "CreateStmt",
               "give table(column)")
    return body
