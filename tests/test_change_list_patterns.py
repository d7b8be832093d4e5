"""A change list's rename or type change of a live table's column is the zero-downtime pattern, not a plain RENAME
or ALTER TYPE: expand parts, one deploy point, contract parts — and it runs, in order, on a real server while an
old client keeps writing the old column."""

from __future__ import annotations

import json
import subprocess
import sys

import psycopg
import pytest

from agent19.migrate.lint.engine import lint_sql
from agent19.migrate.planning.model import DEPLOY_MARK, Change, MigrationPlan
from agent19.migrate.planning.plan import plan_migration
from tests.conftest import one, run_sql
from tests.conftest import plan_changes as _plan
from tests.conftest import run_each as _run

TABLES = """
CREATE TABLE users (id bigint PRIMARY KEY, full_name text NOT NULL DEFAULT 'anon', amount integer NOT NULL);
INSERT INTO users SELECT g, 'u' || g, g FROM generate_series(1, 500) g;
CREATE TABLE orders (id bigint PRIMARY KEY, note text);
INSERT INTO orders SELECT g, 'o' FROM generate_series(1, 20) g;
"""
CHANGES = [
    {"type": "rename", "table": "users", "column": {"name": "full_name", "type": "text"}, "new_name": "display_name"},
    {"type": "modify_column", "table": "users", "column": {"name": "amount", "type": "integer"}, "new_type": "bigint"},
    {"type": "rename", "table": "orders", "new_name": "purchases"},
    {"type": "add_index", "table": "users", "index_columns": ["amount"]},
]


def test_rename_and_type_change_are_expand_deploy_contract_and_lint_clean(dsn: str) -> None:
    run_sql(dsn, TABLES)
    plan = _plan(dsn, CHANGES)
    sqls = [op.sql for op in plan.operations]
    assert not any("RENAME COLUMN full_name TO display_name" in s for s in sqls), "the plain rename breaks old clients"
    assert not any("TYPE bigint" in s and "ALTER COLUMN amount" in s for s in sqls), "the plain type change rewrites"
    # the plan's own lint finds nothing it would refuse: the renames it does give the old name back at once
    errors = [(f.rule, f.operation, f.message) for f in plan.findings if f.severity == "error"]
    assert not errors, errors

    [deploy] = [op.order for op in plan.operations if op.deploy_after]
    after = plan.operations[deploy:]
    assert after and all("contract" in (op.phase or "") for op in after), [(o.order, o.phase) for o in after]
    assert all("contract" not in (op.phase or "") for op in plan.operations[:deploy])
    assert plan.sql.index(DEPLOY_MARK) > plan.sql.index("CREATE VIEW")  # the marker sits where the deploy goes
    assert plan.deployment.kind == "rolling" and any("contract" in s for s in plan.deployment.steps)
    # the contract's drops lose nothing: the values are in the new columns (a rename; integer to bigint widens)
    drops = [op for op in after if op.type == "drop_column"]
    assert len(drops) == 2 and not any(op.data_loss for op in drops)
    assert plan.rollback.kind != "restore_from_backup" and plan.risk_level != "critical"
    # the live column's NOT NULL and default are carried over; what the pattern cannot carry is said
    assert any("display_name" in n or "amount" in n for n in plan.notes) or plan.notes == []
    assert "CALL" in plan.sql, "the backfills walk the primary key in batches on a live table"


