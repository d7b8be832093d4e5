"""Hostile review: rollbacks that must not destroy what predates the migration, names with dots, and foreign keys
that only look the same. Every test runs on a real server as a non-superuser application login."""

from __future__ import annotations

import json
import subprocess
import sys

import psycopg

from agent19.db.catalog import snapshot
from agent19.migrate.planning.plan import plan_migration
from tests.conftest import owner_login


def _run(dsn: str, sql: str) -> None:
    with psycopg.connect(dsn, autocommit=True) as conn:
        conn.execute(sql)


def _one(dsn: str, sql: str) -> object:
    with psycopg.connect(dsn, autocommit=True) as conn:
        return conn.execute(sql).fetchone()[0]


def _snap(dsn: str):
    with psycopg.connect(dsn, autocommit=True, row_factory=psycopg.rows.dict_row) as conn:
        return snapshot(conn)


def _cli(dsn: str, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "agent19", "--dsn", dsn, *args], capture_output=True, text=True, timeout=300
    )


IF_NOT_EXISTS = (
    "CREATE INDEX IF NOT EXISTS t_a ON t (a);\n"
    "ALTER TABLE t ADD COLUMN IF NOT EXISTS a int;\n"
    "CREATE MATERIALIZED VIEW IF NOT EXISTS mv AS SELECT 1 AS one;\n"
    "CREATE SEQUENCE IF NOT EXISTS s1;\n"
    "CREATE INDEX IF NOT EXISTS t_b ON t (a);\n"
)


def test_if_not_exists_of_live_objects_is_not_undone_by_dropping_them(dsn: str, tmp_path) -> None:
    """CREATE INDEX / SEQUENCE / MATERIALIZED VIEW IF NOT EXISTS and ADD COLUMN IF NOT EXISTS of objects that exist
    do nothing; the rollback dropped them (ADD COLUMN IF NOT EXISTS's rollback dropped a live column with its rows)."""
    app = owner_login(dsn)
    _run(
        app,
        "CREATE TABLE t (id int PRIMARY KEY, a int); CREATE INDEX t_a ON t (a);"
        "INSERT INTO t SELECT g, g FROM generate_series(1, 100) g;"
        "CREATE MATERIALIZED VIEW mv AS SELECT 1 AS one; CREATE SEQUENCE s1",
    )
    migration = tmp_path / "m.sql"
    migration.write_text(IF_NOT_EXISTS)
    out = _cli(app, "plan", str(migration), "--format", "json")
    assert out.returncode == 0, out.stderr
    plan = json.loads(out.stdout)
    steps = plan["rollback"]["steps"]
    assert steps == ["DROP INDEX public.t_b"], steps  # only the index the migration creates
    assert plan["rollback"]["kind"] == "automatic"
    _run(app, IF_NOT_EXISTS)
    for step in steps:
        _run(app, step)
    assert _one(app, "SELECT sum(a) FROM t") == 5050  # the column and its rows are still there
    assert (
        _one(
            app,
            "SELECT to_regclass('t_a') IS NOT NULL AND to_regclass('mv') IS NOT NULL "
            "AND to_regclass('s1') IS NOT NULL AND to_regclass('t_b') IS NULL",
        )
        is True
    )


def test_if_not_exists_without_a_catalog_has_no_automatic_drop(dsn: str) -> None:
    plan = plan_migration(sql=IF_NOT_EXISTS)  # nobody knows what existed
    assert not any(s.startswith("DROP") or "DROP COLUMN" in s for s in plan.rollback.steps), plan.rollback.steps
    assert plan.rollback.kind == "manual" and plan.rollback.irreversible == [1, 2, 3, 4, 5]
    assert "column a of public.t may exist before the migration" in plan.rollback.description


