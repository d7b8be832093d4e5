"""A table name means the same table in `agent19 pattern`, `agent19 backfill` and change lists, and a change list's
rollback leaves nothing of the migration behind.

* Raw names as the catalog stores them (``Order``, ``My Schema.order items``) and SQL with double quotes
  (``"My Schema"."a.b"``) are read the same way by the pattern tool and the backfill; both run on the table
  meant, on a real server, as a non-superuser owner. ``a.b.c`` is refused as ambiguous, with both readings.
* plan_migration of a change list with a data migration: the forward SQL runs, then the rollback SQL runs;
  the keyset backfill procedure is gone, and the checkpoint table (shared with other backfills) is kept.
"""

from __future__ import annotations

import shlex
import subprocess
import sys
from pathlib import Path

import psycopg
import pytest
from psycopg.rows import dict_row

from agent19.db.catalog import snapshot
from agent19.errors import InputError
from agent19.migrate.backfill.executor import BackfillSpec, run_backfill
from agent19.migrate.parse import parse_sql
from agent19.migrate.patterns.runner import run_pattern
from agent19.migrate.planning.model import Change
from agent19.migrate.planning.plan import plan_migration
from agent19.report.steps import build_steps
from agent19.tools.patterns import PatternArgs, build_pattern
from tests.conftest import one, owner_login, run_sql
from tests.mcp_client import stdio_session

ROOT = Path(__file__).resolve().parent.parent


def cli(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "agent19", *args], cwd=ROOT, capture_output=True, text=True,
                          timeout=120)


@pytest.mark.parametrize(("given", "sql"), [
    ("Order", '"Order"'), ("order", '"order"'), ("My Schema.order items", '"My Schema"."order items"'),
    ('"My Schema"."a.b"', '"My Schema"."a.b"'), ('public."Order"', 'public."Order"'),
    ("public.orders", "public.orders"),
    ('"My Schema".Orders', '"My Schema".orders'), ('we"ird', '"we""ird"'),
])
def test_pattern_and_backfill_read_a_table_name_the_same_way(given: str, sql: str) -> None:
    pattern = build_pattern(PatternArgs(kind="set_not_null", table=given, column="c", backfill="0"), 15)
    assert pattern.phases[0].backfill is not None
    assert BackfillSpec(table=pattern.phases[0].backfill.table, set="c = 0").table == sql
    assert BackfillSpec(table=given, set="c = 0").table == sql
    assert f"ALTER TABLE {sql} ADD CONSTRAINT" in pattern.to_sql()
    line = next(x for x in pattern.to_sql().splitlines() if "agent19 backfill " in x)
    assert shlex.split(line.partition("agent19 backfill ")[2])[0] == sql  # the command it names


def test_a_dotted_table_in_a_quoted_schema_is_the_one_both_tools_change(dsn: str) -> None:
    app = owner_login(dsn)
    run_sql(app, 'CREATE SCHEMA "My Schema"; CREATE TABLE "My Schema"."a.b" (id bigint PRIMARY KEY, c int); '
                 'INSERT INTO "My Schema"."a.b" SELECT g, CASE WHEN g % 2 = 0 THEN g END '
                 "FROM generate_series(1, 300) g; "
                 'CREATE SCHEMA a; CREATE TABLE a.b (id bigint PRIMARY KEY, c int); INSERT INTO a.b VALUES (1, NULL)')
    name = '"My Schema"."a.b"'
    with psycopg.connect(app, autocommit=True) as conn:
        run_backfill(conn, BackfillSpec(table=name, set="c = -1", where="c IS NULL", batch_size=50))
        pattern = build_pattern(PatternArgs(kind="set_not_null", table=name, column="c"), 15)
        run_pattern(conn, pattern, dsn=app)
    assert one(app, 'SELECT count(*) FROM "My Schema"."a.b" WHERE c = -1') == 150
    assert one(app, "SELECT attnotnull FROM pg_attribute WHERE attrelid = '\"My Schema\".\"a.b\"'::regclass "
                    "AND attname = 'c'") is True
    assert one(app, "SELECT c IS NULL FROM a.b") is True  # the other reading of the name was not touched


def test_an_ambiguous_table_name_is_refused_with_both_readings() -> None:
    for args in (("pattern", "set_not_null", "a.b.c", "--column", "x"),
                 ("backfill", "a.b.c", "--set", "x = 1", "--emit", "python")):
        out = cli(*args)
        assert out.returncode == 2, out.stdout + out.stderr
        assert "ambiguous" in out.stderr and 'a."b.c"' in out.stderr and '"a.b".c' in out.stderr, out.stderr
    with pytest.raises(InputError, match="ambiguous"):
        plan_migration(changes=[Change(type="drop_column", table="a.b.c", column={"name": "x", "type": "int"})])
    # written as SQL, the same name is not ambiguous
    plan = plan_migration(changes=[Change(type="drop_column", table='a."b.c"', column={"name": "x", "type": "int"})])
    assert 'ALTER TABLE a."b.c" DROP COLUMN x' in plan.sql


# -- the change list's rollback ----------------------------------------------------------------------------

