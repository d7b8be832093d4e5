"""The runbook's "Safer alternative" is one coherent alternative per step: the zero-downtime pattern's phases
filled from the live catalog, or the most severe finding's fix alone — never several fixes pasted together."""

from __future__ import annotations

import psycopg
from pglast import parse_sql
from psycopg.rows import dict_row

from agent19.db.catalog import snapshot
from agent19.migrate.planning.plan import plan_migration
from agent19.report.steps import build_steps
from tests.conftest import one, run_sql

SCHEMA = """
CREATE TABLE users (id bigint PRIMARY KEY, full_name text NOT NULL DEFAULT '', legacy text, n integer NOT NULL
                    DEFAULT 0, email text);
INSERT INTO users SELECT g, 'n' || g, 'l', g, 'e' || g FROM generate_series(1, 200) g;
ANALYZE users;
"""


def _alternative(dsn: str, sql: str) -> str:
    with psycopg.connect(dsn, row_factory=dict_row) as conn:
        catalog = snapshot(conn)
    plan = plan_migration(sql, catalog=catalog)
    steps = build_steps(plan, catalog, None)
    assert len(steps) == 1 and len(steps[0].fixes) == 1, [s.fixes for s in steps]
    return steps[0].fixes[0]


def test_rename_alternative_is_expand_contract_with_the_live_type_and_no_rename(dsn: str) -> None:
    run_sql(dsn, SCHEMA)
    alt = _alternative(dsn, "ALTER TABLE users RENAME COLUMN full_name TO display_name;")
    parse_sql(alt)
    assert "ADD COLUMN display_name text" in alt and "RENAME COLUMN full_name TO display_name" not in alt
    assert "<type of" not in alt  # the type came from the database
    assert "NOT NULL" in alt and "DEFAULT ''" in alt  # carried from the live column


def test_type_change_alternative_adds_a_shadow_column_and_never_rewrites(dsn: str) -> None:
    run_sql(dsn, SCHEMA)
    alt = _alternative(dsn, "ALTER TABLE users ALTER COLUMN n TYPE bigint;")
    parse_sql(alt)
    assert "ADD COLUMN n_new bigint" in alt and "ALTER COLUMN n TYPE" not in alt
    assert "ALTER COLUMN n_new SET NOT NULL" in alt and "SET DEFAULT 0" in alt  # NOT NULL and default carried


def test_drop_column_alternative_drops_it_once(dsn: str) -> None:
    run_sql(dsn, SCHEMA)
    alt = _alternative(dsn, "ALTER TABLE users DROP COLUMN legacy;")
    assert alt.count("DROP COLUMN") <= 1, alt


def test_set_not_null_alternative_runs_on_the_server(dsn: str) -> None:
    run_sql(dsn, SCHEMA)
    alt = _alternative(dsn, "ALTER TABLE users ALTER COLUMN email SET NOT NULL;")
    run_sql(dsn, alt)
    assert one(dsn, "SELECT attnotnull FROM pg_attribute WHERE attrelid = 'users'::regclass "
                    "AND attname = 'email'") is True


def test_alternatives_for_reserved_and_mixed_case_names_parse_and_run(dsn: str) -> None:
    run_sql(dsn, 'CREATE TABLE "order" (id bigint PRIMARY KEY, "user" integer, "Total" integer NOT NULL DEFAULT 1);'
                 'INSERT INTO "order" SELECT g, g, g FROM generate_series(1, 50) g; ANALYZE "order"')
    alt = _alternative(dsn, 'ALTER TABLE "order" ALTER COLUMN "user" SET NOT NULL;')
    assert 'CHECK ("user" IS NOT NULL)' in alt
    run_sql(dsn, alt)
    alt = _alternative(dsn, 'ALTER TABLE "order" ALTER COLUMN "Total" TYPE bigint;')
    assert 'ADD COLUMN "Total_new" bigint' in alt and 'SET DEFAULT 1' in alt
    parse_sql(alt)
