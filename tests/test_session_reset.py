"""No session-level effect survives a call: every pooled connection is reset when it goes back.

Observed from the server: advisory locks in pg_locks read from another session, settings and
temporary objects on the next use of the same backend (same pid), prepared statements in
pg_prepared_statements. Both for the main pool and for the reader login's pool.
"""

from __future__ import annotations

import psycopg
import pytest

from agent19.config import Settings
from agent19.db.connection import Database
from tests.conftest import session_settings
from tests.mcp_client import stdio_session
from tests.reader_login import reader_login


def _advisory_locks(dsn: str, pid: int) -> int:
    with psycopg.connect(dsn, autocommit=True) as conn:
        return conn.execute("SELECT count(*) FROM pg_locks WHERE locktype = 'advisory' AND pid = %s",
                            (pid,)).fetchone()[0]


def _leave_traces(db: Database) -> int:
    with db.session() as conn:
        pid = conn.info.backend_pid
        conn.execute("SELECT pg_advisory_lock(7001), pg_advisory_lock_shared(7002)")
        conn.execute("SET work_mem = '77MB'")
        conn.execute("SET statement_timeout = 0")
        conn.execute("SET search_path = pg_temp, public")
        if db.mode.value != "read-only":  # a read-only session cannot create one
            conn.execute("CREATE TEMP TABLE left_behind (a int)")
        conn.execute("PREPARE left_plan AS SELECT 1")
    return pid


def _same_backend(db: Database, pid: int) -> dict[str, object]:
    """Take pooled sessions until the one with ``pid`` comes back; report what it still has."""
    for _ in range(20):
        with db.session() as conn:
            if conn.info.backend_pid != pid:
                continue
            return conn.execute(
                "SELECT current_setting('work_mem') AS work_mem, current_setting('statement_timeout') AS timeout, "
                "current_setting('search_path') AS path, current_setting('application_name') AS app, "
                "to_regclass('pg_temp.left_behind') IS NULL AS no_temp, "
                "(SELECT count(*) FROM pg_prepared_statements) AS prepared").fetchone()
    raise AssertionError("the pooled backend was not handed out again")


@pytest.mark.parametrize("mode", ["read-only", "dry-run"])
def test_a_pooled_session_keeps_nothing_of_a_call(dsn, mode):
    db = Database(Settings.load(dsn=dsn, mode=mode, statement_timeout="3s", env={}))
    try:
        with psycopg.connect(dsn, autocommit=True) as other:
            default_work_mem = other.execute("SHOW work_mem").fetchone()[0]
            default_path = other.execute("SHOW search_path").fetchone()[0]
        pid = _leave_traces(db)
        assert _advisory_locks(dsn, pid) == 0, "an advisory lock outlived the call"
        state = _same_backend(db, pid)
        assert state == {"work_mem": default_work_mem, "timeout": "3s", "path": default_path, "app": "agent19",
                         "no_temp": True, "prepared": 0}
        if mode == "read-only":
            with db.session() as conn:
                assert conn.execute("SHOW default_transaction_read_only").fetchone()["default_transaction_read_only"] \
                    == "on", "the read-only session setting must be applied again after the reset"
    finally:
        db.close()


def test_the_reader_pool_is_reset_too(dsn, tmp_path):
    with reader_login(dsn, tmp_path) as read_dsn:
        db = Database(Settings.load(dsn=dsn, read_dsn=read_dsn, statement_timeout="2s", env={}))
        reader = db.reader_database()
        try:
            with reader.session() as conn:
                pid = conn.info.backend_pid
                conn.execute("SELECT pg_advisory_lock(7003)")
                conn.execute("SET work_mem = '55MB'")
            assert _advisory_locks(dsn, pid) == 0
            state = _same_backend(reader, pid)
            assert state["work_mem"] != "55MB" and state["timeout"] == "2s"
        finally:
            db.close()


@pytest.mark.asyncio
async def test_through_mcp_every_call_starts_from_the_same_settings(dsn):
    """A call whose settings applied (explain_query's planner settings) leaves nothing for the next."""
    with psycopg.connect(dsn, autocommit=True) as conn:
        default = conn.execute("SHOW work_mem").fetchone()[0]
    async with stdio_session("--statement-timeout", "4s", env={"DATABASE_URL": dsn}) as session:
        for _ in range(3):
            explained = await session.call_tool("explain_query", {"sql": "SELECT 1", "settings": ["work_mem=99MB"]})
            assert not explained.is_error
            shown = await session.call_tool("run_sql", {"sql": "SELECT current_setting('work_mem'), "
                                                               "current_setting('statement_timeout')"})
            assert shown.structured_content["result"]["rows"] == [[default, "4s"]]


def test_a_query_run_on_every_call_survives_the_reset(dsn):
    """The same query on every call (as a dry run's catalog reads are): psycopg prepares a query on its 5th run on
    a connection, DISCARD ALL then drops it on the server, and psycopg notices only a connection's first DISCARD
    ALL — the next call failed with 'prepared statement "_pg3_0" does not exist'. Pooled sessions are never
    prepared: 40 calls, each running it twice."""
    db = Database(session_settings(dsn=dsn, mode="dry-run"))
    try:
        for i in range(40):
            with db.session() as conn:
                for _ in range(2):
                    row = conn.execute("SELECT %(i)s::int + count(*) AS n FROM pg_prepared_statements", {"i": i})
                    assert row.fetchone()["n"] == i  # nothing prepared on the server either
    finally:
        db.close()
