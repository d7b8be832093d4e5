"""A hostile review of the escalations: migrations that destroy the most said "no escalation needed".

DROP SCHEMA … CASCADE, DROP DATABASE and a DO block that drops a column through EXECUTE each got
"no escalation needed: no operation destroys data" from plan_migration, while the safety check on the
same SQL calls them critical or unverifiable. Each must now raise the data-loss escalation with that
evidence; a table created and dropped in the same migration still needs none.
"""

from __future__ import annotations

import psycopg
import pytest

from tests.mcp_client import stdio_session

CASES = {
    "DROP SCHEMA app CASCADE": "CASCADE drops every dependent object",
    "DROP DATABASE hostile_victim": "removes the database",
    "DO $$ BEGIN EXECUTE 'ALTER TABLE app.items DROP COLUMN note'; END $$": "cannot be verified",
}


@pytest.mark.asyncio
async def test_whole_schema_database_and_opaque_drops_escalate(dsn):
    with psycopg.connect(dsn, autocommit=True) as conn:
        conn.execute("CREATE SCHEMA app")
        conn.execute("CREATE TABLE app.items (id int PRIMARY KEY, note text)")
        conn.execute("INSERT INTO app.items SELECT g, 'n' FROM generate_series(1, 50) g")
        conn.execute("CREATE DATABASE hostile_victim")
    try:
        async with stdio_session("--mode", "read-only", env={"DATABASE_URL": dsn}) as session:
            plans = {sql: await session.call_tool("plan_migration", {"sql": sql}) for sql in CASES}
            harmless = await session.call_tool("plan_migration",
                                               {"sql": "CREATE TABLE app.tmp (i int); DROP TABLE app.tmp"})
        for sql, why in CASES.items():
            r = plans[sql]
            assert not r.is_error, r.content
            loss = [e for e in r.structured_content["escalations"] if e["kind"] == "data_loss"]
            assert loss, (sql, r.structured_content["escalation_summary"])
            assert loss[0]["statements"] == [sql] and "tech lead" in loss[0]["reviewers"]
            assert any(why in e for e in loss[0]["evidence"]), loss[0]["evidence"]
            assert not r.structured_content["escalation_summary"].startswith("no escalation")
        assert harmless.structured_content["escalations"] == []
        with psycopg.connect(dsn) as conn:  # planning ran nothing
            assert conn.execute("SELECT count(*) FROM app.items").fetchone() == (50,)
    finally:
        with psycopg.connect(dsn, autocommit=True) as conn:
            conn.execute("DROP DATABASE IF EXISTS hostile_victim")
            conn.execute("DROP SCHEMA IF EXISTS app CASCADE")
