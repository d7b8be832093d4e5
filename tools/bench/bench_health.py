#!/usr/bin/env python3
"""Benchmark: ``health_check`` beside Postgres MCP Pro's ``analyze_db_health`` on the same planted server.

    .venv/bin/python tools/bench/bench_health.py [--tables 1000] [--peer-python PATH] [--peer-timeout 60]

1. A throwaway system PostgreSQL (``start_system()``, archive_mode on with a failing archive_command,
   max_prepared_transactions 5) with ``--tables`` tables (primary key, 10 rows each) in database ``bench``.
2. Planted problems, each with the object a good check must name: a sequence at 96 % named in no column
   default; a smallint identity column at 91.6 %; an int column fed by a bigint sequence; a table with 30 %
   dead tuples and autovacuum off; a session idle in transaction for > 30 s; a blocked chain of three
   sessions (> 5 s); an invalid index left by a failed CREATE INDEX CONCURRENTLY; an inactive logical slot
   retaining WAL; a failing archive_command. Default thresholds on both sides (the script waits 31 s so the
   session ages pass agent19's defaults).
3. agent19: :func:`agent19.ops.health.check.health_check` in-process. A planted problem counts as detected when
   its check is not ok and names the object; every other check that is not ok is a false alarm.
4. The peer: ``DatabaseHealthTool(SqlDriver(...)).health("all")`` — what its ``analyze_db_health`` MCP tool
   runs in its default (unrestricted) mode — in its own venv (a subprocess). A planted problem counts as
   detected when the object's name (or, for the session checks, the condition) appears in its report;
   its full report is written to ``--peer-output``.
5. Both again while one session holds an AccessExclusiveLock on a table: the peer gets ``--peer-timeout``
   seconds, then is killed.

Not a test; nothing but this script is committed. The peer lives outside the repository (its releases need
Python ≥ 3.12; see tools/bench/bench_workload.py for the same venv)::

    /root/.pyenv/versions/3.12.1/bin/python -m venv /tmp/pgmcp-venv
    /tmp/pgmcp-venv/bin/pip install --no-deps postgres-mcp==0.3.0
    /tmp/pgmcp-venv/bin/pip install 'attrs>=25.3.0' 'humanize>=4.8.0' 'instructor>=1.7.9' 'mcp[cli]>=1.5,<2' \\
        pglast==7.22 'psycopg-pool>=3.2.6' 'psycopg[binary]>=3.2.6'

Without the peer, agent19's numbers are printed with a ``peer unavailable: <reason>`` line.
"""

from __future__ import annotations

import argparse
import re
import subprocess
import sys
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import psycopg

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))

from agent19.config import Settings  # noqa: E402
from agent19.db.connection import Database  # noqa: E402
from agent19.ops.health.check import health_check  # noqa: E402
from agent19.ops.health.model import HealthReport  # noqa: E402
from tools.throwaway import ThrowawayServer, start_system  # noqa: E402

PEER = """
import asyncio, sys, time
from postgres_mcp.sql.sql_driver import SqlDriver
from postgres_mcp.database_health.database_health import DatabaseHealthTool

async def main():
    driver = SqlDriver(engine_url=sys.argv[1])
    start = time.monotonic()
    out = await DatabaseHealthTool(driver).health(health_type="all")
    print(f"@@elapsed {time.monotonic() - start:.4f}")
    print(out)

asyncio.run(main())
"""

PLANT = """
CREATE SEQUENCE s96 AS integer; SELECT setval('s96', 2061584302);
CREATE TABLE tiny (id smallint GENERATED ALWAYS AS IDENTITY PRIMARY KEY, v int);
SELECT setval(pg_get_serial_sequence('tiny', 'id'), 30000);
CREATE SEQUENCE wide_seq; CREATE TABLE narrow (id int PRIMARY KEY DEFAULT nextval('wide_seq'));
INSERT INTO narrow DEFAULT VALUES;
CREATE TABLE dead (id int, pad text) WITH (autovacuum_enabled = false);
INSERT INTO dead SELECT g, 'x' FROM generate_series(1, 100000) g; DELETE FROM dead WHERE id % 10 < 3;
CREATE TABLE dupi (v int); INSERT INTO dupi VALUES (1), (1);
CREATE TABLE chain (id int PRIMARY KEY, v int); INSERT INTO chain VALUES (1, 0), (2, 0);
SELECT pg_stat_force_next_flush();
"""


