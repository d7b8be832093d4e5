"""Planning a CREATE INDEX the live database already has (r25c L6): ``orders_status_idx`` exists, and the plan of
``CREATE INDEX CONCURRENTLY orders_status_idx ON orders (status)`` said risk low, deployment immediate — the
statement fails ("relation already exists"). The same columns under a new name is a duplicate index."""

from __future__ import annotations

import psycopg

from agent19.db.catalog import snapshot
from agent19.migrate.planning.plan import plan_migration
from tests.conftest import owner_login, run_sql


def _snap(dsn: str):
    with psycopg.connect(dsn, autocommit=True, row_factory=psycopg.rows.dict_row) as conn:
        return snapshot(conn)


def test_an_index_that_exists_is_said_to_fail_and_a_same_definition_to_duplicate(dsn):
    app = owner_login(dsn)
    run_sql(app, "CREATE TABLE orders (id int PRIMARY KEY, status text, note text); "
                 "CREATE INDEX orders_status_idx ON orders (status)")
    catalog = _snap(app)
    plan = plan_migration(sql="CREATE INDEX CONCURRENTLY orders_status_idx ON orders (status)", catalog=catalog)
    [found] = [f for f in plan.findings if f.rule == "already-exists"]
    assert found.severity == "error" and "public.orders_status_idx already exists" in found.message, found
    assert "the statement fails" in found.message
    assert plan.risk_level != "low" and plan.deployment.kind != "immediate", plan.deployment
    with psycopg.connect(app, autocommit=True) as conn:  # what the finding says
        try:
            conn.execute(plan.operations[0].sql)
            raise AssertionError("it ran")
        except psycopg.errors.DuplicateTable:
            pass

    same = plan_migration(sql="CREATE INDEX CONCURRENTLY orders_status2_idx ON orders (status)", catalog=catalog)
    [dup] = [f for f in same.findings if f.rule == "duplicate-index"]
    assert "orders_status_idx already indexes public.orders (status)" in dup.message, dup

    quiet = plan_migration(sql="CREATE INDEX CONCURRENTLY IF NOT EXISTS orders_status_idx ON orders (status)",
                           catalog=catalog)
    assert any("does nothing" in f.message for f in quiet.findings if f.rule == "already-exists")
    other = plan_migration(sql="CREATE INDEX CONCURRENTLY orders_note_idx ON orders (note);"
                               "DROP INDEX CONCURRENTLY orders_status_idx;"
                               "CREATE INDEX CONCURRENTLY orders_status_idx ON orders (lower(status))",
                           catalog=catalog)
    assert [f for f in other.findings if f.rule in ("already-exists", "duplicate-index")] == []
