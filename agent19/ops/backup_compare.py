"""Compare a restored copy with its source: schema, row counts, content checksums, sequences.

* **Schema**: catalog snapshots compared by :func:`agent19.migrate.schema_diff.diff_snapshots` (the
  rollback check's comparison; extensions and their versions included).
* **Content**: per table, ``count(*)`` and two sums of 64-bit row hashes
  (``hashtextextended(row::text, 0)`` and seed 1) computed by the same query on both sides, with
  the row's text form pinned (``DateStyle=ISO``, ``TimeZone=UTC``, ``extra_float_digits=3``,
  ``bytea_output=hex``, ``IntervalStyle=postgres``). A sum over rows is order-independent, so
  one sequential scan per table serves tables with and without a primary key alike — ordering by
  the key would add a sort or an index scan and detect nothing more: equal counts and equal
  sums mean the same multiset of rows, except with probability ~2^-128.
* **Sequences**: ``pg_sequences.last_value``; the restored value must lie between the source's
  before and after the backup (sequences are not transactional, so a busy source moves them).

Tables owned by an extension, temporary tables and partitioned parents (their rows are in their
partitions) are skipped; unlogged tables are compared by a logical backup only — a physical backup
restores them empty, by design.
"""

from __future__ import annotations

import queue
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor, as_completed
from typing import Any

import psycopg
from psycopg import sql
from psycopg.rows import dict_row, tuple_row

from agent19.db.catalog import snapshot
from agent19.migrate.schema_diff import diff_snapshots, errors_only
from agent19.ops.backup_model import SequenceCheck, TableCheck

TextSettings = (
    "SET DateStyle = 'ISO, YMD'", "SET TimeZone = 'UTC'", "SET extra_float_digits = 3",
    "SET bytea_output = 'hex'", "SET IntervalStyle = 'postgres'", "SET statement_timeout = 0",
)

Q_TABLES = r"""
SELECT format('%I.%I', n.nspname, c.relname) AS name, c.relpersistence = 'u' AS unlogged
  FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
 WHERE c.relkind = 'r' AND c.relpersistence IN ('p', 'u')
   AND n.nspname NOT IN ('pg_catalog', 'information_schema') AND n.nspname NOT LIKE 'pg\_toast%'
   AND n.nspname NOT LIKE 'pg\_temp\_%'
   AND NOT EXISTS (SELECT 1 FROM pg_depend d WHERE d.classid = 'pg_class'::regclass AND d.objid = c.oid
                     AND d.deptype = 'e')
 ORDER BY 1"""

Q_SEQUENCES = """
SELECT format('%I.%I', schemaname, sequencename) AS name, last_value FROM pg_sequences
 WHERE schemaname NOT IN ('pg_catalog', 'information_schema') ORDER BY 1"""

Sums = tuple[int, int, int]  # count, sum of hash seed 0, sum of hash seed 1
Progress = Callable[[float, float | None, str | None], None]


def prepare(conn: psycopg.Connection[Any]) -> None:
    """Pin the text form of rows (both sides must hash the same text) and lift statement_timeout."""
    for statement in TextSettings:
        conn.execute(statement)


def tables(conn: psycopg.Connection[Any]) -> dict[str, bool]:
    """Tables to compare: name → unlogged."""
    return {r[0]: r[1] for r in conn.cursor(row_factory=tuple_row).execute(Q_TABLES).fetchall()}


def sequences(conn: psycopg.Connection[Any]) -> dict[str, int | None]:
    return {r[0]: r[1] for r in conn.cursor(row_factory=tuple_row).execute(Q_SEQUENCES).fetchall()}


def table_sums(conn: psycopg.Connection[Any], table: str) -> Sums | str:
    """``(count, h0, h1)`` of one table, or why it could not be read.

    The row's text is computed once (``OFFSET 0`` keeps the subquery from being flattened into two
    conversions); ``sum(bigint)`` accumulates in 128 bits, so the sums never overflow.

    ``table`` is ``format('%I.%I')`` output from :data:`Q_TABLES`: already quoted by the server.
    """
    query = sql.SQL(
        "SELECT count(*), coalesce(sum(hashtextextended(t, 0)), 0), coalesce(sum(hashtextextended(t, 1)), 0)"
        " FROM (SELECT (a19_r.*)::text AS t FROM ONLY {} AS a19_r OFFSET 0) AS rows"
    ).format(sql.SQL(table))
    try:
        with conn.transaction():
            row = conn.cursor(row_factory=tuple_row).execute(query).fetchone()
    except psycopg.errors.InsufficientPrivilege:
        return f"unknown — needs SELECT on {table}"
    except psycopg.errors.UndefinedTable:
        return "missing"
    assert row is not None
    return int(row[0]), int(row[1]), int(row[2])


