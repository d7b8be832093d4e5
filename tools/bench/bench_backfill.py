#!/usr/bin/env python3
"""Benchmark: what a backfill costs the application — one big UPDATE against agent19's batched backfill.

    python tools/bench/bench_backfill.py [--rows 1000000] [--clients 4] [--duration 30]

pgbench writers update random rows of the table while (a) one ``UPDATE … SET …`` rewrites every row
in a single transaction, then (b) ``run_backfill`` does the same in keyset batches, and (c) nothing
runs for as long as (b) took (idle: the writers alone). Printed side by side: the writers' p50/p99/max
latency over the transactions that ran during each window, how many committed, the backfill's rows/s,
and the ratios the goal names: the backfill's rows/s as a share of the big UPDATE's, and the writers'
p99 and max latency during the backfill as a multiple of idle. Not a test: nothing here asserts a time.
"""

from __future__ import annotations

import argparse
import glob
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from pathlib import Path

import psycopg
from psycopg.conninfo import conninfo_to_dict

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))  # the checkout: tools.throwaway
from agent19.migrate.backfill.executor import BackfillSpec, run_backfill
from tools.throwaway import SYSTEM_ROOT, start_pgserver, start_system, system_versions  # noqa: E402

SCRIPT = "\\set id random(1, {rows})\nUPDATE bench SET hits = hits + 1 WHERE id = :id;\n"


def pgbench_path() -> str:
    for major in system_versions():
        p = SYSTEM_ROOT / str(major) / "bin" / "pgbench"
        if p.exists():
            return str(p)
    found = shutil.which("pgbench")
    if not found:
        raise SystemExit("pgbench not found: install PostgreSQL's client/contrib package")
    return found


def reset(dsn: str, rows: int) -> None:
    with psycopg.connect(dsn, autocommit=True) as c:
        c.execute("DROP TABLE IF EXISTS bench; DROP TABLE IF EXISTS agent19_backfill_checkpoint")
        c.execute(f"CREATE TABLE bench (id bigint PRIMARY KEY, hits int NOT NULL DEFAULT 0, v bigint, v2 bigint);"
                  f"INSERT INTO bench (id, v) SELECT g, g FROM generate_series(1, {rows}) g")
        c.execute("VACUUM ANALYZE bench")


def measure(dsn: str, rows: int, clients: int, duration: int, work: Callable[[], None]) -> dict[str, float]:
    """Run pgbench for ``duration`` s; start ``work`` after 2 s; latencies of transactions during it."""
    info = conninfo_to_dict(dsn)
    with tempfile.TemporaryDirectory() as tmp:
        script = Path(tmp) / "writers.sql"
        script.write_text(SCRIPT.format(rows=rows))
        os.chmod(tmp, 0o777)
        cmd = [pgbench_path(), "-n", "-c", str(clients), "-j", str(clients), "-T", str(duration), "-f", str(script),
               "-l", f"--log-prefix={tmp}/log", "-h", str(info.get("host", "127.0.0.1")),
               "-p", str(info.get("port", 5432)), "-U", str(info.get("user", "postgres")), str(info["dbname"])]
        bench = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, cwd=tmp)
        time.sleep(2)
        t0 = time.time()
        work_thread = threading.Thread(target=work)
        work_thread.start()
        work_thread.join()
        t1 = time.time()
        _, err = bench.communicate()
        if bench.returncode != 0:
            raise SystemExit(f"pgbench failed: {err.decode()[-500:]}")
        lat = []
        for f in glob.glob(f"{tmp}/log*"):
            for line in open(f):
                parts = line.split()
                latency_us, end = int(parts[2]), int(parts[4]) + int(parts[5]) / 1e6
                start = end - latency_us / 1e6
                if start < t1 and end > t0:
                    lat.append(latency_us / 1000)
    lat.sort()
    q = statistics.quantiles(lat, n=100) if len(lat) >= 2 else [0.0] * 99
    return {"seconds": t1 - t0, "txns": len(lat), "p50": q[49], "p99": q[98], "max": lat[-1] if lat else 0.0}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--clients", type=int, default=4)
    parser.add_argument("--duration", type=int, default=30, help="seconds of pgbench per scenario")
    parser.add_argument("--target-batch-ms", type=int, default=BackfillSpec.model_fields["target_batch_ms"].default,
                        help="the backfill's target batch time (default: agent19's)")
    ns = parser.parse_args()
    server = start_system() if system_versions() else start_pgserver()
    try:
        print(f"PostgreSQL {server.major} ({server.source}), {ns.rows:,} rows, {ns.clients} pgbench writers",
              flush=True)
        reset(server.dsn, ns.rows)

        def big_update() -> None:
            with psycopg.connect(server.dsn, autocommit=True) as c:
                c.execute("UPDATE bench SET v2 = v * 2")

        a = measure(server.dsn, ns.rows, ns.clients, ns.duration, big_update)
        reset(server.dsn, ns.rows)

        def batched() -> None:
            with psycopg.connect(server.dsn, autocommit=True) as c:
                run_backfill(c, BackfillSpec(table="bench", set="v2 = v * 2", where="v2 IS NULL",
                                             target_batch_ms=ns.target_batch_ms, max_replication_lag_s=None))

        b = measure(server.dsn, ns.rows, ns.clients, ns.duration, batched)
        reset(server.dsn, ns.rows)  # the same fresh table as the other two windows
        idle = measure(server.dsn, ns.rows, ns.clients, ns.duration, lambda: time.sleep(b["seconds"]))
        print(f"{'':28}{'one big UPDATE':>18}{'agent19 backfill':>18}{'idle':>18}")
        rows_out = [("backfill seconds", "seconds", "{:.1f}"), ("writers' txns during it", "txns", "{:,.0f}"),
                    ("writers' p50 latency (ms)", "p50", "{:.2f}"), ("writers' p99 latency (ms)", "p99", "{:.2f}"),
                    ("writers' max latency (ms)", "max", "{:.0f}")]
        for r in (a, b, idle):
            r["tps"] = r["txns"] / r["seconds"] if r["seconds"] else 0.0
        rows_out.insert(2, ("writers' commits/s", "tps", "{:,.0f}"))
        for label, key, fmt in rows_out:
            print(f"{label:28}{fmt.format(a[key]):>18}{fmt.format(b[key]):>18}{fmt.format(idle[key]):>18}")
        print(f"{'backfill rows/s':28}{ns.rows / a['seconds']:>18,.0f}{ns.rows / b['seconds']:>18,.0f}{'-':>18}")
        print(f"backfill rate: {a['seconds'] / b['seconds']:.0%} of the big UPDATE's rows/s; writers' latency "
              f"during the backfill vs idle: p99 {b['p99'] / idle['p99']:.2f}x, max {b['max'] / idle['max']:.2f}x "
              f"(load average {os.getloadavg()[0]:.2f})")
        print("(p99 is over transactions: writers blocked by the big UPDATE complete few, slow ones — "
              "read it with commits/s and max)")
        if a["seconds"] + 2 > ns.duration or b["seconds"] + 2 > ns.duration:
            print("note: a backfill outlasted pgbench's --duration; raise it for a fair window")
    finally:
        server.stop()


if __name__ == "__main__":
    main()
