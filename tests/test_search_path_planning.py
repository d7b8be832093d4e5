"""Connected, the planner names an unqualified table as the login's session resolves it.

An application's role often has its own schema first on its search_path (``ALTER ROLE app SET search_path = app,
public``, or a schema named like the role under the default ``"$user", public``). A migration that says ``orders``
then changes ``app.orders``: plan, runbook, lint and the dry run's predictions must say so — their sizes, rollback
SQL and lock predictions are of that table, not of a ``public.orders`` that happens to exist too. Offline nothing
is known of the login: ``public``, as documented.
"""

from __future__ import annotations

import json
import subprocess
import sys
import uuid
from pathlib import Path

import psycopg
import pytest
from psycopg.conninfo import make_conninfo
from psycopg.rows import dict_row

from agent19.db.catalog import snapshot
from agent19.migrate.lint.engine import lint_sql
from agent19.migrate.planning.plan import plan_migration

ROOT = Path(__file__).parent.parent
MIGRATION = "ALTER TABLE orders ADD COLUMN score float8 DEFAULT random();\n" \
            "CREATE INDEX orders_status_idx ON orders (status);\n"
ROWS = 20_000


def _app_login(dsn: str, how: str) -> tuple[str, str]:
    """A non-superuser login owning its schema, first on its search_path (``how``: "set" — schema ``app`` and
    ``ALTER ROLE … SET search_path = app, public``; "user" — a schema named like the role, the default path), with
    ``orders`` of ROWS rows there and a ``public.orders`` decoy of another shape; (its DSN, its schema)."""
    role = f"app_{uuid.uuid4().hex[:8]}"
    schema = "app" if how == "set" else role
    with psycopg.connect(dsn, autocommit=True) as c:
        c.execute(f"CREATE ROLE {role} LOGIN")
        c.execute(f"CREATE SCHEMA {schema} AUTHORIZATION {role}")
        if how == "set":
            c.execute(f"ALTER ROLE {role} SET search_path = app, public")
        c.execute("CREATE TABLE public.orders (id int, note text); INSERT INTO public.orders VALUES (1, 'a'), (2, 'b')")
        c.execute(f"GRANT SELECT ON public.orders TO {role}")
        c.execute("ANALYZE public.orders")
    login = make_conninfo(dsn, user=role)
    with psycopg.connect(login, autocommit=True) as c:  # unqualified, as the application's own migrations are
        c.execute("CREATE TABLE orders (id bigint PRIMARY KEY, total int, status text)")
        c.execute(f"INSERT INTO orders SELECT g, g, 'new' FROM generate_series(1, {ROWS}) g")
        c.execute("ANALYZE orders")
        assert c.execute("SELECT to_regclass('orders')::text").fetchone() == ("orders",)
        assert c.execute(f"SELECT count(*) FROM {schema}.orders").fetchone() == (ROWS,)
    return login, schema


def _catalog(login: str):  # type: ignore[no-untyped-def]
    with psycopg.connect(login, row_factory=dict_row) as c:
        return snapshot(c)


def agent19(*args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "agent19", *args], cwd=cwd, capture_output=True, text=True,
                          timeout=180)


@pytest.mark.parametrize("how", ["set", "user"])
def test_plan_names_the_table_the_logins_search_path_finds(dsn: str, how: str) -> None:
    login, schema = _app_login(dsn, how)
    catalog = _catalog(login)
    plan = plan_migration(sql=MIGRATION, catalog=catalog)
    assert [op.table for op in plan.operations] == [f"{schema}.orders"] * 2
    assert plan.operations[0].estimated_rows == ROWS  # app.orders's size, not the 2-row decoy's
    assert plan.operations[0].rewrite and plan.operations[0].reverse_sql == \
        f"ALTER TABLE {schema}.orders DROP COLUMN score"
    assert plan.operations[1].reverse_sql == f"DROP INDEX {schema}.orders_status_idx"
    assert "public.orders" not in plan.model_dump_json()
    # the migration's own SET search_path still decides from where it runs
    plan = plan_migration(sql="SET search_path = public;\n" + MIGRATION, catalog=catalog)
    assert [op.table for op in plan.operations[1:]] == ["public.orders"] * 2
    assert plan.operations[1].estimated_rows == 2
    # "$user" is the login's own schema (none named so for "set": skipped, as the server does); RESET: the session's
    plan = plan_migration(sql='SET search_path = "$user", public;\nALTER TABLE orders ADD COLUMN a int;\n'
                          "RESET search_path;\nALTER TABLE orders ADD COLUMN b int;\n", catalog=catalog)
    user_schema = schema if how == "user" else "public"
    assert [op.table for op in plan.operations] == [None, f"{user_schema}.orders", None, f"{schema}.orders"]
    # a CREATE makes its table in the path's first schema, and later statements find it there
    plan = plan_migration(sql="CREATE TABLE audit (id int);\nCREATE INDEX audit_id ON audit (id);\n", catalog=catalog)
    assert [op.table for op in plan.operations] == [f"{schema}.audit"] * 2
    assert plan.operations[0].reverse_sql == f"DROP TABLE {schema}.audit"
    # lint with the database: the same names
    report = lint_sql(MIGRATION, catalog=catalog)
    assert [s.tables for s in report.statements] == [[f"{schema}.orders"]] * 2
    # offline nothing is known of the login: public, as documented
    plan = plan_migration(sql=MIGRATION)
    assert [op.table for op in plan.operations] == ["public.orders"] * 2
    assert plan.operations[0].reverse_sql == "ALTER TABLE public.orders DROP COLUMN score"


