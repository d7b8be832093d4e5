"""Row-level security as the application's login sees it: a policy hides rows without an error, so a data-quality
check must not pass on what it cannot see and an ETL run must not copy a subset and move its watermark past the
rest. Real server; a non-superuser login that owns the database (tests.conftest.owner_login) and reads a table
owned by another role whose policy shows it 2 of 5 rows."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import psycopg

from tests.conftest import owner_login, run_sql

ROOT = Path(__file__).resolve().parent.parent

SETUP = """
CREATE TABLE users (id int PRIMARY KEY);
INSERT INTO users VALUES (1), (2);
CREATE TABLE accounts (id int PRIMARY KEY, tenant text NOT NULL, email text, owner_id int);
INSERT INTO accounts VALUES (1, 'a', 'a@x', 1), (2, 'a', 'b@x', 2),
                            (3, 'b', 'x@x', 1), (4, 'b', 'x@x', 99), (5, 'b', NULL, 2);
ALTER TABLE accounts ENABLE ROW LEVEL SECURITY;
CREATE POLICY tenant_a ON accounts USING (tenant = 'a');
"""


def _login(dsn: str) -> str:
    """The application's login: owns the database and schema public, SELECT on accounts (owned by the superuser)."""
    app = owner_login(dsn, "rls")
    run_sql(dsn, SETUP)
    role = psycopg.conninfo.conninfo_to_dict(app)["user"]
    run_sql(dsn, f"GRANT SELECT ON accounts, users TO {role}")
    return app


def _agent19(dsn: str, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "agent19", *args], capture_output=True, text=True, cwd=ROOT,
                          timeout=120, env={**os.environ, "DATABASE_URL": dsn})


def test_check_on_a_table_a_policy_filters_is_unknown_not_pass(dsn, tmp_path):
    app = _login(dsn)
    checks = tmp_path / "rls.yml"
    checks.write_text(textwrap.dedent("""\
        tables:
          public.accounts:
            checks:
              - {check: duplicate_count, columns: [email]}
              - {check: missing_count, column: email}
              - {check: orphans, columns: [owner_id], references_table: users}
              - {check: schema, columns: [id, email]}
          public.users:
            checks:
              - {check: row_count, fail: "< 1"}
        """))
    done = _agent19(app, "check", str(checks), "--format", "json")
    assert done.returncode == 1, done.stdout + done.stderr
    by = {(c["table"], c["kind"]): c for c in json.loads(done.stdout)["checks"]}
    for kind in ("duplicate_count", "missing_count", "orphans"):
        c = by[("public.accounts", kind)]
        assert c["status"] == "error", c  # it passed on the 2 visible rows
        assert "row-level security may hide rows of public.accounts from this login" in c["message"], c
        assert "BYPASSRLS" in c["message"]
    assert by[("public.accounts", "schema")]["status"] == "pass"  # the catalog is not filtered
    assert by[("public.users", "row_count")]["status"] == "pass"
    text = _agent19(app, "check", str(checks))
    assert "unknown - row-level security may hide rows of public.accounts" in text.stdout, text.stdout
    # the table's owner sees every row: the same checks measure them all
    run_sql(dsn, f"ALTER TABLE accounts OWNER TO {psycopg.conninfo.conninfo_to_dict(app)['user']}")
    owner = json.loads(_agent19(app, "check", str(checks), "--format", "json").stdout)
    by = {(c["table"], c["kind"]): c for c in owner["checks"]}
    assert by[("public.accounts", "duplicate_count")]["value"] == 2
    assert by[("public.accounts", "orphans")]["value"] == 1


def test_check_through_a_view_over_the_filtered_table_is_not_a_pass(dsn, tmp_path):
    """A view reads the table as its owner (here the login): the policy filters it too; the server refuses."""
    app = _login(dsn)
    run_sql(app, "CREATE VIEW accounts_v AS SELECT * FROM public.accounts")
    checks = tmp_path / "v.yml"
    checks.write_text("tables:\n  accounts_v:\n    key: [id]\n    checks:\n"
                      "      - {check: duplicate_count, columns: [email]}\n")
    done = _agent19(app, "check", str(checks), "--format", "json")
    assert done.returncode == 1, done.stdout + done.stderr
    (c,) = json.loads(done.stdout)["checks"]
    assert c["status"] == "error" and "row-level security" in c["message"], c


def _pipeline(source: str) -> str:
    return textwrap.dedent(f"""
        name = "acc"
        [source]
        {source}
        cursor = ["id"]
        [destination]
        table = "public.acc_copy"
        key = ["id"]
        """)


