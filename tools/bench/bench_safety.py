#!/usr/bin/env python3
"""Benchmark: what execute mode's protections cost on a 1M-row table, against the plain statement.

    python tools/bench/bench_safety.py [--rows 1000000] [--repeat 5]

Measured on a throwaway PostgreSQL (the system's, else the embedded one), each case inside a
transaction that is rolled back so the table stays the same, median of ``--repeat`` runs:

* a write run the way ``run_sql`` runs it in execute mode — statistics snapshot, savepoint, the
  statement, statistics again, an exact ``count(*)`` of each table it updated or deleted rows of,
  the relation list compared (:mod:`agent19.safety.measure`) — against the bare statement, for a
  1-row UPDATE, a 10% DELETE and a 100% UPDATE; and the same with the tally of rows removed within the window
  (:mod:`agent19.safety.tally`: read under its lock, the statement recorded), the table having 100 earlier
  removals in it;
* step 2 of the confirmation protocol — ``LOCK … IN SHARE MODE`` plus an exact count — against
  the destructive statement alone (``TRUNCATE``), and step 1's exact count against the planner's
  estimate that was used before.

Printed as times and ratios (protected / plain). Not a test: nothing here asserts a time.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import psycopg
from psycopg.rows import dict_row

from agent19.config import Settings

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))  # the checkout: tools.throwaway
from agent19.migrate.parse import parse_sql
from agent19.safety import ledger, tally
from agent19.safety import measure as measuring
from agent19.safety.impact import exact_count
from agent19.safety.run import run_write
from tools.throwaway import start_pgserver, start_system, system_versions  # noqa: E402


def timed(conn: Any, repeat: int, work: Callable[[Any], None]) -> float:
    """Median seconds of ``work(conn)`` inside a transaction that is rolled back."""
    times = []
    for _ in range(repeat):
        with conn.transaction(force_rollback=True):
            start = time.perf_counter()
            work(conn)
            times.append(time.perf_counter() - start)
    return statistics.median(times)


def plain(sql: str) -> Callable[[Any], None]:
    return lambda conn: conn.execute(sql)


def measured(sql: str, settings: Settings, tallied: bool = False) -> Callable[[Any], None]:
    """The statement as execute mode runs it: measured, judged; ``tallied``: with the rows removed earlier added
    and its own recorded (agent19.safety.tally)."""
    st = parse_sql(sql)[0]

    def work(conn: Any) -> None:
        start = measuring.before(conn)
        with conn.transaction():
            run_write(conn, sql, st, 1, "bench")
            m = measuring.after(conn, start, st.node)
            if tallied:
                measuring.add_earlier(conn, m, settings, lock=True)
            measuring.verdict(m, settings)
        if tallied:
            measuring.record(conn, m, settings)

    return work


def confirming(conn: Any) -> None:
    conn.execute("LOCK TABLE bench IN SHARE MODE")
    heap = conn.execute("SELECT pg_relation_size('bench') AS b").fetchone()["b"]
    exact_count(conn, "public", "bench", heap)
    conn.execute("TRUNCATE bench")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--repeat", type=int, default=5)
    ns = parser.parse_args()
    server = start_system() if system_versions() else start_pgserver()
    settings = Settings.load(env={})
    try:
        with psycopg.connect(server.dsn, autocommit=True, row_factory=dict_row) as conn:
            conn.execute("DROP TABLE IF EXISTS bench")
            conn.execute("CREATE TABLE bench (id bigint PRIMARY KEY, v bigint NOT NULL, pad text)")
            conn.execute(f"INSERT INTO bench SELECT g, g, repeat('x', 40) FROM generate_series(1, {ns.rows}) g")
            conn.execute("VACUUM ANALYZE bench")
            ledger.ensure(conn, tally.TABLE, tally.DDL, tally.COLUMNS)
            conn.execute("INSERT INTO agent19.removals SELECT 'bench'::regclass, 'bench', 1, now() - g * interval '1s' "
                         "FROM generate_series(1, 100) g")
            size = conn.execute("SELECT pg_size_pretty(pg_relation_size('bench')) AS s").fetchone()["s"]
            print(f"PostgreSQL {server.major}, table bench: {ns.rows:,} rows, {size}; median of {ns.repeat} runs, "
                  "each rolled back\n")
            print(f"{'case':<44}{'plain':>10}{'protected':>12}{'ratio':>8}")
            tenth = ns.rows // 10
            cases = [
                ("UPDATE 1 row (by key)", "UPDATE bench SET v = v + 1 WHERE id = 42"),
                (f"DELETE 10% ({tenth:,} rows)", f"DELETE FROM bench WHERE id <= {tenth}"),
                (f"UPDATE 100% ({ns.rows:,} rows)", "UPDATE bench SET v = v + 1"),
            ]
            for title, sql in cases:
                base = timed(conn, ns.repeat, plain(sql))
                guarded = timed(conn, ns.repeat, measured(sql, settings))
                print(f"{'measured write: ' + title:<44}{base:>9.3f}s{guarded:>11.3f}s{guarded / base:>7.1f}x")
                counted = timed(conn, ns.repeat, measured(sql, settings, tallied=True))
                print(f"{'  with the tally: ' + title:<44}{base:>9.3f}s{counted:>11.3f}s{counted / base:>7.1f}x")
            base = timed(conn, ns.repeat, plain("TRUNCATE bench"))
            guarded = timed(conn, ns.repeat, confirming)
            print(f"{'step 2: SHARE lock + exact count + TRUNCATE':<44}{base:>9.3f}s{guarded:>11.3f}s"
                  f"{guarded / base:>7.1f}x")
            estimate = timed(conn, ns.repeat, plain("SELECT reltuples FROM pg_class WHERE relname = 'bench'"))
            exact = timed(conn, ns.repeat, lambda c: exact_count(c, "public", "bench", 0))
            print(f"{'step 1: exact count vs reltuples estimate':<44}{estimate:>9.3f}s{exact:>11.3f}s"
                  f"{exact / estimate:>7.0f}x")
    finally:
        server.stop()


if __name__ == "__main__":
    main()
