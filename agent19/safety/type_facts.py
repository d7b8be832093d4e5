"""The type an ``ALTER COLUMN … TYPE`` converts to, as the server resolves it — never by the name alone.

A name is only a name: ``app.text`` may be a domain over ``numeric(12,0)``; ``"char"`` (quoted) is the
one-byte internal type while ``char`` is ``character(1)``; ``interval DAY`` and ``time(0)`` carry their meaning
in a type modifier. :func:`resolve` asks the server, through the session's own search path, what the written type
is: ``SELECT NULL::<type> WHERE false`` describes its result column with the type's base type and type modifier
(the protocol's row description gives a domain's base type and typmod; the row is never computed, so no domain
constraint runs), and :data:`Q_BASE` follows domains and array elements in ``pg_type`` down to the scalar type
whose values are converted. The old column's type is followed the same way (:func:`base_of`).

Where it is cheap (a table of at most :data:`MEASURE_BYTES` bytes, built-in scalar types on both sides, so
no user code runs) :func:`measure_change` counts the rows whose value the conversion changes: the report
states it beside the judgement; it never clears one (a row written before the change runs can differ).
"""

from __future__ import annotations

import json
from dataclasses import dataclass, replace
from typing import Any

from agent19.migrate.patterns.sqlnames import quoted
from agent19.safety import types as sqltypes
from agent19.sqltree import parse_json

QUALIFIED_SQL = True
"""Every statement here names its functions, operators, types and catalog relations ``pg_catalog.``-qualified: an
overload the login owns is not what it calls (tests/test_qualified_sql.py)."""
EQ, NE = "OPERATOR(pg_catalog.=)", "OPERATOR(pg_catalog.<>)"
Q_BASE = f"""
WITH RECURSIVE d(oid, typmod, arr, depth) AS (
    SELECT %(oid)s::pg_catalog.oid, %(typmod)s::int, false, 0
  UNION ALL
    SELECT CASE WHEN t.typtype {EQ} 'd' THEN t.typbasetype ELSE t.typelem END,
           CASE WHEN t.typtype {EQ} 'd' AND t.typtypmod OPERATOR(pg_catalog.>=) 0 THEN t.typtypmod ELSE d.typmod END,
           d.arr OR t.typtype {NE} 'd', d.depth OPERATOR(pg_catalog.+) 1
      FROM d JOIN pg_catalog.pg_type t ON t.oid {EQ} d.oid
     WHERE d.depth OPERATOR(pg_catalog.<) 32
       AND (t.typtype {EQ} 'd' OR (t.typelem {NE} 0 AND t.typlen {EQ} -1
            AND EXISTS (SELECT 1 FROM pg_catalog.pg_type e WHERE e.oid {EQ} t.typelem AND e.typarray {EQ} t.oid)))
)
SELECT t.typname, d.typmod, d.arr, d.oid AS base_oid,
       pg_catalog.format_type(%(oid)s::pg_catalog.oid, %(typmod)s::int) AS formatted,
       pg_catalog.format_type(d.oid, d.typmod) AS base
  FROM d JOIN pg_catalog.pg_type t ON t.oid {EQ} d.oid
 ORDER BY d.depth DESC LIMIT 1
"""
"""The scalar type under a type (domains and arrays followed), its typmod, and whether it was an array."""


@dataclass(frozen=True)
class ResolvedType:
    sql_type: sqltypes.SqlType
    """The scalar base type and its modifiers (``array`` when the values are arrays of it)."""
    formatted: str
    """``format_type`` of the type as the server resolved it: ``app.text``, ``"char"``, ``interval day``."""
    base: str
    """``format_type`` of the base type: ``numeric(12,0)`` for a domain over it."""
    base_oid: int = 0
    """The base (scalar) type's OID."""

    def describe(self) -> str:
        base = self.base + ("[]" if self.sql_type.array and not self.base.endswith("]") else "")
        return self.formatted if base == self.formatted else f"{self.formatted} (over {base})"


def key(type_name: dict[str, Any]) -> str:
    """A parse tree's ``TypeName`` node as a key (locations left out: the same type written anywhere)."""
    return json.dumps(_without_locations(type_name), sort_keys=True)


def _without_locations(node: Any) -> Any:
    if isinstance(node, dict):
        return {k: _without_locations(v) for k, v in node.items() if k != "location"}
    if isinstance(node, list):
        return [_without_locations(v) for v in node]
    return node


def written(type_name: dict[str, Any]) -> str | None:
    """The type as SQL text the server reads back as the same type: every name part quoted, integer modifiers
    in the generic form (``pg_catalog."interval"(8)`` is ``interval DAY``), array brackets. None when it cannot
    be written so (``%TYPE``, ``SETOF``, a modifier that is not an integer constant)."""
    if type_name.get("pct_type") or type_name.get("setof"):
        return None
    names = [n.get("String", {}).get("sval") for n in type_name.get("names", [])]
    if not names or any(not isinstance(n, str) or not n for n in names):
        return None
    mods: list[str] = []
    for m in type_name.get("typmods", []):
        const = m.get("A_Const", {})
        if "ival" not in const:  # a string or an identifier: not read here
            return None
        mods.append(str(int(const["ival"].get("ival", 0))))  # pglast leaves a zero out
    text = ".".join(quoted(n) for n in names) + (f"({','.join(mods)})" if mods else "")
    return text + "[]" * len(type_name.get("arrayBounds", []))


