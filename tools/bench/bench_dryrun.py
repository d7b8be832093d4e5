#!/usr/bin/env python3
"""Benchmark: dry-run a migration with agent19, against applying it with psql on a copy.

    python tools/bench/bench_dryrun.py [--rows 1000000]

A table of N rows; the migration of issue 4 (ADD COLUMN … DEFAULT gen_random_uuid(), CREATE INDEX,
CREATE INDEX CONCURRENTLY, SET NOT NULL, VALIDATE CONSTRAINT). Two comparisons in the same run,
each on a fresh TEMPLATE copy of the database:

* the transactional statements only: ``agent19 dry-run`` vs ``psql -1 -f`` (one transaction);
* the whole migration: ``agent19 dry-run`` vs ``psql -f`` (``psql -1`` refuses CREATE INDEX
  CONCURRENTLY: it cannot run in a transaction block).

Prints wall times and the ratio dry-run / psql. Not a test: nothing here asserts a time.
"""

from __future__ import annotations

import argparse
import shutil
import subprocess
import tempfile
import time
from pathlib import Path

import psycopg
from psycopg.conninfo import make_conninfo

from agent19.config import Settings
from agent19.db.connection import Database
from agent19.db.throwaway import SYSTEM_ROOT, start_pgserver, start_system, system_versions
from agent19.migrate.dryrun.run import dry_run
from agent19.migrate.parse import parse_sql

TRANSACTIONAL = """ALTER TABLE t ADD COLUMN u uuid DEFAULT gen_random_uuid();
CREATE INDEX t_a_idx ON t (a);
ALTER TABLE t ALTER COLUMN u SET NOT NULL;
ALTER TABLE t VALIDATE CONSTRAINT t_a_nonneg;
"""
FULL = TRANSACTIONAL.replace("CREATE INDEX t_a_idx ON t (a);\n",
                             "CREATE INDEX t_a_idx ON t (a);\nCREATE INDEX CONCURRENTLY t_b_idx ON t (b);\n")


def build(dsn: str, rows: int) -> None:
    with psycopg.connect(dsn, autocommit=True) as conn:
        conn.execute("CREATE DATABASE bench")
    with psycopg.connect(make_conninfo(dsn, dbname="bench"), autocommit=True) as conn:
        conn.execute(f"""
            CREATE TABLE t (id bigint PRIMARY KEY, a int NOT NULL, b int, note text);
            INSERT INTO t SELECT g, g % 1000, g % 97, 'note ' || g FROM generate_series(1, {rows}) g;
            ALTER TABLE t ADD CONSTRAINT t_a_nonneg CHECK (a >= 0) NOT VALID;
""")
        conn.execute("VACUUM ANALYZE t")


def copy(dsn: str, name: str) -> str:
    with psycopg.connect(dsn, autocommit=True) as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{name}"')
        conn.execute(f'CREATE DATABASE "{name}" TEMPLATE bench')
    return make_conninfo(dsn, dbname=name)


def psql_bin(major: int) -> str:
    candidate = SYSTEM_ROOT / str(major) / "bin" / "psql"
    return str(candidate) if candidate.exists() else (shutil.which("psql") or "psql")


def timed_psql(psql: str, dsn: str, sql: str, one_transaction: bool) -> float:
    with tempfile.NamedTemporaryFile("w", suffix=".sql", delete=False) as f:
        f.write(sql)
    args = [psql, "-X", "-q", "-v", "ON_ERROR_STOP=1", *(["-1"] if one_transaction else []), "-f", f.name, dsn]
    start = time.perf_counter()
    subprocess.run(args, check=True, capture_output=True)
    elapsed = time.perf_counter() - start
    Path(f.name).unlink()
    return elapsed


def timed_dry_run(dsn: str, sql: str) -> tuple[float, str]:
    db = Database(Settings.load(env={}, dsn=dsn, mode="dry-run", statement_timeout="10min"))
    start = time.perf_counter()
    try:
        result = dry_run(db, parse_sql(sql), scratch_copy="schema")
    finally:
        db.close()
    return time.perf_counter() - start, result.summary


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rows", type=int, default=1_000_000)
    ns = parser.parse_args()
    server = start_system() if system_versions() else start_pgserver()
    try:
        print(f"building a table of {ns.rows:,} rows on PostgreSQL {server.major} ({server.source}) …", flush=True)
        build(server.dsn, ns.rows)
        psql = psql_bin(server.major)
        for label, sql, one in (("transactional statements", TRANSACTIONAL, True), ("whole migration", FULL, False)):
            dry, summary = timed_dry_run(copy(server.dsn, "dry"), sql)
            applied = timed_psql(psql, copy(server.dsn, "applied"), sql, one)
            peer = "psql -1 -f" if one else "psql -f"
            print(f"{label}: agent19 dry-run {dry:.2f} s, {peer} {applied:.2f} s, ratio {dry / applied:.2f}")
            print(f"  {summary}")
    finally:
        server.stop()


if __name__ == "__main__":
    main()
