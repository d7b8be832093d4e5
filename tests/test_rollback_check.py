"""Verified rollback: up, down, and the schema compared with the start — nothing persists."""

from __future__ import annotations

import json

import psycopg
from psycopg.rows import dict_row

from agent19.cli import main
from agent19.db.catalog import snapshot
from agent19.db.connection import Database
from agent19.migrate.dryrun.rollback_check import verify_rollback
from agent19.migrate.dryrun.schema_diff import diff_snapshots
from agent19.migrate.dryrun.scratch import list_scratch
from agent19.migrate.parse import parse_sql
from tests.conftest import session_settings
from tests.mcp_client import stdio_session

SETUP = """
CREATE TYPE mood AS ENUM ('ok', 'sad');
CREATE TABLE t (id bigint PRIMARY KEY, a int NOT NULL DEFAULT 0, b int, m mood);
CREATE INDEX t_a_idx ON t (a);
INSERT INTO t SELECT g, g % 10, g % 7 FROM generate_series(1, 1000) g;
"""


def populate(dsn: str) -> None:
    with psycopg.connect(dsn, autocommit=True) as conn:
        conn.execute(SETUP)


def schema(dsn: str):
    with psycopg.connect(dsn, autocommit=True, row_factory=dict_row) as conn:
        return snapshot(conn)


def check(dsn: str, up: str, down: str):
    db = Database(session_settings(dsn=dsn, mode="dry-run"))
    try:
        return verify_rollback(db, parse_sql(up, "up.sql"), parse_sql(down, "down.sql"))
    finally:
        db.close()


def test_down_that_forgets_to_recreate_an_index_names_it(dsn):
    populate(dsn)
    start = schema(dsn)
    r = check(dsn, "DROP INDEX t_a_idx; ALTER TABLE t ADD COLUMN c text", "ALTER TABLE t DROP COLUMN c")
    assert not r.verified and r.where == "transaction"
    assert [(d.kind, d.object, d.change) for d in r.differences] == [("index", "public.t_a_idx", "removed")]
    assert "t_a_idx" in r.summary and "rollback not verified" in r.summary
    assert diff_snapshots(start, schema(dsn)) == []


def test_a_correct_down_is_verified_including_types_defaults_and_enums(dsn):
    populate(dsn)
    up = """ALTER TABLE t ALTER COLUMN a SET DEFAULT 5; ALTER TABLE t ALTER COLUMN b SET NOT NULL;
            ALTER TYPE mood ADD VALUE 'happy'; CREATE INDEX t_b_idx ON t (b); CREATE SEQUENCE s"""
    good = """DROP SEQUENCE s; DROP INDEX t_b_idx; ALTER TABLE t ALTER COLUMN b DROP NOT NULL;
              ALTER TABLE t ALTER COLUMN a SET DEFAULT 0"""
    r = check(dsn, up, good)
    # an enum value cannot be removed by SQL: the honest answer is "not verified", naming it
    assert not r.verified
    assert [(d.kind, d.object) for d in r.differences] == [("enum", "public.mood")]
    r = check(dsn, up.replace("ALTER TYPE mood ADD VALUE 'happy';", ""), good)
    assert r.verified and r.up_changes == 4 and r.summary.startswith("rollback verified")


def test_concurrent_statements_are_checked_in_a_scratch_database(dsn):
    populate(dsn)
    start = schema(dsn)
    r = check(dsn, "CREATE INDEX CONCURRENTLY t_b_idx ON t (b)", "DROP INDEX CONCURRENTLY t_b_idx")
    assert r.verified and r.where == "scratch" and r.scratch is not None
    assert r.scratch.name not in list_scratch(dsn)
    bad = check(dsn, "CREATE INDEX CONCURRENTLY t_b_idx ON t (b)", "SELECT 1")
    assert not bad.verified and [d.object for d in bad.differences] == ["public.t_b_idx"]
    assert diff_snapshots(start, schema(dsn)) == [] and list_scratch(dsn) == []


async def test_golang_migrate_pair_through_mcp_and_flyway_pair_on_the_cli(dsn, tmp_path, capsys):
    populate(dsn)
    (tmp_path / "0002_add_c.up.sql").write_text("ALTER TABLE t ADD COLUMN c int;\nCREATE INDEX t_c_idx ON t (b, c);\n")
    (tmp_path / "0002_add_c.down.sql").write_text("DROP INDEX t_c_idx;\nALTER TABLE t DROP COLUMN c;\n")
    async with stdio_session("--dsn", dsn, "--mode", "dry-run") as session:
        result = await session.call_tool("test_migration", {"files": [str(tmp_path / "0002_add_c.up.sql")]})
        assert not result.is_error, result.content
        rollback = result.structured_content["rollback"]
        assert rollback["verified"] is True and result.structured_content["passed"] is True
        one = await session.call_tool("verify_rollback", {"up": str(tmp_path / "0002_add_c.up.sql")})
        assert not one.is_error, one.content
        assert one.structured_content["verified"] is True
    flyway = tmp_path / "flyway"
    flyway.mkdir()
    (flyway / "V3__drop_index.sql").write_text("DROP INDEX t_a_idx;\n")
    (flyway / "U3__drop_index.sql").write_text("SELECT 1;\n")
    code = main(["rollback-check", str(flyway / "V3__drop_index.sql"), "--dsn", dsn, "--mode", "dry-run",
                 "--format", "json"])
    out = json.loads(capsys.readouterr().out)
    assert code == 1 and out["verified"] is False
    assert out["differences"][0]["object"] == "public.t_a_idx" and out["differences"][0]["change"] == "removed"
    code = main(["dry-run", str(flyway), "--dsn", dsn, "--mode", "dry-run"])
    text = capsys.readouterr().out
    assert code == 1 and "rollback not verified" in text and "t_a_idx" in text