def test_the_plan_runs_in_order_while_an_old_client_keeps_writing(dsn: str) -> None:
    run_sql(dsn, TABLES)
    plan = _plan(dsn, CHANGES)
    [deploy] = [op.order for op in plan.operations if op.deploy_after]
    expand = [op.sql for op in plan.operations[:deploy]]
    contract = [op.sql for op in plan.operations[deploy:]]

    _run(dsn, expand[: len(expand) // 3])
    # an old client, between statements of the expand part, by the old names
    run_sql(dsn, "INSERT INTO users (id, full_name, amount) VALUES (1001, 'old client', 7)")
    _run(dsn, expand[len(expand) // 3:])
    run_sql(dsn, "INSERT INTO users (id, full_name, amount) VALUES (1002, 'after expand', 8);"
                 "UPDATE users SET full_name = 'renamed by old code' WHERE id = 1;"
                 "INSERT INTO orders (id, note) VALUES (99, 'through the view')")
    # the new version, deployed: writes the new name
    run_sql(dsn, "INSERT INTO users (id, display_name, amount) VALUES (1003, 'new client', 9)")
    _run(dsn, contract)

    assert one(dsn, "SELECT count(*) FROM users") == 503
    assert one(dsn, "SELECT display_name FROM users WHERE id = 1") == "renamed by old code"
    assert one(dsn, "SELECT display_name FROM users WHERE id = 1001") == "old client"
    assert one(dsn, "SELECT display_name FROM users WHERE id = 1003") == "new client"
    assert one(dsn, "SELECT count(*) FROM users WHERE display_name IS NULL") == 0
    columns = one(dsn, "SELECT string_agg(attname || ' ' || format_type(atttypid, atttypmod) || ' ' || attnotnull, "
                       "', ' ORDER BY attname) FROM pg_attribute WHERE attrelid = 'users'::regclass AND attnum > 0 "
                       "AND NOT attisdropped")
    assert columns == "amount bigint true, display_name text true, id bigint true", columns
    assert one(dsn, "SELECT pg_get_expr(adbin, adrelid) FROM pg_attrdef WHERE adrelid = 'users'::regclass") == \
        "'anon'::text"
    assert one(dsn, "SELECT sum(amount) FROM users") == sum(range(1, 501)) + 7 + 8 + 9
    assert one(dsn, "SELECT count(*) FROM purchases") == 21
    assert one(dsn, "SELECT to_regclass('orders')") is None  # the compatibility view went with the contract
    assert one(dsn, "SELECT count(*) FROM pg_trigger WHERE tgrelid = 'users'::regclass AND NOT tgisinternal") == 0
    assert one(dsn, "SELECT count(*) FROM pg_proc WHERE proname LIKE 'users_%'") == 0


def test_a_narrowing_type_change_still_says_its_contract_loses_data(dsn: str, tmp_path) -> None:
    """numeric(12,4) to integer rounds: the plan (with the database's facts, as the CLI and MCP make it) says the
    contract's drop of the old values loses data, as it says for the plain ALTER TYPE."""
    run_sql(dsn, "CREATE TABLE prices (id bigint PRIMARY KEY, amount numeric(12, 4), qty integer);"
                 "INSERT INTO prices VALUES (1, 1.2345, 3)")
    changes = tmp_path / "changes.json"
    changes.write_text(json.dumps([{"type": "modify_column", "table": "prices",
                                    "column": {"name": "amount", "type": "numeric"}, "new_type": "integer"}]))
    out = subprocess.run([sys.executable, "-m", "agent19", "plan", str(changes), "--dsn", dsn, "--format", "json"],
                         capture_output=True, text=True, timeout=120)
    plan = MigrationPlan.model_validate_json(out.stdout)
    [drop] = [op for op in plan.operations if op.type == "drop_column"]
    assert drop.stands_for and "TYPE integer" in drop.stands_for
    assert drop.data_loss, drop
    assert plan.rollback.kind == "restore_from_backup"
    assert any(e.kind == "data_loss" and drop.order in e.operations for e in plan.escalations), plan.escalations
    # a widening change through the same path loses nothing
    changes.write_text(json.dumps([{"type": "modify_column", "table": "prices",
                                    "column": {"name": "qty", "type": "integer"}, "new_type": "bigint"}]))
    out = subprocess.run([sys.executable, "-m", "agent19", "plan", str(changes), "--dsn", dsn, "--format", "json"],
                         capture_output=True, text=True, timeout=120)
    plan = MigrationPlan.model_validate_json(out.stdout)
    assert not any(op.data_loss for op in plan.operations), [op for op in plan.operations if op.data_loss]


def test_a_table_created_by_the_same_change_list_is_renamed_plainly() -> None:
    plan = plan_migration(changes=[Change.model_validate(c) for c in [
        {"type": "create_table", "table": "fresh", "columns": [{"name": "id", "type": "bigint", "primary_key": True},
                                                                {"name": "a", "type": "integer"}]},
        {"type": "modify_column", "table": "fresh", "column": {"name": "a", "type": "integer"}, "new_type": "bigint"},
        {"type": "rename", "table": "fresh", "column": {"name": "a", "type": "bigint"}, "new_name": "b"},
    ]])
    assert not any(op.deploy_after for op in plan.operations)
    assert any(op.sql == "ALTER TABLE fresh RENAME COLUMN a TO b" for op in plan.operations)


def test_lint_reads_a_rename_given_back_in_the_same_transaction_as_safe() -> None:
    def renames(sql: str) -> list[str]:
        return [f.rule for s in lint_sql(sql).statements for f in s.findings if f.rule == "A19013"]

    assert renames("BEGIN; ALTER TABLE t RENAME TO t2; CREATE VIEW t AS SELECT * FROM t2; COMMIT;") == []
    assert renames("BEGIN; ALTER TABLE t RENAME TO t2; COMMIT; CREATE VIEW t AS SELECT * FROM t2;") == ["A19013"]
    assert renames("BEGIN; ALTER TABLE s.t RENAME TO t2; CREATE VIEW t AS SELECT * FROM s.t2; COMMIT;") == ["A19013"]
    swap = "ALTER TABLE t RENAME COLUMN a TO a_old; ALTER TABLE t RENAME COLUMN a_new TO a; COMMIT;"
    assert renames(f"ALTER TABLE t ADD COLUMN a_new bigint; BEGIN; {swap}") == []
    assert renames(f"BEGIN; {swap}") == ["A19013"]  # a_new existed before: a client may use it
    assert renames("BEGIN; ALTER TABLE t RENAME COLUMN a TO b; ALTER TABLE u RENAME COLUMN c TO a; COMMIT;") == \
        ["A19013", "A19013"]


def test_the_plan_dry_runs_and_the_runbook_keeps_the_deploy_point(dsn: str, tmp_path) -> None:
    """What a user does next with the plan: dry-run its SQL on the server; write the runbook from the change list."""
    run_sql(dsn, TABLES)
    plan = _plan(dsn, CHANGES)
    migration = tmp_path / "plan.sql"
    migration.write_text(plan.sql)
    out = subprocess.run([sys.executable, "-m", "agent19", "--mode", "dry-run", "dry-run", str(migration), "--dsn", dsn,
                          "--format", "json"], capture_output=True, text=True, timeout=300)
    result = json.loads(out.stdout)
    errors = [(st["index"], st["sql"][:80], st["error"]) for st in result["statements"] if st["error"]]
    assert not errors, errors
    assert result["passed"], (result["summary"], [c for c in result.get("checks") or [] if not c.get("passed")])
    assert out.returncode == 0, out.stderr[-2000:]
    # the backfill's CALL commits per batch: it ran in the scratch database, and the same backfill stood in for it
    # in the target's transaction, so that the NOT NULL proof after it was tested on filled columns
    calls = [st for st in result["statements"] if st["sql"].startswith("CALL agent19_backfill_")]
    assert len(calls) == 2 and all(st["ran_in"] == "scratch" and "stood in" in st["note"] for st in calls), calls
    # what a person reads: the plan's text says where to deploy
    changes_text = subprocess.run([sys.executable, "-m", "agent19", "plan", "--dsn", dsn, "--changes",
                                   *(json.dumps(c) for c in CHANGES)], capture_output=True, text=True, timeout=120)
    lines = changes_text.stdout.splitlines()
    [at] = [i for i, line in enumerate(lines) if ">>> deploy the application here" in line]
    assert "COMMIT" in lines[at - 1] and f"{len(plan.operations) - 1}." not in lines[at - 2], lines[at - 3: at + 2]

    changes = tmp_path / "changes.json"
    changes.write_text(json.dumps(CHANGES))
    out = subprocess.run([sys.executable, "-m", "agent19", "runbook", str(changes), "--dsn", dsn, "--format", "json",
                          "--write", str(tmp_path / "docs"), "--no-handoff", "--handoff-dir", str(tmp_path / "h")],
                         capture_output=True, text=True, timeout=300)
    assert out.returncode in (0, 1), out.stderr[-2000:]
    docs = {p.name: p.read_text() for p in (tmp_path / "docs").rglob("*") if p.is_file()}
    steps = json.loads(docs["runbook.json"])["steps"]
    [stop] = [s for s in steps if any("deploy the application" in n for n in s["notes"])]
    assert all("contract" in (o.phase or "") for o in plan.operations[stop["order"]:])
    assert "stop here and deploy the application" in docs["runbook.md"]
    assert DEPLOY_MARK in docs["migration.sql"]


def test_a_rename_of_a_column_the_database_lacks_is_refused_before_any_sql(dsn: str, tmp_path) -> None:
    run_sql(dsn, TABLES)
    changes = tmp_path / "changes.json"
    for change, said in [
        ({"type": "rename", "table": "users", "column": {"name": "fullname", "type": "text"}, "new_name": "x"},
         "no column 'fullname'"),
        ({"type": "modify_column", "table": "userz", "column": {"name": "amount", "type": "integer"},
          "new_type": "bigint"}, "no such table"),
    ]:
        changes.write_text(json.dumps([change]))
        out = subprocess.run([sys.executable, "-m", "agent19", "plan", str(changes), "--dsn", dsn],
                             capture_output=True, text=True, timeout=120)
        assert out.returncode == 2 and said in out.stderr, (out.returncode, out.stderr[-800:])
    # a column the same change list adds first is fine
    plan = _plan(dsn, [{"type": "add_column", "table": "users", "column": {"name": "nick", "type": "text"}},
                       {"type": "rename", "table": "users", "column": {"name": "nick", "type": "text"},
                        "new_name": "nickname"}])
    assert any(op.deploy_after for op in plan.operations)


def test_the_old_columns_indexes_and_unique_constraints_come_over(dsn: str) -> None:
    """The contract drops the old column with its indexes: they are built on the new column first (CONCURRENTLY)
    and get their names back, a UNIQUE constraint stays a constraint — and still refuses a duplicate."""
    run_sql(dsn, """
        CREATE TABLE accounts (id bigint PRIMARY KEY, email text CONSTRAINT accounts_email_key UNIQUE, score integer);
        CREATE INDEX accounts_email_lower ON accounts (lower(email)) WHERE email IS NOT NULL;
        CREATE INDEX accounts_score_idx ON accounts (score, id);
        INSERT INTO accounts SELECT g, 'a' || g || '@x', g FROM generate_series(1, 300) g;""")
    plan = _plan(dsn, [
        {"type": "rename", "table": "accounts", "column": {"name": "email", "type": "text"}, "new_name": "mail"},
        {"type": "modify_column", "table": "accounts", "column": {"name": "score", "type": "integer"},
         "new_type": "bigint"},
    ])
    [deploy] = [op.order for op in plan.operations if op.deploy_after]
    builds = [op for op in plan.operations[:deploy] if "CONCURRENTLY" in op.sql]
    assert len(builds) == 3 and all(not op.in_transaction for op in builds), [op.sql for op in builds]
    _run(dsn, [op.sql for op in plan.operations])

    indexes = one(dsn, "SELECT string_agg(indexrelid::regclass || ': ' || pg_get_indexdef(indexrelid), '; ' "
                       "ORDER BY indexrelid::regclass::text) FROM pg_index WHERE indrelid = 'accounts'::regclass")
    assert "accounts_email_key: CREATE UNIQUE INDEX accounts_email_key ON public.accounts USING btree (mail)" \
        in indexes, indexes
    assert "accounts_email_lower: CREATE INDEX accounts_email_lower ON public.accounts USING btree (lower(mail)) " \
        "WHERE (mail IS NOT NULL)" in indexes, indexes
    assert "accounts_score_idx: CREATE INDEX accounts_score_idx ON public.accounts USING btree (score, id)" \
        in indexes, indexes
    assert one(dsn, "SELECT count(*) FROM pg_index WHERE indrelid = 'accounts'::regclass AND NOT indisvalid") == 0
    assert one(dsn, "SELECT pg_get_constraintdef(oid) FROM pg_constraint WHERE conname = 'accounts_email_key'") == \
        "UNIQUE (mail)"
    with pytest.raises(psycopg.errors.UniqueViolation):
        run_sql(dsn, "INSERT INTO accounts (id, mail, score) VALUES (999, 'a1@x', 1)")


def test_what_the_contract_drops_and_cannot_rebuild_is_a_warning(dsn: str) -> None:
    run_sql(dsn, "CREATE TABLE shop (id bigint PRIMARY KEY, price integer CONSTRAINT price_positive CHECK (price > 0));"
                 "INSERT INTO shop VALUES (1, 5)")
    plan = _plan(dsn, [{"type": "rename", "table": "shop", "column": {"name": "price", "type": "integer"},
                        "new_name": "cost"}])
    warned = [f.message for f in plan.findings if f.rule == "not-carried" and f.severity == "warning"]
    assert len(warned) == 1 and "price_positive" in warned[0], plan.findings


def test_lint_and_the_runbook_say_why_a_key_or_generated_column_has_no_pattern(dsn: str, tmp_path) -> None:
    """The patterns refuse a primary-key or generated column (they cannot move it); lint's fix and the runbook's
    safer alternative then say so instead of failing the whole lint."""
    run_sql(dsn, "CREATE TABLE ledger (id integer PRIMARY KEY, cents bigint, euros numeric GENERATED ALWAYS AS "
                 "(cents / 100.0) STORED); INSERT INTO ledger (id, cents) VALUES (1, 250)")
    migration = tmp_path / "m.sql"
    migration.write_text("ALTER TABLE ledger ALTER COLUMN id TYPE bigint;\n"
                         "ALTER TABLE ledger RENAME COLUMN euros TO eur;\n")
    out = subprocess.run([sys.executable, "-m", "agent19", "lint", str(migration), "--dsn", dsn, "--format", "json"],
                         capture_output=True, text=True, timeout=120)
    assert out.returncode == 1, out.stderr[-1500:]  # errors found, not a crash
    fixes = {f["rule"]: f["fix"] for s in json.loads(out.stdout)["statements"] for f in s["findings"]}
    assert "no zero-downtime pattern" in fixes["A19005"] and "primary key" in fixes["A19005"], fixes["A19005"]
    assert "no zero-downtime pattern" in fixes["A19013"] and "generated column" in fixes["A19013"], fixes["A19013"]
    out = subprocess.run([sys.executable, "-m", "agent19", "runbook", str(migration), "--dsn", dsn, "--no-handoff",
                          "--write", str(tmp_path / "docs")], capture_output=True, text=True, timeout=300)
    assert out.returncode in (0, 1) and (tmp_path / "docs" / "runbook.md").exists(), out.stderr[-1500:]
