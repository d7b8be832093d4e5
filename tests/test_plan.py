"""plan_migration: change lists ordered topologically, hand-written SQL kept in order, through MCP too."""

from __future__ import annotations

import psycopg
import pytest

from agent19.errors import InputError
from agent19.migrate.planning.model import Change, ColumnSpec, MigrationPlan
from agent19.migrate.planning.plan import PlanOptions, plan_migration
from tests.mcp_client import stdio_session

CHANGES = [
    {"type": "drop_column", "table": "orders", "column": {"name": "legacy", "type": "text"}},
    {"type": "add_foreign_key", "table": "order_lines", "index_columns": ["order_id"],
     "references_table": "orders", "references_columns": ["id"]},
    {"type": "create_table", "table": "order_lines",
     "columns": [{"name": "id", "type": "bigint", "primary_key": True}, {"name": "order_id", "type": "bigint"},
                 {"name": "product_id", "type": "bigint", "references": "products(id)"}]},
    {"type": "create_table", "table": "products", "columns": [{"name": "id", "type": "bigint", "primary_key": True}]},
    {"type": "add_index", "table": "orders", "index_columns": ["customer_id"]},
    {"type": "add_column", "table": "orders", "column": {"name": "status", "type": "text", "nullable": False}},
]


def test_change_list_is_ordered_topologically():
    plan = plan_migration(changes=[Change.model_validate(c) for c in CHANGES])
    sqls = [o.sql for o in plan.operations]
    first = {k: next(i for i, s in enumerate(sqls) if k in s) for k in
             ("CREATE TABLE products", "CREATE TABLE order_lines", "ADD COLUMN status", "CREATE INDEX",
              "FOREIGN KEY (order_id)", "DROP COLUMN legacy")}
    order = sorted(first, key=first.get)
    assert order == ["CREATE TABLE products", "CREATE TABLE order_lines", "ADD COLUMN status", "CREATE INDEX",
                     "FOREIGN KEY (order_id)", "DROP COLUMN legacy"]
    # safe forms on the existing table; plain forms on the new one
    assert any("CREATE INDEX CONCURRENTLY" in s for s in sqls)
    assert any("status IS NOT NULL) NOT VALID" in s for s in sqls)  # NOT NULL column added safely
    assert plan.rollback.kind == "restore_from_backup"  # DROP COLUMN loses data
    assert plan.deployment.kind == "blue_green"
    assert plan.estimated_duration.startswith("unknown - connect a database")


def test_create_table_cycle_is_an_input_error():
    a = Change(type="create_table", table="a", columns=[ColumnSpec(name="b_id", type="int", references="b(id)")])
    b = Change(type="create_table", table="b", columns=[ColumnSpec(name="a_id", type="int", references="a(id)")])
    with pytest.raises(InputError, match="cycle"):
        plan_migration(changes=[a, b])


def test_hand_written_sql_keeps_order_and_reports_hazards():
    sql = "ALTER TABLE orders ADD COLUMN lines_id bigint REFERENCES lines (id);\n" \
          "CREATE TABLE lines (id bigint PRIMARY KEY);\n"
    plan = plan_migration(sql=sql)
    assert [o.type for o in plan.operations][1] == "create_table"
    hazard = next(f for f in plan.findings if f.rule == "plan-order")
    assert hazard.severity == "error" and "created later" in hazard.message and hazard.operation == 1


def test_empty_sql_is_an_input_error():
    with pytest.raises(InputError):
        plan_migration(sql="-- nothing\n")


def test_live_sizes_give_a_duration_and_downtime(dsn):
    with psycopg.connect(dsn, autocommit=True) as conn:
        conn.execute("CREATE TABLE orders (id bigint PRIMARY KEY, total int);"
                     "INSERT INTO orders SELECT g, g FROM generate_series(1, 20000) g; ANALYZE orders")
        from agent19.db.catalog import snapshot

        conn.row_factory = psycopg.rows.dict_row
        snap = snapshot(conn)
    plan = plan_migration(sql="ALTER TABLE orders ALTER COLUMN total TYPE bigint;", catalog=snap)
    op = plan.operations[0]
    assert op.estimated_rows == 20000 and op.rewrite and op.downtime == "reads_and_writes"
    assert plan.live and plan.estimated_seconds and "rows/s" in plan.estimated_duration
    assert plan.deployment.kind == "maintenance_window"


async def test_plan_through_mcp_for_sql_and_changes():
    async with stdio_session(env={"DATABASE_URL": ""}) as session:
        tools = {t.name for t in (await session.list_tools()).tools}
        assert {"plan_migration", "lint_migration", "list_lint_rules"} <= tools
        res = await session.call_tool("plan_migration", {"sql": "CREATE INDEX i ON orders (customer_id);"})
        assert not res.is_error, res.content
        plan = MigrationPlan.model_validate(res.structured_content)
        assert plan.operations[0].lock_level == "ShareLock" and plan.operations[0].downtime == "writes"
        assert any(f.rule == "A19001" for f in plan.findings)
        assert plan.validation and plan.rollback.steps
        res = await session.call_tool("plan_migration", {"changes": CHANGES[2:4]})
        assert not res.is_error, res.content
        plan = MigrationPlan.model_validate(res.structured_content)
        assert [o.table for o in plan.operations] == ["public.products", "public.order_lines"]
        res = await session.call_tool("lint_migration", {"sql": "VACUUM FULL orders;"})
        assert not res.is_error
        assert res.structured_content["statements"][0]["findings"][0]["rule"] == "A19019"


