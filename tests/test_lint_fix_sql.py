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
from agent19.migrate.lint.engine import lint_sql
from agent19.migrate.parse import parse_sql as agent19_parse
from tests.conftest import _fresh_database, one, owner_login
from tools.throwaway import ThrowawayServer


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


# -- A19024: one ALTER TABLE built from both statements' sub-commands ---------------------------------------

def test_a19024_fix_is_one_alter_with_both_statements_sub_commands(pg: ThrowawayServer) -> None:
    sql = ('ALTER TABLE "order" ADD COLUMN note text, ALTER COLUMN "Total" SET DEFAULT 0;\n'
           'ALTER TABLE "order" ADD COLUMN "Tag" text DEFAULT \'x\', ADD CONSTRAINT "c 1" CHECK (note <> \'\') '
           "NOT VALID;")
    fix = fix_of("A19024", sql)
    assert not placeholders(fix) and fix.count("ALTER TABLE") == 1, fix
    assert_same_schema(pg, SETUP_7, sql, fix)
    # a statement that alters what the earlier one adds is not combined (PostgreSQL orders sub-commands itself)
    dependent = 'ALTER TABLE "order" ADD COLUMN a int;\nALTER TABLE "order" ALTER COLUMN a TYPE bigint;'
    assert not [f for f in lint_sql(dependent, pg_version=150000).statements[1].findings if f.rule == "A19024"]


# -- A19021: the statement with the default to fill in; a primary key through the patterns ------------------

def test_a19021_fix_keeps_the_statement_and_names_the_value_to_fill_in(pg: ThrowawayServer) -> None:
    sql = 'ALTER TABLE "order" ADD COLUMN "Currency" text NOT NULL CHECK ("Currency" <> \'\'), ADD COLUMN y int;'
    fix = fix_of("A19021", sql)
    assert "<value for existing rows>" in fix and "fill in <value for existing rows>" in fix
    runnable = "\n".join(line for line in fix.splitlines() if not line.startswith("--"))
    assert parses_not(runnable), "the placeholder must not parse as something else"
    with database(pg, SETUP_7) as a, database(pg, SETUP_7) as b:
        with pytest.raises(psycopg.errors.NotNullViolation):
            run(a, sql)
        run(a, sql.replace("NOT NULL", "NOT NULL DEFAULT 'EUR'"))
        run(b, runnable.replace("<value for existing rows>", "'EUR'"))
        assert schema_of(pg, a) == schema_of(pg, b)
        assert one(b, 'SELECT count(*) FROM "order" WHERE "Currency" = \'EUR\'') == 500


def test_a19021_primary_key_fix_runs_once_the_key_expression_is_filled_in(pg: ThrowawayServer) -> None:
    sql = 'ALTER TABLE "group" ADD COLUMN "Key" bigint PRIMARY KEY;'
    setup = ('CREATE TABLE "group" (id bigint, v text); '
             'INSERT INTO "group" SELECT g, \'v\' FROM generate_series(1, 90) g;')
    fix = fix_of("A19021", sql)
    assert "<a distinct value for each row>" in fix and "USING INDEX" in fix
    filled = fix.replace("<a distinct value for each row>", "id * 10")
    with database(pg, setup) as app:
        # the backfill phase names `agent19 backfill`: run its UPDATE the same way, then the rest of the script
        head, _, tail = filled.partition("-- 2. ")
        run_script(app, head)
        run(app, 'UPDATE "group" SET "Key" = id * 10 WHERE "Key" IS NULL')
        run_script(app, "-- 2. " + tail)
        assert one(app, """SELECT pg_get_constraintdef(oid) FROM pg_constraint
                            WHERE conrelid = '"group"'::regclass AND contype = 'p'""") == 'PRIMARY KEY ("Key")'


def placeholders(fix: str) -> list[str]:
    """``<what to fill in>`` left in the statements of a fix (its comment lines may name them)."""
    return re.findall(r"<[a-z][a-z ]*[a-z]>", "\n".join(x for x in fix.splitlines() if not x.lstrip().startswith("--")))


