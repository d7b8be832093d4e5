#!/usr/bin/env python3
"""Where a warm dry run's time goes: a timeline of ``dry_run``'s phases, their round trips, and server CPU.

    python tools/bench/profile_dryrun.py [--rows 100000] [--repeat 9] [--full] [--plain]

The table and migration of ``bench_dryrun.py`` (the transactional statements; ``--full``: the whole migration),
warm as there: the scratch pool on, one dry run first, then ``--repeat`` dry runs, each on a fresh TEMPLATE copy
and each after the pool's background preparation has settled. Each run is instrumented from outside (wrappers
installed here; nothing in agent19 changes):

* the main thread's phases: wall ms, and the round trips it waited for in each (a statement sent outside a
  pipeline, or one pipeline block). Phases nest: ``observe`` is inside ``_in_transaction``,
  ``observe._after_state`` inside both, ``catalog_snapshot`` holds the first catalog snapshot;
* each statement's duration as the dry run reports it; with ``--plain`` (transactional statements only), the
  same statements applied on another copy in one transaction, as ``psql -1 -f`` does, interleaved;
* the server CPU of every session agent19 closed during the run (``/proc/<pid>/schedstat``, read just before it
  closes: the server must run on this machine), by database — ``target``: sessions to the dry run's target;
  ``postgres``: the cluster-wide session and scratch databases' owner sessions (which may have been opened
  before the run, by the pool's background preparation); ``scratch``: sessions in scratch databases.

Prints medians. The machine may be shared: compare runs made in the same period. Not a test: nothing here
asserts a time.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import threading
import time
from collections import defaultdict
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import psycopg

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))  # the checkout: tools.*
from agent19.config import Settings  # noqa: E402
from agent19.db import observe as observe_mod  # noqa: E402
from agent19.db.connection import Database  # noqa: E402
from agent19.migrate.dryrun import ahead, cluster_side, early_scratch, run, scratch_pool  # noqa: E402
from agent19.migrate.parse import parse_sql  # noqa: E402
from tools.bench.bench_dryrun import FULL, TRANSACTIONAL, build, copy  # noqa: E402
from tools.throwaway import start_pgserver, start_system, system_versions  # noqa: E402

_local = threading.local()
_events: list[tuple[str, str, float, int]] = []  # (thread, phase, wall ms, round trips)
_backends: list[tuple[str, float]] = []  # (database, server CPU ms)
_trips: dict[str, int] = defaultdict(int)  # round trips per thread, this run


def _cpu_ms(pid: int) -> float | None:
    try:
        return int(Path(f"/proc/{pid}/schedstat").read_text().split()[0]) / 1e6
    except (OSError, ValueError, IndexError):
        return None


def _phase(name: str, fn: Any) -> Any:
    def wrapped(*args: Any, **kwargs: Any) -> Any:
        me = threading.current_thread().name
        start, trips = time.perf_counter(), _trips[me]
        try:
            return fn(*args, **kwargs)
        finally:
            _events.append((me, name, (time.perf_counter() - start) * 1000, _trips[me] - trips))
    return wrapped


def instrument() -> None:
    """Wrap the dry run's phases, and count round trips and read server CPU on every psycopg connection."""
    for name in ("refuse_standby", "predict", "_early_scratch", "catalog_snapshot", "screen", "snapshot",
                 "run_check", "_in_transaction", "run_in_scratch", "diff_snapshots", "compare", "summary_text",
                 "observe", "dry_run"):
        setattr(run, name, _phase(name, getattr(run, name)))
    observe_mod._after_state = _phase("observe._after_state", observe_mod._after_state)
    for cls, names in ((cluster_side.ClusterSide, ("__init__", "before", "start_after", "after", "close")),
                       (ahead.AheadReplay, ("__init__", "apply", "join")),
                       (early_scratch.EarlyScratch, ("__init__", "wait_dumped", "discard"))):
        for name in names:
            setattr(cls, name, _phase(f"{cls.__name__}.{name}", getattr(cls, name)))
    run.scratch_pool.after_dry_run = _phase("after_dry_run", scratch_pool.after_dry_run)
    Database.connect = _phase("connect", Database.connect)  # type: ignore[method-assign]

    execute, wait, pipeline, close = (psycopg.Connection.execute, psycopg.Connection.wait,
                                      psycopg.Connection.pipeline, psycopg.Connection.close)

    def named_execute(self: Any, query: Any, *args: Any, **kwargs: Any) -> Any:
        if query in ("BEGIN", "ROLLBACK"):
            return _phase(query, execute)(self, query, *args, **kwargs)
        return execute(self, query, *args, **kwargs)

    def counted_wait(self: Any, *args: Any, **kwargs: Any) -> Any:
        if not getattr(_local, "pipelined", False):
            _trips[threading.current_thread().name] += 1
        return wait(self, *args, **kwargs)

    @contextmanager
    def counted_pipeline(self: Any) -> Any:
        _trips[threading.current_thread().name] += 1
        outer, _local.pipelined = getattr(_local, "pipelined", False), True
        try:
            with pipeline(self) as p:
                yield p
        finally:
            _local.pipelined = outer

    def measured_close(self: Any) -> None:
        if not self.closed and (cpu := _cpu_ms(self.info.backend_pid)) is not None:
            _backends.append((self.info.dbname, cpu))
        close(self)

    psycopg.Connection.execute = named_execute  # type: ignore[method-assign]
    psycopg.Connection.wait = counted_wait  # type: ignore[method-assign]
    psycopg.Connection.pipeline = counted_pipeline  # type: ignore[method-assign,assignment]
    psycopg.Connection.close = measured_close  # type: ignore[method-assign]


