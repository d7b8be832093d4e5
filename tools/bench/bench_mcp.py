#!/usr/bin/env python3
"""What agent19 costs a model and a person: listing size, response sizes, start-up, HTTP latency.

    .venv/bin/python tools/bench/bench_mcp.py                       # listing + start-up (no database)
    .venv/bin/python tools/bench/bench_mcp.py --dsn postgresql://…  # + response sizes, HTTP latency

* tools/list through the official MCP client: characters of descriptions, input and output schemas;
* response sizes of most tools on a small scenario (a table of 20,000 rows, mode dry-run), by default and
  with ``detail: "full"`` (needs ``--dsn`` of a database the benchmark may create tables in);
* start-up, median of ``--runs`` (wall time and the child's CPU seconds, and the least CPU): ``agent19 lint`` of a
  one-statement file (whole process) beside squawk on the same file (the peer), ``agent19 --help`` (answered from
  the index of commands, no tool module imported), ``python -c pass``, a process that
  only imports the library lint cannot do without (pglast, its parser: the floor) and one that also imports
  pydantic and declares a model (what lint cost at least while its records were pydantic models);
  ``agent19 serve`` until it answers tools/list
  beside the MCP SDK serving one trivial tool (``mcp_floor_server.py``: the floor); from bytecode (written to a
  temporary PYTHONPYCACHEPREFIX, as an installed package has it), and the lint once more compiling its sources;
* streamable HTTP: plan_migration of a 50-statement migration (its names different in every call) from
  ``--clients`` concurrent sessions, p50/p99 beside server_info (the floor: the protocol and the event loop), after
  one untimed call of each (the server's first call of a tool imports its modules), a session's first call apart;
  and the server's CPU time per call (steadier than the latencies on a shared machine: with N clients in a closed
  loop on a server whose work holds the interpreter, the p50 is about N times it);
* session churn: ``--sessions`` HTTP sessions opened and closed at once, ``--clients`` at a time, the server's CPU
  per session beside the MCP SDK's own server (``mcp_floor_server.py PORT``), and the tracebacks each logged.

Prints numbers; asserts nothing (tests/test_mcp_budget.py holds the budgets). Not a test.
"""

from __future__ import annotations

import argparse
import asyncio
import itertools
import json
import os
import resource
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import IO

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))

from mcp import ClientSession, StdioServerParameters  # noqa: E402
from mcp.client.stdio import stdio_client  # noqa: E402

from tests.mcp_client import TEST_FILES, http_session, listening, result_size, serve_args, stdio_session  # noqa: E402
from tools.throwaway import free_port  # noqa: E402

SCENARIO = """
DROP TABLE IF EXISTS bench_orders;
CREATE TABLE bench_orders (id bigint PRIMARY KEY, customer_id bigint NOT NULL, status text NOT NULL,
                           amount numeric(12,2), created_at timestamptz NOT NULL DEFAULT now());
INSERT INTO bench_orders
  SELECT g, g % 500, (ARRAY['new','paid','shipped'])[1 + g % 3], g % 1000, now() - g * interval '1 min'
  FROM generate_series(1, 20000) g;
ANALYZE bench_orders;
"""


def migration(call: int | None = None) -> str:
    """The 50-statement migration; with ``call``, its names are that call's own (``c7_12``), so that no call of
    the HTTP benchmark repeats another's migration (a server that remembered answers would gain nothing)."""
    tag = "" if call is None else f"_{call}"
    return "\n".join(f"ALTER TABLE bench_orders ADD COLUMN c{i}{tag} integer;" if i % 2
                     else f"CREATE INDEX bench_i{i}{tag} ON bench_orders (status);" for i in range(50))


