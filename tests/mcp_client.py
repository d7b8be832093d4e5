"""Helpers to talk to a real ``agent19 serve`` through the official MCP client."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager, contextmanager
from pathlib import Path
from typing import Any

from mcp import ClientSession, StdioServerParameters
from mcp.client.stdio import stdio_client
from mcp.client.streamable_http import streamable_http_client

from tools.throwaway import free_port

TEST_FILES = {"AGENT19_MCP_PATHS": tempfile.gettempdir()}
"""The tests' files live in pytest's temporary directories: the servers they start allow them, as an operator
allows a directory of migrations (a test passing ``env={"AGENT19_MCP_PATHS": ""}`` gets the default policy)."""


RESPONSE_BUDGET = 8_000
"""agent19.responses.RESPONSE_BUDGET: every tool result the suite gets over MCP is checked against it."""


def result_size(result: Any) -> int:
    """Characters a model reads of a tool result: its text content plus its structured content (compact JSON)."""
    text = sum(len(c.text) for c in result.content if c.type == "text")
    data = result.structured_content
    return text + (len(json.dumps(data, separators=(",", ":"), ensure_ascii=False)) if data is not None else 0)


MCP_DEFAULT_HINTS = {"readOnlyHint": False, "destructiveHint": True, "idempotentHint": False, "openWorldHint": True}
"""The MCP spec's default of each tool annotation (agent19 lists only the hints that differ); destructiveHint and
idempotentHint mean something only when readOnlyHint is false."""


def hint(tool: Any, name: str) -> bool:
    """What a tool's annotation ``name`` (e.g. ``readOnlyHint``) tells a client: listed, or the spec's default."""
    listed = tool.annotations.model_dump(by_alias=True, exclude_none=True) if tool.annotations else {}
    return listed.get(name, MCP_DEFAULT_HINTS[name])


class BudgetedSession(ClientSession):
    """The SDK's client session; every successful tool call made without ``detail: "full"`` must fit the budget
    (so each test's realistic scenario also measures what a model would pay for)."""

    async def call_tool(self, name: str, arguments: dict[str, Any] | None = None, *args: Any, **kwargs: Any) -> Any:
        result = await super().call_tool(name, arguments, *args, **kwargs)
        if not result.is_error and (arguments or {}).get("detail") != "full":
            size = result_size(result)
            assert size <= RESPONSE_BUDGET, f"{name} returned {size} characters (budget {RESPONSE_BUDGET})"
        return result


def serve_args(*args: str) -> list[str]:
    return ["-m", "agent19", "serve", *args]


@asynccontextmanager
async def stdio_session(*args: str, env: dict[str, str] | None = None) -> AsyncIterator[ClientSession]:
    """Spawn ``agent19 serve ARGS`` over stdio and yield an initialized client session."""
    params = StdioServerParameters(
        command=sys.executable, args=serve_args(*args),
        env={**os.environ, **TEST_FILES, **(env or {})}, cwd=str(Path(__file__).parent.parent),
    )
    async with stdio_client(params) as (read, write):
        async with BudgetedSession(read, write) as session:
            await session.initialize()
            yield session


@contextmanager
def http_server(*args: str, env: dict[str, str] | None = None) -> Iterator[str]:
    """Run ``agent19 serve --http`` on a free loopback port; yield its MCP URL."""
    port = free_port()
    proc = subprocess.Popen(
        [sys.executable, *serve_args("--http", "--port", str(port), *args)],
        env={**os.environ, **TEST_FILES, **(env or {})}, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
    )
    with listening(proc, "127.0.0.1", port) as url:
        yield url


@contextmanager
def listening(proc: subprocess.Popen[bytes], host: str, port: int) -> Iterator[str]:
    """Wait until ``proc`` (an ``agent19 serve --http`` with its output piped) accepts connections on
    ``host:port``; yield its MCP URL; stop it afterwards."""
    try:
        deadline = time.monotonic() + 30
        while True:
            try:
                with socket.create_connection((host, port), timeout=0.5):
                    break
            except OSError:
                if proc.poll() is not None or time.monotonic() > deadline:
                    out = proc.stdout.read().decode(errors="replace") if proc.stdout else ""
                    raise RuntimeError(f"agent19 serve --http did not start:\n{out}") from None
                time.sleep(0.2)
        yield f"http://{host}:{port}/mcp"
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()


@asynccontextmanager
async def http_session(url: str) -> AsyncIterator[ClientSession]:
    async with streamable_http_client(url) as (read, write):
        async with BudgetedSession(read, write) as session:
            await session.initialize()
            yield session