def applied(dsn: str, sql: str) -> list[float]:
    """Each statement's wall ms, applied in one transaction (as psql -1 -f does), committed."""
    out = []
    with psycopg.connect(dsn) as conn:
        for stmt in parse_sql(sql):
            start = time.perf_counter()
            conn.execute(stmt.sql)
            out.append((time.perf_counter() - start) * 1000)
    return out


def one(dsn: str, sql: str) -> dict[str, Any]:
    """One timed dry run (then the pool's background work is waited for, untimed)."""
    _events.clear()
    _backends.clear()
    _trips.clear()
    db = Database(Settings.load(env={}, dsn=dsn, mode="dry-run", statement_timeout="10min"))
    try:
        result = run.dry_run(db, parse_sql(sql), scratch_copy="schema")
    finally:
        db.close()
    scratch_pool.settle(120)
    phases: dict[str, list[float]] = defaultdict(lambda: [0.0, 0])
    for thread, name, ms, trips in _events:
        if thread == "MainThread":
            phases[name][0] += ms
            phases[name][1] += trips
    cpu: dict[str, float] = defaultdict(float)
    for dbname, ms in _backends:
        cpu["target" if dbname == "dry" else "scratch" if dbname.startswith("agent19_") else dbname] += ms
    return {"phases": dict(phases), "trips": dict(_trips), "cpu": dict(cpu),
            "statements": [r.duration_ms or 0.0 for r in result.statements]}


def report(runs: list[dict[str, Any]], plain: list[list[float]]) -> None:
    med = statistics.median
    for name in dict.fromkeys(n for r in runs for n in r["phases"]):
        ms = med(r["phases"].get(name, [0.0, 0])[0] for r in runs)
        trips = med(r["phases"].get(name, [0.0, 0])[1] for r in runs)
        print(f"  {name:28s} {ms:7.1f} ms  {trips:3.0f} round trips")
    for i in range(len(runs[0]["statements"])):
        also = f"  (in one transaction: {med(p[i] for p in plain):.1f} ms)" if plain else ""
        print(f"  statement {i + 1:<18d} {med(r['statements'][i] for r in runs):7.1f} ms{also}")
    for thread in sorted({t for r in runs for t in r["trips"]}):
        print(f"  round trips on {thread}: {med(r['trips'].get(thread, 0) for r in runs):.0f}")
    for who in sorted({k for r in runs for k in r["cpu"]}):
        print(f"  server CPU, sessions to {who:10s} {med(r['cpu'].get(who, 0.0) for r in runs):7.1f} ms")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rows", type=int, default=100_000)
    parser.add_argument("--repeat", type=int, default=9)
    parser.add_argument("--full", action="store_true", help="the whole migration (CREATE INDEX CONCURRENTLY too)")
    parser.add_argument("--plain", action="store_true", help="also apply the statements in one transaction")
    ns = parser.parse_args()
    if ns.full and ns.plain:
        parser.error("--plain applies the statements in one transaction: not with --full")
    sql = FULL if ns.full else TRANSACTIONAL
    server = start_system() if system_versions() else start_pgserver()
    instrument()
    scratch_pool.enable()  # as agent19 serve does
    runs: list[dict[str, Any]] = []
    plain: list[list[float]] = []
    try:
        build(server.dsn, ns.rows)
        one(copy(server.dsn, "dry"), sql)  # warms: the schema dump kept, the next scratch database made ahead
        for _ in range(ns.repeat):
            runs.append(one(copy(server.dsn, "dry"), sql))
            if ns.plain:
                plain.append(applied(copy(server.dsn, "applied"), sql))
    finally:
        scratch_pool.close()
        server.stop()
    print(f"warm dry run, {ns.rows:,} rows, PostgreSQL {server.major}, {ns.repeat} runs (medians):")
    report(runs, plain)


if __name__ == "__main__":
    main()