def base_of(conn: Any, oid: int, typmod: int) -> ResolvedType:
    """The scalar type under the type ``oid`` with modifier ``typmod`` (domains and arrays followed)."""
    row = conn.execute(Q_BASE, {"oid": oid, "typmod": typmod}).fetchone()
    t = sqltypes.from_catalog(row["typname"], row["typmod"])
    if row["arr"]:
        t = replace(t, array=True)
    return ResolvedType(t, row["formatted"], row["base"], row["base_oid"])


Q_WRITTEN_TYPE = "SELECT NULL::{} AS v WHERE false"
"""The type as the statement writes it (:func:`written`), resolved through the session's path as the statement's will
be, on purpose: a cast of NULL in a row never computed (no function runs)."""
Q_DECLARED = "SELECT pg_catalog.format_type(pg_catalog.to_regtype(%s), NULL) AS f"


def resolve(conn: Any, type_name: dict[str, Any]) -> ResolvedType | None:
    """The type ``type_name`` names for this session (its search path), or None when the server knows no such
    type (a migration that creates it first, a typo) or it cannot be read back."""
    import psycopg  # here: the read-only guard imports the facts modules on paths that never reach a database

    text = written(type_name)
    if text is None:
        return None
    try:
        with conn.transaction():  # a savepoint: an unknown type must not abort the caller's transaction
            cur = conn.execute(Q_WRITTEN_TYPE.format(text))
            oid, typmod = cur.pgresult.ftype(0), cur.pgresult.fmod(0)
            declared = conn.execute(Q_DECLARED, (text,)).fetchone()["f"]
    except psycopg.Error:
        return None
    found = base_of(conn, oid, typmod)
    # the row description gives a domain's base type: name the type as written (the domain) where it differs
    if declared and declared != found.formatted and not type_name.get("arrayBounds"):
        return replace(found, formatted=declared)
    return found


MEASURE_BYTES = 64 << 20
"""Tables up to this size (``pg_relation_size``: known without statistics) have every row's conversion measured."""
FIRST_USER_OID = 16384
"""``FirstNormalObjectId``: types (and their casts) below it are built in."""


Q_MEASURABLE = f"""
SELECT n.nspname, c.relname, c.relkind AS kind, pg_catalog.pg_relation_size(c.oid) AS bytes,
       pg_catalog.row_security_active(c.oid) AS filtered
  FROM pg_catalog.pg_class c JOIN pg_catalog.pg_namespace n ON n.oid {EQ} c.relnamespace
 WHERE c.oid {EQ} %s
"""
SET_TIMEOUT = "SET LOCAL statement_timeout = '2s'"


def qualified_type(formatted: str) -> str:
    """A built-in type as ``format_type`` writes it, named in ``pg_catalog``: the SQL-standard spellings
    (``integer``, ``character varying(20)``) already are; a plain name (``text``, ``"char"``) gets the prefix."""
    cast = parse_json(f"SELECT NULL::{formatted}")[0]["stmt"]["SelectStmt"]["targetList"][0]["ResTarget"]["val"]
    names = cast["TypeCast"]["typeName"]["names"]
    return formatted if len(names) == 2 else f"pg_catalog.{formatted}"


def changed_sql(column: str, table: str, old: str, new: str) -> str:
    """Rows of ``table`` and those whose ``column`` (both quoted) a cast from the built-in type ``old`` to ``new``
    and back changes (each as ``format_type`` writes it): ``IS DISTINCT FROM``, with pg_catalog's ``=``."""
    was = f"{column}::{qualified_type(old)}"
    back = f"({was})::{qualified_type(new)}::{qualified_type(old)}"
    return (f"SELECT pg_catalog.count(*) AS total, pg_catalog.count(*) FILTER (WHERE ({back} {EQ} {was}) IS NOT TRUE "
            f"AND ({back} IS NOT NULL OR {was} IS NOT NULL)) AS changed FROM {table}")


def measure_change(conn: Any, table_oid: int, column: str, old: ResolvedType, new: ResolvedType
                   ) -> tuple[int, int] | None:
    """(rows whose value ``column`` changes under the conversion, rows read), or None when not measured: a
    bigger or partitioned table, one whose rows this login sees through a row-level security filter, an array or
    a type outside the built-in ones, a value that does not convert (the statement
    would fail on it), no SELECT right, or a read longer than 2 s."""
    import psycopg

    builtin = all(0 < t.base_oid < FIRST_USER_OID and not t.sql_type.array for t in (old, new))
    if not builtin:
        return None
    rel = conn.execute(Q_MEASURABLE, (table_oid,)).fetchone()
    if rel is None or rel["bytes"] > MEASURE_BYTES or rel["kind"] != "r" or rel["filtered"]:
        return None
    # both sides by their base types (format_type writes a type as SQL reads it back); the built-in casts run
    q = changed_sql(quoted(column), f"{quoted(rel['nspname'])}.{quoted(rel['relname'])}", old.base, new.base)
    found = None
    try:
        with conn.transaction():
            conn.execute(SET_TIMEOUT)
            found = conn.execute(q).fetchone()
            raise psycopg.Rollback()  # the savepoint goes: SET LOCAL with it
    except psycopg.Error:
        return None
    return (found["changed"], found["total"]) if found is not None else None
