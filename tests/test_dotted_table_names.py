"""A table whose own name holds a dot ("we.ird", "my.schema".t) is read where PostgreSQL splits it: by lint's
messages and fixes, the plan's catalog look-ups and the classifier's rollback SQL, all run on a real server."""

from __future__ import annotations

import psycopg
import pytest

from agent19.db.catalog import snapshot
from agent19.migrate.lint.engine import lint_sql
from agent19.migrate.planning.plan import plan_migration
from tests.conftest import session_settings

SETUP = ('CREATE SCHEMA "my.schema"; CREATE TABLE orders (id bigint PRIMARY KEY);'
         'CREATE TABLE "we.ird" (id bigint PRIMARY KEY, order_id bigint, note text);'
         'CREATE TABLE "my.schema".t (id bigint PRIMARY KEY, order_id bigint);'
         'INSERT INTO "we.ird" SELECT g, 1, NULL FROM generate_series(1, 500) g; INSERT INTO orders VALUES (1);'
         'ANALYZE "we.ird"')


def _snap(dsn: str):
    with psycopg.connect(dsn, autocommit=True, row_factory=psycopg.rows.dict_row) as conn:
        return snapshot(conn)


def _run(dsn: str, sql: str) -> None:
    with psycopg.connect(dsn, autocommit=True) as conn:
        conn.execute(sql)


@pytest.mark.parametrize(("table", "shown"), [('"we.ird"', '"we.ird"'), ('"my.schema".t', '"my.schema".t')])
def test_lint_fix_names_the_dotted_table_and_runs(dsn: str, table: str, shown: str) -> None:
    _run(dsn, SETUP)
    report = lint_sql(f"ALTER TABLE {table} ADD CONSTRAINT fk FOREIGN KEY (order_id) REFERENCES orders (id);",
                      catalog=_snap(dsn), pg_version=15)
    fixes = [f.fix for s in report.statements for f in s.findings if f.fix and "CREATE INDEX" in f.fix]
    assert fixes, [f.rule for s in report.statements for f in s.findings]
    assert f" ON {shown} (order_id)" in fixes[0]
    _run(dsn, fixes[0].split(";")[0])  # the fix's index is built on that very table
    with psycopg.connect(dsn, autocommit=True) as conn:
        assert conn.execute("SELECT count(*) FROM pg_index WHERE indrelid = %s::regclass", (table,)).fetchone()[0] == 2


def test_plan_finds_the_dotted_table_in_the_catalog_and_its_rollback_runs(dsn: str) -> None:
    _run(dsn, SETUP)
    plan = plan_migration(sql='ALTER TABLE "we.ird" ADD COLUMN extra int;\n'
                              'ALTER TABLE "my.schema".t RENAME TO t2;\n'
                              'ALTER TABLE "we.ird" RENAME COLUMN note TO remark;\n', catalog=_snap(dsn))
    add, rename, column = plan.operations
    assert add.estimated_rows == 500  # found in the catalog
    assert rename.reverse_sql == 'ALTER TABLE "my.schema".t2 RENAME TO t'
    for op in plan.operations:
        _run(dsn, op.sql)
    for op in reversed(plan.operations):  # the rollback, last operation first, restores the tables
        assert op.reverse_sql, op
        _run(dsn, op.reverse_sql)
    with psycopg.connect(dsn, autocommit=True) as conn:
        cols = conn.execute("SELECT string_agg(attname, ',' ORDER BY attnum) FROM pg_attribute WHERE attrelid = "
                            "'\"we.ird\"'::regclass AND attnum > 0 AND NOT attisdropped").fetchone()[0]
        assert cols == "id,order_id,note"
        assert conn.execute("SELECT to_regclass('\"my.schema\".t') IS NOT NULL").fetchone()[0]


def test_dropping_a_dotted_view_names_the_views_that_read_it(dsn: str) -> None:
    _run(dsn, SETUP + '; CREATE VIEW "my.view" AS SELECT id FROM "we.ird"; '
                      'CREATE VIEW reader AS SELECT id FROM "my.view"')
    plan = plan_migration(sql='DROP VIEW "my.view";', catalog=_snap(dsn))
    evidence = [x for e in plan.escalations for x in e.evidence]
    assert any("it exists (catalog)" in x and "views that read it: public.reader" in x for x in evidence), evidence


def test_dry_run_matches_the_observed_lock_on_a_dotted_table_to_the_prediction(dsn: str) -> None:
    from agent19.db.connection import Database
    from agent19.migrate.dryrun.run import dry_run
    from agent19.migrate.parse import parse_sql

    _run(dsn, SETUP)
    db = Database(session_settings(dsn=dsn, mode="dry-run"))
    try:
        result = dry_run(db, parse_sql('ALTER TABLE "we.ird" ADD COLUMN extra int;'))
    finally:
        db.close()
    (statement,) = result.statements
    assert [(c.relation, c.predicted, c.observed, c.agrees) for c in statement.lock_comparison] == [
        ('"public"."we.ird"', "AccessExclusiveLock", "AccessExclusiveLock", True)]


def test_a_dropped_index_of_a_dotted_table_is_found_and_its_rollback_runs(dsn: str) -> None:
    _run(dsn, SETUP + '; CREATE INDEX "we.idx" ON "we.ird" (order_id)')
    plan = plan_migration(sql='DROP INDEX "we.idx";', catalog=_snap(dsn))
    (drop,) = plan.operations
    assert drop.table == '"public"."we.ird"'  # the index's table, from the catalog
    _run(dsn, drop.sql)
    _run(dsn, drop.reverse_sql)  # the catalog's definition recreates it
    with psycopg.connect(dsn, autocommit=True) as conn:
        assert conn.execute("SELECT to_regclass('\"we.idx\"') IS NOT NULL").fetchone()[0]
