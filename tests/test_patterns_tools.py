"""The pattern and Prisma tools through their adapters: the CLI and a real MCP client."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import psycopg

from tests.mcp_client import stdio_session

ROOT = Path(__file__).parent.parent


def _cli(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "agent19", *args], cwd=ROOT, capture_output=True, text=True,
                          timeout=120)


def test_cli_pattern_writes_prisma_migrations(tmp_path: Path) -> None:
    out = _cli("pattern", "add_unique", "users", "--columns", "email", "--pg-version", "15",
               "--write-to", str(tmp_path), "--format", "json")
    assert out.returncode == 0, out.stderr
    result = json.loads(out.stdout)
    assert [p["name"] for p in result["pattern"]["phases"]] == ["build index concurrently", "attach as unique"]
    assert "CREATE UNIQUE INDEX CONCURRENTLY IF NOT EXISTS users_email_key ON users (email)" in result["sql"]
    assert (tmp_path / "prisma" / "migrations" / "migration_lock.toml").exists()
    assert len([f for f in result["files"] if f.endswith("migration.sql")]) == 2


def test_cli_pattern_says_what_is_missing() -> None:
    out = _cli("pattern", "change_column_type", "orders", "--column", "amount")
    assert out.returncode == 2 and "needs type" in out.stderr


async def test_mcp_pattern_uses_the_servers_version_and_prisma_schema(dsn: str) -> None:
    with psycopg.connect(dsn, autocommit=True) as c:
        c.execute("CREATE TABLE users (id serial PRIMARY KEY, email text UNIQUE, first_name text)")
    async with stdio_session("--dsn", dsn) as session:
        r = await session.call_tool("zero_downtime_pattern", {"kind": "set_not_null", "table": "users",
                                                               "column": "email"})
        assert not r.is_error, r.content
        assert r.structured_content["pattern"]["pg_version"] >= 12
        assert r.structured_content["pattern"]["phases"][-1]["name"] == "SET NOT NULL and drop the CHECK"
        s = await session.call_tool("prisma_schema", {})
        assert not s.is_error, s.content
        text = s.structured_content["schema_prisma"]
        assert "model Users {" in text and 'firstName String? @map("first_name")' in text


def test_cli_set_not_null_on_a_column_already_not_null_says_there_is_nothing_to_do(dsn: str) -> None:
    with psycopg.connect(dsn, autocommit=True) as c:
        c.execute("CREATE TABLE accounts (id bigint PRIMARY KEY, email text NOT NULL, nick text)")
    done = _cli("pattern", "set_not_null", "accounts", "--column", "email", "--dsn", dsn, "--format", "json")
    assert done.returncode == 0, done.stderr
    result = json.loads(done.stdout)
    assert result["pattern"]["phases"] == []  # no CHECK to add and validate, no SET NOT NULL
    assert "nothing to do" in result["pattern"]["summary"] and "already NOT NULL" in result["pattern"]["summary"]
    assert "ADD CONSTRAINT" not in result["sql"] and "nothing to do" in result["sql"]
    # with a default asked for, only the default is set
    default = json.loads(_cli("pattern", "set_not_null", "accounts", "--column", "email", "--default", "''",
                              "--dsn", dsn, "--format", "json").stdout)
    assert [p["name"] for p in default["pattern"]["phases"]] == ["set the default"]
    # a nullable column still gets the phases, and they run on the server
    todo = json.loads(_cli("pattern", "set_not_null", "accounts", "--column", "nick", "--dsn", dsn,
                           "--format", "json").stdout)
    assert todo["pattern"]["phases"][-1]["name"] == "SET NOT NULL and drop the CHECK"
    with psycopg.connect(dsn, autocommit=True) as c:
        for phase in todo["pattern"]["phases"]:
            for step in phase["operations"]:
                c.execute(step["sql"])
        assert c.execute("SELECT attnotnull FROM pg_attribute WHERE attrelid = 'accounts'::regclass "
                         "AND attname = 'nick'").fetchone() == (True,)
    missing = _cli("pattern", "set_not_null", "accounts", "--column", "nope", "--dsn", dsn)
    assert missing.returncode != 0 and "not found" in missing.stderr
