#!/usr/bin/env python3
"""Benchmark: describe a database of N tables, against `pg_dump --schema-only` on the same one.

    python tools/bench/bench_catalog.py [--tables 2000]

Both read the whole catalog; pg_dump is the reference every DBA has. Prints wall times (best
of 3) and the ratio agent19 / pg_dump. Not a test: nothing here asserts a time.
"""

from __future__ import annotations

import argparse
import shutil
import subprocess
import sys
import time
from pathlib import Path

import psycopg
from psycopg.rows import dict_row

from agent19.db.catalog import snapshot

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))  # the checkout: tools.throwaway
from tools.throwaway import SYSTEM_ROOT, start_pgserver, start_system, system_versions  # noqa: E402


def build(dsn: str, n: int) -> None:
    with psycopg.connect(dsn, autocommit=True) as conn:
        conn.execute("CREATE TYPE state AS ENUM ('a', 'b', 'c')")
        for i in range(n):
            ref = f", parent_id bigint REFERENCES t{i - 1} (id)" if i else ""
            conn.execute(
                f"CREATE TABLE t{i} (id bigserial PRIMARY KEY, name text NOT NULL, s state DEFAULT 'a',"
                f" created_at timestamptz DEFAULT now(), amount numeric(12,2) CHECK (amount >= 0){ref});"
                f" CREATE INDEX t{i}_name ON t{i} (name)"
            )
        conn.execute("ANALYZE")


def best_of(fn, runs: int = 3) -> float:
    times = []
    for _ in range(runs):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return min(times)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--tables", type=int, default=2000)
    ns = parser.parse_args()
    server = start_system() if system_versions() else start_pgserver()
    try:
        print(f"building {ns.tables} tables on PostgreSQL {server.major} ({server.source}) …", flush=True)
        build(server.dsn, ns.tables)

        def agent19() -> None:
            with psycopg.connect(server.dsn, row_factory=dict_row) as conn:
                snap = snapshot(conn)
                assert len(snap.tables) == ns.tables

        if server.source == "system":
            pg_dump = str(SYSTEM_ROOT / str(server.major) / "bin" / "pg_dump")
        else:
            import pgserver

            pg_dump = str(Path(pgserver.__file__).parent / "pginstall" / "bin" / "pg_dump")
        pg_dump = pg_dump if Path(pg_dump).exists() else (shutil.which("pg_dump") or "pg_dump")

        def dump() -> None:
            subprocess.run([pg_dump, "--schema-only", "-d", server.dsn], check=True, stdout=subprocess.DEVNULL)

        a = best_of(agent19)
        d = best_of(dump)
        print(f"agent19 snapshot:        {a:7.2f} s")
        print(f"pg_dump --schema-only:   {d:7.2f} s")
        print(f"ratio agent19/pg_dump:   {a / d:7.2f}")
    finally:
        server.stop()


if __name__ == "__main__":
    main()
