"""Killing the MCP client in the middle of a dry run: agent19 serve notices its client is gone,
drops its scratch database and exits; the target is unchanged."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import time

import psycopg

from agent19.migrate.dryrun.schema_diff import diff_snapshots
from agent19.migrate.dryrun.scratch import list_scratch
from tests.test_scratch import _wait_for_slow_statement, populate, schema

CLIENT = textwrap.dedent("""
    import asyncio, sys
    from tests.mcp_client import stdio_session

    async def main():
        async with stdio_session("--dsn", sys.argv[1], "--mode", "dry-run", "--statement-timeout", "120s") as session:
            await session.call_tool("test_migration", {"files": [sys.argv[2]], "sample_rows": 400,
                                                       "scratch_copy": "schema"})

    asyncio.run(main())
""")


def _serve_pids() -> set[int]:
    out = subprocess.run(["pgrep", "-f", "agent19 serve"], capture_output=True, text=True).stdout
    return {int(p) for p in out.split()}


def test_killing_the_mcp_client_leaves_no_scratch_database_and_no_change(dsn, tmp_path):
    populate(dsn)
    start = schema(dsn)
    with psycopg.connect(dsn) as conn:
        rows_before = conn.execute("SELECT count(*), sum(b) FROM t").fetchone()
    path = tmp_path / "0001_slow.sql"
    path.write_text("ALTER TABLE t ADD COLUMN c int;\nCREATE INDEX CONCURRENTLY t_slow ON t (slow(b));\n")
    before = _serve_pids()
    client = subprocess.Popen([sys.executable, "-c", CLIENT, dsn, str(path)],
                              cwd=os.path.dirname(os.path.dirname(__file__)),
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE, start_new_session=True)
    try:
        name = _wait_for_slow_statement(dsn, client)
        servers = _serve_pids() - before
        assert servers, "agent19 serve was not started by the client"
        client.send_signal(signal.SIGKILL)  # the client dies; its pipe to agent19 serve closes
        client.wait(timeout=30)
        deadline = time.monotonic() + 60
        while (name in list_scratch(dsn) or servers & _serve_pids()) and time.monotonic() < deadline:
            time.sleep(0.2)
    finally:
        if client.poll() is None:
            client.kill()
    assert name not in list_scratch(dsn), "the scratch database outlived its client"
    assert not servers & _serve_pids(), "agent19 serve kept running without its client"
    assert list_scratch(dsn) == []
    assert diff_snapshots(start, schema(dsn)) == []
    with psycopg.connect(dsn) as conn:
        assert conn.execute("SELECT count(*), sum(b) FROM t").fetchone() == rows_before
