"""The read guard follows the code planning a read runs from a table's own definitions (hostile review G9/G3/G5).

The planner loads a table's index expressions and predicates, its statistics objects' expressions and a partitioned
table's key, and folds their constants: a function the table's owner declared IMMUTABLE is called then, by the
login that plans — even for EXPLAIN without ANALYZE. agent19 explains a user's SELECT in dry-run mode as the
superuser it was given, so the owner's function ran with a superuser's powers; the guard never looked at indexes.
Here the owner's function, when it runs as a superuser, terminates a victim session (another login's) and raises.
Each read must be refused naming the definition, and the victim must live; a harmless expression index must not be
refused. The same walk guards agent19's own scans: a data-quality check, and the duration calibration's sample.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import psycopg
import pytest

from agent19.config import Settings
from agent19.db.connection import Database
from agent19.optimize.explain import explain
from agent19.safety.readonly import ReadOnlyViolation
from tests.conftest import owner_login

ROOT = Path(__file__).resolve().parent.parent
PAYLOAD = """
  IF (SELECT r.rolsuper FROM pg_catalog.pg_roles r WHERE r.rolname OPERATOR(pg_catalog.=) current_user) THEN
    PERFORM pg_catalog.pg_terminate_backend(a.pid) FROM pg_catalog.pg_stat_activity a
      WHERE a.application_name OPERATOR(pg_catalog.=) 'victim';
    RAISE EXCEPTION 'owner code ran as superuser %', current_user;
  END IF;
"""
"""The body of an owner's function that acts only as a superuser: terminates the 'victim' session, and raises."""
LIE = """
CREATE FUNCTION public.lie() RETURNS int IMMUTABLE LANGUAGE plpgsql AS $$
BEGIN""" + PAYLOAD + """  RETURN 0;
END $$;
CREATE TABLE public.t (id int PRIMARY KEY, n int, name text);
INSERT INTO public.t SELECT g, g, 'n' || g FROM pg_catalog.generate_series(1, 2000) g;
"""
PLANTS = {
    "index expression": ("CREATE INDEX t_planted ON public.t ((public.lie() + id))", "index public.t_planted"),
    "index predicate": ("CREATE INDEX t_planted ON public.t (n) WHERE n > public.lie()", "index public.t_planted"),
    "statistics expression": ("CREATE STATISTICS public.t_planted ON (public.lie() + id) FROM public.t",
                              "statistics object t_planted"),
}
HARMLESS = """
CREATE FUNCTION public.twice(x int) RETURNS int IMMUTABLE LANGUAGE sql AS 'SELECT x * 2';
CREATE INDEX t_lower ON public.t (lower(name));
CREATE INDEX t_twice ON public.t (public.twice(n));
CREATE STATISTICS public.t_stats ON (public.twice(n) + id) FROM public.t;
"""
QUERY = "SELECT * FROM t WHERE id = 1"


def _cli(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "agent19", *args], capture_output=True, text=True, cwd=ROOT,
                          timeout=120, env={**os.environ, "DATABASE_URL": ""})


@pytest.fixture
def owner(dsn: str) -> str:
    app = owner_login(dsn, "planter")
    with psycopg.connect(app, autocommit=True) as c:
        c.execute(LIE)
    return app


@pytest.fixture
def victim(owner: str) -> Iterator[psycopg.Connection]:
    conn = psycopg.connect(owner, application_name="victim", autocommit=True)
    try:
        yield conn
    finally:
        conn.close()


def _alive(victim: psycopg.Connection) -> bool:
    try:
        return victim.execute("SELECT 1").fetchone() == (1,)
    except psycopg.OperationalError:
        return False


def _plant(owner: str, sql: str) -> None:
    with psycopg.connect(owner, autocommit=True) as c:  # built as the owner: the function returns 0
        c.execute(sql)
        c.execute("ANALYZE public.t")


@pytest.mark.parametrize("where", list(PLANTS))
def test_explain_as_the_superuser_is_refused_and_the_owners_code_does_not_run(dsn, owner, victim, where):
    sql, named = PLANTS[where]
    _plant(owner, sql)
    db = Database(Settings.load(dsn=dsn, mode="dry-run", env={}))
    try:
        for analyze in (True, False):
            with pytest.raises(ReadOnlyViolation) as refused:
                explain(db, QUERY, analyze=analyze)
            assert named in refused.value.message and "planner" in refused.value.message, refused.value.message
            assert "pg_terminate_backend" in refused.value.message
            assert _alive(victim), (where, analyze)
    finally:
        db.close()
    for analyze in ("--analyze", "--no-analyze"):
        done = _cli("explain", "--dsn", dsn, "--mode", "dry-run", analyze, QUERY)
        assert done.returncode != 0 and named in done.stderr + done.stdout, done.stdout + done.stderr
        assert "owner code ran" not in done.stdout + done.stderr
        assert _alive(victim), (where, analyze)


