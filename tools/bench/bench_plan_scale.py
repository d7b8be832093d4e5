#!/usr/bin/env python3
"""CPU per plan_migration call as the database grows: the tool function in one process, the snapshot cached.

    .venv/bin/python tools/bench/bench_plan_scale.py [--tables 500 2000] [--against ../other-checkout]

A throwaway server (tools/throwaway.py) gets one database per size: bench_mcp's ``bench_orders`` and N tables
``t_i`` (a primary key, a CHECK, an index each). Each measurement runs in a child process: one untimed call (imports,
the catalog read into the few seconds' cache, its TTL raised so that it stays), then ``--runs`` runs of ``--calls``
calls of bench_mcp's 50-statement migration, each with names of its own; prints the least and the median CPU
(user+sys of the process) per call. With ``--against``, another checkout's agent19 is measured the same way,
alternating with this one. Prints numbers; asserts nothing. Not a test.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
CHILD = """
import statistics, sys, time
from agent19.config import Settings
from agent19.db import catalog_cache
from agent19.db.connection import Database
from agent19.tools.plan import PlanArgs, plan_migration_tool
from agent19.tools.registry import ToolContext
from tools.bench.bench_mcp import migration

dsn, calls, runs = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
catalog_cache.SNAPSHOT_TTL_S = 1e9  # the plan's own work, not the catalog read it makes every 2 s
settings = Settings.load(dsn=dsn, mode="read-only", allow_privileged_reads=True, env={})
ctx = ToolContext(settings, Database(settings))
plan_migration_tool(ctx, PlanArgs(sql=migration(10**6)))
per, call = [], 0
for _ in range(runs):
    started = time.process_time()
    for _ in range(calls):
        plan_migration_tool(ctx, PlanArgs(sql=migration(call)))
        call += 1
    per.append((time.process_time() - started) / calls * 1000)
print(f"least {min(per):.1f} ms, median {statistics.median(per):.1f} ms per call")
"""


def build(dsn: str, n: int) -> None:
    import psycopg

    from tools.bench.bench_mcp import SCENARIO

    with psycopg.connect(dsn, autocommit=True) as conn:
        conn.execute(SCENARIO)
        for i in range(n):
            conn.execute(f"CREATE TABLE t_{i} (id bigserial PRIMARY KEY, name text NOT NULL, amount numeric(12,2) "
                         f"CHECK (amount >= 0), created_at timestamptz DEFAULT now()); "
                         f"CREATE INDEX t_{i}_name ON t_{i} (name)")
        conn.execute("ANALYZE")


def measure(tree: Path, dsn: str, calls: int, runs: int) -> str:
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([str(tree), str(ROOT)]))
    env.pop("PYTHONDONTWRITEBYTECODE", None)  # from bytecode, as an installed package runs
    done = subprocess.run([sys.executable, "-c", CHILD, dsn, str(calls), str(runs)], env=env, cwd=tree,
                          capture_output=True, text=True, check=False)
    return done.stdout.strip() if done.returncode == 0 else f"failed: {done.stderr.strip().splitlines()[-1:]}"


def main() -> int:
    sys.path.insert(0, str(ROOT))
    import psycopg

    from tools.throwaway import start_system

    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--tables", type=int, nargs="+", default=[500, 2000])
    ap.add_argument("--calls", type=int, default=5)
    ap.add_argument("--runs", type=int, default=7)
    ap.add_argument("--rounds", type=int, default=2, help="times each tree is measured, alternating")
    ap.add_argument("--against", type=Path, help="another checkout of agent19 (e.g. main), measured alternately")
    ns = ap.parse_args()
    server = start_system()
    try:
        for n in ns.tables:
            with psycopg.connect(server.dsn, autocommit=True) as conn:
                conn.execute(f"CREATE DATABASE bench_{n}")
            build(server.dsn_for(f"bench_{n}"), n)
        trees = [("this", ROOT)] + ([("against", ns.against.resolve())] if ns.against else [])
        for _ in range(ns.rounds):
            for n in ns.tables:
                for label, tree in trees:
                    print(f"{n:>6} tables, {label}: {measure(tree, server.dsn_for(f'bench_{n}'), ns.calls, ns.runs)}",
                          flush=True)
    finally:
        server.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main())
