"""A message names what its reader can use: over MCP a model calls tools with arguments, at the CLI a person types
commands with flags (agent19.tool_names). Found wrong: lint's A19048 fix told a model to run `agent19 dry-run`, and
run_backfill's errors told it to check `--set`, a flag it has no way to pass."""

from __future__ import annotations

import json
import os
import subprocess
import sys

from tests.conftest import owner_login, run_sql
from tests.mcp_client import stdio_session

DO_BLOCK = "DO $$ BEGIN NULL; END $$;\n"


def _cli(*args: str, tmp_path) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "AGENT19_DATA_DIR": str(tmp_path), "DATABASE_URL": ""}
    return subprocess.run([sys.executable, "-m", "agent19", *args], env=env, capture_output=True, text=True,
                          timeout=120)


def _fixes(findings: list[dict]) -> list[str]:
    return [f["fix"] for f in findings if f["rule"] == "A19048"]


async def test_opaque_code_fix_names_the_tool_over_mcp_and_the_command_at_the_cli(tmp_path):
    migration = tmp_path / "V1__do.sql"
    migration.write_text(DO_BLOCK)
    async with stdio_session() as session:
        linted = await session.call_tool("lint_migration", {"paths": [str(migration)], "pg_version": 15})
    assert not linted.is_error, linted.content[0].text
    findings = [f for st in linted.structured_content["statements"] for f in st["findings"]]
    fixes = _fixes(findings)
    assert fixes and all("test_migration" in f and "agent19 " not in f and "--" not in f.removeprefix("--")
                         for f in fixes), fixes
    r = _cli("lint", str(migration), "--pg-version", "15", "--format", "json", tmp_path=tmp_path)
    report = json.loads(r.stdout)
    fixes = _fixes([f for st in report["statements"] for f in st["findings"]])
    assert fixes and all("agent19 dry-run" in f for f in fixes), fixes


async def test_run_backfill_errors_name_its_arguments_not_cli_flags(dsn, tmp_path):
    app = owner_login(dsn, "face_bf")
    run_sql(app, "CREATE TABLE bf (id int PRIMARY KEY, a int)")
    async with stdio_session("--dsn", app, "--mode", "execute") as session:
        bad = await session.call_tool("run_backfill", {"table": "bf", "set": "nope = 1"})
    assert bad.is_error
    text = bad.content[0].text
    assert "`set`" in text and "`where`" in text and "--set" not in text and "--where" not in text, text
    r = _cli("backfill", "bf", "--set", "nope = 1", "--dsn", app, "--mode", "execute", tmp_path=tmp_path)
    assert r.returncode != 0 and "--set" in r.stderr and "--where" in r.stderr, (r.stdout, r.stderr)


async def test_a_cut_description_says_how_to_see_more_in_the_readers_terms(dsn, tmp_path):
    """describe_database's text (what a model reads over MCP too) said `--schema/--limit or --detail full`."""
    app = owner_login(dsn, "face_desc")
    run_sql(app, "CREATE TABLE a1 (id int); CREATE TABLE a2 (id int)")
    async with stdio_session("--dsn", app) as session:
        cut = await session.call_tool("describe_database", {"limit": 1})
    text = cut.content[0].text
    assert "more tables (use `schema`/`limit` or `detail` full)" in text and "--limit" not in text, text
    r = _cli("describe", "--limit", "1", "--dsn", app, tmp_path=tmp_path)
    assert "more tables (use --schema/--limit or --detail full)" in r.stdout, (r.stdout, r.stderr)
