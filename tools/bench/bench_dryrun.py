#!/usr/bin/env python3
"""Benchmark: dry-run a migration with agent19, against applying it with psql on a copy.

    python tools/bench/bench_dryrun.py [--rows 100000 300000] [--repeat 5]

A table of N rows; the migration of issue 4 (ADD COLUMN … DEFAULT gen_random_uuid(), CREATE INDEX,
CREATE INDEX CONCURRENTLY, SET NOT NULL, VALIDATE CONSTRAINT). Two comparisons, each on a fresh TEMPLATE
copy of the database per run (checkpointed before the run: see ``copy``), dry runs and psql interleaved
``--repeat`` times (medians printed: the machines this runs on are shared and noisy):

* the transactional statements only: ``agent19 dry-run`` vs ``psql -1 -f`` (one transaction);
* the whole migration: ``agent19 dry-run`` vs ``psql -f`` (``psql -1`` refuses CREATE INDEX
  CONCURRENTLY: it cannot run in a transaction block).

Both need a scratch database (statements 3 and 4 take locks statement 1 already holds: re-observed there;
CREATE INDEX CONCURRENTLY runs there). Each dry run is measured twice: ``cold``, as the first dry run of a
process (pg_dump of the schema), and ``warm``, as a repeated dry run of an unchanged database in a running
MCP server (the schema dump is reused: :mod:`agent19.migrate.dryrun.early_scratch`; and the scratch database was
made ahead, after the previous dry run: :mod:`agent19.migrate.dryrun.scratch_pool`, on here as ``agent19 serve``
turns it on). Fairness: that background preparation never overlaps anything timed — after every dry run the
benchmark waits for it to finish (``scratch_pool.settle``) before it times the next thing (a psql run, the next
dry run), and the cold run starts with the pool empty (``scratch_pool.clear``) and no dump kept.

Prints wall times and the ratio dry-run / psql. Not a test: nothing here asserts a time.
"""

from __future__ import annotations

import argparse
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import psycopg
from psycopg.conninfo import make_conninfo

from agent19.config import Settings
from agent19.db.connection import Database

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))  # the checkout: tools.throwaway
from agent19.migrate.dryrun.run import dry_run
from agent19.migrate.parse import parse_sql
from tools.throwaway import SYSTEM_ROOT, start_pgserver, start_system, system_versions  # noqa: E402

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
    """A fresh copy of ``bench``, then a checkpoint: the copy's pages are on disk before the timed run starts,
    so no run pays for writing the copy made for it (a dry run's DROP DATABASE of its scratch database forces
    a checkpoint: without this one it wrote out the bench's fresh copy, which psql's runs never did)."""
    with psycopg.connect(dsn, autocommit=True) as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{name}"')
        conn.execute(f'CREATE DATABASE "{name}" TEMPLATE bench')
        conn.execute("CHECKPOINT")
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
    elapsed = time.perf_counter() - start
    if pool := scratch_pool():  # the next scratch database, made ahead: not while anything else is timed
        pool.settle(120)
    return elapsed, result.summary


def scratch_pool() -> Any:
    """The module that keeps a scratch database ready, or None (an agent19 from before it)."""
    try:
        from agent19.migrate.dryrun import scratch_pool as pool
    except ImportError:
        return None
    return pool


def forget_dumps() -> None:
    """The next dry run is a process's first: its schema dump is taken again, and no scratch database is ready."""
    try:
        from agent19.migrate.dryrun import early_scratch
    except ImportError:  # an agent19 from before the dump was reused: nothing to forget
        return
    early_scratch._DUMPS.clear()
    if pool := scratch_pool():
        pool.clear()


def rounds(dry: list[float], psql: list[float]) -> str:
    """The ratios of each round's dry run to the psql run of the same round (run within a second of each other:
    the machine's load changes less between them than across rounds), as median and range."""
    ratios = sorted(d / p for d, p in zip(dry, psql, strict=True))
    return f"median {statistics.median(ratios):.2f}, {ratios[0]:.2f}-{ratios[-1]:.2f}"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rows", type=int, nargs="+", default=[100_000, 300_000])
    parser.add_argument("--repeat", type=int, default=5)
    ns = parser.parse_args()
    server = start_system() if system_versions() else start_pgserver()
    if pool := scratch_pool():
        pool.enable()  # as agent19 serve does
    psql = psql_bin(server.major)
    try:
        for rows in ns.rows:
            with psycopg.connect(server.dsn, autocommit=True) as conn:
                conn.execute("DROP DATABASE IF EXISTS bench")
            print(f"a table of {rows:,} rows on PostgreSQL {server.major} ({server.source}), "
                  f"{ns.repeat} runs each (medians):", flush=True)
            build(server.dsn, rows)
            cases = (("transactional statements", TRANSACTIONAL, True), ("whole migration", FULL, False))
            for label, sql, one in cases:
                times: dict[str, list[float]] = {"cold": [], "warm": [], "psql": []}
                summary = ""
                for _ in range(ns.repeat):
                    forget_dumps()
                    for kind in ("cold", "warm"):
                        elapsed, summary = timed_dry_run(copy(server.dsn, "dry"), sql)
                        times[kind].append(elapsed)
                    times["psql"].append(timed_psql(psql, copy(server.dsn, "applied"), sql, one))
                med = {k: statistics.median(v) for k, v in times.items()}
                peer = "psql -1 -f" if one else "psql -f"
                print(f"  {label}: {peer} {med['psql']:.3f} s; agent19 dry-run cold {med['cold']:.3f} s "
                      f"(ratio {med['cold'] / med['psql']:.2f}), warm {med['warm']:.3f} s "
                      f"(ratio {med['warm'] / med['psql']:.2f})", flush=True)
                print(f"    per round (a dry run / the psql run of its round): "
                      f"cold {rounds(times['cold'], times['psql'])}; warm {rounds(times['warm'], times['psql'])}")
                print(f"    {summary}")
    finally:
        if pool:
            pool.close()
        server.stop()


if __name__ == "__main__":
    main()
