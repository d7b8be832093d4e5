"""etl_run as users run it: the README's example with psql and the CLI, the MCP tool through the real client
(dry run, then execute), and a non-superuser login that owns nothing but its grants."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
import uuid
from pathlib import Path

import psycopg
import pytest
from psycopg.conninfo import make_conninfo

from tests.mcp_client import stdio_session
from tests.reader_login import psql

ROOT = Path(__file__).parent.parent
EXAMPLE = ROOT / "examples" / "etl"


def _agent19(*args: str, dsn: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "agent19", *args], cwd=ROOT, capture_output=True, text=True,
                          timeout=300, env={**os.environ, "DATABASE_URL": dsn})


def _shop(dsn: str) -> None:
    done = subprocess.run([psql(), "-X", "-q", "-v", "ON_ERROR_STOP=1", "-d", dsn, "-f", str(EXAMPLE / "shop.sql")],
                          capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr


def test_the_readme_example_works_as_written(dsn):
    _shop(dsn)
    dry = _agent19("etl", "run", "examples/etl/orders.toml", "--dry-run", dsn=dsn)
    assert dry.returncode == 0, dry.stderr
    assert "valid 998, rejected 2 (nothing written)" in dry.stdout
    run = _agent19("etl", "run", "examples/etl/orders.toml", "--mode", "execute", dsn=dsn)
    assert run.returncode == 0, run.stderr
    assert "inserted 998, updated 0, unchanged 0, rejected 2 -> agent19_etl.dead_letter" in run.stdout
    with psycopg.connect(dsn, autocommit=True) as conn:
        assert conn.execute("SELECT email FROM analytics.orders WHERE id = 1").fetchone()[0] == "customer1@example.org"
        conn.execute("UPDATE orders SET status = 'paid', updated_at = clock_timestamp() WHERE id IN (1, 2)")
        conn.execute("UPDATE orders SET amount = 4, updated_at = clock_timestamp() WHERE id = 21")
    again = _agent19("etl", "run", "examples/etl/orders.toml", "--mode", "execute", "--format", "json", dsn=dsn)
    assert again.returncode == 0, again.stderr
    result = json.loads(again.stdout)
    assert result["inserted"] == 1 and result["updated"] == 2  # 21 fixed; 1 and 2 changed
    assert result["rejected"] == 1 and result["rejections"][0]["source_key"] == {"id": 13}  # still invalid
    assert result["resolved"] == 1  # 21 loaded: its dead letter is gone, 13's stays (seen twice)
    with psycopg.connect(dsn) as conn:
        assert conn.execute("SELECT source_key->>'id', seen FROM agent19_etl.dead_letter").fetchall() == [("13", 2)]
    # every row is younger than the 5-minute lag window: re-read, and left alone as unchanged
    assert result["lag_window"] and result["extracted"] == 1000 and result["unchanged"] == 996


def test_help_teaches_the_command(dsn):
    out = _agent19("etl", "run", "--help", dsn=dsn)
    assert out.returncode == 0
    assert "--dry-run" in out.stdout and "keyset" in out.stdout and "examples/etl/orders.toml" in out.stdout


def test_loading_without_execute_mode_says_what_to_do(dsn):
    _shop(dsn)
    out = _agent19("etl", "run", "examples/etl/orders.toml", dsn=dsn)
    assert out.returncode != 0
    assert "--mode execute" in out.stderr and "dry_run" in out.stderr


@pytest.mark.asyncio
async def test_mcp_dry_run_then_execute(dsn):
    _shop(dsn)
    text = (EXAMPLE / "orders.toml").read_text()
    async with stdio_session("--mode", "read-only", env={"DATABASE_URL": dsn}) as session:
        dry = await session.call_tool("etl_run", {"pipeline_toml": text, "dry_run": True})
        refused = await session.call_tool("etl_run", {"pipeline_toml": text})
    assert not dry.is_error, dry.content
    assert dry.structured_content["valid"] == 998 and dry.structured_content["rejected"] == 2
    assert refused.is_error and "execute" in " ".join(getattr(c, "text", "") for c in refused.content)
    progress: list[float] = []

    async def on_progress(done: float, total: float | None, message: str | None) -> None:
        progress.append(done)

    async with stdio_session("--mode", "execute", env={"DATABASE_URL": dsn}) as session:
        run = await session.call_tool("etl_run", {"pipeline": str(EXAMPLE / "orders.toml")},
                                      progress_callback=on_progress)
    assert not run.is_error, run.content
    assert run.structured_content["inserted"] == 998
    assert run.structured_content["rejections"][0]["source_key"] == {"id": 13}
    assert progress and progress[-1] == 1000


def test_as_a_non_superuser_with_only_its_grants(dsn, tmp_path):
    _shop(dsn)
    role, password = f"etl_{uuid.uuid4().hex[:8]}", uuid.uuid4().hex
    with psycopg.connect(dsn, autocommit=True) as conn:
        db = conn.info.dbname
        conn.execute(f"CREATE ROLE {role} LOGIN PASSWORD '{password}'")
        conn.execute(f"GRANT SELECT ON orders TO {role}")
        conn.execute(f"GRANT USAGE ON SCHEMA analytics TO {role}")
        conn.execute(f"GRANT SELECT, INSERT, UPDATE ON analytics.orders TO {role}")
    user_dsn = make_conninfo(dsn, user=role, password=password)
    try:
        denied = _agent19("etl", "run", "examples/etl/orders.toml", "--mode", "execute", dsn=user_dsn)
        assert denied.returncode != 0 and "GRANT CREATE ON DATABASE" in denied.stderr
        assert password not in denied.stderr + denied.stdout
        with psycopg.connect(dsn, autocommit=True) as conn:
            conn.execute(f'GRANT CREATE ON DATABASE "{db}" TO {role}')
        run = _agent19("etl", "run", "examples/etl/orders.toml", "--mode", "execute", "--format", "json",
                       dsn=user_dsn)
        assert run.returncode == 0, run.stderr
        assert json.loads(run.stdout)["inserted"] == 998
        assert password not in run.stdout + run.stderr
        with psycopg.connect(dsn, autocommit=True) as conn:
            owner = conn.execute("SELECT tableowner FROM pg_tables WHERE schemaname = 'agent19_etl' "
                                 "AND tablename = 'watermark'").fetchone()[0]
            assert owner == role
    finally:
        with psycopg.connect(dsn, autocommit=True) as conn:
            conn.execute("DROP SCHEMA IF EXISTS agent19_etl CASCADE")
            conn.execute(f"DROP OWNED BY {role}")
            conn.execute(f"DROP ROLE {role}")


def test_the_readme_python_example_works_as_written(dsn, tmp_path):
    _shop(dsn)
    readme = (ROOT / "README.md").read_text()
    start = readme.index("any pydantic model can be the transform:")
    block = readme[readme.index("```python", start) + len("```python"):readme.index("```\n", start + 50)]
    script = tmp_path / "example.py"
    script.write_text(textwrap.dedent(block))
    out = subprocess.run([sys.executable, str(script)], cwd=ROOT, capture_output=True, text=True, timeout=120,
                         env={**os.environ, "DATABASE_URL": dsn})
    assert out.returncode == 0, out.stderr
    assert out.stdout.split() == ["998", "0", "0", "2"]


@pytest.mark.asyncio
async def test_a_query_source_runs_as_the_reader_login_in_read_only_mode(dsn, tmp_path):
    """read-only server, least-privilege reader (agent19 setup-role): a dry run of a query pipeline reads as it."""
    from tests.reader_login import reader_login

    _shop(dsn)
    text = (EXAMPLE / "orders.toml").read_text().replace(
        'table = "public.orders"           # or:', 'query = "SELECT * FROM orders WHERE status <> \'new\'"  # or:')
    assert "query = " in text
    with reader_login(dsn, tmp_path) as read_dsn:
        env = {"DATABASE_URL": dsn, "AGENT19_READ_DSN": read_dsn, "AGENT19_ALLOW_PRIVILEGED_READS": "0"}
        async with stdio_session("--mode", "read-only", env=env) as session:
            dry = await session.call_tool("etl_run", {"pipeline_toml": text, "dry_run": True})
            with psycopg.connect(dsn, autocommit=True) as conn:
                conn.execute("REVOKE SELECT ON orders FROM PUBLIC")
                reader = psycopg.conninfo.conninfo_to_dict(read_dsn)["user"]
                conn.execute(f'REVOKE SELECT ON orders FROM "{reader}"')
            denied = await session.call_tool("etl_run", {"pipeline_toml": text, "dry_run": True})
    assert not dry.is_error, dry.content
    assert dry.structured_content["extracted"] == 667  # paid and shipped
    said = " ".join(getattr(c, "text", "") for c in denied.content)
    assert denied.is_error and "permission denied" in said
