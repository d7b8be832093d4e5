"""A hostile review of the execute-mode policies: run_backfill is the same UPDATE as run_sql, in batches.

With AGENT19_REQUIRE_DRY_RUN=1 or AGENT19_REQUIRE_VERIFIED_BACKUP=24, run_sql refused an untested UPDATE
(or one without a verified backup) while run_backfill ran the same change straight away: a model told
"no" by one tool used the other. Through the real MCP client, as a non-superuser owner of the table.
"""

from __future__ import annotations

import uuid

import psycopg
import pytest
from psycopg.conninfo import make_conninfo

from tests.mcp_client import stdio_session


def _text(result) -> str:
    return " ".join(getattr(c, "text", "") for c in result.content)


@pytest.fixture
def app_dsn(dsn):
    role, password = f"app_{uuid.uuid4().hex[:8]}", uuid.uuid4().hex
    with psycopg.connect(dsn, autocommit=True) as conn:
        conn.execute(f"CREATE ROLE {role} LOGIN PASSWORD '{password}'")
        conn.execute(f"CREATE SCHEMA {role} AUTHORIZATION {role}")
    app = make_conninfo(dsn, user=role, password=password)
    with psycopg.connect(app, autocommit=True) as conn:
        conn.execute("CREATE TABLE items (id int PRIMARY KEY, v text)")
        conn.execute("INSERT INTO items SELECT g, 'old' FROM generate_series(1, 100) g")
    yield app
    with psycopg.connect(dsn, autocommit=True) as conn:
        conn.execute(f"DROP OWNED BY {role}")  # its schema, and agent19's token ledger when a test created one
        conn.execute(f"DROP ROLE {role}")


def _changed(dsn: str) -> int:
    with psycopg.connect(dsn) as conn:
        return conn.execute("SELECT count(*) FROM items WHERE v = 'new'").fetchone()[0]


@pytest.mark.asyncio
async def test_backfill_obeys_require_dry_run(app_dsn, tmp_path):
    args = {"table": "items", "set": "v = 'new'", "where": "id <= 10"}
    env = {"DATABASE_URL": app_dsn, "AGENT19_REQUIRE_DRY_RUN": "1", "AGENT19_DATA_DIR": str(tmp_path / "state")}
    async with stdio_session("--mode", "execute", env=env) as session:
        refused = await session.call_tool("run_backfill", args)
        assert refused.is_error and "require_dry_run" in _text(refused), _text(refused)
        assert "UPDATE items SET v = 'new' WHERE id <= 10" in _text(refused)
        assert _changed(app_dsn) == 0
        dry = await session.call_tool("test_migration", {"sql": "UPDATE items SET v = 'new' WHERE id <= 10"})
        assert dry.structured_content["passed"] is True, dry.content
        ran = await session.call_tool("run_backfill", args)
    assert not ran.is_error, ran.content
    assert _changed(app_dsn) == 10


@pytest.mark.asyncio
async def test_backfill_obeys_require_verified_backup(app_dsn, tmp_path):
    env = {"DATABASE_URL": app_dsn, "AGENT19_REQUIRE_VERIFIED_BACKUP": "24",
           "AGENT19_DATA_DIR": str(tmp_path / "state")}
    async with stdio_session("--mode", "execute", env=env) as session:
        refused = await session.call_tool("run_backfill", {"table": "items", "set": "v = 'new'", "where": "id <= 10"})
    assert refused.is_error and "require_verified_backup" in _text(refused), _text(refused)
    assert _changed(app_dsn) == 0


@pytest.mark.asyncio
async def test_confirmed_drop_still_needs_the_required_dry_run(dsn, app_dsn, tmp_path):
    """A human's confirmation (here the operator's opt-in phrase argument) ran DROP TABLE under
    AGENT19_REQUIRE_DRY_RUN=1 with no dry run: confirm_destructive must obey the policy like run_sql."""
    role = psycopg.conninfo.conninfo_to_dict(app_dsn)["user"]
    with psycopg.connect(dsn, autocommit=True) as conn:  # the token ledger's schema, as the README asks a DBA
        conn.execute(f"CREATE SCHEMA IF NOT EXISTS agent19 AUTHORIZATION {role}")
    env = {"DATABASE_URL": app_dsn, "AGENT19_REQUIRE_DRY_RUN": "1", "AGENT19_ALLOW_MODEL_CONFIRMATION": "1",
           "AGENT19_DATA_DIR": str(tmp_path / "state")}
    drop = "DROP TABLE items"
    async with stdio_session("--mode", "execute", env=env) as session:
        first = await session.call_tool("confirm_destructive", {"sql": drop})
        report = first.structured_content["report"]
        step2 = {"sql": drop, "token": report["token"], "phrase": report["phrase"]}
        refused = await session.call_tool("confirm_destructive", step2)
        assert refused.is_error and "require_dry_run" in _text(refused), _text(refused)
        with psycopg.connect(app_dsn) as conn:
            assert conn.execute("SELECT to_regclass('items')").fetchone() != (None,)
        dry = await session.call_tool("test_migration", {"sql": drop})
        assert dry.structured_content["passed"] is True, dry.content
        ran = await session.call_tool("confirm_destructive", step2)
    assert not ran.is_error and ran.structured_content["executed"] is True, ran.content
    with psycopg.connect(app_dsn) as conn:
        assert conn.execute("SELECT to_regclass('items')").fetchone() == (None,)