def test_partition_keys_and_inheritance_childrens_checks_are_followed_too(dsn, owner, victim):
    """A partitioned table's key is folded when a read of it is planned; an inheritance child's CHECK when the
    planner tries to exclude it (constraint_exclusion = partition, the default). Both observed on PostgreSQL 15."""
    with psycopg.connect(owner, autocommit=True) as c:
        c.execute("CREATE TABLE public.p (id int, n int) PARTITION BY RANGE ((public.lie() + id));"
                  "CREATE TABLE public.p1 PARTITION OF public.p FOR VALUES FROM (0) TO (100);"
                  "CREATE TABLE public.parent (id int);"
                  "CREATE TABLE public.child (CONSTRAINT planted CHECK (id > public.lie())) INHERITS (public.parent)")
    db = Database(Settings.load(dsn=dsn, mode="dry-run", env={}))
    try:
        for sql, named in (("SELECT * FROM p WHERE id = 1", "partition key of public.p"),
                           ("SELECT count(*) FROM p", "partition key of public.p"),
                           ("SELECT * FROM parent WHERE id = 1", "CHECK constraint planted of public.child")):
            with pytest.raises(ReadOnlyViolation, match=named):
                explain(db, sql, analyze=False)
            assert _alive(victim), sql
    finally:
        db.close()


def test_harmless_expression_indexes_and_statistics_are_explained(dsn, owner, victim):
    _plant(owner, HARMLESS)
    db = Database(Settings.load(dsn=dsn, mode="dry-run", env={}))
    try:
        for analyze in (True, False):
            run = explain(db, QUERY, analyze=analyze)
            assert run.execution == ("analyze" if analyze else "plain"), run.execution
        assert explain(db, "SELECT * FROM t WHERE lower(name) = 'n5'", analyze=True).execution == "analyze"
    finally:
        db.close()
    assert _alive(victim)


def test_a_quality_check_on_the_planted_table_errors_with_the_refusal(dsn, owner, victim, tmp_path):
    _plant(owner, PLANTS["index expression"][0])
    checks = tmp_path / "checks.yml"
    checks.write_text("tables:\n  public.t:\n    checks:\n"
                      "      - {check: row_count, fail: '< 1'}\n"
                      "      - {check: missing_count, column: name, fail: '> 0'}\n")
    for mode in (["--mode", "dry-run"], ["--mode", "read-only", "--allow-privileged-reads"]):
        done = subprocess.run([sys.executable, "-m", "agent19", "check", "--dsn", dsn, *mode, str(checks),
                               "--format", "json"], capture_output=True, text=True, cwd=ROOT, timeout=120,
                              env={**os.environ, "DATABASE_URL": ""})
        assert done.stdout, done.stderr
        out = json.loads(done.stdout)
        assert done.returncode != 0, done.stdout
        for c in out["checks"]:
            assert c["status"] == "error" and "index public.t_planted" in c["message"], c
            assert "owner code ran" not in c["message"]
        assert _alive(victim), mode


def test_calibration_keeps_the_assumed_rate_and_says_why(dsn, owner, victim):
    _plant(owner, PLANTS["index expression"][0])
    for mode in (["--mode", "dry-run"], ["--mode", "read-only", "--allow-privileged-reads"]):
        sql = "ALTER TABLE public.t ALTER COLUMN n TYPE bigint" if "dry-run" in mode else \
            "ALTER TABLE public.t ADD CONSTRAINT t_n CHECK (n > 0)"
        done = _cli("plan", "--sql", sql, "--dsn", dsn, *mode, "--format", "json", "--write-sample-seconds", "0")
        assert done.returncode == 0, done.stderr
        ops = [o for o in json.loads(done.stdout)["operations"] if o.get("work")]
        assert ops, done.stdout
        for op in ops:
            assert op["figures"] == "estimated" and op["duration_basis"].startswith("assumed ("), op
            assert "not sampled" in op["duration_basis"] and "index public.t_planted" in op["duration_basis"], op
        assert "owner code ran" not in done.stdout + done.stderr
        assert _alive(victim), mode
