"""The plan's rollback never destroys what predates the migration: CREATE TABLE IF NOT EXISTS of a table that
exists is not undone with DROP TABLE, and a constraint's rollback can be run again. Run on a real server."""

from __future__ import annotations

import psycopg

from agent19.db.catalog import snapshot
from agent19.migrate.planning.plan import plan_migration

MIGRATION = ("CREATE TABLE IF NOT EXISTS keep (id int);\n"
             "CREATE TABLE IF NOT EXISTS fresh (id int);\n"
             "ALTER TABLE keep ADD CONSTRAINT keep_positive CHECK (id > 0);\n")


def _one(dsn: str, sql: str) -> object:
    with psycopg.connect(dsn, autocommit=True) as conn:
        return conn.execute(sql).fetchone()[0]


def _run(dsn: str, sql: str) -> None:
    with psycopg.connect(dsn, autocommit=True) as conn:
        conn.execute(sql)


def test_rollback_keeps_a_table_that_existed_and_runs_twice(dsn: str) -> None:
    _run(dsn, "CREATE TABLE keep (id int); INSERT INTO keep SELECT generate_series(1, 50)")
    with psycopg.connect(dsn, autocommit=True, row_factory=psycopg.rows.dict_row) as conn:
        snap = snapshot(conn)
    plan = plan_migration(sql=MIGRATION, catalog=snap)
    keep, fresh, check = plan.operations
    assert keep.reversible and keep.reverse_sql is None  # it does nothing: nothing to undo
    assert fresh.reverse_sql == "DROP TABLE public.fresh"
    assert plan.rollback.kind == "automatic"
    _run(dsn, plan.sql)
    for step in plan.rollback.steps:
        _run(dsn, step)
    assert _one(dsn, "SELECT count(*) FROM keep") == 50  # the rows that predate the migration are still there
    assert _one(dsn, "SELECT to_regclass('fresh') IS NULL") is True
    assert _one(dsn, "SELECT count(*) FROM pg_constraint WHERE conname = 'keep_positive'") == 0
    _run(dsn, check.reverse_sql)  # a rollback interrupted and run again does not fail on the constraint


def test_without_a_catalog_create_if_not_exists_has_no_automatic_drop(dsn: str) -> None:
    _run(dsn, "CREATE TABLE keep (id int); INSERT INTO keep SELECT generate_series(1, 50)")
    plan = plan_migration(sql=MIGRATION)  # no database: nobody knows whether keep existed
    keep, fresh, _ = plan.operations
    assert not keep.reversible and keep.reverse_sql is None and not fresh.reversible
    assert plan.rollback.kind == "manual" and plan.rollback.irreversible == [1, 2]
    assert not any("DROP TABLE" in s for s in plan.rollback.steps)
    assert "operation 1: IF NOT EXISTS: public.keep may exist before the migration" in plan.rollback.description
    _run(dsn, plan.sql)
    for step in plan.rollback.steps:
        _run(dsn, step)
    assert _one(dsn, "SELECT count(*) FROM keep") == 50