def test_plan_runbook_and_dry_run_through_the_cli(dsn: str, tmp_path: Path) -> None:
    login, _ = _app_login(dsn, "set")
    migration = tmp_path / "V1__score.sql"
    migration.write_text(MIGRATION)
    data = ["--data-dir", str(tmp_path / "data")]

    out = agent19("plan", str(migration), "--dsn", login, "--format", "json", *data, cwd=ROOT)
    assert out.returncode == 0, out.stdout + out.stderr
    plan = json.loads(out.stdout)
    assert [op["table"] for op in plan["operations"]] == ["app.orders"] * 2
    assert plan["operations"][0]["estimated_rows"] == ROWS
    assert "ALTER TABLE app.orders DROP COLUMN score" in json.dumps(plan["rollback"])

    out = agent19("runbook", str(migration), "--dsn", login, "--write", str(tmp_path / "out"), "--no-handoff",
                  *data, cwd=ROOT)
    assert out.returncode == 0, out.stdout + out.stderr
    written = "\n".join(p.read_text() for p in (tmp_path / "out").iterdir() if p.is_file())
    assert "ALTER TABLE app.orders DROP COLUMN score" in written
    assert "public.orders" not in written

    out = agent19("dry-run", str(migration), "--dsn", login, "--mode", "dry-run", "--format", "json", *data,
                  cwd=ROOT)
    assert out.returncode == 0, out.stdout + out.stderr
    result = json.loads(out.stdout)
    add_column = result["statements"][0]
    locks = {c["relation"]: c for c in add_column["lock_comparison"]}
    assert locks["app.orders"]["predicted"] == "AccessExclusiveLock"
    assert locks["app.orders"]["agrees"] is True
    assert "public.orders" not in locks
    assert "disagrees" not in out.stdout


def _tables(plan) -> list[str | None]:  # type: ignore[no-untyped-def]
    return [op.table for op in plan.operations if op.table]


def test_a_temporary_table_hides_the_logins_table_of_its_name(dsn: str) -> None:
    """The server looks in the session's temporary schema first: after ``CREATE TEMP TABLE orders`` an unqualified
    ``orders`` is the temporary one (a data migration's scratch table), until it is dropped."""
    login, schema = _app_login(dsn, "set")
    catalog = _catalog(login)
    sql = ("CREATE TEMP TABLE orders AS SELECT id, total FROM app.orders WHERE total < 10;\n"
           "ALTER TABLE orders ADD COLUMN score int;\n"
           "UPDATE orders SET score = total;\n"
           "DROP TABLE orders;\n"
           "ALTER TABLE orders ADD COLUMN after_drop int;\n")
    plan = plan_migration(sql=sql, catalog=catalog)
    assert _tables(plan) == ["pg_temp.orders"] * 4 + [f"{schema}.orders"]
    assert plan.operations[1].reverse_sql == "ALTER TABLE pg_temp.orders DROP COLUMN score"  # not the real table's
    dropped = plan.operations[3]
    assert not dropped.data_loss and dropped.risk != "critical", dropped
    assert plan.operations[4].reverse_sql == f"ALTER TABLE {schema}.orders DROP COLUMN after_drop"
    assert "restore from backup" not in plan.model_dump_json()
    # made again after the DROP: the temporary one again
    plan = plan_migration(sql=sql + "CREATE TEMP TABLE orders (id int);\nALTER TABLE orders ADD COLUMN again int;\n",
                          catalog=catalog)
    assert _tables(plan)[-1] == "pg_temp.orders"
    report = lint_sql(sql, catalog=catalog)
    assert "A19015" not in [f.rule for s in report.statements for f in s.findings]  # CI does not fail on it
    with psycopg.connect(login, autocommit=True) as c:  # the server agrees: the temporary table took the column
        c.execute(sql.split("DROP TABLE")[0])
        assert c.execute("SELECT to_regclass('orders')::text, to_regclass('app.orders')::text").fetchone() == \
            ("orders", "app.orders")
        assert c.execute("SELECT count(*) FROM information_schema.columns WHERE table_schema = 'app' "
                         "AND column_name = 'score'").fetchone() == (0,)