@dataclass
class Problem:
    name: str
    check: str
    obj: str
    peer: str  # a regular expression on the peer's report


def build(server: ThrowawayServer, tables: int) -> str:
    with psycopg.connect(server.dsn, autocommit=True) as c:
        c.execute("CREATE DATABASE bench")
    dsn = server.dsn_for("bench")
    with psycopg.connect(dsn, autocommit=True) as c:
        for start in range(0, tables, 100):
            c.execute(f"""DO $$ BEGIN FOR i IN {start + 1}..{min(start + 100, tables)} LOOP
                EXECUTE format('CREATE TABLE t%s (id int PRIMARY KEY, v text)', i);
                EXECUTE format('INSERT INTO t%s SELECT g, md5(g::text) FROM generate_series(1, 10) g', i);
              END LOOP; END $$""")
        c.execute("ANALYZE")
        # a relation extension counts as a block read in pg_statio_*: right after a bulk load the cache hit
        # ratio is low though nothing came from disk — start counting after the load, as a DBA would
        c.execute("SELECT pg_stat_reset()")
        c.execute(PLANT)
        c.execute("SELECT pg_create_logical_replication_slot('stale', 'pgoutput')")  # not in a writing transaction
        try:
            c.execute("CREATE UNIQUE INDEX CONCURRENTLY dupi_v ON dupi (v)")
        except psycopg.errors.UniqueViolation:
            pass  # leaves dupi_v INVALID, as intended
        c.execute("INSERT INTO narrow DEFAULT VALUES; SELECT pg_switch_wal()")  # WAL for the failing archiver
    return dsn


def hold_sessions(dsn: str) -> tuple[list[psycopg.Connection[Any]], list[threading.Thread], dict[str, int]]:
    conns = [psycopg.connect(dsn) for _ in range(4)]
    idle, head, middle, tail = conns
    idle.execute("SELECT 1")
    head.execute("UPDATE chain SET v = v + 1 WHERE id = 1")
    middle.execute("UPDATE chain SET v = v + 1 WHERE id = 2")
    threads = []
    for conn, row in ((middle, 1), (tail, 2)):
        t = threading.Thread(target=conn.execute, args=(f"UPDATE chain SET v = v + 1 WHERE id = {row}",), daemon=True)
        t.start()
        threads.append(t)
        time.sleep(0.3)
    pids = {"idle": idle.info.backend_pid, "head": head.info.backend_pid, "tail": tail.info.backend_pid}
    return conns, threads, pids


def problems(pids: dict[str, int]) -> list[Problem]:
    return [
        Problem("sequence at 96 % (in no column default)", "sequences", "public.s96", r"\bs96\b"),
        Problem("identity smallint column at 91.6 %", "sequences", "public.tiny_id_seq", r"tiny"),
        Problem("int column fed by a bigint sequence", "sequence_column_type", "public.narrow.id", r"narrow"),
        Problem("30 % dead tuples, autovacuum off", "dead_tuples", "public.dead", r"'dead'|public\.dead\b"),
        Problem("idle in transaction > 30 s", "idle_in_transaction", f"pid {pids['idle']}",
                r"High number of connections idle in transaction"),
        Problem("blocked chain of three sessions", "blocked_sessions", f"pid {pids['tail']}", r"(?i)block"),
        Problem("invalid index (failed CREATE INDEX CONCURRENTLY)", "invalid_indexes", "public.dupi_v", r"dupi_v"),
        Problem("inactive slot retaining WAL", "replication_slots", "stale", r"\bstale\b"),
        Problem("archive_command failing", "archiving", "", r"(?i)archiv"),
    ]


def run_agent19(dsn: str) -> tuple[HealthReport, float]:
    db = Database(Settings.load(dsn=dsn, env={}))
    try:
        start = time.monotonic()
        report = health_check(db)
        return report, time.monotonic() - start
    finally:
        db.close()


def run_peer(python: str, dsn: str, timeout: float) -> tuple[str | None, float | None, str]:
    """(report, seconds, note): report None when it could not run or gave no answer in time."""
    if not Path(python).exists():
        return None, None, f"peer unavailable: {python} not found (see this script's docstring)"
    start = time.monotonic()
    try:
        done = subprocess.run([python, "-c", PEER, dsn], capture_output=True, text=True, timeout=timeout)
    except subprocess.TimeoutExpired:
        return None, None, f"no answer within {timeout:.0f} s (killed)"
    wall = time.monotonic() - start
    if done.returncode != 0:
        return None, None, f"peer unavailable: {done.stderr.strip().splitlines()[-1] if done.stderr.strip() else '?'}"
    m = re.search(r"@@elapsed ([\d.]+)", done.stdout)
    return done.stdout, float(m.group(1)) if m else wall, "ok"