def parses_not(sql: str) -> bool:
    try:
        agent19_parse(sql)
    except Exception:  # noqa: BLE001 — pglast's ParseError or agent19's InputError: either way it does not parse
        return True
    return False


# -- A19013: the rename patterns -------------------------------------------------------------------------

SETUP_13 = """
CREATE SCHEMA "My S";
CREATE TABLE "My S"."Order" (id bigint PRIMARY KEY, "Total" numeric(12,2) NOT NULL DEFAULT 0, note text);
INSERT INTO "My S"."Order" SELECT g, g, 'n' FROM generate_series(1, 700) g;
"""


def test_a19013_column_rename_fix_is_the_expand_contract_pattern_with_the_live_column(pg: ThrowawayServer) -> None:
    sql = 'ALTER TABLE "My S"."Order" RENAME COLUMN "Total" TO "select";'
    offline = fix_of("A19013", sql)
    assert "fill in <column type>" in offline and "RENAME COLUMN" not in offline
    with database(pg, SETUP_13) as a, database(pg, SETUP_13) as b:
        fix = fix_of("A19013", sql, catalog=catalog_of(b))
        assert not placeholders(fix), fix
        head, _, tail = fix.partition("-- 3. ")
        run_script(b, head)
        run(b, 'UPDATE "My S"."Order" SET "select" = "Total" WHERE "select" IS DISTINCT FROM "Total"')
        run_script(b, "-- 3. " + tail)
        run(a, sql)
        assert one(b, 'SELECT count(*) FROM "My S"."Order" WHERE "select" = id') == 700
        # the same column as the rename makes (type, NOT NULL, default), except its position: it is a new column
        column = """SELECT format_type(atttypid, atttypmod) || ' ' || attnotnull || ' ' || pg_get_expr(adbin, adrelid)
                      FROM pg_attribute JOIN pg_attrdef ON adrelid = attrelid AND adnum = attnum
                     WHERE attrelid = '"My S"."Order"'::regclass AND attname = 'select'"""
        assert one(b, column) == one(a, column) == "numeric(12,2) true 0"
        assert one(b, "SELECT count(*) FROM pg_trigger WHERE NOT tgisinternal") == 0


def test_a19013_table_rename_fix_keeps_the_old_name_working_until_the_contract_phase(pg: ThrowawayServer) -> None:
    sql = 'ALTER TABLE "My S"."Order" RENAME TO "Order v2";'
    fix = fix_of("A19013", sql)
    expand, _, contract = fix.partition("-- >>> deploy the application before the next phase <<<")
    assert contract, fix
    with database(pg, SETUP_13) as app:
        run_script(app, expand)
        run(app, "INSERT INTO \"My S\".\"Order\" (id, note) VALUES (9999, 'old client')")  # through the view
        assert one(app, 'SELECT note FROM "My S"."Order v2" WHERE id = 9999') == "old client"
        run_script(app, contract)
        assert one(app, """SELECT to_regclass('"My S"."Order"') IS NULL""") is True


# -- A19009: add_check pattern for the bound, then an attach the server proves without a scan ----------------

SETUP_9 = """
CREATE TABLE "Measure" (d date NOT NULL, v int) PARTITION BY RANGE (d);
CREATE TABLE "Measure 2024" (d date NOT NULL, v int);
INSERT INTO "Measure 2024" SELECT '2024-01-01'::date + g % 300, g FROM generate_series(1, 1000) g;
CREATE TABLE h (k int, v int) PARTITION BY HASH (k);
CREATE TABLE h0 (k int, v int);
INSERT INTO h0 SELECT g, g FROM generate_series(1, 400) g WHERE satisfies_hash_partition('h'::regclass, 4, 0, g);
"""