def test_a_set_search_path_lasts_as_long_as_the_server_keeps_it(dsn: str) -> None:
    """``SET LOCAL`` ends with its transaction; a ROLLBACK (or ROLLBACK TO SAVEPOINT) undoes the SETs it covers."""
    login, schema = _app_login(dsn, "set")
    catalog = _catalog(login)
    plan = plan_migration(sql="BEGIN;\nSET LOCAL search_path = public;\nALTER TABLE orders ADD COLUMN score int;\n"
                          "COMMIT;\nALTER TABLE orders ADD COLUMN score2 int;\n", catalog=catalog)
    assert _tables(plan) == ["public.orders", f"{schema}.orders"]
    assert plan.operations[-1].reverse_sql == f"ALTER TABLE {schema}.orders DROP COLUMN score2"
    assert plan.operations[-1].estimated_rows == ROWS
    plan = plan_migration(sql="BEGIN;\nSET search_path = public;\nROLLBACK;\nALTER TABLE orders ADD COLUMN s int;\n",
                          catalog=catalog)
    assert _tables(plan) == [f"{schema}.orders"]
    plan = plan_migration(sql="BEGIN;\nSAVEPOINT a;\nSET search_path = public;\nROLLBACK TO SAVEPOINT a;\n"
                          "ALTER TABLE orders ADD COLUMN s int;\nSET search_path = public;\nCOMMIT;\n"
                          "ALTER TABLE orders ADD COLUMN t int;\n", catalog=catalog)
    assert _tables(plan) == [f"{schema}.orders", "public.orders"]  # a committed SET outlives its transaction


def test_set_config_sets_the_search_path(dsn: str) -> None:
    """``set_config('search_path', …, false)`` is a SET; ``true`` a SET LOCAL."""
    login, schema = _app_login(dsn, "set")
    catalog = _catalog(login)
    plan = plan_migration(sql="SELECT set_config('search_path', 'public', false);\n"
                          "ALTER TABLE orders ADD COLUMN s int;\n", catalog=catalog)
    assert _tables(plan) == ["public.orders"]
    assert plan.operations[-1].reverse_sql == "ALTER TABLE public.orders DROP COLUMN s"
    plan = plan_migration(sql="BEGIN;\nSELECT pg_catalog.set_config('search_path', 'PUBLIC, \"app\"', true);\n"
                          "ALTER TABLE orders ADD COLUMN s1 int;\nCOMMIT;\nALTER TABLE orders ADD COLUMN s2 int;\n",
                          catalog=catalog)
    assert _tables(plan) == ["public.orders", f"{schema}.orders"]