def test_validate_constraint_is_reversible_with_nothing_to_undo():
    plan = plan_migration(sql="ALTER TABLE orders ADD CONSTRAINT orders_total_check CHECK (total >= 0) NOT VALID;\n"
                          "ALTER TABLE orders VALIDATE CONSTRAINT orders_total_check;\n")
    add, validate = plan.operations
    assert validate.reversible and validate.reverse_sql is None
    assert plan.rollback.kind == "automatic" and plan.rollback.irreversible == []
    assert plan.rollback.steps == [add.reverse_sql] == [
        "ALTER TABLE public.orders DROP CONSTRAINT IF EXISTS orders_total_check"]
    dropped = plan_migration(sql="DROP INDEX orders_total_idx;")  # no inverse known: still manual
    assert dropped.rollback.kind == "manual" and dropped.rollback.irreversible == [1]


def test_a_foreign_key_from_a_change_list_gets_its_index_unless_one_exists(dsn):
    fk = Change.model_validate({"type": "add_foreign_key", "table": "lines", "index_columns": ["order_id"],
                                "references_table": "orders", "references_columns": ["id"]})
    sqls = [o.sql for o in plan_migration(changes=[fk]).operations]
    assert sqls[0] == "CREATE INDEX CONCURRENTLY lines_order_id_idx ON lines (order_id)"
    assert "NOT VALID" in sqls[1] and "VALIDATE CONSTRAINT" in sqls[2]
    indexed = Change(type="add_index", table="lines", index_columns=["order_id", "id"])
    assert sum("CREATE INDEX" in o.sql for o in plan_migration(changes=[fk, indexed]).operations) == 1
    with psycopg.connect(dsn, autocommit=True) as conn:
        conn.execute("CREATE TABLE orders (id bigint PRIMARY KEY); CREATE TABLE lines (id bigint, order_id bigint);"
                     "CREATE INDEX lines_order ON lines (order_id)")
        from agent19.db.catalog import snapshot

        conn.row_factory = psycopg.rows.dict_row
        snap = snapshot(conn)
    assert not any("CREATE INDEX" in o.sql for o in plan_migration(changes=[fk], catalog=snap).operations)


def test_validation_queries_resolve_unqualified_names_through_the_search_path(dsn):
    plan = plan_migration(sql="ALTER TABLE orders ADD COLUMN note text;\nCREATE TABLE items (id int);\n"
                          "CREATE INDEX items_id ON items (id);\n")
    queries = {c.name: c.query for c in plan.validation}
    with psycopg.connect(dsn, autocommit=True) as conn:
        conn.execute("CREATE SCHEMA app; SET search_path = app; CREATE TABLE orders (id int)")
        conn.execute(plan.sql)
        # names as written, not guessed to be in public: these tables are in app
        assert conn.execute(queries["orders.note exists"]).fetchone() == (1,)
        assert conn.execute(queries["items exists"]).fetchone() == (True,)
        assert conn.execute(queries["index items_id is valid"]).fetchone() == (True,)


def test_deployment_reason_names_what_each_operation_blocks():
    sql = "CREATE INDEX orders_total ON orders (total);\nALTER TABLE orders ALTER COLUMN total TYPE bigint;"
    plan = plan_migration(sql=sql, options=PlanOptions(pg_version=150000))
    assert plan.deployment.kind == "maintenance_window"
    assert plan.deployment.reason.startswith("operation(s) 2 block reads and writes; operation(s) 1 block writes")


def test_a_dry_run_replaces_estimates_with_observed_figures(dsn, tmp_path):
    """plan_migration given test_migration's result uses the observed durations and locks, and says so."""
    import json
    import subprocess
    import sys

    with psycopg.connect(dsn, autocommit=True) as conn:
        conn.execute("CREATE TABLE orders (id bigint PRIMARY KEY, total int);"
                     "INSERT INTO orders SELECT g, g FROM generate_series(1, 20000) g; ANALYZE orders")
    migration = tmp_path / "V1__orders.sql"
    migration.write_text("ALTER TABLE orders ADD COLUMN note text;\nCREATE INDEX orders_total ON orders (total);\n")

    def agent19(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run([sys.executable, "-m", "agent19", *args, "--dsn", dsn], capture_output=True,
                              text=True, timeout=120)

    dry = agent19("dry-run", str(migration), "--mode", "dry-run", "--format", "json")
    assert dry.returncode == 0, dry.stderr
    observed = json.loads(dry.stdout)
    (tmp_path / "dry.json").write_text(dry.stdout)
    out = agent19("plan", str(migration), "--dry-run-result", str(tmp_path / "dry.json"), "--format", "json")
    assert out.returncode == 0, out.stderr
    plan = json.loads(out.stdout)
    assert [op["figures"] for op in plan["operations"]] == ["observed", "observed"]
    index_ms = observed["statements"][1]["duration_ms"]
    assert plan["operations"][1]["estimated_seconds"] == pytest.approx(index_ms / 1000)
    assert plan["operations"][1]["lock_level"] == "ShareLock"
    assert plan["observed_in"] == f"dry run {observed['ran_at']} on {observed['database']}"
    assert "observed in the dry run" in plan["estimated_duration"]
    # a dry run of other SQL changes nothing
    other = agent19("plan", "--sql", "ALTER TABLE orders ADD COLUMN x int", "--dry-run-result",
                    str(tmp_path / "dry.json"), "--format", "json")
    assert json.loads(other.stdout)["operations"][0]["figures"] == "estimated"
