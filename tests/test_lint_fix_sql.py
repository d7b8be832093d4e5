"""Lint fixes are SQL a user can run, and they make the same schema as the statement they replace.

Each test runs the flagged statement in one fresh database and the rule's fix in another (on tables with
rows, as the owner of the database — an application role, not a superuser), then compares the two schemas
as ``pg_dump --schema-only`` prints them. The fixes come from the zero-downtime patterns where one exists.
"""

from __future__ import annotations

import re
import subprocess
from collections.abc import Iterator
from contextlib import contextmanager

import psycopg
import pytest
from psycopg.rows import dict_row

from agent19.db.binaries import pg_binary
from agent19.db.catalog import snapshot
from agent19.db.child_env import child_connection
from agent19.db.models import SchemaSnapshot
from agent19.db.throwaway import ThrowawayServer
from agent19.migrate.lint.engine import lint_sql
from agent19.migrate.parse import parse_sql as agent19_parse
from tests.conftest import _fresh_database, one, owner_login


@contextmanager
def database(pg: ThrowawayServer, setup: str) -> Iterator[str]:
    """A fresh database owned by a new login role (not a superuser), with ``setup`` run as that role."""
    gen = _fresh_database(pg)
    dsn = next(gen)
    try:
        app = owner_login(dsn)
        with psycopg.connect(app, autocommit=True) as conn:
            conn.execute(setup)  # type: ignore[arg-type]
        yield app
    finally:
        gen.close()


def schema_of(pg: ThrowawayServer, dsn: str) -> str:
    tool = pg_binary("pg_dump", pg.major)
    assert tool, "pg_dump is installed with the server"
    conn, env = child_connection(dsn)
    out = subprocess.run([tool, "--schema-only", "--no-owner", "-d", conn], env=env, check=True,
                         capture_output=True, text=True).stdout
    return "\n".join(line for line in out.splitlines() if not re.match(r"\\(un)?restrict ", line))


def run(dsn: str, sql: str) -> None:
    """Each statement on its own, autocommit (as psql runs a script)."""
    with psycopg.connect(dsn, autocommit=True) as conn:
        conn.execute(sql)  # type: ignore[arg-type]


def fix_of(rule: str, sql: str, pg_version: int = 150000, at: int = -1, catalog: SchemaSnapshot | None = None) -> str:
    report = lint_sql(sql, pg_version=pg_version, catalog=catalog)
    fixes = [f.fix for f in report.statements[at].findings if f.rule == rule and f.fix]
    assert fixes, f"{rule} gives no fix for {sql!r}"
    return fixes[0]


def assert_same_schema(pg: ThrowawayServer, setup: str, original: str, fixed: str) -> None:
    with database(pg, setup) as a, database(pg, setup) as b:
        run(a, original)
        run(b, fixed)
        assert schema_of(pg, a) == schema_of(pg, b)


# -- A19007: NOT VALID + VALIDATE keeps every sub-command of the statement ---------------------------------

SETUP_7 = """
CREATE TABLE "group" (id bigint PRIMARY KEY);
INSERT INTO "group" SELECT g FROM generate_series(1, 50) g;
CREATE TABLE "order" (id bigint PRIMARY KEY, "user" bigint, "Total" numeric);
INSERT INTO "order" SELECT g, 1 + g % 50, g FROM generate_series(1, 500) g;
"""


@pytest.mark.parametrize("sql", [
    'ALTER TABLE "order" ADD COLUMN y int, ADD CONSTRAINT "y positive" CHECK ("Total" > 0), '
    'ADD CONSTRAINT order_user_fkey FOREIGN KEY ("user") REFERENCES "group" (id);',
    'ALTER TABLE "order" ADD COLUMN "select" text DEFAULT \'x\', ADD FOREIGN KEY ("user") REFERENCES "group";',
    'ALTER TABLE public."order" ADD CONSTRAINT c1 CHECK ("Total" >= 0), ALTER COLUMN "Total" SET DEFAULT 0, '
    'ADD COLUMN z int;',
])
def test_a19007_fix_keeps_every_sub_command_and_makes_the_same_schema(pg: ThrowawayServer, sql: str) -> None:
    fix = fix_of("A19007", sql)
    assert "NOT VALID" in fix and "VALIDATE CONSTRAINT" in fix
    assert_same_schema(pg, SETUP_7, sql, fix)


def catalog_of(dsn: str) -> SchemaSnapshot:
    with psycopg.connect(dsn, row_factory=dict_row) as conn:
        return snapshot(conn)


def run_script(dsn: str, script: str) -> None:
    """A fix script statement by statement in autocommit, as psql runs a file (BEGIN/COMMIT/CALL as written)."""
    with psycopg.connect(dsn, autocommit=True) as conn:
        for st in agent19_parse(script):
            conn.execute(st.sql)  # type: ignore[arg-type]


# -- A19005: the change_column_type pattern, its backfill the keyset procedure ------------------------------

SETUP_5 = """
CREATE SCHEMA "My S";
CREATE TABLE "My S"."Order" (id bigint PRIMARY KEY, "user" integer NOT NULL DEFAULT 7, note text);
INSERT INTO "My S"."Order" SELECT g, g * 3, 'n' FROM generate_series(1, 2500) g;
"""


def test_a19005_fix_is_the_shadow_column_pattern_with_a_keyset_backfill_and_runs(pg: ThrowawayServer) -> None:
    sql = 'ALTER TABLE "My S"."Order" ALTER COLUMN "user" TYPE bigint;'
    offline = fix_of("A19005", sql)
    assert "ctid" not in offline and "LIMIT" not in offline
    assert "agent19 backfill" in offline and "NOT NULL" in offline  # says what it cannot know without a database
    with database(pg, SETUP_5) as app:
        fix = fix_of("A19005", sql, catalog=catalog_of(app))
        assert "ctid" not in fix and "CREATE OR REPLACE PROCEDURE" in fix and "CALL " in fix
        run_script(app, fix)
        assert one(app, """SELECT format_type(atttypid, atttypmod) || ' ' || attnotnull || ' '
                                  || pg_get_expr(adbin, adrelid)
                             FROM pg_attribute JOIN pg_attrdef ON adrelid = attrelid AND adnum = attnum
                            WHERE attrelid = '"My S"."Order"'::regclass AND attname = 'user'""") == "bigint true 7"
        assert one(app, 'SELECT count(*) FROM "My S"."Order" WHERE "user" = id * 3') == 2500
        # nothing left behind: no old column, trigger, function or backfill procedure
        assert one(app, """SELECT count(*) FROM pg_attribute WHERE attrelid = '"My S"."Order"'::regclass
                             AND attnum > 0 AND NOT attisdropped""") == 3
        assert one(app, "SELECT count(*) FROM pg_proc WHERE pronamespace <> 'pg_catalog'::regnamespace "
                        "AND pronamespace <> 'information_schema'::regnamespace") == 0
        assert one(app, "SELECT count(*) FROM pg_trigger WHERE NOT tgisinternal") == 0
