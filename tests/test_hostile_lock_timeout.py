"""A table locked by another session: commands that cannot read it say why and what to do.

Found by a hostile review: with one session holding ``LOCK TABLE orders IN ACCESS EXCLUSIVE MODE`` in an open
transaction (as a migration left half-done does), ``agent19 describe`` and ``agent19 dry-run`` printed only
"PostgreSQL: canceling statement due to lock timeout" (pg_get_expr opens each table it reads a default of).
"""

from __future__ import annotations

import asyncio
import subprocess
import sys
from pathlib import Path

import psycopg

from tests.conftest import run_sql
from tests.mcp_client import stdio_session

ROOT = Path(__file__).parent.parent


def _cli(dsn: str, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "agent19", "--dsn", dsn, "--lock-timeout", "300ms", *args],
                          capture_output=True, text=True, cwd=ROOT, timeout=120)


def test_a_lock_timeout_names_its_cause_and_the_way_out(dsn: str, tmp_path: Path) -> None:
    run_sql(dsn, "CREATE TABLE orders (id serial PRIMARY KEY, status text DEFAULT 'new')")
    migration = tmp_path / "m.sql"
    migration.write_text("ALTER TABLE orders ADD COLUMN note text;\n")
    with psycopg.connect(dsn) as holder:
        holder.execute("LOCK TABLE orders IN ACCESS EXCLUSIVE MODE")
        for args in (("describe", "orders"), ("--mode", "dry-run", "dry-run", str(migration))):
            done = _cli(dsn, *args)
            assert done.returncode != 0, done.stdout
            assert "lock timeout" in done.stderr and "another session holds a lock" in done.stderr, done.stderr
            assert "agent19 health" in done.stderr and "--lock-timeout" in done.stderr

        async def over_mcp() -> str:
            async with stdio_session("--dsn", dsn, "--lock-timeout", "300ms") as s:
                r = await s.call_tool("describe_database", {"table": "orders"})
                assert r.is_error
                return " ".join(c.text for c in r.content if hasattr(c, "text"))

        text = asyncio.run(over_mcp())
        assert "another session holds a lock" in text and "agent19 health" in text, text
        holder.rollback()
    assert _cli(dsn, "describe", "orders").returncode == 0  # the lock is gone: it reads again
