"""The HTTP server under load, through the official MCP client: a large call runs in a worker process while the
other sessions keep being answered; a full pool refuses with a clear "busy, retry"; many sessions and calls
leave the server's memory flat."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import anyio
import pytest

from tests.mcp_client import TEST_FILES, http_session, listening, serve_args
from tools.throwaway import free_port

STATEMENTS = "ALTER TABLE t ADD COLUMN c integer;\nCREATE INDEX i ON t (a);\n"
SMALL = "ALTER TABLE t ADD COLUMN d integer;\nCREATE INDEX CONCURRENTLY t_d ON t (d);\n"


@contextmanager
def served(*args: str, env: dict[str, str] | None = None) -> Iterator[tuple[str, int]]:
    """``agent19 serve --http ARGS`` on a free loopback port: its MCP URL and its process id.

    Its output goes to a file: a pipe nobody reads fills up after a few hundred requests (uvicorn logs each
    one) and then the server blocks writing its log — a hang that is the test's, not the server's."""
    port = free_port()
    with tempfile.TemporaryFile() as log:
        proc = subprocess.Popen([sys.executable, *serve_args("--http", "--port", str(port), *args)],
                                env={**os.environ, **TEST_FILES, **(env or {})}, stdout=log,
                                stderr=subprocess.STDOUT, cwd=str(Path(__file__).parent.parent))
        with listening(proc, "127.0.0.1", port) as url:
            yield url, proc.pid


def rss_kib(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    raise AssertionError(f"no VmRSS in /proc/{pid}/status")


def workers_of(pid: int) -> list[int]:
    """The server's worker processes (children started by multiprocessing's spawn, not its resource tracker)."""
    children = [int(c) for c in Path(f"/proc/{pid}/task/{pid}/children").read_text().split()]
    return [c for c in children if b"spawn_main" in Path(f"/proc/{c}/cmdline").read_bytes()]


async def test_a_large_lint_runs_in_a_worker_while_other_sessions_are_answered():
    """While one session lints a large migration, another session's server_info and small plan_migration calls
    are answered, round after round, before the lint ends; the lint itself succeeds, with every statement."""
    big = STATEMENTS * 4_000  # ~240 KB, 8,000 statements: many seconds of parsing and judging
    finished: list[str] = []
    with served() as (url, pid):
        async with http_session(url) as heavy, http_session(url) as light:
            assert not (await light.call_tool("server_info", {})).is_error  # start-up done before the race
            assert workers_of(pid), "the HTTP server starts its worker processes"

            async def lint() -> None:
                result = await heavy.call_tool("lint_migration", {"sql": big, "pg_version": 15})
                assert not result.is_error, result.content[0].text[:300]
                assert result.structured_content["summary"]["statements"] == 8_000
                finished.append("lint")

            async def other_session() -> None:
                await anyio.sleep(0.5)  # the lint is under way
                while "lint" not in finished and finished.count("plan") < 3:
                    assert not (await light.call_tool("server_info", {})).is_error
                    finished.append("server_info")
                    plan = await light.call_tool("plan_migration", {"sql": SMALL, "pg_version": 15})
                    assert not plan.is_error, plan.content[0].text[:300]
                    assert len(plan.structured_content["operations"]) == 2
                    finished.append("plan")

            async with anyio.create_task_group() as tg:
                tg.start_soon(lint)
                tg.start_soon(other_session)
    assert finished[-1] == "lint" and finished.count("plan") == 3, finished


async def test_a_full_pool_refuses_a_large_call_at_once_saying_to_retry():
    """With one worker and no queue, a second large call while the first runs is refused at once (before the first
    ends) with "busy … retry", and nothing of it ran; the first is not disturbed; a small call still runs."""
    big = STATEMENTS * 3_000
    order: list[str] = []
    with served(env={"AGENT19_WORKERS": "1", "AGENT19_WORKER_QUEUE": "0"}) as (url, _):
        async with http_session(url) as first, http_session(url) as second:
            async def running() -> None:
                result = await first.call_tool("lint_migration", {"sql": big, "pg_version": 15})
                assert not result.is_error, result.content[0].text[:300]
                order.append("first done")

            async def refused() -> None:
                await anyio.sleep(1.0)  # the first is in the worker
                result = await second.call_tool("lint_migration", {"sql": big + SMALL, "pg_version": 15})
                assert result.is_error
                text = result.content[0].text
                assert "busy" in text and "retry" in text and "nothing was run" in text, text
                order.append("refused")  # at once: before the first ends (the small call after may take longer)
                small = await second.call_tool("lint_migration", {"sql": SMALL, "pg_version": 15})
                assert not small.is_error, small.content[0].text[:300]  # small calls run in the server itself

            async with anyio.create_task_group() as tg:
                tg.start_soon(running)
                tg.start_soon(refused)
    assert order == ["refused", "first done"]


async def test_a_large_result_made_in_a_worker_links_to_resources_the_server_serves():
    """A worker's summarised result links to the whole result; the server (not the worker) serves that link.
    (Just over the size that goes to a worker: the SDK's client reads at most 1 MiB per event over HTTP.)"""
    from agent19.workpool import INLINE_MAX_CHARACTERS

    big = STATEMENTS * (INLINE_MAX_CHARACTERS // len(STATEMENTS) + 1)
    with served() as (url, _):
        async with http_session(url) as session:
            result = await session.call_tool("lint_migration", {"sql": big, "pg_version": 15})
            assert not result.is_error, result.content[0].text[:300]
            links = [c for c in result.content if c.type == "resource_link"]
            full = next(link for link in links if str(link.uri).endswith("/full"))
            body = (await session.read_resource(full.uri)).contents[0].text
            assert len(body) == full.size
            assert json.loads(body)["summary"]["statements"] == big.count(";")


def test_the_workers_do_not_outlive_a_killed_server():
    """Killed outright (no cleanup runs), the server's worker processes leave by themselves."""
    from tests.conftest import until

    with served() as (_, pid):
        workers = until("the worker processes", lambda: workers_of(pid))
        os.kill(pid, signal.SIGKILL)
        until("the workers to exit", lambda: not any(Path(f"/proc/{w}").exists() and
                                                    "Z" not in Path(f"/proc/{w}/stat").read_text().split()[2]
                                                    for w in workers), timeout=20)


def test_every_heavy_tool_is_a_declared_tool():
    from agent19.tools.registry import all_tools
    from agent19.workpool import HEAVY_TOOLS

    assert HEAVY_TOOLS <= {spec.name for spec in all_tools()}


@pytest.mark.parametrize("value", ["0", "many"])
def test_a_bad_pool_size_is_refused_at_start_saying_what_to_set(value: str):
    port = free_port()
    out = subprocess.run([sys.executable, *serve_args("--http", "--port", str(port))], capture_output=True,
                         text=True, timeout=60, env={**os.environ, "AGENT19_WORKERS": value})
    assert out.returncode == 2, out.stderr[-500:]
    assert "AGENT19_WORKERS" in out.stderr and "from 1 to 64" in out.stderr, out.stderr[-500:]


async def test_fifty_sessions_many_calls_no_error_and_memory_stays_flat():
    """50 sessions at once, each making several calls, three times over (warm-up, then two measured halves,
    each with new sessions): no call fails, and the server's RSS grows in the second half by much less than
    in the first (nothing kept per call or per closed session)."""
    errors: list[str] = []

    async def one_session(url: str) -> None:
        async with http_session(url) as session:
            for name, args in (("server_info", {}), ("plan_migration", {"sql": SMALL, "pg_version": 15}),
                               ("lint_migration", {"sql": SMALL, "pg_version": 15}), ("server_info", {})):
                result = await session.call_tool(name, args)
                if result.is_error:
                    errors.append(f"{name}: {result.content[0].text[:200]}")

    async def round_of_50(url: str) -> None:
        async with anyio.create_task_group() as tg:
            for _ in range(50):
                tg.start_soon(one_session, url)

    with served() as (url, pid):
        for _ in range(2):  # warm-up: imports, caches, the results store filled (it keeps the last 64)
            await round_of_50(url)
        start = rss_kib(pid)
        await round_of_50(url)
        await round_of_50(url)
        middle = rss_kib(pid)
        await round_of_50(url)
        await round_of_50(url)
        end = rss_kib(pid)
    assert errors == []
    first, second = middle - start, end - middle
    assert second <= max(first // 2, 4_096), f"RSS {start} → {middle} → {end} KiB"
