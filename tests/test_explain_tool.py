"""explain_query end to end: the MCP client, modes, rollback, timeouts, refusals."""

from __future__ import annotations

import json

import psycopg
import pytest

from agent19.config import Settings
from agent19.db import Database
from agent19.errors import InputError, ModeError
from agent19.optimize.explain import explain
from tests.mcp_client import stdio_session

SETUP = """
CREATE TABLE events (id bigint PRIMARY KEY, kind text NOT NULL, payload text);
INSERT INTO events SELECT g, (ARRAY['click','view','buy'])[1 + g % 3], md5(g::text) FROM generate_series(1, 30000) g;
ANALYZE events;
"""


def _count(dsn: str) -> int:
    with psycopg.connect(dsn) as conn:
        row = conn.execute("SELECT count(*) FROM events").fetchone()
    assert row
    return int(row[0])


async def test_explain_analyze_of_a_delete_through_mcp_is_rolled_back(dsn):
    with psycopg.connect(dsn, autocommit=True) as conn:
        conn.execute(SETUP)
    async with stdio_session("--dsn", dsn, "--mode", "dry-run") as session:
        tools = {t.name: t for t in (await session.list_tools()).tools}
        assert "explain_query" in tools
        result = await session.call_tool("explain_query", {"sql": "DELETE FROM events WHERE kind = 'click'",
                                                           "detail": "full"})
        assert not result.is_error, result.content
        out = result.structured_content
        assert out["execution"] == "analyze_rolled_back" and out["kind"] == "write"
        scan = out["plan"]["root"]["children"][0]
        assert scan["actual_rows"] == 10_000
        assert out["raw"][0]["Plan"]["Operation"] == "Delete"
        assert any("rolled back" in n for n in out["notes"])
        refused = await session.call_tool("explain_query", {"sql": "SELECT 1; DELETE FROM events"})
        assert refused.is_error and "exactly one" in refused.content[0].text
    assert _count(dsn) == 30_000


async def test_read_only_mode_gives_a_delete_the_estimated_plan(dsn):
    with psycopg.connect(dsn, autocommit=True) as conn:
        conn.execute(SETUP)
    async with stdio_session("--dsn", dsn) as session:
        result = await session.call_tool("explain_query", {"sql": "DELETE FROM events WHERE id < 100"})
        out = result.structured_content
        # by default the typed tree and EXPLAIN's raw JSON are resources: the plan text and diagnostics come inline
        assert "raw" not in out and "plan" not in out and "[#" in out["plan_text"]
        links = {c.uri.rsplit("/", 1)[1]: c.uri for c in result.content if c.type == "resource_link"}
        plan = json.loads((await session.read_resource(links["plan"])).contents[0].text)
        assert out["execution"] == "plain" and plan["root"]["actual_rows"] is None
        assert json.loads((await session.read_resource(links["raw"])).contents[0].text)[0]["Plan"]
        assert any("read-only mode" in n for n in out["notes"])
    assert _count(dsn) == 30_000


def test_timeout_returns_the_plain_plan(dsn):
    db = Database(Settings.load(dsn=dsn))
    try:
        run = explain(db, "SELECT pg_sleep(2)", timeout_ms=100)
        assert run.execution == "plain" and any("statement_timeout" in n for n in run.notes)
        # a writing CTE counts as a write
        run = explain(db, "WITH d AS (DELETE FROM pg_class WHERE false RETURNING 1) SELECT count(*) FROM d")
        assert run.kind == "write" and run.execution == "plain"
    finally:
        db.close()


@pytest.mark.parametrize(
    ("sql", "match"),
    [("", "no SQL"), ("SELECT 1; SELECT 2", "exactly one"), ("DROP TABLE x", "cannot EXPLAIN a Drop"),
     ("EXPLAIN SELECT 1", "cannot EXPLAIN a Explain"), ("SELECT 1 INTO t", "INTO")],
)
def test_refusals_happen_before_the_server(sql, match):
    db = Database(Settings.load(dsn="postgresql://nobody@127.0.0.1:1/none"))
    with pytest.raises(InputError, match=match):
        explain(db, sql)


def test_settings_outside_the_allowlist_are_refused(dsn):
    db = Database(Settings.load(dsn=dsn))
    try:
        with pytest.raises(InputError, match="cannot be changed"):
            explain(db, "SELECT 1", settings=["default_transaction_read_only=off"])
    finally:
        db.close()


def test_generic_plan_on_16_and_later(dsn_any):
    db = Database(Settings.load(dsn=dsn_any))
    try:
        version = explain(db, "SELECT 1").server_version
        sql = "SELECT relname FROM pg_class WHERE oid = $1"
        if version < 160000:
            with pytest.raises(InputError, match="GENERIC_PLAN needs PostgreSQL 16"):
                explain(db, sql, generic_plan=True)
        else:
            run = explain(db, sql, generic_plan=True)
            assert run.execution == "plain" and "$1" in (run.plan.root.index_cond or "")
    finally:
        db.close()


def test_rolled_back_write_needs_dry_run(dsn):
    db = Database(Settings.load(dsn=dsn))
    with pytest.raises(ModeError):
        with db.rolled_back():
            pass
