#!/usr/bin/env python3
"""Benchmark: 20 column-level data-quality checks on a 1M-row table.

    python tools/bench/bench_quality.py [--rows 1000000] [--soda /tmp/soda-venv/bin/soda]

agent19 computes all of a table's column metrics in one aggregate query (one scan). The baseline
is what hand-written checks do (the charter's runner, most cron jobs): each check's own query, run
one after the other — the same SQL expressions, so only the number of scans differs. With
``--soda PATH`` (Soda Core's ``soda`` command, installed in a separate virtual environment and never
a dependency of agent19) the same 20 checks also run as a SodaCL scan. The data is clean, so no run
lists failing rows. Prints wall times (best of 3) and the ratios. Not a test: nothing asserts a time.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
from pathlib import Path

import psycopg
from bench_catalog import best_of  # the sibling script (this directory is on sys.path when run)
from psycopg.conninfo import conninfo_to_dict

from agent19.config import Settings
from agent19.db.catalog import snapshot
from agent19.db.connection import Database

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))  # the checkout: tools.throwaway
from agent19.etl import quality_sql as q
from agent19.etl.quality_model import parse_checks
from agent19.etl.quality_run import run_checks
from agent19.etl.quality_targets import resolve_key
from tools.throwaway import start_pgserver, start_system, system_versions  # noqa: E402

CHECKS = """
tables:
  bench:
    checks:
      - {check: row_count}
      - {check: missing_count, column: user_id}
      - {check: missing_count, column: amount}
      - {check: missing_count, column: status}
      - {check: missing_count, column: email}
      - {check: missing_count, column: created_at}
      - {check: missing_count, column: qty}
      - {check: missing_percent, column: score}
      - {check: invalid_count, column: amount, valid_min: 0, valid_max: 100000}
      - {check: invalid_count, column: qty, valid_min: 1, valid_max: 1000}
      - {check: invalid_count, column: score, valid_min: 0, valid_max: 1}
      - {check: invalid_count, column: status, valid_values: [new, paid, shipped, returned]}
      - {check: invalid_count, column: email, valid_regex: '^[^@]+@[^@]+$'}
      - {check: invalid_percent, column: user_id, valid_min: 1}
      - {check: freshness, column: created_at, fail: "> 1 day"}
      - {check: sum, column: amount, fail: "<= 0"}
      - {check: avg, column: amount, fail: "not between 1 and 100000"}
      - {check: min, column: qty, fail: "< 1"}
      - {check: max, column: qty, fail: "> 1000"}
      - {check: avg, column: score, fail: "not between 0 and 1"}
"""

SODA = """
checks for bench:
  - row_count > 0
  - missing_count(user_id) = 0
  - missing_count(amount) = 0
  - missing_count(status) = 0
  - missing_count(email) = 0
  - missing_count(created_at) = 0
  - missing_count(qty) = 0
  - missing_percent(score) = 0
  - invalid_count(amount) = 0:
      valid min: 0
      valid max: 100000
  - invalid_count(qty) = 0:
      valid min: 1
      valid max: 1000
  - invalid_count(score) = 0:
      valid min: 0
      valid max: 1
  - invalid_count(status) = 0:
      valid values: [new, paid, shipped, returned]
  - invalid_count(email) = 0:
      valid regex: '^[^@]+@[^@]+$'
  - invalid_percent(user_id) = 0:
      valid min: 1
  - freshness(created_at) < 1d
  - sum(amount) > 0
  - avg(amount) between 1 and 100000
  - min(qty) >= 1
  - max(qty) <= 1000
  - avg(score) between 0 and 1
"""


def build(dsn: str, rows: int) -> None:
    with psycopg.connect(dsn, autocommit=True) as conn:
        conn.execute(
            "CREATE TABLE bench (id bigint PRIMARY KEY, user_id int, amount numeric(12,2), status text, email text,"
            " created_at timestamptz, qty int, score float8)")
        conn.execute(
            "INSERT INTO bench SELECT g, 1 + g % 50000, (g % 9999) + 1.5,"
            " (ARRAY['new','paid','shipped','returned'])[1 + g % 4], 'user' || g || '@example.com',"
            " now() - (g % 3600) * interval '1 second', 1 + g % 100, (g % 1000) / 1000.0"
            f" FROM generate_series(1, {rows}) g")
        conn.execute("VACUUM ANALYZE bench")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--soda", help="path of Soda Core's `soda` command (pip install soda-core-postgres in a "
                        "separate venv)")
    ns = parser.parse_args()
    server = start_system() if system_versions() else start_pgserver()
    checks = parse_checks(CHECKS)
    db = Database(Settings.load(env={}, dsn=server.dsn, statement_timeout="10min"))
    try:
        print(f"building a {ns.rows:,}-row table on PostgreSQL {server.major} ({server.source}) …", flush=True)
        build(server.dsn, ns.rows)

        def agent19() -> None:
            report = run_checks(db, checks)
            assert report.status == "pass" and report.summary.queries == 1, report.model_dump_json(indent=1)

        with psycopg.connect(server.dsn) as conn:
            from psycopg.rows import dict_row

            conn.row_factory = dict_row  # type: ignore[assignment]
            table = snapshot(conn, table="bench").tables[0]
            key, _ = resolve_key(table, None)
            target = q.Target(table=table, key=key)
            spec = checks.tables["bench"]
            separate = [q.aggregate_query(target, q.metric_columns(i, c, None)).as_string(conn)
                        for i, c in enumerate(spec.checks)]
        assert len(separate) == 20

        def one_query_per_check() -> None:
            with psycopg.connect(server.dsn) as conn:
                for query in separate:
                    conn.execute(query).fetchone()

        a = best_of(agent19)
        s = best_of(one_query_per_check)
        print(f"agent19 (one scan, 20 checks):     {a:7.2f} s")
        print(f"one query per check (20 scans):    {s:7.2f} s")
        print(f"ratio one-per-check / agent19:     {s / a:7.2f}x  (goal: >= 3x)")
        if ns.soda:
            scan = best_of(lambda: soda(ns.soda, server.dsn))
            start = best_of(lambda: subprocess.run([ns.soda, "--help"], capture_output=True, check=True))
            print(f"Soda Core scan (20 checks):        {scan:7.2f} s  (of which {start:.2f} s starting `soda`)")
            print(f"ratio Soda / agent19:              {scan / a:7.2f}x  ({max(scan - start, 0) / a:.2f}x without "
                  "its start-up)")
    finally:
        db.close()
        server.stop()


def soda(command: str, dsn: str) -> None:
    params = conninfo_to_dict(dsn)
    config = (f"data_source bench:\n  type: postgres\n  host: {params.get('host', '127.0.0.1')}\n"
              f"  port: {params.get('port', 5432)}\n  username: {params.get('user', 'postgres')}\n"
              f"  password: ''\n  database: {params.get('dbname', 'postgres')}\n  schema: public\n")
    with tempfile.TemporaryDirectory() as tmp:
        (Path(tmp) / "configuration.yml").write_text(config)
        (Path(tmp) / "checks.yml").write_text(SODA)
        done = subprocess.run([command, "scan", "-d", "bench", "-c", "configuration.yml", "checks.yml"], cwd=tmp,
                              capture_output=True, text=True, env={**os.environ, "PGPASSWORD": ""})
        if "All is good" not in done.stdout:
            raise SystemExit(f"soda scan did not pass:\n{done.stdout[-3000:]}\n{done.stderr[-2000:]}")


if __name__ == "__main__":
    main()