def detected(report: HealthReport, p: Problem) -> bool:
    c = report.check(p.check)
    return c.status in ("warning", "critical") and (not p.obj or p.obj in c.objects)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--tables", type=int, default=1000)
    ap.add_argument("--peer-python", default="/tmp/pgmcp-venv/bin/python")
    ap.add_argument("--peer-timeout", type=float, default=60)
    ap.add_argument("--peer-output", default="/tmp/bench_health_peer.txt")
    ns = ap.parse_args()

    server = start_system(settings={"archive_mode": "on", "archive_command": "'/bin/false'",
                                    "max_prepared_transactions": "5"})
    conns: list[psycopg.Connection[Any]] = []
    threads: list[threading.Thread] = []
    try:
        t0 = time.monotonic()
        dsn = build(server, ns.tables)
        conns, threads, pids = hold_sessions(dsn)
        print(f"{ns.tables} tables built and problems planted in {time.monotonic() - t0:.1f} s; waiting for the "
              "sessions to age past 30 s …", flush=True)
        time.sleep(31)
        todo = problems(pids)
        ours, ours_s = run_agent19(dsn)
        slowest = sorted(ours.checks, key=lambda c: -c.duration_ms)[:4]
        print("agent19's slowest checks: " + ", ".join(f"{c.check} {c.duration_ms:.0f} ms" for c in slowest))
        peer, peer_s, note = run_peer(ns.peer_python, dsn, ns.peer_timeout)
        if peer is not None:
            Path(ns.peer_output).write_text(peer)

        print(f"\n{'planted problem':<50} {'agent19':<9} Postgres MCP Pro")
        for p in todo:
            theirs = "—" if peer is None else ("yes" if re.search(p.peer, peer) else "no")
            print(f"{p.name:<50} {'yes' if detected(ours, p) else 'NO':<9} {theirs}")
        # the dead table was never analyzed either: stale_statistics naming it is right, not a false alarm
        planted_checks = {p.check for p in todo} | {"stale_statistics"}
        false = [f"{c.check} ({c.status}: {c.message[:80]})" for c in ours.checks
                 if c.status != "ok" and c.check not in planted_checks]
        found = sum(detected(ours, p) for p in todo)
        peer_found = sum(bool(re.search(p.peer, peer)) for p in todo) if peer else None
        print(f"{'detected':<50} {found}/{len(todo):<7} {'—' if peer_found is None else f'{peer_found}/{len(todo)}'}")
        print(f"agent19 false alarms: {false or 'none'}")
        ratio = f", ratio peer/agent19 {peer_s / ours_s:.1f}×" if peer_s else ""
        print(f"runtime, all checks, {ns.tables} tables: agent19 {ours_s:.3f} s, peer "
              f"{f'{peer_s:.3f} s' if peer_s is not None else note}{ratio}")

        lock = psycopg.connect(dsn)
        conns.append(lock)
        lock.execute("LOCK TABLE t1 IN ACCESS EXCLUSIVE MODE")
        locked, locked_s = run_agent19(dsn)
        unknown = [c.check for c in locked.checks if c.status == "unknown"]
        _, peer_locked_s, peer_note = run_peer(ns.peer_python, dsn, ns.peer_timeout)
        print(f"with an AccessExclusiveLock held on public.t1: agent19 {locked_s:.3f} s ({len(unknown)} checks "
              f"unknown: {', '.join(unknown)}; e.g. \"{locked.check(unknown[0]).message[:110]}…\" )" if unknown else
              f"with an AccessExclusiveLock held on public.t1: agent19 {locked_s:.3f} s")
        print(f"  peer: {f'{peer_locked_s:.3f} s' if peer_locked_s is not None else peer_note}")
        if peer is not None:
            print(f"peer's full report: {ns.peer_output}")
    finally:
        for c in conns:
            try:
                c.rollback()
            except psycopg.Error:
                pass
        for t in threads:
            t.join(timeout=10)
        for c in conns:
            c.close()
        server.stop()


if __name__ == "__main__":
    main()
