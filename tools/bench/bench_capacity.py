#!/usr/bin/env python3
"""Benchmark: the capacity snapshot (``capacity_plan`` without a rate window) on a many-table database,
beside the peer a DBA would paste: the charter's "Database Sizing Analysis" table-size query.

    .venv/bin/python tools/bench/bench_capacity.py [--tables 2000] [--rows 20] [--repeat 3]

1. A throwaway system PostgreSQL with ``--tables`` tables (primary key, a ``created_at timestamptz DEFAULT
   now()`` column with an index on every tenth table, ``--rows`` rows each) in database ``bench``, analyzed.
2. agent19: :func:`agent19.ops.capacity.plan.capacity_plan` in-process with ``window_s=0`` — sizes of every table,
   index and TOAST table, rows, connections, cache hit, top statements, creation columns found in the catalog
   and counted per month, the fit, triggers, thresholds and the rendered document.
3. The peer: the charter's table-size query (pg_total_relation_size / pg_relation_size / pg_indexes_size /
   n_live_tup over pg_stat_user_tables, sorted), through psycopg on one connection — sizes only, no growth.

Prints the best of ``--repeat`` runs of each and the ratio (agent19 / peer). The issue's target is a snapshot
under 2 s at 2,000 tables. Not a test.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import psycopg

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))

from agent19.config import Settings  # noqa: E402
from agent19.db.connection import Database  # noqa: E402
from agent19.ops.capacity.plan import capacity_plan  # noqa: E402
from tools.throwaway import start_system  # noqa: E402

PEER = """
SELECT schemaname, relname AS tablename,
       pg_size_pretty(pg_total_relation_size(format('%I.%I', schemaname, relname))) AS total_size,
       pg_size_pretty(pg_relation_size(format('%I.%I', schemaname, relname))) AS table_size,
       pg_size_pretty(pg_indexes_size(format('%I.%I', schemaname, relname)::regclass)) AS index_size,
       n_live_tup AS row_count
  FROM pg_stat_user_tables
 ORDER BY pg_total_relation_size(format('%I.%I', schemaname, relname)) DESC"""


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--tables", type=int, default=2000)
    ap.add_argument("--rows", type=int, default=20)
    ap.add_argument("--repeat", type=int, default=3)
    args = ap.parse_args()
    server = start_system()
    try:
        with psycopg.connect(server.dsn, autocommit=True) as c:
            c.execute("CREATE DATABASE bench")
        dsn = server.dsn_for("bench")
        with psycopg.connect(dsn, autocommit=True) as c:
            c.execute(f"""DO $$ BEGIN FOR i IN 1..{args.tables} LOOP
              EXECUTE format('CREATE TABLE t%s (id bigserial PRIMARY KEY, created_at timestamptz NOT NULL '
                             'DEFAULT now(), v text)', i);
              EXECUTE format('INSERT INTO t%s (created_at, v) SELECT now() - g * interval ''9 days'', ''x'' '
                             'FROM generate_series(1, {args.rows}) g', i);
              IF i % 10 = 0 THEN EXECUTE format('CREATE INDEX ON t%s (created_at)', i); END IF;
            END LOOP; END $$""")
            c.execute("ANALYZE")
        db = Database(Settings.load(dsn=dsn, env={}))
        ours, theirs = [], []
        try:
            for _ in range(args.repeat):
                start = time.perf_counter()
                plan = capacity_plan(db, window_s=0)
                ours.append(time.perf_counter() - start)
                start = time.perf_counter()
                with psycopg.connect(dsn) as c:
                    n = len(c.execute(PEER).fetchall())
                theirs.append(time.perf_counter() - start)
        finally:
            db.close()
        print(f"{args.tables} tables, {args.rows} rows each")
        fit = plan.growth.fit.method if plan.growth.fit else "-"
        print(f"agent19 capacity snapshot: {min(ours):.2f} s (growth from {plan.growth.source}, fit {fit})")
        print(f"peer (charter's table-size query, sizes only): {min(theirs):.2f} s ({n} rows)")
        print(f"ratio agent19 / peer: {min(ours) / min(theirs):.1f}x; target < 2 s: "
              f"{'met' if min(ours) < 2 else 'NOT met'}")
    finally:
        server.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main())