def sums_parallel(open_conn: Callable[[], psycopg.Connection[Any]], names: list[str], jobs: int,
                  progress: Progress | None = None, label: str = "") -> dict[str, Sums | str]:
    """Checksums of ``names`` over ``jobs`` sessions opened by ``open_conn`` (already prepared)."""
    jobs = max(1, min(jobs, len(names) or 1))
    idle: queue.Queue[psycopg.Connection[Any]] = queue.Queue()
    conns = [open_conn() for _ in range(jobs)]
    for c in conns:
        idle.put(c)
    out: dict[str, Sums | str] = {}

    def work(name: str) -> tuple[str, Sums | str]:
        conn = idle.get()
        try:
            return name, table_sums(conn, name)
        finally:
            idle.put(conn)

    try:
        with ThreadPoolExecutor(jobs) as pool:
            for future in as_completed([pool.submit(work, n) for n in names]):
                name, sums = future.result()
                out[name] = sums
                if progress:  # from the calling thread: the MCP server reports progress from there
                    progress(len(out), len(names), f"{label}checksum {name}")
    finally:
        for c in conns:
            c.close()
    return out


def compare_tables(source: dict[str, Sums | str], restored: dict[str, Sums | str],
                   unlogged: set[str], unlogged_expected_empty: bool) -> list[TableCheck]:
    checks = []
    for name in sorted(source.keys() | restored.keys()):
        s, r = source.get(name), restored.get(name)
        rows_s = s[0] if isinstance(s, tuple) else None
        rows_r = r[0] if isinstance(r, tuple) else None
        note = None
        if s is None:
            match, note = False, "not in the source (extra in the restored copy)"
        elif r is None or r == "missing":
            match, note = False, "missing from the restored copy"
        elif isinstance(s, str) or isinstance(r, str):
            match, note = False, s if isinstance(s, str) else str(r)
        else:
            match = s == r
            if not match:
                note = "row count differs" if rows_s != rows_r else "content differs (same row count)"
        if name in unlogged and unlogged_expected_empty:
            match = rows_r == 0
            note = "unlogged table: physical backups restore it empty, by design"
        checks.append(TableCheck(table=name, rows_source=rows_s, rows_restored=rows_r, checksum_match=match,
                                 note=note))
    return checks


def compare_sequences(before: dict[str, int | None], after: dict[str, int | None],
                      restored: dict[str, int | None]) -> list[SequenceCheck]:
    out = []
    for name in sorted(before.keys() | restored.keys()):
        lo, hi, got = before.get(name), after.get(name, before.get(name)), restored.get(name)
        if name not in restored:
            out.append(SequenceCheck(sequence=name, source=lo, restored=None, match=False, note="missing"))
            continue
        if name not in before:
            out.append(SequenceCheck(sequence=name, source=None, restored=got, match=False, note="extra"))
            continue
        if lo is None or hi is None or got is None:
            match = lo == got or hi == got
            note = None if match else "never used on one side, or unreadable (needs USAGE or SELECT)"
        else:
            match = min(lo, hi) <= got <= max(lo, hi)
            note = None if match or lo == hi else f"source moved from {lo} to {hi} during the backup"
        out.append(SequenceCheck(sequence=name, source=lo, restored=got, match=match, note=note))
    return out


def schema_differences(source_conn: psycopg.Connection[Any], restored_conn: psycopg.Connection[Any]) -> list[str]:
    """Catalog differences (errors only) from the source to the restored copy, as sentences."""
    before = snapshot(source_conn)
    after = snapshot(restored_conn)
    return [str(d) for d in errors_only(diff_snapshots(before, after))]


def dict_connect(dsn: str) -> psycopg.Connection[Any]:
    """A prepared autocommit session on a restored copy."""
    conn = psycopg.connect(dsn, autocommit=True, row_factory=dict_row, connect_timeout=10)
    prepare(conn)
    return conn
