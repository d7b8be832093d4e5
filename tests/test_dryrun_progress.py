"""Progress while one long statement of a dry run runs: elapsed time and the server's pg_stat_progress_* phase,
through a real MCP client and on the CLI's progress line (a real terminal: a pty)."""

from __future__ import annotations

import os
import pty
import re
import select
import subprocess
import sys
import time
from pathlib import Path

import psycopg
from psycopg.conninfo import conninfo_to_dict

from tests.conftest import owner_login
from tests.mcp_client import stdio_session

ROOT = Path(__file__).parent.parent
ROWS = 1500  # × 2 ms in slow_key: an index build of about 3 s, spent in its "scanning table" phase

# an index over an expression that sleeps per row: a statement that takes seconds on a tiny table
SETUP = f"""
CREATE FUNCTION slow_key(i int) RETURNS int LANGUAGE plpgsql IMMUTABLE AS $$
BEGIN PERFORM pg_sleep(0.002); RETURN i; END $$;
CREATE TABLE t (id int PRIMARY KEY, v text);
INSERT INTO t SELECT g, 'v' || g FROM generate_series(1, {ROWS}) g;
ANALYZE t;
"""
DURING = re.compile(r"statement 1/1 \(line 1\)[^:]*: \d+ s")


def _owner(dsn: str, createdb: bool = False) -> str:
    """A non-superuser that owns the database and everything in it (an application's migration role)."""
    owner = owner_login(dsn)
    if createdb:
        with psycopg.connect(dsn, autocommit=True) as c:
            c.execute(f"ALTER ROLE {conninfo_to_dict(owner)['user']} CREATEDB")
    with psycopg.connect(owner, autocommit=True) as c:
        c.execute(SETUP)
    return owner


async def _dry_run_over_mcp(dsn: str, sql: str) -> tuple[dict, list[tuple[float, float | None, str]]]:
    seen: list[tuple[float, float | None, str]] = []

    async def on_progress(progress: float, total: float | None, message: str | None) -> None:
        seen.append((progress, total, message or ""))

    async with stdio_session("--dsn", dsn, "--mode", "dry-run", "--statement-timeout", "2min") as session:
        result = await session.call_tool("test_migration", {"sql": sql, "detail": "full"},
                                         progress_callback=on_progress)
    assert not result.is_error, result.content
    return result.structured_content, seen


async def test_a_long_create_index_reports_its_phase_while_it_runs_over_mcp(dsn: str) -> None:
    owner = _owner(dsn)
    r, seen = await _dry_run_over_mcp(owner, "CREATE INDEX t_slow ON t (slow_key(id));\n")
    assert r["passed"], r["summary"]
    assert r["statements"][0]["ran_in"] == "transaction" and r["statements"][0]["duration_ms"] > 2000
    during = [m for _, _, m in seen if DURING.search(m)]
    assert len(during) >= 2, seen  # one statement, several notifications while it ran
    # the server's own report of the build, read by the statement's backend pid
    assert any("create index: building index: scanning table" in m for m in during), during
    assert any(re.search(r"blocks \d+/\d+ \(\d+%\)", m) for m in during), during
    progress = [p for p, _, _ in seen]
    assert all(a < b for a, b in zip(progress, progress[1:], strict=False)), seen  # MCP: progress increases every time
    assert all(total == 1 for _, total, _ in seen), seen
    assert seen[-1][2] == "dry run finished"


async def test_create_index_concurrently_reports_progress_in_the_target_and_in_the_scratch_database(
        dsn: str) -> None:
    """The plain CREATE INDEX that stands in for it in the target's transaction, then the real one in the
    scratch database (a TEMPLATE copy: the rows, so the same seconds), watched from other sessions."""
    owner = _owner(dsn, createdb=True)
    r, seen = await _dry_run_over_mcp(owner, "CREATE INDEX CONCURRENTLY t_slow ON t (slow_key(id));\n")
    assert r["passed"] and r["complete"], r["summary"]
    assert r["scratch"]["strategy"] == "template" and r["scratch"]["dropped"], r["scratch"]
    stand_in = [m for _, _, m in seen if m.startswith("statement 1/1 (line 1), its stand-in: ")]
    scratch = [m for _, _, m in seen if re.match(r"statement 1/1 in the scratch database: \d+ s", m)]
    assert len(stand_in) >= 2 and len(scratch) >= 2, seen
    assert any("create index: building index" in m for m in stand_in), stand_in
    assert any("create index concurrently: building index" in m for m in scratch), scratch
    assert r["statements"][0]["locks"][0]["mode"] == "ShareUpdateExclusiveLock", r["statements"][0]["locks"]
    progress = [p for p, _, _ in seen]
    assert all(a < b for a, b in zip(progress, progress[1:], strict=False)), seen  # the scratch's part never goes back


def test_the_cli_progress_line_shows_the_running_statement(dsn: str, tmp_path: Path) -> None:
    owner = _owner(dsn)
    migration = tmp_path / "0001_slow_index.sql"
    migration.write_text("CREATE INDEX t_slow ON t (slow_key(id));\n")
    leader, follower = pty.openpty()  # stderr is a terminal, as when a person runs it
    proc = subprocess.Popen(
        [sys.executable, "-m", "agent19", "dry-run", str(migration), "--mode", "dry-run", "--dsn", owner],
        cwd=ROOT, stdout=subprocess.PIPE, stderr=follower, stdin=subprocess.DEVNULL)
    os.close(follower)
    err = b""
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        ready, _, _ = select.select([leader], [], [], 0.5)
        if ready:
            try:
                chunk = os.read(leader, 65536)
            except OSError:  # the child closed the terminal
                break
            if not chunk:
                break
            err += chunk
        elif proc.poll() is not None:
            break
    out = proc.communicate(timeout=60)[0].decode()
    os.close(leader)
    assert proc.returncode == 0, (out, err)
    assert "PASSED" in out, out
    lines = err.decode(errors="replace").split("\r\x1b[K")  # each rewrite of the progress line
    during = [ln for ln in lines if DURING.search(ln)]
    assert len(during) >= 2, lines
    assert any("create index: building index: scanning table" in ln for ln in during), during