@pytest.mark.parametrize("sql", [
    'ALTER TABLE "Measure" ATTACH PARTITION "Measure 2024" FOR VALUES FROM (\'2024-01-01\') TO (\'2025-01-01\');',
    "ALTER TABLE h ATTACH PARTITION h0 FOR VALUES WITH (MODULUS 4, REMAINDER 0);",
])
def test_a19009_fix_attaches_without_scanning_and_makes_the_same_schema(pg: ThrowawayServer, sql: str) -> None:
    with database(pg, SETUP_9) as a, database(pg, SETUP_9) as b:
        fix = fix_of("A19009", sql, catalog=catalog_of(b))
        assert not placeholders(fix), fix
        notices: list[str] = []
        with psycopg.connect(b, autocommit=True) as conn:
            conn.add_notice_handler(lambda d: notices.append(d.message_primary or ""))
            conn.execute("SET client_min_messages = debug1")
            for st in agent19_parse(fix):
                conn.execute(st.sql)  # type: ignore[arg-type]
        assert any("is implied by existing constraints" in n for n in notices), notices  # the server says: no scan
        run(a, sql)
        assert schema_of(pg, a) == schema_of(pg, b)


def test_a19009_offline_fix_takes_the_key_from_the_migration_or_says_what_to_fill_in() -> None:
    created = ("CREATE TABLE m (d date, v int) PARTITION BY RANGE (d);\n"
               "ALTER TABLE m ATTACH PARTITION old_m FOR VALUES FROM ('2024-01-01') TO ('2025-01-01');")
    assert "CHECK (d IS NOT NULL AND d >= '2024-01-01'" in fix_of("A19009", created)
    unknown = fix_of("A19009", "ALTER TABLE m ATTACH PARTITION old_m FOR VALUES FROM ('2024-01-01') TO ('2025-01-01');")
    assert "fill in <partition key>" in unknown and "pg_get_partkeydef('m'::regclass)" in unknown


# -- A19022 / A19023: the statement itself, corrected on its syntax tree ------------------------------------

def test_a19022_and_a19023_fixes_are_the_corrected_statement_and_run(dsn: str) -> None:
    sql = ('CREATE TABLE "My Inv" ("ID" serial, "order" int, meta json, tags json[], '
           'PRIMARY KEY ("ID", "order"));')
    fix22, fix23 = fix_of("A19022", sql), fix_of("A19023", sql)
    assert '"ID" bigint GENERATED BY DEFAULT AS IDENTITY' in fix22 and '"order" bigint' in fix22
    assert "meta jsonb" in fix23 and "tags jsonb[]" in fix23
    app = owner_login(dsn)
    run(app, fix22)
    run(app, 'INSERT INTO "My Inv" ("order", meta) VALUES (1, \'{}\'); INSERT INTO "My Inv" VALUES (10, 2, \'{}\')')
    assert one(app, """SELECT string_agg(attname || ' ' || format_type(atttypid, atttypmod) || attidentity::text, ', '
                                         ORDER BY attnum)
                         FROM pg_attribute WHERE attrelid = '"My Inv"'::regclass AND attnum > 0""") == \
        "ID bigintd, order bigint, meta json, tags json[]"
    run(app, fix23.replace('"My Inv"', '"My Inv 2"'))
    assert one(app, """SELECT string_agg(format_type(atttypid, atttypmod), ', ' ORDER BY attnum)
                         FROM pg_attribute WHERE attrelid = '"My Inv 2"'::regclass AND attnum > 0""") == \
        "integer, integer, jsonb, jsonb[]"


# -- A19018: the full-table UPDATE as the keyset backfill -------------------------------------------------

def test_a19018_fix_is_the_keyset_backfill_and_updates_every_row_once(pg: ThrowawayServer) -> None:
    sql = 'UPDATE "My S"."Order" SET note = \'migrated\', "user" = "user" + 1;'
    offline = fix_of("A19018", sql)
    assert "ctid" not in offline and "agent19 backfill '\"My S\".\"Order\"'" in offline
    with database(pg, SETUP_5) as app:
        fix = fix_of("A19018", sql, catalog=catalog_of(app))
        assert "ctid" not in fix and "CALL " in fix and not placeholders(fix)
        run_script(app, fix)
        assert one(app, 'SELECT count(*) FROM "My S"."Order" WHERE note = \'migrated\' AND "user" = id * 3 + 1') == 2500
        assert one(app, "SELECT count(*) FROM pg_proc WHERE proname LIKE 'agent19_backfill_%'") == 0