def test_a_foreign_key_that_differs_in_on_update_deferrable_or_match_is_not_the_one_asked_for(dsn: str) -> None:
    """A change list's plain add_foreign_key was reported as already there (nothing generated) when the live one
    cascades updates, is deferred or is MATCH FULL: the database kept a constraint that behaves differently."""
    from agent19.migrate.planning.model import Change

    app = owner_login(dsn)
    _run(
        app,
        "CREATE TABLE orders (id bigint PRIMARY KEY); CREATE TABLE lines (id int, a bigint, b bigint, c bigint,"
        " CONSTRAINT l_a FOREIGN KEY (a) REFERENCES orders (id) ON UPDATE CASCADE,"
        " CONSTRAINT l_b FOREIGN KEY (b) REFERENCES orders (id) DEFERRABLE INITIALLY DEFERRED,"
        " CONSTRAINT l_c FOREIGN KEY (c) REFERENCES orders (id) MATCH FULL);"
        "CREATE INDEX ON lines (a); CREATE INDEX ON lines (b); CREATE INDEX ON lines (c)",
    )
    changes = [
        Change.model_validate(
            {
                "type": "add_foreign_key",
                "table": "lines",
                "index_columns": [col],
                "references_table": "orders",
                "references_columns": ["id"],
            }
        )
        for col in ("a", "b", "c")
    ]
    plan = plan_migration(changes=changes, catalog=_snap(app))
    assert not [f for f in plan.findings if f.rule == "already-exists"]
    for col in ("a", "b", "c"):
        assert (
            f"FOREIGN KEY ({col}) REFERENCES public.orders" in plan.sql
            or f"FOREIGN KEY ({col}) REFERENCES orders" in plan.sql
        ), plan.sql
    _run(app, plan.sql.replace("CONCURRENTLY", ""))
    # the generated constraints check immediately and reject an update of a referenced key
    assert (
        _one(
            app,
            "SELECT count(*) FROM pg_constraint WHERE contype = 'f' AND NOT condeferrable "
            "AND confupdtype = 'a' AND confmatchtype = 's'",
        )
        == 3
    )


def test_calibration_samples_at_most_its_sample_when_the_row_count_is_stale(dsn: str, tmp_path) -> None:
    """reltuples said 600 rows while the table held 60,600 (bulk load, not analyzed yet): the "sample" was the whole
    table, read in read-only mode and copied in dry-run mode (on a large table: the whole table written again)."""
    from agent19.migrate.planning.calibrate import SAMPLE_ROWS

    app = owner_login(dsn)
    _run(
        app,
        "CREATE TABLE stale (id int, v int) WITH (autovacuum_enabled = false);"
        "INSERT INTO stale SELECT g, g FROM generate_series(1, 600) g; ANALYZE stale;"
        "INSERT INTO stale SELECT g, g FROM generate_series(1, 60000) g",
    )
    migration = tmp_path / "m.sql"
    migration.write_text("ALTER TABLE stale ADD CONSTRAINT positive CHECK (v > 0);\n")
    for mode in ("read-only", "dry-run"):
        out = _cli(app, "--mode", mode, "plan", str(migration), "--format", "json")
        assert out.returncode == 0, out.stderr
        op = json.loads(out.stdout)["operations"][0]
        assert op["figures"] == "calibrated", op
        sampled = int(op["duration_basis"].split(" sampled rows")[0].rsplit(" ", 1)[1].replace(",", ""))
        assert 0 < sampled <= SAMPLE_ROWS, op["duration_basis"]


def test_rollback_of_a_migration_that_sets_search_path_undoes_its_own_schema_only(dsn: str, tmp_path) -> None:
    """After SET search_path TO app, unqualified names were still read as public: the rollback of CREATE INDEX i ON
    t dropped public.i (an index that predates the migration, on another table) and DROP NOT NULL aimed at
    public.t, which has no such column."""
    app = owner_login(dsn)
    _run(
        app,
        "CREATE TABLE t (id int, a int); CREATE INDEX i ON t (a);"
        "CREATE SCHEMA app; CREATE TABLE app.t (id int, v int); INSERT INTO app.t VALUES (1, 1)",
    )
    sql = "SET search_path TO app;\nCREATE INDEX i ON t (v);\nALTER TABLE t ALTER COLUMN v SET NOT NULL;\n"
    migration = tmp_path / "m.sql"
    migration.write_text(sql)
    out = _cli(app, "plan", str(migration), "--format", "json")
    assert out.returncode == 0, out.stderr
    plan = json.loads(out.stdout)
    assert [o["table"] for o in plan["operations"]][1:] == ["app.t", "app.t"]
    _run(app, sql)
    for step in plan["rollback"]["steps"]:
        _run(app, step)
    assert _one(app, "SELECT to_regclass('public.i') IS NOT NULL AND to_regclass('app.i') IS NULL") is True
    assert _one(app, "SELECT NOT attnotnull FROM pg_attribute WHERE attrelid = 'app.t'::regclass AND attname = 'v'")


