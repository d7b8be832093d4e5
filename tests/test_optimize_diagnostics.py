"""Plan diagnostics on a real server: each situation is built and reported with its evidence."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from agent19.config import Settings
from agent19.db import Database
from agent19.errors import InputError
from agent19.optimize.diagnostics import Diagnostic, diagnose
from agent19.optimize.explain import explain
from agent19.optimize.plan import render_plan
from tests.test_optimize_dataset import shop_dsn

FORCE_OFF_JIT = ["jit=off"]  # disabled plan types inflate costs, which would switch JIT on


@pytest.fixture(scope="module")
def db(pg) -> Iterator[Database]:
    database = Database(Settings.load(dsn=shop_dsn(pg), mode="read-only"))
    yield database
    database.close()


def diagnostics(db: Database, sql: str, *settings: str) -> dict[str, Diagnostic]:
    run = explain(db, sql, settings=list(settings))
    found = diagnose(run)
    assert render_plan(run.plan).startswith("[#0]")
    return {d.code: d for d in found}


def test_selective_sequential_scan(db):
    where = "status = 'refunded' AND amount > 500"
    d = diagnostics(db, f"SELECT * FROM orders WHERE {where}")["seq_scan_selective"]
    assert d.node == "Seq Scan on orders"
    assert d.evidence["rows_read"] == 300_000
    assert d.evidence["rows_returned"] == db.execute_read(f"SELECT count(*) AS n FROM orders WHERE {where}")[0]["n"]
    assert d.evidence["removed_share"] > 0.99
    assert d.severity in {"medium", "high"} and "90 %" in d.threshold


def test_misestimate_of_correlated_columns_suggests_extended_statistics(db):
    d = diagnostics(db, "SELECT id FROM orders WHERE region = 7 AND zone = 7")["row_misestimate"]
    loops = d.evidence["loops"]  # a parallel scan reports rows per process
    assert d.evidence["actual_rows"] * loops == 3000
    assert d.evidence["estimated_rows"] * loops < 300
    assert d.evidence["factor"] >= 10
    assert "CREATE STATISTICS ON region, zone FROM orders" in d.advice


def test_sort_spill_suggests_work_mem_from_the_spill_size(db):
    d = diagnostics(db, "SELECT * FROM orders ORDER BY note", "work_mem=64kB")["sort_spill"]
    assert d.evidence["sort_method"] == "external merge"
    kb = d.evidence["sort_space_kb"]
    assert isinstance(kb, int) and kb > 5_000
    suggested = int(d.advice.split("work_mem = ")[1].split("MB")[0])
    assert suggested * 1024 >= kb * 2


def test_hash_spill(db):
    d = diagnostics(
        db, "SELECT o.id, c.email FROM orders o JOIN customers c ON c.id = o.customer_id",
        "work_mem=64kB", "hash_mem_multiplier=1", "enable_mergejoin=off", "enable_nestloop=off",
    )["hash_spill"]
    assert d.evidence["batches"] > 1 and d.threshold == "hash batches > 1"
    assert "work_mem = " in d.advice


def test_nested_loop_over_a_path_without_index(db):
    d = diagnostics(
        db, "SELECT count(*) FROM regions r JOIN items i ON i.region_code = r.code",
        "enable_hashjoin=off", "enable_mergejoin=off", *FORCE_OFF_JIT,
    )["nested_loop_no_index"]
    # either side may be the inner one: 200 regions × 20,000 items compared
    assert d.evidence["inner_loops"] in {200, 20_000}
    assert d.evidence["rows_compared"] == 200 * 20_000


def test_lossy_bitmap(db):
    d = diagnostics(
        db, "SELECT count(*) FROM orders WHERE created_at > '2024-01-10'",
        "work_mem=64kB", "enable_seqscan=off", "enable_indexscan=off", "enable_indexonlyscan=off", *FORCE_OFF_JIT,
    )["lossy_bitmap"]
    assert d.evidence["lossy_heap_blocks"] > 0


def test_index_only_scan_heap_fetches_and_stale_statistics(db):
    found = diagnostics(db, "SELECT account_id FROM ledger WHERE account_id < 500",
                        "enable_bitmapscan=off", "enable_seqscan=off", *FORCE_OFF_JIT)
    fetches = found["index_only_heap_fetches"]
    assert fetches.evidence["heap_fetches"] == 100_000 and fetches.evidence["fetch_share"] == 1
    assert "VACUUM" in fetches.advice
    stale = found["stale_statistics"]
    assert stale.evidence["rows_modified_since_analyze"] >= 100_000
    assert stale.evidence["row_estimate"] == 100_000
    assert "ANALYZE public.ledger" in stale.advice


def test_cold_buffers(db):
    # archive was written through the bulk-write ring and never read since: most pages are not cached
    d = diagnostics(db, "SELECT count(*) FROM archive WHERE note LIKE 'x%'", *FORCE_OFF_JIT)["buffers_read"]
    assert d.evidence["shared_read"] >= 1000 and d.evidence["read_share"] > 0.5


@pytest.mark.parametrize(
    ("sql", "problem", "column"),
    [
        ("SELECT * FROM customers WHERE lower(email) = 'c42@example.com'", "function", "email"),
        ("SELECT * FROM orders WHERE customer_id = 42.0", "cast", "customer_id"),
        ("SELECT * FROM customers WHERE email LIKE '%42@%'", "leading_wildcard", "email"),
    ],
)
def test_filter_that_cannot_use_the_index(db, sql, problem, column):
    d = diagnostics(db, sql)["index_unusable"]
    assert d.evidence["problem"] == problem and d.evidence["column"] == column
    assert d.evidence["index"] in {"customers_email_idx", "orders_customer_idx"}
    if problem == "leading_wildcard":
        assert "gin_trgm_ops" in d.advice


def test_workers_planned_but_not_launched(db):
    d = diagnostics(
        db, "SELECT count(*) FROM orders WHERE amount > 500", "max_parallel_workers=0",
        "max_parallel_workers_per_gather=2", "parallel_setup_cost=0", "parallel_tuple_cost=0",
        "min_parallel_table_scan_size=0", *FORCE_OFF_JIT,
    )["workers_not_launched"]
    assert d.evidence == {"workers_planned": 2, "workers_launched": 0}


def test_jit_dominating(db):
    d = diagnostics(
        db, "SELECT count(*), sum(amount) FROM customers c JOIN orders o ON o.customer_id = c.id WHERE c.id < 100",
        "jit=on", "jit_above_cost=0", "jit_inline_above_cost=0", "jit_optimize_above_cost=0",
    )["jit_dominates"]
    assert d.evidence["jit_share"] > 0.1 and d.evidence["jit_ms"] > 0


def test_subplan_per_row(db):
    d = diagnostics(
        db, "SELECT c.id, (SELECT max(amount) FROM orders o WHERE o.customer_id = c.id) FROM customers c "
        "WHERE c.id <= 5000", *FORCE_OFF_JIT,
    )["per_row_subplan"]
    assert d.evidence["loops"] == 5000


def test_index_scan_reading_far_more_than_it_returns(db):
    d = diagnostics(db, "SELECT * FROM orders WHERE customer_id BETWEEN 1 AND 5000 AND status = 'refunded'",
                    *FORCE_OFF_JIT)["index_scan_reads_too_much"]
    assert d.evidence["rows_removed_by_filter"] >= 29_000
    assert d.evidence["removed_share"] > 0.99
    assert "status" in d.advice


def test_large_offset(db):
    d = diagnostics(db, "SELECT id FROM orders ORDER BY id OFFSET 100000 LIMIT 10")["large_offset"]
    assert d.evidence["offset"] == 100_000 and d.evidence["rows_produced_below_limit"] == 100_010
    assert "keyset" in d.advice


@pytest.mark.parametrize(
    "sql",
    ["SELECT * FROM orders WHERE id = 42", "SELECT id, customer_id FROM orders WHERE customer_id = 42",
     "SELECT email FROM customers WHERE email = 'c42@example.com'"],
)
def test_no_diagnostic_on_a_well_indexed_query(db, sql):
    assert diagnostics(db, sql) == {}


def test_parameters_are_bound_server_side(db):
    run = explain(db, "SELECT * FROM orders WHERE customer_id = $1 AND status = $2", parameters=["42", "paid"])
    assert run.plan.root.index == "orders_customer_idx" or run.plan.root.children
    assert run.execution == "analyze"
    with pytest.raises(InputError, match=r"\$n placeholder|parameter"):
        explain(db, "SELECT * FROM orders WHERE customer_id = $1")


def test_plain_explain_has_no_actuals(db):
    run = explain(db, "SELECT * FROM orders WHERE status = 'refunded'", analyze=False)
    assert run.execution == "plain" and not run.plan.analyzed and run.plan.root.actual_rows is None
    assert {d.code for d in diagnose(run)} >= {"seq_scan_selective"}
