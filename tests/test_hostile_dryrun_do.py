"""A dry run does not run DO blocks whose effect escapes the rollback (found by a hostile review).

The parser sees a DO block's body as a string, so the dry run's screen (which reads function bodies
for dblink, session signals, advisory locks, COPY … PROGRAM) never looked inside one: through the MCP
client, a dry run created a role on the server through dblink_exec, terminated another session and
ran a shell program, while the migration's transaction was rolled back. Each must now be refused
(reported, never run) and the server left as it was; an ordinary DO block still runs.
"""

from __future__ import annotations

import uuid

import psycopg
import pytest
from psycopg.conninfo import conninfo_to_dict

from tests.conftest import need
from tests.mcp_client import stdio_session


def _has_dblink(dsn: str) -> bool:
    with psycopg.connect(dsn, autocommit=True) as c:
        return c.execute("SELECT count(*) FROM pg_available_extensions WHERE name = 'dblink'").fetchone()[0] == 1


async def test_do_blocks_that_escape_the_rollback_are_refused(dsn, tmp_path):
    need(_has_dblink(dsn), "dblink (postgresql-contrib) is not installed")
    tag = uuid.uuid4().hex[:8]
    info = conninfo_to_dict(dsn)
    target = f"host={info['host']} port={info['port']} dbname={info['dbname']} user={info['user']}"
    with psycopg.connect(dsn, autocommit=True) as c:
        c.execute("CREATE EXTENSION dblink")
    statements = [
        f"DO $$ BEGIN PERFORM dblink_exec('{target}', 'CREATE ROLE escaped_{tag}'); END $$",
        f"DO $$ BEGIN PERFORM pg_terminate_backend(pid) FROM pg_stat_activity WHERE application_name = 'v_{tag}'; "
        "END $$",
        f"DO $$ BEGIN PERFORM pg_terminate_backend /* hidden */ (pid) FROM pg_stat_activity "
        f"WHERE application_name = 'v_{tag}'; END $$",
        "DO $$ BEGIN EXECUTE 'COPY (SELECT 1) TO PROGRAM ''true'''; END $$",
        "CREATE FUNCTION to_program() RETURNS void LANGUAGE plpgsql AS $f$ BEGIN COPY (SELECT 1) TO PROGRAM 'true'; "
        "END $f$",
        "SELECT to_program()",
        "DO $$ BEGIN CREATE TABLE made_by_do (id int); END $$",
    ]
    path = tmp_path / "0001_do.up.sql"
    path.write_text(";\n".join(statements) + ";\n")
    victim = psycopg.connect(dsn, application_name=f"v_{tag}", autocommit=True)
    try:
        async with stdio_session("--dsn", dsn, "--mode", "dry-run") as session:
            result = await session.call_tool("test_migration", {"files": [str(path)], "detail": "full"})
        assert not result.is_error, result.content
        r = result.structured_content
        ran = {s["index"]: s for s in r["statements"]}
        for i in (0, 1, 2, 3, 5):
            assert ran[i]["ran_in"] == "skipped" and "refused in a dry run" in (ran[i]["note"] or ""), ran[i]
        assert ran[6]["ran_in"] == "transaction" and ran[6]["error"] is None, ran[6]
        assert r["target_unchanged"] is True
        assert victim.execute("SELECT 1").fetchone() == (1,)
    finally:
        victim.close()
    with psycopg.connect(dsn, autocommit=True) as c:
        assert c.execute("SELECT count(*) FROM pg_roles WHERE rolname = %s", (f"escaped_{tag}",)).fetchone()[0] == 0
        assert c.execute("SELECT to_regclass('made_by_do')").fetchone()[0] is None


@pytest.fixture(autouse=True)
def _no_stray_role(pg):
    yield
    with psycopg.connect(pg.dsn, autocommit=True) as c:
        for (name,) in c.execute("SELECT rolname FROM pg_roles WHERE rolname LIKE 'escaped\\_%'").fetchall():
            c.execute(f'DROP ROLE "{name}"')