def test_rollback_of_a_failed_add_constraint_keeps_the_constraint_that_predates_it(dsn: str) -> None:
    """ADD CONSTRAINT pos where the table has a constraint pos fails; in a migration that commits statement by
    statement, the rollback (DROP CONSTRAINT IF EXISTS pos) then dropped the constraint that predates it."""
    app = owner_login(dsn)
    _run(app, "CREATE TABLE t (id int, a int, CONSTRAINT pos CHECK (a > 0)); INSERT INTO t VALUES (1, 1)")
    sql = ["CREATE INDEX CONCURRENTLY tx ON t (a)", "ALTER TABLE t ADD CONSTRAINT pos CHECK (a >= 0) NOT VALID"]
    plan = plan_migration(sql=";\n".join(sql) + ";\n", catalog=_snap(app))
    _run(app, sql[0])
    try:
        _run(app, sql[1])
    except psycopg.errors.DuplicateObject:
        pass
    for step in plan.rollback.steps:
        _run(app, step)
    assert _one(app, "SELECT pg_get_constraintdef(oid) FROM pg_constraint WHERE conname = 'pos'") == "CHECK ((a > 0))"
    assert _one(app, "SELECT to_regclass('tx') IS NULL") is True
    # replacing it (drop, then add under the same name) is still undone: the new one dropped, the old one back
    replace = "ALTER TABLE t DROP CONSTRAINT pos, ADD CONSTRAINT pos CHECK (a >= 0);\n"
    plan = plan_migration(sql=replace, catalog=_snap(app))
    _run(app, replace)
    for step in plan.rollback.steps:
        _run(app, step)
    assert _one(app, "SELECT pg_get_constraintdef(oid) FROM pg_constraint WHERE conname = 'pos'") == "CHECK ((a > 0))"


def test_rollback_of_a_failed_create_keeps_the_table_and_index_that_predate_it(dsn: str) -> None:
    """CREATE TABLE orders / CREATE INDEX i of names the database has fail; in a migration that commits statement
    by statement (CONCURRENTLY), the rollback then ran DROP TABLE orders: the live table, with its rows."""
    app = owner_login(dsn)
    _run(
        app,
        "CREATE TABLE orders (id int PRIMARY KEY); INSERT INTO orders SELECT generate_series(1, 10);"
        "CREATE INDEX i ON orders (id)",
    )
    sql = [
        "CREATE INDEX CONCURRENTLY fresh ON orders (id)",
        "CREATE INDEX i ON orders (id)",
        "CREATE TABLE orders (id bigint)",
    ]
    plan = plan_migration(sql=";\n".join(sql) + ";\n", catalog=_snap(app))
    assert plan.rollback.steps == ["DROP INDEX CONCURRENTLY public.fresh"], plan.rollback.steps
    _run(app, sql[0])
    for failing in sql[1:]:
        try:
            _run(app, failing)
        except psycopg.errors.DuplicateTable:
            pass
    for step in plan.rollback.steps:
        _run(app, step)
    assert _one(app, "SELECT count(*) FROM orders") == 10
    assert _one(app, "SELECT to_regclass('i') IS NOT NULL AND to_regclass('fresh') IS NULL") is True
    # dropped (or renamed away) first, the name is free: the new one is undone and the old one recreated
    rebuild = (
        "DROP INDEX i;\nCREATE INDEX i ON orders (id DESC);\nALTER TABLE orders RENAME TO old;\n"
        "CREATE TABLE orders (id bigint);\n"
    )
    plan = plan_migration(sql=rebuild, catalog=_snap(app))
    _run(app, rebuild)
    for step in plan.rollback.steps:
        _run(app, step)
    assert _one(app, "SELECT pg_get_indexdef('i'::regclass)") == "CREATE INDEX i ON public.orders USING btree (id)"
    assert _one(app, "SELECT count(*) FROM orders") == 10