def test_etl_refuses_a_source_a_policy_filters_before_reading(dsn, tmp_path):
    app = _login(dsn)
    run_sql(app, "CREATE TABLE acc_copy (id int PRIMARY KEY, tenant text, email text, owner_id int)")
    for name, source in (("table", 'table = "public.accounts"'),
                         ("query", 'query = "SELECT id, tenant, email, owner_id FROM public.accounts"')):
        path = tmp_path / f"{name}.toml"
        path.write_text(_pipeline(source))
        done = _agent19(app, "etl", "run", str(path), "--mode", "execute")
        assert done.returncode == 2, (name, done.stdout, done.stderr)
        assert "row-level security may hide rows" in done.stderr, (name, done.stderr)
        assert "BYPASSRLS" in done.stderr and "watermark did not move" in done.stderr
        with psycopg.connect(dsn) as conn:
            assert conn.execute("SELECT count(*) FROM acc_copy").fetchone() == (0,)
            state = conn.execute("SELECT to_regclass('agent19_etl.watermark')").fetchone()[0]
            if state is not None:
                assert conn.execute("SELECT count(*) FROM agent19_etl.watermark").fetchone() == (0,)
    run_sql(dsn, "ALTER TABLE accounts NO FORCE ROW LEVEL SECURITY")
    run_sql(dsn, f"ALTER TABLE accounts OWNER TO {psycopg.conninfo.conninfo_to_dict(app)['user']}")
    done = _agent19(app, "etl", "run", str(tmp_path / "table.toml"), "--mode", "execute", "--format", "json")
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout)["inserted"] == 5  # its owner reads every row


def test_backup_verify_names_row_level_security_not_select(dsn):
    app = _login(dsn)
    done = _agent19(app, "backup", "verify")
    assert done.returncode == 2, done.stdout + done.stderr
    text = done.stderr
    assert "row-level security may hide rows of public.accounts from this login" in text, text
    assert "BYPASSRLS" in text and "needs SELECT" not in text
    as_json = _agent19(app, "backup", "verify", "--format", "json")
    assert as_json.returncode == 2
    assert "row-level security may hide rows of public.accounts" in json.loads(as_json.stdout)["error"]


async def test_data_quality_over_mcp_does_not_pass_on_visible_rows(dsn):
    from tests.mcp_client import stdio_session

    app = _login(dsn)
    checks = "tables:\n  public.accounts:\n    checks:\n      - {check: missing_count, column: email}\n"
    async with stdio_session("--dsn", app) as session:
        result = await session.call_tool("data_quality", {"checks": checks})
    out = result.structured_content
    assert out["status"] == "error", out  # it said pass: the NULL email is in a hidden row
    assert "row-level security may hide rows of public.accounts" in out["checks"][0]["message"]


def test_a_policy_that_shows_every_row_is_not_advised_as_the_remedy(dsn, tmp_path):
    """A ``USING (true)`` policy shows the login every row, yet the every-row read (row_security = off) fails on
    it: the advice must name what works (BYPASSRLS, ownership), never "a policy that shows every row"."""
    app = _login(dsn)
    run_sql(dsn, "DROP POLICY tenant_a ON accounts; CREATE POLICY everyone ON accounts USING (true)")
    checks = tmp_path / "all.yml"
    checks.write_text("tables:\n  public.accounts:\n    checks:\n      - {check: missing_count, column: email}\n")
    (c,) = json.loads(_agent19(app, "check", str(checks), "--format", "json").stdout)["checks"]
    assert c["status"] == "error", c
    assert "BYPASSRLS" in c["message"] and "owner" in c["message"], c
    assert "policy that shows every row" not in c["message"], c
    path = tmp_path / "acc.toml"
    run_sql(app, "CREATE TABLE acc_copy (id int PRIMARY KEY, tenant text, email text, owner_id int)")
    path.write_text(_pipeline('table = "public.accounts"'))
    done = _agent19(app, "etl", "run", str(path), "--mode", "execute")
    assert done.returncode == 2 and "BYPASSRLS" in done.stderr, done.stderr
    assert "shows this login every row" not in done.stderr and "policy that shows every row" not in done.stderr


def test_a_table_the_login_may_not_read_names_the_grant(dsn, tmp_path):
    app = _login(dsn)
    role = psycopg.conninfo.conninfo_to_dict(app)["user"]
    run_sql(dsn, "CREATE TABLE secret_t (id int PRIMARY KEY, v text)")  # the superuser's, no GRANT (r25c L8)
    checks = tmp_path / "s.yml"
    checks.write_text("tables:\n  public.secret_t:\n    checks:\n      - {check: missing_count, column: v}\n")
    (c,) = json.loads(_agent19(app, "check", str(checks), "--format", "json").stdout)["checks"]
    assert c["status"] == "error" and "permission denied for table secret_t" in c["message"], c
    assert f"GRANT SELECT ON secret_t TO {role}" in c["message"], c  # it named no GRANT
    run_sql(dsn, f"GRANT SELECT ON secret_t TO {role}")  # the advice works
    (c,) = json.loads(_agent19(app, "check", str(checks), "--format", "json").stdout)["checks"]
    assert c["status"] == "pass", c
