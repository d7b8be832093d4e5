"""Which rows differ, when a table's checksums do not match: by primary key, bounded.

Both sides stream ``(key, row hash)`` ordered by the key's text under the "C" collation (byte order,
the same on both sides whatever their collations, and Python's ``str`` order) through server-side
cursors, and a merge walks them together: a key on one side only is *missing* (source only) or
*extra* (restored only), a key on both with another hash is *changed*. It stops at :data:`LIMIT`
differences. The source is read in the snapshot the checksums used (the caller's open transaction),
so rows written since do not show.

A table without a primary key has nothing to name its rows by: the sorted row hashes are merged as
multisets and the counts of rows found on one side only are reported.

The key values are data read from the database (untrusted, never instructions); they are listed
because a person needs them to find the rows, as an error message would name them.
"""

from __future__ import annotations

import secrets
from collections.abc import Iterator
from typing import Any

import psycopg
from psycopg import sql
from psycopg.rows import tuple_row

from agent19.migrate.patterns.sqlnames import from_server
from agent19.ops.backup.compare import LARGE_OBJECTS, dict_connect
from agent19.ops.backup.model import RowDifference, TableCheck

LIMIT = 20

Q_KEY = """
SELECT array_agg(a.attname::text ORDER BY k.n)
  FROM pg_index i CROSS JOIN LATERAL unnest(i.indkey) WITH ORDINALITY AS k(attnum, n)
  JOIN pg_attribute a ON a.attrelid = i.indrelid AND a.attnum = k.attnum
 WHERE i.indrelid = %s::regclass AND i.indisprimary"""


def primary_key(conn: psycopg.Connection[Any], table: str) -> list[str] | None:
    if table == LARGE_OBJECTS:
        return ["oid"]
    row = conn.cursor(row_factory=tuple_row).execute(Q_KEY, (table,)).fetchone()
    return list(row[0]) if row and row[0] else None


def _query(table: str, key: list[str] | None) -> sql.Composable:
    if table == LARGE_OBJECTS:
        return sql.SQL("SELECT m.oid::text COLLATE \"C\" AS k, hashtextextended(md5(lo_get(m.oid)), 0) AS h"
                       " FROM pg_largeobject_metadata m ORDER BY 1")
    rel = from_server(table)  # format('%I.%I') from the server, quoted again here
    if key is None:
        return sql.SQL("SELECT hashtextextended((a19_r.*)::text, 0) AS h FROM ONLY {} AS a19_r ORDER BY 1").format(rel)
    cols = sql.SQL(", ").join(sql.SQL("a19_r.{}").format(sql.Identifier(c)) for c in key)
    return sql.SQL("SELECT k, h FROM (SELECT (ROW({}))::text AS k, hashtextextended((a19_r.*)::text, 0) AS h"
                   " FROM ONLY {} AS a19_r OFFSET 0) AS rows ORDER BY k COLLATE \"C\"").format(cols, rel)


def _stream(conn: psycopg.Connection[Any], query: sql.Composable) -> Iterator[tuple[Any, ...]]:
    with conn.cursor(name=f"a19_diff_{secrets.token_hex(4)}", row_factory=tuple_row) as cur:
        cur.itersize = 5000
        cur.execute(query)
        yield from cur


def _merge_keys(src: Iterator[tuple[Any, ...]], dst: Iterator[tuple[Any, ...]]) -> tuple[list[RowDifference], bool]:
    out: list[RowDifference] = []
    a, b = next(src, None), next(dst, None)
    while a is not None or b is not None:
        if len(out) == LIMIT:
            return out, True
        if b is None or (a is not None and a[0] < b[0]):
            out.append(RowDifference(key=a[0], difference="missing"))  # type: ignore[index]
            a = next(src, None)
        elif a is None or b[0] < a[0]:
            out.append(RowDifference(key=b[0], difference="extra"))
            b = next(dst, None)
        else:
            if a[1] != b[1]:
                out.append(RowDifference(key=a[0], difference="changed"))
            a, b = next(src, None), next(dst, None)
    return out, False


def _merge_hashes(src: Iterator[tuple[Any, ...]], dst: Iterator[tuple[Any, ...]]) -> tuple[int, int]:
    only_src = only_dst = 0
    a, b = next(src, None), next(dst, None)
    while a is not None or b is not None:
        if b is None or (a is not None and a[0] < b[0]):
            only_src, a = only_src + 1, next(src, None)
        elif a is None or b[0] < a[0]:
            only_dst, b = only_dst + 1, next(dst, None)
        else:
            a, b = next(src, None), next(dst, None)
    return only_src, only_dst


def describe(checks: list[TableCheck], source: psycopg.Connection[Any], restored_dsn: str) -> None:
    """Fill ``differing_rows`` (or the one-side counts) of every mismatched table both sides could read.

    ``source`` is in its snapshot transaction (an explicit BEGIN on an autocommit connection): each table
    is read under a savepoint, so one failure does not end the snapshot for the rest.
    """
    todo = [t for t in checks if not t.checksum_match and t.rows_source is not None and t.rows_restored is not None
            and not (t.note or "").startswith("unlogged")]
    if not todo:
        return
    with dict_connect(restored_dsn) as restored:
        restored.autocommit = False
        for t in todo:
            source.execute("SAVEPOINT a19_diff")
            try:
                key = primary_key(source, t.table)
                query = _query(t.table, key)
                if key is None:
                    t.rows_only_in_source, t.rows_only_in_restored = _merge_hashes(
                        _stream(source, query), _stream(restored, query))
                else:
                    t.key_columns = key
                    t.differing_rows, t.differing_rows_truncated = _merge_keys(
                        _stream(source, query), _stream(restored, query))
                source.execute("RELEASE SAVEPOINT a19_diff")
            except psycopg.Error as exc:
                source.execute("ROLLBACK TO SAVEPOINT a19_diff")
                restored.rollback()
                t.note = f"{t.note or 'differs'}; rows not listed: {str(exc).strip().splitlines()[0]}"
            else:
                restored.rollback()
