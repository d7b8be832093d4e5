"""Compare a restored copy with its source: schema, row counts, content checksums, sequences.

* **Schema**: catalog snapshots compared by :func:`agent19.migrate.dryrun.schema_diff.diff_snapshots` (the
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

from agent19.db import catalog_first, rls
from agent19.db.models import SchemaSnapshot
from agent19.migrate.dryrun.schema_diff import diff_snapshots, errors_only
from agent19.migrate.patterns.sqlnames import from_server
from agent19.ops.backup.model import SequenceCheck, TableCheck

TextSettings = (
    "SET DateStyle = 'ISO, YMD'", "SET TimeZone = 'UTC'", "SET extra_float_digits = 3",
    "SET bytea_output = 'hex'", "SET IntervalStyle = 'postgres'", "SET statement_timeout = 0",
    # the source's snapshot stays open (idle) while the copy is restored: rows that differ are read in it after
    "SET idle_in_transaction_session_timeout = 0",
    # a policy must not hide rows from either side: with row_security off, a read it would filter errors
    "SET row_security = off",
    "SET search_path = pg_catalog",  # names in catalog text (argument types, regclass values) printed alike
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


LARGE_OBJECTS = "(large objects)"
"""Compared like a table when either side has any: each object's OID and an md5 of its content."""
Q_LARGE_OBJECTS = """
SELECT count(*), coalesce(sum(hashtextextended(t, 0)), 0), coalesce(sum(hashtextextended(t, 1)), 0)
  FROM (SELECT m.oid::text || ':' || md5(lo_get(m.oid)) AS t FROM pg_largeobject_metadata m OFFSET 0) AS rows"""


def tables(conn: psycopg.Connection[Any]) -> dict[str, bool]:
    """Tables to compare: name → unlogged (plus :data:`LARGE_OBJECTS` when the database has any)."""
    cur = conn.cursor(row_factory=tuple_row)
    out = {r[0]: r[1] for r in cur.execute(Q_TABLES).fetchall()}
    if cur.execute("SELECT EXISTS (SELECT 1 FROM pg_largeobject_metadata)").fetchone() == (True,):
        out[LARGE_OBJECTS] = False
    return out


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
    ).format(from_server(table)) if table != LARGE_OBJECTS else sql.SQL(Q_LARGE_OBJECTS)
    try:
        with conn.transaction():
            row = conn.cursor(row_factory=tuple_row).execute(query).fetchone()
    except psycopg.errors.InsufficientPrivilege as exc:
        if "row-level security" in str(exc):
            return "unknown - " + rls.message(table)
        return f"unknown - needs SELECT on {table}"
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

    pool = ThreadPoolExecutor(jobs)
    try:
        for future in as_completed([pool.submit(work, n) for n in names]):
            name, sums = future.result()
            out[name] = sums
            if progress:  # from the calling thread: the MCP server reports progress from there
                progress(len(out), len(names), f"{label}checksum {name}")
    except BaseException:  # Ctrl-C or a failure: the running checksums (a whole table each) are not waited for
        pool.shutdown(wait=False, cancel_futures=True)
        for c in conns:
            c.cancel_safe(timeout=2)
        raise
    finally:
        pool.shutdown(wait=True)
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


_USER_NS = ("n.nspname NOT IN ('pg_catalog', 'information_schema') AND n.nspname NOT LIKE 'pg\\_%'"
            " AND NOT EXISTS (SELECT 1 FROM pg_depend d WHERE d.classid = '{cat}'::regclass AND d.objid = {oid}"
            " AND d.deptype = 'e')")
