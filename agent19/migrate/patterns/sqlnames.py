"""Identifier quoting and version handling shared by the pattern generators (no database needed)."""

from __future__ import annotations

import re

from pglast.keywords import COL_NAME_KEYWORDS, RESERVED_KEYWORDS, TYPE_FUNC_NAME_KEYWORDS

from agent19.errors import InputError

_SIMPLE = re.compile(r"^[a-z_][a-z0-9_$]*$")
_KEYWORDS = set(RESERVED_KEYWORDS) | set(TYPE_FUNC_NAME_KEYWORDS) | set(COL_NAME_KEYWORDS)
DEFAULT_PG_VERSION = 11
"""The oldest version agent19 supports: the default when none is given (DESIGN.md)."""


def ident(name: str) -> str:
    """Quote one identifier when PostgreSQL needs it to (upper case, spaces, keywords)."""
    if _SIMPLE.match(name) and name not in _KEYWORDS:
        return name
    return '"' + name.replace('"', '""') + '"'


def split_name(name: str) -> tuple[str | None, str]:
    schema, _, rel = name.rpartition(".")
    return (schema or None), rel


def qname(name: str) -> str:
    """``schema.table`` or ``table``, each part quoted as needed."""
    schema, rel = split_name(name)
    return f"{ident(schema)}.{ident(rel)}" if schema else ident(rel)


def literal(text: str) -> str:
    return "'" + text.replace("'", "''") + "'"


def regclass(name: str) -> str:
    """A literal usable as ``to_regclass(…)`` argument for a (possibly qualified) name."""
    return literal(qname(name))


def sibling(table: str, name: str) -> str:
    """``name`` in the schema of ``table`` (indexes live in their table's schema)."""
    schema, _ = split_name(table)
    return f"{schema}.{name}" if schema else name


def major(pg_version: int | None) -> int:
    """Accept 15, 150004 or None (the oldest supported version)."""
    if pg_version is None:
        return DEFAULT_PG_VERSION
    if pg_version >= 10000:
        return pg_version // 10000
    if pg_version < 9:
        raise InputError(f"pg_version {pg_version} is not a PostgreSQL major version", "give e.g. 15 or 150004")
    return pg_version


def short(name: str, suffix: str, limit: int = 63) -> str:
    """``name`` + ``suffix``, trimmed so the result fits PostgreSQL's 63-byte identifier limit."""
    room = limit - len(suffix.encode())
    base = name.encode()[:room].decode(errors="ignore")
    return base + suffix