MIGRATION = migration()
PRIVILEGED = ("--allow-privileged-reads",)
"""The benchmark's login is usually a superuser; explain_query's reads then need this (see README: reader login)."""
CALLS = {
    "server_info": {},
    "describe_database": {},
    "lint_migration": {"sql": MIGRATION},
    "plan_migration": {"sql": MIGRATION},
    "explain_query": {"sql": "SELECT status, count(*) FROM bench_orders WHERE customer_id = 42 GROUP BY status"},
    "generate_runbook": {"sql": "ALTER TABLE bench_orders ADD COLUMN note text;\n"
                                "CREATE INDEX bench_note ON bench_orders (note);"},
    "health_check": {},
    "index_health": {},
    "list_lint_rules": {},
    "advise_indexes": {"sql": "SELECT * FROM bench_orders WHERE customer_id = 42 AND status = 'paid'"},
    "advise_workload": {"queries": ["SELECT * FROM bench_orders WHERE customer_id = 42",
                                    "SELECT count(*) FROM bench_orders WHERE created_at > now() - interval '1 day'"]},
    "assess_optimization": {"execution_ms": 250, "qps": 40},
    "zero_downtime_pattern": {"kind": "change_column_type", "table": "bench_orders", "column": "amount",
                              "type": "numeric(14,2)"},
    "test_migration": {"sql": MIGRATION},
    "verify_rollback": {"up_sql": "ALTER TABLE bench_orders ADD COLUMN note text;",
                        "down_sql": "ALTER TABLE bench_orders DROP COLUMN note;"},
    "run_sql": {"sql": "SELECT * FROM bench_orders ORDER BY id LIMIT 200"},
    "confirm_destructive": {"sql": "DELETE FROM bench_orders WHERE status = 'new'"},
    "capacity_plan": {"window": 1},
    "replication_status": {},
    "backup_status": {},
    "prisma_schema": {},
    "pgbouncer_config": {},
    "setup_role": {},
    "data_quality": {"suggest": ["public.bench_orders"]},
    "cdc_check": {"tables": ["public.bench_orders"]},
    "cdc_debezium": {"tables": ["public.bench_orders"]},
}


def compact_size(value: object) -> int:
    return len(json.dumps(value, separators=(",", ":"), ensure_ascii=False)) if value else 0


async def listing() -> None:
    async with stdio_session() as session:
        result = await session.list_tools()
        tools = result.tools
        desc = sum(len(t.description or "") for t in tools)
        inputs = sum(compact_size(t.input_schema) for t in tools)
        outputs = sum(compact_size(t.output_schema) for t in tools)
        print(f"tools/list: {len(tools)} tools, {desc + inputs + outputs:,} characters "
              f"(descriptions {desc:,}, input schemas {inputs:,}, output schemas {outputs:,})")
        whole = result.model_dump(mode="json", by_alias=True, exclude_none=True)  # as the client receives it
        print(f"  the whole tools/list result (also names, titles, annotations; compact JSON): "
              f"{compact_size(whole):,} characters (budget 20,000: tests/test_mcp_budget.py)")
        instructions = session.initialize_result.instructions if session.initialize_result else None
        print(f"server instructions (read once per conversation): {len(instructions or ''):,} characters")
        per_tool = sorted(((len(t.description or ""), compact_size(t.input_schema), compact_size(t.output_schema),
                            t.name) for t in tools), key=lambda row: -sum(row[:3]))
        print(f"  {'largest':<24}{'description':>12}{'input':>8}{'output':>8}")
        for description, inputs_, outputs_, name in per_tool[:8]:
            print(f"  {name:<24}{description:>12,}{inputs_:>8,}{outputs_:>8,}")


async def responses(dsn: str) -> None:
    import psycopg

    with psycopg.connect(dsn, autocommit=True) as conn:
        conn.execute(SCENARIO)
    async with stdio_session("--dsn", dsn, "--mode", "dry-run", *PRIVILEGED) as session:
        print(f"{'tool':<22}{'default':>10}{'full':>10}  (characters: text + structured JSON)")
        for name, args in CALLS.items():
            summary = await session.call_tool(name, args)
            full = await session.call_tool(name, {**args, "detail": "full"})
            note = " (error: " + summary.content[0].text[:60] + ")" if summary.is_error else ""
            print(f"{name:<22}{result_size(summary):>10,}{result_size(full):>10,}{note}")


def _children_cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def median_run(cmd: list[str], runs: int, env: dict[str, str] | None = None) -> tuple[float, float, float]:
    """Median wall seconds, median and least CPU seconds (user + system) of ``cmd`` as a whole process (after one
    run not counted, which writes the bytecode when ``env`` lets it). The least CPU is the steadiest figure on a
    loaded machine: other work only ever adds to it."""
    walls, cpus = [], []
    subprocess.run(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, check=False, cwd=ROOT, env=env)
    for _ in range(runs):
        cpu, start = _children_cpu(), time.perf_counter()
        subprocess.run(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, check=False, cwd=ROOT, env=env)
        walls.append(time.perf_counter() - start)
        cpus.append(_children_cpu() - cpu)
    return statistics.median(walls), statistics.median(cpus), min(cpus)


FLOOR_SERVER = Path(__file__).with_name("mcp_floor_server.py")
ONE_MODEL = "import pglast.parser\nfrom pydantic import BaseModel\nclass One(BaseModel):\n    x: int = 0"
"""``import pydantic`` alone loads little (its names load on first use): a lint that answered with pydantic models
could not start faster than a process declaring one (lint's records are dataclasses now: agent19.records)."""


