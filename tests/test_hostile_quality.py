"""Hostile review of `agent19 check`: a NaN never passes, a planted view cannot run code as a superuser,
and a file that is not a checks file is never quoted back. Real server, the CLI as a user runs it."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import uuid
import xml.etree.ElementTree as ET
from collections.abc import Iterator
from pathlib import Path

import pytest
from psycopg.conninfo import conninfo_to_dict, make_conninfo

from tests.conftest import run_sql
from tools.throwaway import ThrowawayServer

ROOT = Path(__file__).resolve().parent.parent


def _check(dsn: str, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "agent19", "check", "--dsn", dsn, *args], capture_output=True,
                          text=True, cwd=ROOT, timeout=120, env={**os.environ, "DATABASE_URL": ""})


def _strict_json(text: str) -> dict:
    def refuse(constant: str) -> None:
        raise AssertionError(f"{constant} is not JSON")

    return json.loads(text, parse_constant=refuse)


@pytest.fixture
def app(pg: ThrowawayServer, dsn: str) -> Iterator[str]:
    """The fresh database as a non-superuser role that owns what it creates."""
    role = f"app_{uuid.uuid4().hex[:8]}"
    run_sql(pg.dsn, f"CREATE ROLE {role} LOGIN PASSWORD 'quality-pw'")
    run_sql(dsn, f"GRANT ALL ON SCHEMA public TO {role}")
    try:
        yield make_conninfo(dsn, user=role, password="quality-pw")
    finally:
        run_sql(dsn, f"DROP OWNED BY {role}")
        run_sql(pg.dsn, f"DROP ROLE {role}")


def test_a_nan_in_the_column_is_an_error_not_a_pass(dsn, tmp_path):
    run_sql(dsn, "CREATE TABLE pay (id int PRIMARY KEY, amount numeric, ratio float8);"
                 "INSERT INTO pay VALUES (1, 10, 0.5), (2, 'NaN', 'NaN'), (3, 20, 0.25)")
    checks = tmp_path / "checks.yml"
    checks.write_text("tables:\n  pay:\n    checks:\n"
                      "      - {check: max, column: amount, fail: '> 1000'}\n"
                      "      - {check: avg, column: ratio, fail: '>= 1'}\n"
                      "      - {check: min, column: amount, fail: '< 0'}\n")
    done = _check(dsn, str(checks), "--format", "json")
    assert done.returncode == 1, done.stdout + done.stderr
    out = _strict_json(done.stdout)  # a NaN value must not make the output invalid JSON
    by_name = {c["check"]: c for c in out["checks"]}
    for name in ("max(amount)", "avg(ratio)"):
        assert by_name[name]["status"] == "error" and "NaN" in by_name[name]["message"], by_name[name]
    assert by_name["min(amount)"]["status"] == "pass"  # min ignores nothing: 10 is the smallest number


def test_a_view_planted_by_another_role_cannot_run_code_as_the_superuser(pg, dsn, app, tmp_path):
    marker = Path(f"/tmp/agent19-hostile-{uuid.uuid4().hex}")
    run_sql(app, f"""
        CREATE TABLE users (id int PRIMARY KEY, email text);
        INSERT INTO users VALUES (1, 'a@x.io'), (2, NULL);
        CREATE FUNCTION flag() RETURNS int LANGUAGE plpgsql AS $$
        BEGIN
          IF (SELECT rolsuper FROM pg_roles WHERE rolname = current_user) THEN
            EXECUTE 'COPY (SELECT 1) TO PROGRAM ''touch {marker}''';
          END IF;
          RETURN 1;
        END $$;
        CREATE VIEW customers AS SELECT id, email, flag() AS flag FROM users;
        CREATE VIEW plain_customers AS SELECT id, email FROM users""")
    checks = tmp_path / "checks.yml"
    checks.write_text("tables:\n  customers:\n    key: id\n    checks:\n"
                      "      - {check: missing_count, column: email}\n")
    try:
        done = _check(dsn, str(checks), "--format", "json")  # the fixture's dsn: a superuser
        assert not marker.exists(), "reading the view ran its function as the superuser"
        assert done.returncode == 1
        result = _strict_json(done.stdout)["checks"][0]
        assert result["status"] == "error" and result["message"].startswith("refused"), result

        done = _check(app, str(checks), "--format", "json")  # as the owner: the gate follows the view
        result = _strict_json(done.stdout)["checks"][0]
        assert result["status"] == "error" and "flag()" in result["message"], result
    finally:
        marker.unlink(missing_ok=True)
    checks.write_text(checks.read_text().replace("customers:", "plain_customers:"))
    done = _check(app, str(checks), "--format", "json")
    result = _strict_json(done.stdout)["checks"][0]
    assert result["status"] == "fail" and result["value"] == 1 and result["failing_keys"] == [2], result


@pytest.mark.parametrize("content", [
    'db_password: "hunter2-SECRET\nother: [x\n',           # broken YAML: PyYAML quotes the line
    "root:$6$hunter2-SECRET:20228:0:99999:7:::\n",          # a shadow-like file: each line a YAML key
    "api_key_hunter2-SECRET: set\n",                         # a mapping without tables:
])
def test_a_file_that_is_not_a_checks_file_is_not_quoted_back(dsn, tmp_path, content):
    path = tmp_path / "not-checks.yml"
    path.write_text(content)
    done = _check(dsn, str(path))
    assert done.returncode == 2
    assert "hunter2" not in done.stdout + done.stderr, done.stderr
    assert "not-checks.yml" in done.stderr  # still says which file and why


def test_a_bound_that_is_not_a_value_is_refused_before_anything_runs(dsn, tmp_path):
    run_sql(dsn, "CREATE TABLE pay (id int PRIMARY KEY, amount numeric); INSERT INTO pay VALUES (1, 5)")
    path = tmp_path / "checks.yml"
    path.write_text("tables:\n  pay:\n    checks:\n      - {check: row_count}\n"
                    "      - {check: invalid_count, column: amount, valid_min: {a: 1}}\n")
    done = _check(dsn, str(path))
    assert done.returncode == 2 and "valid_min" in done.stderr, done.stderr
    path.write_text(path.read_text().replace("{a: 1}", "0"))
    done = _check(dsn, str(path), "--format", "json")
    assert done.returncode == 0, done.stdout + done.stderr


def test_a_column_name_cannot_inject_checks_into_a_suggested_file(app, tmp_path):
    injected = 'x\n      - check: sql\n        sql: SELECT 1 WHERE false\n      #'
    run_sql(app, f"""CREATE TABLE trick (id int PRIMARY KEY, "{injected}" int NOT NULL DEFAULT 1, status text);
                     INSERT INTO trick SELECT g, 1, 'a' FROM generate_series(1, 100) g; ANALYZE trick""")
    done = _check(app, "--suggest", "trick")
    assert done.returncode == 0, done.stderr
    path = tmp_path / "suggested.yml"
    path.write_text(done.stdout)
    done = _check(app, str(path), "--format", "json")
    kinds = [c["kind"] for c in _strict_json(done.stdout)["checks"]]
    assert "sql" not in kinds, kinds  # every check came from the catalog, none from a name's text
    assert done.returncode == 0, done.stdout


def test_junit_stays_well_formed_xml_whatever_the_names_hold(dsn, tmp_path):
    run_sql(dsn, """CREATE TABLE "bell\x07table" (k text PRIMARY KEY, v int);
                    INSERT INTO "bell\x07table" VALUES (E'<a>&]]>\\x01', NULL)""")
    path = tmp_path / "checks.yml"
    path.write_text('tables:\n  "bell\\atable":\n    checks:\n      - {check: missing_count, column: v, '
                    'name: "missing \\x01 v"}\n')
    done = _check(dsn, str(path), "--format", "junit")
    assert done.returncode == 1, done.stdout + done.stderr
    suites = ET.fromstring(done.stdout.split("\n", 1)[1])  # a CI's JUnit reader must be able to read it
    failure = suites.find("./testsuite/testcase/failure")
    assert failure is not None and "<a>&]]>" in (failure.text or ""), done.stdout


def test_a_search_path_set_by_the_database_owner_cannot_swap_an_aggregate(pg, dsn, app, tmp_path):
    """The owner of a database can set its search_path (public before pg_catalog) and shadow max(numeric);
    the checks built from the catalog must still call PostgreSQL's own max, not run theirs as the superuser."""
    marker = Path(f"/tmp/agent19-hostile-{uuid.uuid4().hex}")
    run_sql(app, f"""
        CREATE TABLE pay (id int PRIMARY KEY, amount numeric); INSERT INTO pay VALUES (1, 10), (2, 75);
        CREATE FUNCTION evil_step(numeric, numeric) RETURNS numeric LANGUAGE plpgsql AS $$
        BEGIN
          IF (SELECT rolsuper FROM pg_roles WHERE rolname = current_user) THEN
            EXECUTE 'COPY (SELECT 1) TO PROGRAM ''touch {marker}''';
          END IF;
          RETURN 0;
        END $$;
        CREATE AGGREGATE public.max(numeric) (SFUNC = evil_step, STYPE = numeric)""")
    database = conninfo_to_dict(dsn)["dbname"]
    run_sql(pg.dsn, f'ALTER DATABASE "{database}" SET search_path = public, pg_catalog')
    path = tmp_path / "checks.yml"
    path.write_text("tables:\n  pay:\n    checks:\n      - {check: max, column: amount, fail: '> 50'}\n")
    try:
        done = _check(dsn, str(path), "--format", "json")  # a superuser
        assert not marker.exists(), "the database owner's aggregate ran as the superuser"
        result = _strict_json(done.stdout)["checks"][0]
        assert result["status"] == "fail" and result["value"] == 75, result  # PostgreSQL's max
    finally:
        marker.unlink(missing_ok=True)
