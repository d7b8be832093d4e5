#!/usr/bin/env python3
"""Benchmark: what read-only mode's protections cost per call — agent19's run_sql against psycopg.

    python tools/bench/bench_read_guard.py [--rows 1000000] [--calls 300]

On a table of ``--rows`` rows, the same point query and the same aggregate run ``--calls`` times:
(a) with psycopg on one connection in a READ ONLY transaction (the peer: no guard), (b) through
agent19's ``run_read`` — parse guard, catalog layer (names, views, operators, casts, function
bodies), the reader login, and the session reset before each call returns. Printed: median and p95
per call and the ratio. The guard's cost is per statement, not per row, so the ratio falls as the
query does more work. Not a test: nothing here asserts a time.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import psycopg

from agent19.config import Settings
from agent19.db.connection import Database

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))  # the checkout: tools.throwaway
from agent19.safety.run import run_read
from tools.throwaway import start_pgserver, start_system, system_versions  # noqa: E402

QUERIES = {
    "point lookup": "SELECT * FROM bench WHERE id = 4242",
    "aggregate (whole table)": "SELECT count(*), sum(v) FROM bench",
}


def _timed(fn: Callable[[], object], calls: int) -> list[float]:
    out = []
    for _ in range(calls):
        started = time.perf_counter()
        fn()
        out.append((time.perf_counter() - started) * 1000)
    return out


def _p95(xs: list[float]) -> float:
    return sorted(xs)[int(len(xs) * 0.95) - 1]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--calls", type=int, default=300)
    args = parser.parse_args()
    server = start_system() if system_versions() else start_pgserver()
    try:
        with psycopg.connect(server.dsn, autocommit=True) as conn:
            conn.execute("CREATE TABLE bench (id bigint PRIMARY KEY, v bigint)")
            conn.execute(f"INSERT INTO bench SELECT g, g FROM generate_series(1, {args.rows}) g")
            conn.execute("VACUUM ANALYZE bench")
            conn.execute("CREATE ROLE bench_reader LOGIN; GRANT SELECT ON bench TO bench_reader")
        reader = psycopg.conninfo.make_conninfo(server.dsn, user="bench_reader")
        with tempfile.TemporaryDirectory() as tmp:
            db = Database(Settings.load(dsn=server.dsn, read_dsn=reader, data_dir=Path(tmp), env={}))
            peer = psycopg.connect(reader, autocommit=True)
            print(f"{args.rows:,} rows, {args.calls} calls each, PostgreSQL {server.major}")
            print(f"{'query':26} {'psycopg p50':>12} {'agent19 p50':>12} {'ratio':>6} {'psycopg p95':>12} "
                  f"{'agent19 p95':>12}")
            for name, sql in QUERIES.items():

                def plain(sql: str = sql) -> object:
                    with peer.transaction():
                        peer.execute("SET TRANSACTION READ ONLY")
                        return peer.execute(sql).fetchall()

                def guarded(sql: str = sql) -> object:
                    return run_read(db, sql, 200)

                guarded()  # warm the pools
                a, b = _timed(plain, args.calls), _timed(guarded, args.calls)
                pa, pb = statistics.median(a), statistics.median(b)
                print(f"{name:26} {pa:10.3f}ms {pb:10.3f}ms {pb / pa:6.1f} {_p95(a):10.3f}ms {_p95(b):10.3f}ms")
            peer.close()
            db.close()
    finally:
        server.stop()


if __name__ == "__main__":
    main()