def bytecode_env(cache: str) -> dict[str, str]:
    """The environment with Python's bytecode written to and read from ``cache`` (never the checkout): an
    installed agent19 starts from bytecode, and a PYTHONDONTWRITEBYTECODE here would compile every module of
    agent19 on every run."""
    return {**os.environ, "PYTHONDONTWRITEBYTECODE": "", "PYTHONPYCACHEPREFIX": cache}


async def serve_until_listed(env: dict[str, str], *server: str) -> tuple[float, float]:
    """Wall and CPU seconds from starting a stdio MCP server (``agent19 serve`` without arguments) to its
    tools/list answer; the CPU is the server process's whole life (counted once the client has reaped it)."""
    cpu, start = _children_cpu(), time.perf_counter()
    if server:
        params = StdioServerParameters(command=sys.executable, args=list(server), cwd=str(ROOT), env=env)
        async with stdio_client(params) as (read, write), ClientSession(read, write) as session:
            await session.initialize()
            await session.list_tools()
            wall = time.perf_counter() - start
    else:
        async with stdio_session(env=env) as session:
            await session.list_tools()
            wall = time.perf_counter() - start
    return wall, _children_cpu() - cpu


def _ms(figures: tuple[float, ...]) -> str:
    least = f", least {figures[2] * 1000:.0f} ms" if len(figures) > 2 else ""
    return f"{figures[0] * 1000:.0f} ms ({figures[1] * 1000:.0f} ms CPU{least})"


async def startup(runs: int) -> None:
    with tempfile.TemporaryDirectory() as d:
        env = bytecode_env(str(Path(d) / "pycache"))
        one = Path(d) / "one.sql"
        one.write_text("ALTER TABLE t ADD COLUMN c integer;\n")
        lint_cmd = [sys.executable, "-m", "agent19", "lint", str(one), "--pg-version", "15"]
        lint = median_run(lint_cmd, runs, env)
        compiling = median_run(lint_cmd, runs, {**os.environ, "PYTHONDONTWRITEBYTECODE": "1"})
        top_help = median_run([sys.executable, "-m", "agent19", "--help"], runs, env)  # from the index of commands
        bare = median_run([sys.executable, "-c", "pass"], runs, env)
        libraries = median_run([sys.executable, "-c", "import pglast.parser"], runs, env)
        one_model = median_run([sys.executable, "-c", ONE_MODEL], runs, env)
        squawk = shutil.which("squawk", path=str(Path(sys.executable).parent)) or shutil.which("squawk")
        peer = median_run([squawk, str(one)], runs) if squawk else None
        print(f"start-up, median of {runs} runs (wall, CPU of the process), from bytecode:")
        print(f"  agent19 lint, one statement    {_ms(lint)}")
        print(f"  agent19 --help                 {_ms(top_help)}")
        print(f"    squawk, same file (peer)     {_ms(peer)}" if peer else "    squawk: not installed")
        print(f"    python -c pass               {_ms(bare)}")
        print(f"    python importing pglast (the floor: lint's parser) {_ms(libraries)}")
        print(f"    python importing pglast and pydantic, declaring one model (lint's floor while its records were "
              f"pydantic models) {_ms(one_model)}")
        print(f"    agent19 lint compiling its sources each run (PYTHONDONTWRITEBYTECODE=1) {_ms(compiling)}")
        await serve_until_listed(env)  # writes the bytecode
        await serve_until_listed(env, str(FLOOR_SERVER))
        served = [await serve_until_listed(env) for _ in range(runs)]
        floor = [await serve_until_listed(env, str(FLOOR_SERVER)) for _ in range(runs)]
    median = [(statistics.median(w for w, _ in rows), statistics.median(c for _, c in rows), min(c for _, c in rows))
              for rows in (served, floor)]
    print(f"  agent19 serve → tools/list     {_ms(median[0])}")
    print(f"    MCP SDK, one tool (floor)    {_ms(median[1])}")


@contextmanager
def quiet_http_server(*args: str, floor: bool = False) -> Iterator[tuple[str, int, IO[bytes]]]:
    """``agent19 serve --http`` (or, with ``floor``, the SDK's own server: ``mcp_floor_server.py PORT``) with its log
    in a file: a pipe nobody reads fills up after a few hundred requests (uvicorn logs each one) and the server then
    blocks writing to it. Yields its URL, process id and log file."""
    port = free_port()
    command = [str(FLOOR_SERVER), str(port)] if floor else serve_args("--http", "--port", str(port), *args)
    with tempfile.TemporaryFile() as log:
        proc = subprocess.Popen([sys.executable, *command],
                                env={**os.environ, **TEST_FILES}, stdout=log, stderr=subprocess.STDOUT, cwd=ROOT)
        with listening(proc, "127.0.0.1", port) as url:
            yield url, proc.pid, log


