"""A migration that makes a query's plan worse is a performance escalation, with the costs as evidence.

On a real server, as the application's non-superuser role: the dry run explains the queries (given by the
user, or the most expensive ones in pg_stat_statements) before and after each statement that drops or
changes an index, key or column, inside a transaction it rolls back; plan_migration given that dry run
names the query and its cost before and after."""

from __future__ import annotations

import json
from pathlib import Path

import psycopg

from tests.conftest import need, owner_login, run_sql
from tests.test_runbook import agent19

SETUP = """
CREATE TABLE orders (id bigint PRIMARY KEY, customer_id bigint NOT NULL, total numeric, note text);
INSERT INTO orders SELECT g, g % 5000, g % 97, 'n' FROM generate_series(1, 60000) g;
CREATE INDEX orders_customer_idx ON orders (customer_id);
CREATE INDEX orders_total_idx ON orders (total);
ANALYZE orders;
"""
QUERY = "SELECT sum(total) FROM orders WHERE customer_id = 42"


def _app(dsn: str) -> str:
    app = owner_login(dsn)
    run_sql(app, SETUP)
    return app


def dry_run(dsn: str, sql: str, *extra: str) -> dict:
    done = agent19("dry-run", "--sql", sql, "--dsn", dsn, "--mode", "dry-run", "--format", "json", *extra)
    assert done.returncode == 0, done.stdout + done.stderr
    return json.loads(done.stdout)


def plan_with(dsn: str, sql: str, dry: dict, folder: Path) -> dict:
    (folder / "dry.json").write_text(json.dumps(dry))
    done = agent19("plan", "--sql", sql, "--dsn", dsn, "--format", "json", "--write-sample-seconds", "0",
                   "--dry-run-result", str(folder / "dry.json"))
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout)


def indexes(dsn: str) -> set[str]:
    with psycopg.connect(dsn) as c:
        return {r[0] for r in c.execute("SELECT indexname FROM pg_indexes WHERE tablename = 'orders'")}


def test_dropping_an_index_a_supplied_query_uses_escalates_with_its_costs(dsn, tmp_path):
    app = _app(dsn)
    sql = "DROP INDEX orders_customer_idx"
    dry = dry_run(app, sql, "--queries", QUERY, "--top-queries", "0")
    plans = dry["query_plans"]
    assert plans["queries"] == 1 and len(plans["changes"]) == 1, plans
    change = plans["changes"][0]
    assert change["worse"] is True and change["query"]["source"] == "supplied"
    assert "orders_customer_idx" in change["plan_before"] and "Seq Scan on orders" in change["plan_after"]
    assert change["cost_after"] >= 2 * change["cost_before"]
    assert "orders_customer_idx" in indexes(app)  # rolled back

    plan = plan_with(app, sql, dry, tmp_path)
    perf = [e for e in plan["escalations"] if e["kind"] == "performance"]
    assert len(perf) == 1 and perf[0]["statements"] == [sql], plan["escalations"]
    evidence = perf[0]["evidence"][0]
    assert f"`{QUERY}` (supplied)" in evidence
    assert f"costs {change['cost_before']:,.2f} -> {change['cost_after']:,.2f}" in evidence
    assert "Seq Scan on orders" in evidence and "DBA / performance engineer" in perf[0]["reviewers"]

    made = agent19("runbook", "--sql", sql, "--dsn", app, "--write", str(tmp_path / "rb"), "--no-handoff",
                   "--write-sample-seconds", "0", "--dry-run-result", str(tmp_path / "dry.json"))
    assert made.returncode == 0, made.stderr
    handoff = json.loads((tmp_path / "rb" / "handoff.json").read_text())
    assert [e["evidence"] for e in handoff["escalations"] if e["kind"] == "performance"] == [perf[0]["evidence"]]
    assert "<!-- agent19:escalation performance -->" in (tmp_path / "rb" / "devops.md").read_text()


def test_the_most_expensive_queries_come_from_pg_stat_statements(dsn, tmp_path):
    app = _app(dsn)
    try:
        run_sql(dsn, "CREATE EXTENSION IF NOT EXISTS pg_stat_statements")
    except psycopg.Error as exc:
        need(False, f"pg_stat_statements is not available: {exc}")
    with psycopg.connect(app, autocommit=True) as c:
        for customer in range(1, 30):  # the application's traffic
            c.execute("SELECT sum(total) FROM orders WHERE customer_id = %s", (customer,))
    sql = "DROP INDEX orders_customer_idx"
    dry = dry_run(app, sql)
    plans = dry["query_plans"]
    from_stats = [c for c in plans["changes"] if c["query"]["source"] == "pg_stat_statements"
                  and "customer_id = $1" in c["query"]["query"]]
    assert from_stats and from_stats[0]["worse"] and from_stats[0]["query"]["calls"] >= 29, plans
    assert "pg_stat_statements' most expensive SELECTs" in plans["note"]
    plan = plan_with(app, sql, dry, tmp_path)
    perf = next(e for e in plan["escalations"] if e["kind"] == "performance")
    assert any("pg_stat_statements, " in e and "customer_id = $1" in e for e in perf["evidence"]), perf["evidence"]


def test_an_index_no_compared_query_uses_raises_nothing_and_a_dropped_column_is_named(dsn, tmp_path):
    app = _app(dsn)
    sql = "DROP INDEX orders_total_idx"
    dry = dry_run(app, sql, "--queries", QUERY, "--top-queries", "0")
    assert [c["worse"] for c in dry["query_plans"]["changes"]] == [False]
    assert "0 plan(s) worse" in dry["query_plans"]["note"]
    plan = plan_with(app, sql, dry, tmp_path)
    assert "performance" not in {e["kind"] for e in plan["escalations"]}

    sql = "ALTER TABLE orders DROP COLUMN note"
    dry = dry_run(app, sql, "--queries", "SELECT note FROM orders WHERE id = $1", "--top-queries", "0")
    change = dry["query_plans"]["changes"][0]
    assert change["worse"] and change["cost_after"] is None and 'column "note" does not exist' in change["error_after"]


def test_migrations_that_touch_no_index_compare_nothing(dsn):
    app = _app(dsn)
    dry = dry_run(app, "ALTER TABLE orders ADD COLUMN seen timestamptz", "--queries", QUERY)
    assert dry["query_plans"] is None
