"""Plan durations calibrated on the connected server, and labelled when they are not.

A table rewrite's duration is rows ÷ rows per second. In dry-run mode agent19 measures that rate on a
sample of each table (copied with its indexes, in a transaction that is rolled back) instead of assuming
it: a table with wide rows must then get a longer estimate per row than a narrow one, where the assumed
rate gives both the same. Every figure says which it is, nothing is left behind, read-only mode writes
nothing and keeps the assumption, and the runbook's self-review counts only a calibrated figure.
"""

from __future__ import annotations

import json

import psycopg
from psycopg.conninfo import conninfo_to_dict

from agent19.config import Settings
from agent19.db.catalog import snapshot
from agent19.db.connection import Database
from agent19.migrate.planning.calibrate import BRIEF_SECONDS, CALIBRATED, calibrate_plan
from agent19.migrate.planning.plan import plan_migration
from agent19.report.build import build_report
from tests.conftest import owner_login, run_sql
from tests.test_runbook import agent19

SETUP = """
CREATE TABLE narrow (id int PRIMARY KEY, n int);
INSERT INTO narrow SELECT g, g FROM generate_series(1, 20000) g;
CREATE TABLE wide (id int PRIMARY KEY, n int, payload text);
ALTER TABLE wide ALTER COLUMN payload SET STORAGE EXTERNAL;  -- stored as written: no compression
INSERT INTO wide SELECT g, g, (SELECT string_agg(md5(g::text || i::text), '') FROM generate_series(1, 40) i)
  FROM generate_series(1, 20000) g;
ANALYZE;
"""
MIGRATION = "ALTER TABLE narrow ALTER COLUMN n TYPE bigint;\nALTER TABLE wide ALTER COLUMN n TYPE bigint;"


def _per_row(op) -> float:
    """Seconds per row of the work (the fixed catalog-change time left out)."""
    return (op.estimated_seconds - BRIEF_SECONDS) / op.estimated_rows


def _leftovers(dsn: str) -> int:
    with psycopg.connect(dsn) as conn:
        return conn.execute("SELECT count(*) FROM pg_class WHERE relname LIKE 'agent19_calibration%'").fetchone()[0]


def _review(plan) -> object:
    return next(i for i in build_report(plan).runbook.checklist if i.name == "Duration is estimated")


def test_a_calibrated_rewrite_follows_the_row_width_of_each_table(dsn):
    run_sql(dsn, SETUP)
    db = Database(Settings.load(dsn=dsn, mode="dry-run", env={}))
    try:
        with db.read() as conn:
            catalog = snapshot(conn)
        assumed = plan_migration(MIGRATION, catalog=catalog)
        narrow, wide = assumed.operations
        assert (narrow.work, narrow.figures, wide.figures) == ("rewrite", "estimated", "estimated")
        assert narrow.duration_basis.startswith("assumed (150,000 rows/s")
        assert abs(_per_row(narrow) - _per_row(wide)) < 1e-6  # one assumed rate for both
        assert _review(assumed).status == "unknown" and "not calibrated" in _review(assumed).evidence

        with db.rolled_back() as conn:
            plan = calibrate_plan(conn, assumed)
    finally:
        db.close()
    narrow, wide = plan.operations
    assert (narrow.figures, wide.figures) == ("calibrated", "calibrated")
    for op in (narrow, wide):
        assert op.duration_basis.startswith(f"{CALIBRATED}: ") and "rows/s measured for a table rewrite" in \
            op.duration_basis, op.duration_basis
        assert "index(es)" in op.duration_basis and "temporary" not in op.duration_basis  # a superuser may CREATE
    # ~1.3 kB per row against ~40 bytes: the server copies the wide rows several times more slowly (about 3.5×
    # idle, 1.9× seen with 8 jobs on 2 cores; the bound only asks that each table has its own, slower, rate)
    assert _per_row(wide) > 1.25 * _per_row(narrow), (narrow.duration_basis, wide.duration_basis)
    assert plan.estimated_seconds == sum(o.estimated_seconds for o in plan.operations)
    assert CALIBRATED in plan.estimated_duration and "assum" not in plan.estimated_duration
    item = _review(plan)
    assert item.status == "satisfied" and CALIBRATED in item.evidence
    step = build_report(plan).runbook.steps[1]
    assert CALIBRATED in step.estimated_time
    assert _leftovers(dsn) == 0  # the sample copies were rolled back


def _user(login: str) -> str:
    return str(conninfo_to_dict(login)["user"])