def test_change_list_rollback_drops_the_backfill_procedure_and_keeps_the_shared_checkpoints(dsn: str) -> None:
    app = owner_login(dsn)
    run_sql(app, 'CREATE TABLE "Order" (id bigint PRIMARY KEY, "user" int); '
                 'INSERT INTO "Order" SELECT g, g FROM generate_series(1, 400) g; '
                 "CREATE TABLE other (id bigint PRIMARY KEY, v int); INSERT INTO other VALUES (1, NULL)")
    with psycopg.connect(app, autocommit=True) as conn:  # another team's finished backfill: its checkpoint row
        run_backfill(conn, BackfillSpec(table="other", set="v = 1", where="v IS NULL"))
    with psycopg.connect(app, row_factory=dict_row) as conn:
        catalog = snapshot(conn)
    changes = [Change.model_validate(c) for c in [
        {"type": "add_column", "table": "Order", "column": {"name": "Total", "type": "numeric", "nullable": False}},
        {"type": "data_migration", "table": "Order", "set": '"Total" = "user" * 2', "where": '"Total" IS NULL',
         "batch_size": 64},
    ]]
    plan = plan_migration(changes=changes, catalog=catalog, options=None)
    assert "CREATE OR REPLACE PROCEDURE" in plan.sql and "ctid" not in plan.sql
    assert any(s.startswith("DROP PROCEDURE IF EXISTS agent19_backfill_") for s in plan.rollback.steps)
    assert not any("agent19_backfill_checkpoint" in s for s in plan.rollback.steps)
    with psycopg.connect(app, autocommit=True) as conn:
        for st in parse_sql(plan.sql):
            conn.execute(st.sql)  # type: ignore[arg-type]
    assert one(app, 'SELECT count(*) FROM "Order" WHERE "Total" = "user" * 2') == 400
    assert one(app, "SELECT count(*) FROM pg_proc WHERE proname LIKE 'agent19_backfill_%'") == 1
    with psycopg.connect(app, autocommit=True) as conn:
        for step in plan.rollback.steps:
            conn.execute(step)  # type: ignore[arg-type]
    assert one(app, "SELECT count(*) FROM pg_proc WHERE proname LIKE 'agent19_backfill_%'") == 0
    assert one(app, "SELECT count(*) FROM pg_attribute WHERE attrelid = '\"Order\"'::regclass "
                    "AND attname = 'Total' AND NOT attisdropped") == 0
    assert one(app, "SELECT count(*) FROM agent19_backfill_checkpoint WHERE table_name = 'public.other'") == 1


# -- the runbook's safer alternative reads the statement's table as SQL ------------------------------------

def test_runbook_alternative_for_a_table_named_a_dot_b_changes_that_table(dsn: str) -> None:
    app = owner_login(dsn)
    run_sql(app, 'CREATE TABLE "a.b" (id bigint PRIMARY KEY, n integer NOT NULL DEFAULT 0); '
                 'INSERT INTO "a.b" SELECT g, g FROM generate_series(1, 300) g; '
                 "CREATE SCHEMA a; CREATE TABLE a.b (id bigint PRIMARY KEY, n integer)")
    with psycopg.connect(app, row_factory=dict_row) as conn:
        catalog = snapshot(conn)
    plan = plan_migration('ALTER TABLE "a.b" ALTER COLUMN n TYPE bigint;', catalog=catalog)
    (step,) = build_steps(plan, catalog, None)
    (alternative,) = step.fixes
    assert 'ALTER TABLE "a.b" ADD COLUMN n_new bigint' in alternative, alternative
    assert "ALTER TABLE a.b " not in alternative and "CREATE OR REPLACE PROCEDURE" in alternative
    with psycopg.connect(app, autocommit=True) as conn:
        for st in parse_sql(alternative):
            conn.execute(st.sql)  # type: ignore[arg-type]
    assert one(app, "SELECT format_type(atttypid, atttypmod) || ' ' || attnotnull FROM pg_attribute "
                    "WHERE attrelid = '\"a.b\"'::regclass AND attname = 'n'") == "bigint true"
    assert one(app, 'SELECT count(*) FROM "a.b" WHERE n = id') == 300
    assert one(app, "SELECT format_type(atttypid, atttypmod) FROM pg_attribute "
                    "WHERE attrelid = 'a.b'::regclass AND attname = 'n'") == "integer"


# -- over MCP, as a client calls the two tools --------------------------------------------------------------

async def test_mcp_pattern_and_backfill_change_the_same_quoted_table(dsn: str) -> None:
    app = owner_login(dsn)
    run_sql(app, 'CREATE TABLE "Order" (id bigint PRIMARY KEY, note text); CREATE TABLE "order" (id bigint '
                 "PRIMARY KEY, note text); INSERT INTO \"Order\" SELECT g, NULL FROM generate_series(1, 120) g; "
                 "INSERT INTO \"order\" VALUES (1, NULL)")
    async with stdio_session("--dsn", app, "--mode", "execute") as session:
        p = await session.call_tool("zero_downtime_pattern", {"kind": "set_not_null", "table": "Order",
                                                               "column": "note", "backfill": "'filled'"})
        assert not p.is_error, p.content
        assert 'ALTER TABLE "Order" ADD CONSTRAINT' in p.structured_content["sql"]
        b = await session.call_tool("run_backfill", {"table": "Order", "set": "note = 'filled'",
                                                     "where": "note IS NULL"})
        assert not b.is_error, b.content
        assert b.structured_content["table"] == 'public."Order"'
        bad = await session.call_tool("run_backfill", {"table": "a.b.c", "set": "note = 'x'"})
        assert bad.is_error and "ambiguous" in str(bad.content)
    assert one(app, 'SELECT count(*) FROM "Order" WHERE note = \'filled\'') == 120
    assert one(app, 'SELECT note IS NULL FROM "order"') is True  # Order is not order
