"""Figures are measured or labelled: the runbook's self-review never marks an item satisfied on an assumption,
and explain never claims a saving larger than the query took."""

from __future__ import annotations

import psycopg
from psycopg.rows import dict_row

from agent19.config import Settings
from agent19.db import Database
from agent19.db.catalog import snapshot
from agent19.migrate.planning.plan import plan_migration
from agent19.optimize.diagnostics import diagnose
from agent19.optimize.explain import explain
from agent19.report.build import build_report
from tests.conftest import run_sql
from tests.test_optimize_dataset import shop_dsn


def test_an_assumed_duration_is_not_a_satisfied_review_item(dsn: str) -> None:
    run_sql(dsn, "CREATE TABLE t (id bigint PRIMARY KEY, v integer); "
                 "INSERT INTO t SELECT g, g FROM generate_series(1, 1000) g; ANALYZE t")
    with psycopg.connect(dsn, row_factory=dict_row) as conn:
        catalog = snapshot(conn)
    plan = plan_migration("ALTER TABLE t ALTER COLUMN v TYPE bigint;", catalog=catalog)
    assert plan.estimated_seconds is not None and "assuming" in plan.estimated_duration
    items = {i.name: i for i in build_report(plan, catalog=catalog).handoff.checklist}
    item = items["Duration is estimated"]
    assert item.status == "unknown" and "assumed" in item.evidence, item


def test_a_parallel_query_is_never_said_to_save_more_than_it_took(pg) -> None:  # type: ignore[no-untyped-def]
    db = Database(Settings.load(dsn=shop_dsn(pg), mode="read-only"))
    try:
        run = explain(db, "SELECT * FROM orders WHERE status = 'refunded' AND amount > 500",
                      settings=["jit=off", "max_parallel_workers_per_gather=4", "parallel_setup_cost=0",
                                "parallel_tuple_cost=0", "min_parallel_table_scan_size=0"])
    finally:
        db.close()
    total = run.plan.execution_ms
    found = diagnose(run)
    assert total and found
    assert all(d.saving_ms is None or d.saving_ms <= total for d in found), [(d.code, d.saving_ms, total)
                                                                             for d in found]
