"""etl_run obeys the execute-mode policies the operator opted into, like run_sql and run_backfill: with
AGENT19_REQUIRE_VERIFIED_BACKUP an upsert (it overwrites rows) waits for a backup of the destination verified by a
restore, while append (it only inserts) runs; with AGENT19_REQUIRE_DRY_RUN a pipeline runs only after its dry run
passed. Through the real MCP client, as a non-superuser owner of the database."""

from __future__ import annotations

import subprocess
from pathlib import Path

import psycopg
import pytest

from tests.conftest import owner_login
from tests.mcp_client import stdio_session
from tests.reader_login import psql

ROOT = Path(__file__).parent.parent
EXAMPLE = ROOT / "examples" / "etl"


def _text(result) -> str:
    return " ".join(getattr(c, "text", "") for c in result.content)


def _shop(dsn: str) -> None:
    done = subprocess.run([psql(), "-X", "-q", "-v", "ON_ERROR_STOP=1", "-d", dsn, "-f", str(EXAMPLE / "shop.sql")],
                          capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr


def _loaded(dsn: str) -> tuple[int, bool]:
    with psycopg.connect(dsn) as conn:
        n = conn.execute("SELECT count(*) FROM analytics.orders").fetchone()[0]
        state = conn.execute("SELECT to_regclass('agent19_etl.watermark') IS NOT NULL").fetchone()[0]
    return n, state


@pytest.fixture
def app(dsn) -> str:
    app = owner_login(dsn, "etlpol")
    with psycopg.connect(dsn, autocommit=True) as conn:  # verify_backup restores into a scratch database
        conn.execute(f"ALTER ROLE \"{psycopg.conninfo.conninfo_to_dict(app)['user']}\" CREATEDB")
    _shop(app)
    return app


@pytest.mark.asyncio
async def test_upsert_waits_for_a_verified_backup_append_does_not(app, tmp_path):
    upsert = (EXAMPLE / "orders.toml").read_text()
    append = upsert.replace('strategy = "upsert"', 'strategy = "append"').replace(
        'lag = "5 minutes"', "").replace('name = "orders"', 'name = "orders_log"')
    env = {"DATABASE_URL": app, "AGENT19_REQUIRE_VERIFIED_BACKUP": "24", "AGENT19_DATA_DIR": str(tmp_path / "s")}
    async with stdio_session("--mode", "execute", env=env) as session:
        refused = await session.call_tool("etl_run", {"pipeline_toml": upsert})
        said = _text(refused)
        assert refused.is_error and "require_verified_backup" in said and "analytics.orders" in said, said
        assert "backup verify" in said
        assert _loaded(app) == (0, False)  # refused before anything was created or loaded
        dry = await session.call_tool("etl_run", {"pipeline_toml": upsert, "dry_run": True})
        assert not dry.is_error and dry.structured_content["valid"] == 998  # a dry run writes nothing: allowed
        appended = await session.call_tool("etl_run", {"pipeline_toml": append})
        assert not appended.is_error and appended.structured_content["inserted"] == 998, appended.content
        with psycopg.connect(app, autocommit=True) as conn:
            conn.execute("TRUNCATE analytics.orders")
        verified = await session.call_tool("verify_backup", {})
        assert not verified.is_error and verified.structured_content["verified"] is True, _text(verified)
        ran = await session.call_tool("etl_run", {"pipeline_toml": upsert})
    assert not ran.is_error, ran.content
    assert ran.structured_content["inserted"] == 998 and _loaded(app) == (998, True)


@pytest.mark.asyncio
async def test_a_pipeline_runs_only_after_its_dry_run_passed(app, tmp_path):
    text = (EXAMPLE / "orders.toml").read_text()
    env = {"DATABASE_URL": app, "AGENT19_REQUIRE_DRY_RUN": "1", "AGENT19_DATA_DIR": str(tmp_path / "s")}
    async with stdio_session("--mode", "execute", env=env) as session:
        refused = await session.call_tool("etl_run", {"pipeline_toml": text})
        assert refused.is_error and "require_dry_run" in _text(refused) and "--dry-run" in _text(refused)
        assert _loaded(app) == (0, False)
        dry = await session.call_tool("etl_run", {"pipeline_toml": text, "dry_run": True})
        assert not dry.is_error, dry.content
        other = await session.call_tool("etl_run", {"pipeline_toml": text.replace("batch_size = 5000",
                                                                                  "batch_size = 100")})
        assert other.is_error and "require_dry_run" in _text(other)  # another pipeline than the one tested
        ran = await session.call_tool("etl_run", {"pipeline_toml": text})
        assert not ran.is_error, ran.content
        # its first run created agent19's state tables (DDL): the next run of the same pipeline still may
        again = await session.call_tool("etl_run", {"pipeline_toml": text})
        assert not again.is_error, again.content
        with psycopg.connect(app, autocommit=True) as conn:  # someone else's DDL: the dry run proves no more
            conn.execute("ALTER TABLE analytics.orders ADD COLUMN note text")
        moved = await session.call_tool("etl_run", {"pipeline_toml": text})
    assert moved.is_error and "schema changed" in _text(moved), _text(moved)
    assert _loaded(app) == (998, True)