def cpu_seconds(pid: int) -> float:
    """CPU seconds (user + system) used so far by process ``pid`` and its live children (the worker pool), from
    /proc: steadier than wall time on a shared machine; 0 where /proc is missing."""
    try:
        children = Path(f"/proc/{pid}/task/{pid}/children").read_text().split()
        ticks = 0
        for p in [pid, *map(int, children)]:
            fields = Path(f"/proc/{p}/stat").read_text().rsplit(")", 1)[1].split()
            ticks += int(fields[11]) + int(fields[12])  # utime, stime
    except OSError:
        return 0.0
    return ticks / os.sysconf("SC_CLK_TCK")


def _percentiles(times: list[float]) -> str:
    times = sorted(times)
    p99 = times[min(len(times) - 1, int(len(times) * 0.99))]
    return f"p50 {statistics.median(times) * 1000:.1f} ms, p99 {p99 * 1000:.1f} ms"


async def http_latency(dsn: str, clients: int, calls: int) -> None:
    """Each tool called once first, untimed (the server imports a tool's modules on its first call: half a second
    that a long-running server pays once); then ``clients`` sessions of ``calls`` calls each, the first call of a
    session (its set-up on both sides, with the other sessions starting too) reported apart from the others."""
    with quiet_http_server("--dsn", dsn, *PRIVILEGED) as (url, pid, _):
        numbers = itertools.count()

        async def one_client(name: str, args: dict[str, object], out: list[float], first: list[float]) -> None:
            async with http_session(url) as session:
                for n in range(calls):
                    call_args = {"sql": migration(next(numbers))} if "sql" in args else args
                    start = time.perf_counter()
                    result = await session.call_tool(name, call_args)
                    (out if n else first).append(time.perf_counter() - start)
                    if result.is_error:
                        raise RuntimeError(result.content[0].text)

        tools = (("server_info", {}), ("plan_migration", {"sql": MIGRATION}))
        for name, args in tools:
            await one_client(name, args, [], [])
        for name, args in tools:
            times: list[float] = []
            first: list[float] = []
            cpu = cpu_seconds(pid)
            await asyncio.gather(*(one_client(name, args, times, first) for _ in range(clients)))
            cpu = (cpu_seconds(pid) - cpu) / (len(times) + len(first)) * 1000  # sessions' set-up included
            print(f"HTTP {name:<16} {clients} clients × {calls} calls: {_percentiles(times)} "
                  f"(a session's first call: {_percentiles(first)}); server CPU {cpu:.1f} ms per call")


async def _open_and_close(url: str, limit: asyncio.Semaphore) -> None:
    async with limit, http_session(url):
        pass


async def session_churn(dsn: str, clients: int, sessions: int) -> None:
    """Sessions opened and closed at once (a client that connects, initializes and leaves), ``clients`` at a time:
    the server's CPU per session beside the MCP SDK's own server (the floor), and the tracebacks each one logged."""
    for name, args, floor in (("agent19 serve", ("--dsn", dsn), False), ("MCP SDK (floor)", (), True)):
        with quiet_http_server(*args, floor=floor) as (url, pid, log):
            limit = asyncio.Semaphore(clients)
            await asyncio.gather(*(_open_and_close(url, limit) for _ in range(clients)))  # (imports on first use)
            cpu = cpu_seconds(pid)
            await asyncio.gather(*(_open_and_close(url, limit) for _ in range(sessions)))
            cpu = (cpu_seconds(pid) - cpu) / sessions * 1000
            await asyncio.sleep(0.2)  # the last DELETEs are logged
            log.seek(0)
            tracebacks = log.read().count(b"Traceback")
        print(f"HTTP sessions opened and closed at once, {clients} at a time, {name:<16}: server CPU {cpu:.1f} ms "
              f"per session; {tracebacks} tracebacks in its log for {sessions} sessions")


async def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--dsn", help="a database the benchmark may create a table in (response sizes, HTTP)")
    ap.add_argument("--runs", type=int, default=20, help="start-up runs (median)")
    ap.add_argument("--clients", type=int, default=8)
    ap.add_argument("--calls", type=int, default=25, help="calls per HTTP client")
    ap.add_argument("--sessions", type=int, default=200, help="HTTP sessions opened and closed (session churn)")
    ns = ap.parse_args()
    await listing()
    await startup(ns.runs)
    if ns.dsn:
        await responses(ns.dsn)
        await http_latency(ns.dsn, ns.clients, ns.calls)
        await session_churn(ns.dsn, ns.clients, ns.sessions)
    else:
        print("(response sizes and HTTP latency need --dsn)")
    return 0


if __name__ == "__main__":
    sys.exit(asyncio.run(main()))