Q_OBJECTS = f"""
SELECT format('function %I.%I(%s)', n.nspname, p.proname, pg_get_function_identity_arguments(p.oid)),
       concat_ws(' ', p.prokind, pg_get_function_result(p.oid), p.provolatile, p.proisstrict, p.prosecdef,
                 p.proconfig::text, md5(coalesce(p.prosrc, '') || coalesce(p.probin, '')))
  FROM pg_proc p JOIN pg_namespace n ON n.oid = p.pronamespace WHERE {_USER_NS.format(cat='pg_proc', oid='p.oid')}
UNION ALL
SELECT format('type %I.%I', n.nspname, t.typname),
       concat_ws(' ', t.typtype, format_type(t.typbasetype, t.typtypmod), t.typnotnull,
                 (SELECT string_agg(pg_get_constraintdef(c.oid), ', ' ORDER BY c.conname) FROM pg_constraint c
                   WHERE c.contypid = t.oid),
                 (SELECT string_agg(format('%I %s', a.attname, format_type(a.atttypid, a.atttypmod)), ', '
                         ORDER BY a.attnum) FROM pg_attribute a
                   WHERE a.attrelid = t.typrelid AND a.attnum > 0 AND NOT a.attisdropped))
  FROM pg_type t JOIN pg_namespace n ON n.oid = t.typnamespace
 WHERE t.typtype IN ('d', 'c', 'r', 'm') AND {_USER_NS.format(cat='pg_type', oid='t.oid')}
   AND (t.typtype <> 'c' OR (SELECT c.relkind FROM pg_class c WHERE c.oid = t.typrelid) = 'c')
UNION ALL
SELECT format('policy %I on %I.%I', pol.polname, n.nspname, c.relname),
       concat_ws(' ', pol.polcmd, pol.polpermissive, pol.polroles::regrole[]::text,
                 pg_get_expr(pol.polqual, pol.polrelid), pg_get_expr(pol.polwithcheck, pol.polrelid))
  FROM pg_policy pol JOIN pg_class c ON c.oid = pol.polrelid JOIN pg_namespace n ON n.oid = c.relnamespace
UNION ALL
SELECT format('row-level security of %I.%I', n.nspname, c.relname),
       CASE WHEN c.relforcerowsecurity THEN 'enabled, forced' ELSE 'enabled' END
  FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace WHERE c.relrowsecurity"""


def objects(conn: psycopg.Connection[Any]) -> dict[str, str]:
    """What the catalog snapshot leaves out — functions, domains, composite/range types, row-level
    security and its policies — each as a name and a fingerprint of its definition."""
    return dict(conn.cursor(row_factory=tuple_row).execute(Q_OBJECTS).fetchall())


def object_differences(before: dict[str, str], after: dict[str, str]) -> list[str]:
    out = [f"{name} removed: missing" for name in sorted(before.keys() - after.keys())]
    out += [f"{name} added: extra" for name in sorted(after.keys() - before.keys())]
    return out + [f"{name} changed: {before[name]} -> {after[name]}" for name in sorted(before.keys() & after.keys())
                  if before[name] != after[name]]


def schema_differences(before: SchemaSnapshot, after: SchemaSnapshot, objects_before: dict[str, str],
                       objects_after: dict[str, str]) -> list[str]:
    """Catalog differences (errors only), then those of :func:`objects`, source → restored copy, as sentences."""
    return [str(d) for d in errors_only(diff_snapshots(before, after))] + object_differences(objects_before,
                                                                                           objects_after)


def snapshot_session(dsn: str, snapshot_id: str) -> psycopg.Connection[Any]:
    """A prepared session that sees exactly the exported snapshot (for parallel checksums of the source)."""
    conn = catalog_first.connect(dsn, autocommit=True, row_factory=dict_row, connect_timeout=10,
                           application_name="agent19 backup verify")
    prepare(conn)
    conn.execute("BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY")
    conn.execute(sql.SQL("SET TRANSACTION SNAPSHOT {}").format(sql.Literal(snapshot_id)))
    return conn


def dict_connect(dsn: str) -> psycopg.Connection[Any]:
    """A prepared autocommit session on a restored copy."""
    conn = catalog_first.connect(dsn, autocommit=True, row_factory=dict_row, connect_timeout=10)
    prepare(conn)
    return conn