def test_schemas_the_login_cannot_use_are_skipped(dsn: str) -> None:
    """A search_path entry that does not exist, or that the login has no USAGE on, is skipped by the server: for
    lookups, and for a CREATE's target (the first schema it can use)."""
    login, schema = _app_login(dsn, "set")
    catalog = _catalog(login)
    with psycopg.connect(dsn, autocommit=True) as c:
        c.execute("CREATE SCHEMA IF NOT EXISTS secret; CREATE TABLE IF NOT EXISTS secret.orders (id int)")
        c.execute(f"GRANT CREATE ON SCHEMA public TO {catalog.role}")
    plan = plan_migration(sql="SET search_path = secret, public;\nALTER TABLE orders ADD COLUMN s int;\n",
                          catalog=catalog)
    assert _tables(plan) == ["public.orders"]
    assert plan.operations[-1].reverse_sql == "ALTER TABLE public.orders DROP COLUMN s"
    sql = "SET search_path = nosuch, public;\nCREATE TABLE fresh (id int);\nALTER TABLE fresh ADD COLUMN x int;\n"
    plan = plan_migration(sql=sql, catalog=catalog)
    assert _tables(plan) == ["public.fresh"] * 2
    assert plan.operations[1].reverse_sql == "DROP TABLE public.fresh"
    # a schema the migration creates is on the path from then on
    plan = plan_migration(sql="SET search_path = later, app;\nCREATE TABLE a (id int);\nCREATE SCHEMA later;\n"
                          "CREATE TABLE b (id int);\n", catalog=catalog)
    assert _tables(plan) == [f"{schema}.a", "later.b"]
    with psycopg.connect(login, autocommit=True) as c:  # the server: what the plan says
        c.execute("SET search_path = nosuch, public")
        c.execute("CREATE TABLE fresh (id int)")
        assert c.execute("SELECT to_regclass('public.fresh')::text").fetchone() == ("fresh",)
        c.execute("DROP TABLE public.fresh")
        c.execute("SET search_path = secret, public")
        assert c.execute("SELECT to_regclass('orders')::text").fetchone() == ("orders",)
        assert c.execute("SELECT current_schemas(false)::text").fetchone() == ("{public}",)


def test_the_drop_table_fix_backs_up_the_table_it_drops(dsn: str) -> None:
    """A19015's fix dumps the table the DROP resolves to (app.orders), not a same-named one further on the path."""
    login, schema = _app_login(dsn, "set")
    report = lint_sql("DROP TABLE orders;\n", catalog=_catalog(login))
    [finding] = [f for s in report.statements for f in s.findings if f.rule == "A19015"]
    assert f"pg_dump --table={schema}.orders" in finding.fix
    assert "public.orders" not in finding.fix


def test_dry_run_of_a_temporary_table_migration_predicts_its_locks(dsn: str, tmp_path: Path) -> None:
    """The dry run's predictions name the temporary table the statements change: no lock predicted on app.orders
    that the server does not take, no false disagreement with the knowledge table."""
    login, _ = _app_login(dsn, "set")
    migration = tmp_path / "V2__scratch.sql"
    migration.write_text("CREATE TEMP TABLE orders AS SELECT id, total FROM app.orders WHERE total < 10;\n"
                         "ALTER TABLE orders ADD COLUMN score int;\nUPDATE orders SET score = total;\n"
                         "DROP TABLE orders;\n")
    out = agent19("dry-run", str(migration), "--dsn", login, "--mode", "dry-run", "--format", "json",
                  "--data-dir", str(tmp_path / "data"), cwd=ROOT)
    assert out.returncode == 0, out.stdout + out.stderr
    result = json.loads(out.stdout)
    comparisons = [c for s in result["statements"] for c in s["lock_comparison"]]
    assert not [c for c in comparisons if c["agrees"] is False], comparisons
    assert not [c for c in comparisons if c["relation"] == "app.orders" and c["predicted"] == "AccessExclusiveLock"]
    assert "disagrees" not in out.stdout


@pytest.mark.parametrize("sql", [
    "BEGIN;\nSET LOCAL search_path = public;\nSELECT count(*) FROM orders;\nCOMMIT;\n"
    "ALTER TABLE orders ADD COLUMN score2 int;\n",
    "BEGIN;\nSET search_path = public;\nROLLBACK;\nALTER TABLE orders ADD COLUMN score2 int;\n",
])
def test_the_dry_run_ends_the_migrations_transaction_scoped_search_path(dsn: str, tmp_path: Path, sql: str) -> None:
    """The dry run runs the migration in one transaction of its own (its COMMIT and ROLLBACK are not run): the
    search_path they leave is set in their place, so the ALTER after them runs on app.orders, as it will."""
    login, _ = _app_login(dsn, "set")
    migration = tmp_path / "V3__path.sql"
    migration.write_text(sql)
    out = agent19("dry-run", str(migration), "--dsn", login, "--mode", "dry-run", "--format", "json",
                  "--data-dir", str(tmp_path / "data"), cwd=ROOT)
    assert out.returncode == 0, out.stdout + out.stderr
    last = json.loads(out.stdout)["statements"][-1]
    assert last["error"] is None and not last.get("untested"), last
    assert [(c["relation"], c["observed"], c["agrees"]) for c in last["lock_comparison"]] == \
        [("app.orders", "AccessExclusiveLock", True)]
