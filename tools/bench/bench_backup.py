#!/usr/bin/env python3
"""Benchmark: agent19's full logical backup verification against the bare ``pg_dump | pg_restore``.

    python tools/bench/bench_backup.py [--size-mb 1024] [--jobs 1]

Builds a database of about ``--size-mb`` (orders with jsonb and text, a table without a primary key,
indexes), then, in the same run and on the same server:

* peer: ``pg_dump -Fc DB | pg_restore -d NEW`` into a fresh database (what agent19 wraps);
* agent19: ``verify_logical`` — dump at an exported snapshot, restore into a scratch database, compare
  schema, row counts, per-table checksums (source side during the dump) and sequences.

Prints both wall times and the ratio agent19 / peer (the goal of issue 17: ≤ 1.3×). Not a test:
nothing here asserts a time.
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import time
from pathlib import Path

import psycopg
from psycopg.conninfo import make_conninfo

from agent19.config import Settings
from agent19.db.connection import Database

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))  # the checkout: tools.throwaway
from agent19.ops.backup.logical import verify_logical
from tools.throwaway import SYSTEM_ROOT, start_system, system_versions  # noqa: E402


def build(dsn: str, size_mb: int) -> None:
    with psycopg.connect(dsn, autocommit=True) as conn:
        # an application role owns it: a scratch-database restore runs as the login, never a superuser
        conn.execute("CREATE ROLE bench_app LOGIN CREATEDB")
        conn.execute("CREATE DATABASE bench OWNER bench_app")
    rows = max(1000, size_mb * 1024 * 1024 // 300)  # ~300 bytes per order row, its index entries and events
    with psycopg.connect(make_conninfo(dsn, dbname="bench", user="bench_app"), autocommit=True) as conn:
        conn.execute(f"""
            CREATE TABLE orders (id bigserial PRIMARY KEY, customer int NOT NULL, placed timestamptz NOT NULL,
                                 total numeric(12, 2), status text, doc jsonb, note text);
            INSERT INTO orders (customer, placed, total, status, doc, note)
            SELECT g % 50000, timestamptz '2024-01-01' + g * interval '1 second', (g % 10000) / 7.0,
                   (ARRAY['new', 'paid', 'shipped'])[1 + g % 3],
                   jsonb_build_object('items', g % 9, 'sku', md5(g::text)),
                   repeat(md5(g::text), 3)
              FROM generate_series(1, {rows}) g;
            CREATE INDEX orders_customer ON orders (customer);
            CREATE TABLE events (kind text, at timestamptz, payload text);
            INSERT INTO events SELECT 'click', now(), md5(g::text) FROM generate_series(1, {rows // 4}) g;
        """)
        conn.execute("VACUUM ANALYZE")


def fresh(dsn: str, name: str) -> str:
    with psycopg.connect(dsn, autocommit=True) as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{name}"')
        conn.execute(f'CREATE DATABASE "{name}" TEMPLATE template0')
    return make_conninfo(dsn, dbname=name)


def peer(dsn: str, major: int, jobs: int) -> float:
    bindir = SYSTEM_ROOT / str(major) / "bin"
    target = fresh(dsn, "peer_restore")
    start = time.monotonic()
    dump = subprocess.Popen([bindir / "pg_dump", "-Fc", "-d", make_conninfo(dsn, dbname="bench")],
                            stdout=subprocess.PIPE)
    restore = subprocess.run([bindir / "pg_restore", "--no-owner", "-d", target], stdin=dump.stdout)
    dump.wait()
    elapsed = time.monotonic() - start
    if dump.returncode or restore.returncode:
        raise SystemExit("pg_dump | pg_restore failed")
    with psycopg.connect(dsn, autocommit=True) as conn:
        conn.execute('DROP DATABASE "peer_restore"')
    return elapsed


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--size-mb", type=int, default=1024, help="database size to build (default 1024)")
    parser.add_argument("--jobs", type=int, default=1, help="agent19's --jobs (the peer pipes: one job)")
    parser.add_argument("--repeat", type=int, default=1, help="runs of each, best kept")
    args = parser.parse_args()
    if not system_versions():
        raise SystemExit("needs the system's PostgreSQL (e.g. Debian's postgresql-15)")
    server = start_system(settings={"max_wal_size": "'4GB'", "checkpoint_timeout": "'30min'"})
    try:
        print(f"building ~{args.size_mb} MB …", flush=True)
        build(server.dsn, args.size_mb)
        bench = make_conninfo(server.dsn, dbname="bench")
        with psycopg.connect(bench) as conn:
            size = conn.execute("SELECT pg_size_pretty(pg_database_size('bench'))").fetchone()
        print(f"database: {size[0] if size else '?'}")
        peer_s = min(peer(server.dsn, server.major, args.jobs) for _ in range(args.repeat))
        print(f"pg_dump | pg_restore:        {peer_s:8.1f} s", flush=True)
        db = Database(Settings.load(dsn=make_conninfo(bench, user="bench_app"), mode="dry-run"))
        best = None
        for _ in range(args.repeat):
            start = time.monotonic()
            result = verify_logical(db, jobs=args.jobs, restore_into="scratch")
            elapsed = time.monotonic() - start
            if not result.verified:
                raise SystemExit(f"verification failed: {result.summary}")
            best = elapsed if best is None else min(best, elapsed)
            d = result.durations_s
            print(f"  (dump {d.dump:.1f} s, restore {d.restore:.1f} s, verify {d.verify:.1f} s)")
        assert best is not None
        print(f"agent19 backup verify:       {best:8.1f} s")
        print(f"ratio agent19 / peer:        {best / peer_s:8.2f}×  (goal ≤ 1.3×)")
        db.close()
    finally:
        server.stop()


if __name__ == "__main__":
    main()