def test_modes_and_an_application_role_through_the_cli(dsn):
    run_sql(dsn, SETUP)
    app = owner_login(dsn)  # owns the database, its public schema and (below) the tables, not a superuser
    run_sql(dsn, f"ALTER TABLE narrow OWNER TO {_user(app)}; ALTER TABLE wide OWNER TO {_user(app)}")

    def plan(mode: str, login: str) -> dict:
        done = agent19("plan", "--sql", MIGRATION, "--dsn", login, "--mode", mode, "--format", "json",
                       "--write-sample-seconds", "0")
        assert done.returncode == 0, done.stderr
        return json.loads(done.stdout)

    read_only = plan("read-only", app)  # writes nothing: the figures stay assumed and say so
    assert [o["figures"] for o in read_only["operations"]] == ["estimated", "estimated"]
    assert all(o["duration_basis"].startswith("assumed (") for o in read_only["operations"])
    assert "assuming" in read_only["estimated_duration"]

    calibrated = plan("dry-run", app)
    assert [o["figures"] for o in calibrated["operations"]] == ["calibrated", "calibrated"]
    assert all(o["duration_basis"].startswith(CALIBRATED) for o in calibrated["operations"])
    assert calibrated["estimated_duration"].startswith("~") and CALIBRATED in calibrated["estimated_duration"]
    assert "temporary" not in calibrated["operations"][0]["duration_basis"]  # the schema's owner may CREATE there
    assert _leftovers(dsn) == 0

    # a role that may not create tables in the schema: the sample goes to a temporary table, and the figure says
    reader = owner_login(dsn, "cal")  # takes the database and public schema over: give the schema back
    role = _user(reader)
    run_sql(dsn, f"ALTER SCHEMA public OWNER TO {_user(app)}; REVOKE CREATE ON SCHEMA public FROM PUBLIC; "
                 f"GRANT USAGE ON SCHEMA public TO {role}; GRANT SELECT ON narrow, wide TO {role}")
    temporary = plan("dry-run", reader)
    assert all("temporary table" in o["duration_basis"] for o in temporary["operations"]), temporary["operations"]
    assert all(o["figures"] == "calibrated" for o in temporary["operations"])


async def test_plan_over_mcp_is_calibrated_in_dry_run_mode_and_assumed_in_read_only_mode(dsn):
    """Read-only mode writes nothing (not even a rolled-back sample copy): the rewrites stay assumed and say why;
    a scan is calibrated there by reading the sample, which is the work a scan does."""
    from tests.mcp_client import stdio_session

    run_sql(dsn, SETUP)
    # any DDL agent19 attempted (the sample copy, even rolled back) fails here: read-only must not try one
    run_sql(dsn, "CREATE FUNCTION no_ddl() RETURNS event_trigger LANGUAGE plpgsql AS $$ BEGIN "
                 "RAISE EXCEPTION 'DDL attempted: %', tg_tag; END $$; "
                 "CREATE EVENT TRIGGER no_ddl ON ddl_command_start EXECUTE FUNCTION no_ddl()")
    sql = MIGRATION + "\nALTER TABLE narrow ADD CONSTRAINT narrow_n CHECK (n > 0);"
    args = {"sql": sql, "write_sample_seconds": 0, "detail": "full"}
    async with stdio_session("--dsn", dsn, "--mode", "read-only") as session:
        r = await session.call_tool("plan_migration", args)
        assert not r.is_error, r.content
        read_only = r.structured_content
    narrow, wide, check = read_only["operations"]
    assert (narrow["work"], wide["work"], check["work"]) == ("rewrite", "rewrite", "scan")
    for op in (narrow, wide):  # assumed, saying why, and not "calibration failed": nothing was attempted
        assert op["figures"] == "estimated" and op["duration_basis"].startswith("assumed ("), op
        assert "read-only mode: measuring a table rewrite needs a write" in op["duration_basis"], op
    assert check["figures"] == "calibrated" and check["duration_basis"].startswith(CALIBRATED), check
    assert "nothing written" in check["duration_basis"] and "rolled back" not in check["duration_basis"]
    assert "2 assumed" in read_only["estimated_duration"], read_only["estimated_duration"]

    run_sql(dsn, "DROP EVENT TRIGGER no_ddl")
    async with stdio_session("--dsn", dsn, "--mode", "dry-run") as session:
        r = await session.call_tool("plan_migration", args)
        assert not r.is_error, r.content
        dry_run = r.structured_content
    assert [o["figures"] for o in dry_run["operations"]] == ["calibrated"] * 3
    assert all(o["duration_basis"].startswith(CALIBRATED) for o in dry_run["operations"])
    assert CALIBRATED in dry_run["estimated_duration"] and "assumed" not in dry_run["estimated_duration"]
    assert _leftovers(dsn) == 0
