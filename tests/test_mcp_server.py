"""The MCP server end to end: the official client, over stdio and streamable HTTP."""

import asyncio
import json
import shutil
import tempfile
import time
from pathlib import Path

import psycopg

from tests.mcp_client import hint, http_server, http_session, stdio_session

SETUP = """
CREATE TABLE accounts (id bigint PRIMARY KEY, email text NOT NULL UNIQUE);
CREATE TABLE notes (id int PRIMARY KEY, account_id bigint REFERENCES accounts, body text);
INSERT INTO accounts SELECT g, 'a' || g || '@x' FROM generate_series(1, 100) g;
ANALYZE;
"""


def _setup(dsn):
    with psycopg.connect(dsn, autocommit=True) as conn:
        conn.execute(SETUP)


async def _check_tools_and_describe(session):
    tools = {t.name: t for t in (await session.list_tools()).tools}
    assert {"describe_database", "server_info"} <= set(tools)
    describe = tools["describe_database"]
    # what a parameter means in every tool is said once, in the server's instructions
    assert "table: name or schema.name" in session.initialize_result.instructions
    assert describe.output_schema is None  # the result's schema is in the tool's documentation resource
    docs = json.loads((await session.read_resource("agent19://tools/describe_database")).contents[0].text)
    assert "tables" in docs["output_schema"]["properties"]
    assert "schema.name" in docs["input_schema"]["properties"]["table"]["description"]
    assert hint(describe, "readOnlyHint") is True  # (destructiveHint means nothing then: not listed)
    assert describe.annotations.destructive_hint is None

    result = await session.call_tool("describe_database", {})
    assert not result.is_error, result.content
    tables = {t["name"]: t for t in result.structured_content["tables"]}
    assert set(tables) == {"accounts", "notes"}
    assert tables["accounts"]["row_estimate"] == 100
    fk = [c for c in tables["notes"]["constraints"] if c["type"] == "foreign_key"][0]
    assert fk["references_table"] == "public.accounts"
    # the text content is the compact rendering a person reads at the CLI, not the structured JSON again
    text = result.content[0].text
    assert "accounts" in text and "notes" in text and not text.lstrip().startswith("{")
    assert len(text) < len(json.dumps(result.structured_content)) / 2

    one = await session.call_tool("describe_database", {"table": "notes"})
    assert [t["name"] for t in one.structured_content["tables"]] == ["notes"]
    missing = await session.call_tool("describe_database", {"table": "nope"})
    assert missing.is_error and "table 'nope' not found" in missing.content[0].text


async def test_stdio_lists_tools_describes_and_serves_prompts(dsn):
    _setup(dsn)
    async with stdio_session("--dsn", dsn) as session:
        await _check_tools_and_describe(session)
        info = await session.call_tool("server_info", {})
        assert info.structured_content["connected"] is True
        assert info.structured_content["mode"] == "read-only"
        prompts = {p.name for p in (await session.list_prompts()).prompts}
        assert "database-engineer" in prompts
        prompt = await session.get_prompt("database-engineer", {"task": "Add a NOT NULL column to orders."})
        text = prompt.messages[0].content.text
        assert "Measure before optimizing" in text and "Add a NOT NULL column to orders." in text


async def test_streamable_http_answers_the_same(dsn):
    _setup(dsn)
    with http_server("--dsn", dsn) as url:
        async with http_session(url) as session:
            await _check_tools_and_describe(session)


async def test_password_never_reaches_the_client(pg):
    dsn = "postgresql://postgres:N0tShown99@127.0.0.1:1/postgres"
    async with stdio_session("--dsn", dsn) as session:
        info = await session.call_tool("server_info", {})
        dumped = json.dumps(info.structured_content)
        assert info.structured_content["connected"] is False
        assert "N0tShown99" not in dumped and "***" in info.structured_content["database"]
        result = await session.call_tool("describe_database", {})
        assert result.is_error and "N0tShown99" not in result.content[0].text
        assert "connection refused" in result.content[0].text  # what happened, first


async def test_serve_without_dsn_uses_the_embedded_server():
    # Not under tmp_path: run as root, pgserver starts PostgreSQL as its own `pgserver` user and opens every
    # parent directory to it; a pytest process starting meanwhile resets /tmp/pytest-of-root to 0700, and
    # pg_ctl then fails with "could not access directory … Permission denied" (seen under parallel runs).
    data_dir = Path(tempfile.mkdtemp(prefix="agent19-embedded-test-"))
    try:
        env = {"DATABASE_URL": ""}
        async with stdio_session("--data-dir", str(data_dir), env=env) as session:
            info = await session.call_tool("server_info", {})
            assert info.structured_content["embedded"] is True
            assert info.structured_content["connected"] is True, info.structured_content
            assert str(data_dir) in info.structured_content["database"]
            described = await session.call_tool("describe_database", {})
            assert not described.is_error
            assert described.structured_content["server_version"] >= 160000
        assert (data_dir / "pgdata" / "PG_VERSION").exists()
        deadline = time.monotonic() + 30  # the server stops with agent19
        while (data_dir / "pgdata" / "postmaster.pid").exists() and time.monotonic() < deadline:
            await asyncio.sleep(0.2)
        assert not (data_dir / "pgdata" / "postmaster.pid").exists()
    finally:
        shutil.rmtree(data_dir, ignore_errors=True)


async def test_every_tool_annotation_tells_the_truth(dsn):
    """readOnlyHint only for tools that change nothing (database or files); every tool that can
    change the database in execute mode says destructiveHint."""
    async with stdio_session("--dsn", dsn) as session:
        tools = {t.name: t for t in (await session.list_tools()).tools}
    writes_files = {"generate_runbook", "zero_downtime_pattern", "verify_backup", "restore_runbook", "capacity_sample",
                    "pgbouncer_config", "cdc_debezium"}
    changes_database = {"run_sql", "confirm_destructive", "run_backfill", "etl_run", "cdc_run"}
    runs_in_rolled_back_transactions = {"test_migration", "verify_rollback"}
    for name, t in tools.items():
        expected_read_only = name not in writes_files | changes_database | runs_in_rolled_back_transactions
        assert hint(t, "readOnlyHint") is expected_read_only, name
        # (a read-only tool's destructiveHint means nothing: the spec's default, true, is not what it says then)
        assert expected_read_only or hint(t, "destructiveHint") is (name in changes_database), name
        assert t.output_schema is None, f"{name} lists an output schema (agent19://tools/{name} carries it)"
        assert len(t.description) > 80, f"{name}: the description is too thin for a model to act on"
