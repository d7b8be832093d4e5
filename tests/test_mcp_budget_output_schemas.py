"""The result schemas agent19 documents are true: every tool's structured content, summarised and whole, validates
against the output schema of ``agent19://tools/{name}`` (tools/list leaves output schemas out to stay small, so the
SDK client cannot check them itself; this test does what it would).

One realistic scenario — an orders table of 20,000 rows with an index, mode dry-run, through the real MCP client —
and a call of each tool that works on one database without other moving parts (replicas, backups, PgBouncer, a
second database: their own tests call those, and the client session checks the response budget there too)."""

from __future__ import annotations

import json
from typing import Any

from jsonschema import Draft202012Validator

from tests.conftest import run_sql
from tests.mcp_client import RESPONSE_BUDGET, result_size, stdio_session

SCENARIO = """
CREATE EXTENSION IF NOT EXISTS hypopg;
CREATE TABLE orders (id bigint PRIMARY KEY, customer_id bigint NOT NULL, status text NOT NULL,
                     amount numeric(12,2), note text, created_at timestamptz NOT NULL DEFAULT now());
INSERT INTO orders SELECT g, g % 500, (ARRAY['new','paid','shipped'])[1 + g % 3], g % 1000, NULL,
                          now() - g * interval '1 min' FROM generate_series(1, 20000) g;
CREATE INDEX orders_status ON orders (status);
CREATE INDEX orders_status_again ON orders (status);
ANALYZE orders;
"""
MIGRATION = "\n".join(
    f"ALTER TABLE orders ADD COLUMN c{i} integer;" if i % 2 else f"CREATE INDEX orders_i{i} ON orders (status);"
    for i in range(40)
)
CALLS: dict[str, dict[str, Any]] = {
    "server_info": {},
    "describe_database": {},
    "lint_migration": {"sql": MIGRATION},
    "list_lint_rules": {},
    "plan_migration": {"sql": MIGRATION},
    "test_migration": {"sql": "ALTER TABLE orders ADD COLUMN flag boolean;\n"
                              "CREATE INDEX orders_cust ON orders (customer_id);"},
    "verify_rollback": {"up_sql": "ALTER TABLE orders ADD COLUMN extra text;",
                        "down_sql": "ALTER TABLE orders DROP COLUMN extra;"},
    "generate_runbook": {"sql": "ALTER TABLE orders ADD COLUMN memo text;\nCREATE INDEX orders_memo ON orders (memo);",
                         "handoff": False},
    "zero_downtime_pattern": {"kind": "change_column_type", "table": "orders", "column": "amount",
                              "type": "numeric(14,2)"},
    "explain_query": {"sql": "SELECT status, count(*) FROM orders WHERE customer_id = 42 GROUP BY status"},
    "advise_indexes": {"sql": "SELECT * FROM orders WHERE customer_id = 42 AND status = 'paid'"},
    "advise_workload": {"queries": ["SELECT * FROM orders WHERE customer_id = 42",
                                    "SELECT count(*) FROM orders WHERE created_at > now() - interval '1 day'"]},
    "assess_optimization": {"execution_ms": 250, "qps": 40, "measure": False},
    "run_sql": {"sql": "SELECT id, status, amount FROM orders ORDER BY id", "max_rows": 2000},
    "confirm_destructive": {"sql": "DELETE FROM orders WHERE status = 'new'"},
    "health_check": {},
    "index_health": {"unused_min_mb": 0},
    "capacity_plan": {"window": 0},
    "replication_status": {},
    "backup_status": {},
    "prisma_schema": {},
    "pgbouncer_config": {},
    "setup_role": {},
    "data_quality": {"suggest": ["public.orders"]},
    "cdc_check": {"tables": ["public.orders"]},
    "cdc_debezium": {"tables": ["public.orders"]},
}


async def test_every_structured_result_matches_its_documented_schema(dsn: str) -> None:
    run_sql(dsn, SCENARIO)
    checked: list[str] = []
    async with stdio_session("--dsn", dsn, "--mode", "dry-run", "--allow-privileged-reads") as session:
        listed = {t.name for t in (await session.list_tools()).tools}
        for name, args in CALLS.items():
            docs = json.loads((await session.read_resource(f"agent19://tools/{name}")).contents[0].text)
            validator = Draft202012Validator(docs["output_schema"])
            summary = await session.call_tool(name, args)  # the session also holds it to the response budget
            assert not summary.is_error, f"{name}: {summary.content[0].text[:300]}"
            assert result_size(summary) <= RESPONSE_BUDGET
            whole = await session.call_tool(name, {**args, "detail": "full"})
            assert not whole.is_error, f"{name}: {whole.content[0].text[:300]}"
            for label, result in (("default", summary), ("full", whole)):
                errors = [f"{'/'.join(map(str, e.absolute_path))}: {e.message[:200]}"
                          for e in validator.iter_errors(result.structured_content)]
                assert not errors, f"{name} ({label}) does not match its documented schema: {errors[:5]}"
            assert "truncated" not in whole.structured_content, name
            checked.append(name)
    assert set(checked) == set(CALLS) and set(CALLS) <= listed
    # most of what a model calls: the rest need a replica, a backup, PgBouncer, a second database or execute mode
    assert len(checked) >= 26
