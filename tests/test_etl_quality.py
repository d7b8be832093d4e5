"""Data-quality checks on a real server: planted violations of every kind found with exactly their keys,
the clean data passing, thresholds, sampling, tables without a key, reserved names, a non-superuser
login, the safety gate, timeouts, suggestions, the CLI (JSON, JUnit, exit codes, --on-failure) and MCP."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import uuid
from collections.abc import Iterator
from pathlib import Path
from xml.etree import ElementTree as ET

import psycopg
import pytest
from psycopg.conninfo import conninfo_to_dict, make_conninfo

from agent19.db.catalog import snapshot
from agent19.db.connection import Database
from agent19.etl.quality_model import parse_checks
from agent19.etl.quality_report import QualityReport
from agent19.etl.quality_run import run_checks
from agent19.etl.quality_suggest import suggest
from tests.conftest import session_settings
from tests.mcp_client import stdio_session

ROOT = Path(__file__).parent.parent


def dataset(dsn: str, *, dirty: bool) -> None:
    """A shop. Clean: keys, a foreign key, fresh orders, tidy values. Dirty: the same rows with one
    planted violation of each kind (and without the constraints that would have stopped them)."""
    fk = "" if dirty else " REFERENCES users (id)"
    unique = "" if dirty else ", UNIQUE (email)"
    status_type = "varchar(20)" if dirty else "text"
    age = "3 days" if dirty else "1 hour"
    sql = f"""
    CREATE TABLE users (id bigint PRIMARY KEY, email text NOT NULL, status {status_type} NOT NULL DEFAULT 'active',
                        signup timestamptz NOT NULL DEFAULT now(){unique});
    INSERT INTO users (id, email) SELECT g, 'user' || g || '@example.com' FROM generate_series(1, 10) g;
    CREATE TABLE "order" (id bigint PRIMARY KEY, user_id bigint{fk}, amount numeric(12,2), status text,
                          created_at timestamptz NOT NULL DEFAULT now());
    INSERT INTO "order" SELECT g, 1 + g % 10, 10 * g, (ARRAY['paid','pending','shipped'])[1 + g % 3],
                               now() - interval '{age}' FROM generate_series(1, 20) g;
    CREATE TABLE events (kind text, at timestamptz);
    INSERT INTO events SELECT 'click', now() FROM generate_series(1, 5);
    """
    if dirty:
        sql += """
        UPDATE users SET email = 'Bob@example.com' WHERE id = 3;
        UPDATE users SET email = 'bob@example.com' WHERE id = 4;
        UPDATE users SET email = 'dup@example.com' WHERE id IN (5, 6);
        UPDATE users SET email = 'not-an-email' WHERE id = 8;
        UPDATE "order" SET user_id = 999 WHERE id = 7;
        UPDATE "order" SET user_id = 1000 WHERE id = 9;
        UPDATE "order" SET amount = -10 WHERE id = 5;
        UPDATE "order" SET amount = 20000 WHERE id = 8;
        UPDATE "order" SET status = NULL WHERE id = 6;
        UPDATE "order" SET status = 'lost' WHERE id = 10;
        INSERT INTO events VALUES (NULL, now());
        """
    sql += "ANALYZE;"
    with psycopg.connect(dsn, autocommit=True) as conn:
        conn.execute(sql)


EVERY_KIND = """
tables:
  users:
    checks:
      - {check: duplicate_count, name: emails, columns: email}
      - {check: duplicate_count, name: emails_ci, columns: [email], case_insensitive: true}
      - {check: invalid_count, name: email_format, column: email, valid_regex: '^[^@]+@[^@]+$'}
      - {check: schema, name: users_schema, columns: [id, email, status], types: {status: text, id: bigint}}
      - {check: row_count, name: users_rows, fail: "< 1"}
  order:
    checks:
      - {check: orphans, name: orphans, columns: user_id, references_table: users}
      - {check: invalid_count, name: amount_range, column: amount, valid_min: 0, valid_max: 10000}
      - {check: missing_count, name: status_missing, column: status}
      - {check: missing_percent, name: status_missing_pct, column: status, warn: "> 0", fail: "> 10"}
      - {check: invalid_count, name: status_values, column: status, valid_values: [paid, pending, shipped]}
      - {check: freshness, name: fresh, column: created_at, fail: "> 1 day"}
      - {check: sum, name: revenue, column: amount, warn: "<= 0 or >= 10000000"}
      - {check: sql, name: big_orders_of_user_2, sql: "SELECT id FROM \\"order\\" WHERE user_id = 2 AND amount > 1000"}
  events:
    checks:
      - {check: missing_count, name: kind_missing, column: kind}
"""


@pytest.fixture
def app_dsn(dsn: str) -> Iterator[str]:
    """A login that is not a superuser and may only read the tables (what a CI job should use)."""
    role = f"dq_{uuid.uuid4().hex[:8]}"
    with psycopg.connect(dsn, autocommit=True) as conn:
        conn.execute(f"CREATE ROLE {role} LOGIN NOSUPERUSER")
        conn.execute(f"ALTER DEFAULT PRIVILEGES IN SCHEMA public GRANT SELECT ON TABLES TO {role}")
    yield make_conninfo(dsn, user=role)
    with psycopg.connect(dsn, autocommit=True) as conn:
        conn.execute(f"SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE usename = '{role}'")
        conn.execute(f"DROP OWNED BY {role}")
        conn.execute(f"DROP ROLE {role}")


def run(dsn: str, checks: str, *, max_keys: int = 100, source: str = "checks.yml", **settings: object
        ) -> QualityReport:
    db = Database(session_settings(dsn=dsn, **settings))
    try:
        return run_checks(db, parse_checks(checks, source), max_keys=max_keys)
    finally:
        db.close()


def by_name(report: QualityReport) -> dict[str, dict]:
    return {c.check: c.model_dump() for c in report.checks}


def test_every_planted_violation_is_found_with_exactly_its_keys(app_dsn: str, dsn: str) -> None:
    dataset(dsn, dirty=True)
    report = run(app_dsn, EVERY_KIND)
    r = by_name(report)
    expected = {
        "emails": ("fail", [5, 6]),
        "emails_ci": ("fail", [3, 4, 5, 6]),
        "email_format": ("fail", [8]),
        "orphans": ("fail", [7, 9]),
        "amount_range": ("fail", [5, 8]),
        "status_missing": ("fail", [6]),
        "status_values": ("fail", [10]),
        "big_orders_of_user_2": ("pass", []),
    }
    for name, (status, keys) in expected.items():
        assert (r[name]["status"], r[name]["failing_keys"]) == (status, keys), r[name]
        assert r[name]["failing_count"] == len(keys)
    assert r["orphans"]["key_columns"] == ["id"] and "no foreign key is declared" in r["orphans"]["message"]
    assert r["status_missing_pct"]["status"] == "warn" and r["status_missing_pct"]["value"] == 5.0
    assert r["fresh"]["status"] == "fail" and 3 * 86400 - 60 < r["fresh"]["value"] < 3 * 86400 + 600
    assert r["revenue"]["status"] == "pass" and r["revenue"]["value"] == sum(10 * g for g in range(1, 21)) - 50 + \
        20000 - 10 - 80
    assert r["users_schema"]["status"] == "fail"
    assert r["users_schema"]["details"] == ["column status is character varying(20), expected text"]
    assert r["users_rows"]["status"] == "pass" and r["users_rows"]["value"] == 10
    assert r["kind_missing"]["failing_keys"] == ["(0,6)"] and r["kind_missing"]["key_columns"] == ["ctid"]
    assert "no primary key" in r["kind_missing"]["message"]
    # the listing query returns exactly the keys reported
    with psycopg.connect(dsn) as conn:
        assert [row[0] for row in conn.execute(r["amount_range"]["query"])] == [5, 8]
        assert [row[0] for row in conn.execute(r["orphans"]["query"])] == [7, 9]
    assert report.status == "fail" and report.summary.failed == 10


def test_the_clean_dataset_passes_every_check(app_dsn: str, dsn: str) -> None:
    dataset(dsn, dirty=False)
    report = run(app_dsn, EVERY_KIND)
    assert [c.check for c in report.checks if c.status != "pass"] == []
    assert report.status == "pass" and report.summary.passed == len(report.checks) == 14


def test_warn_and_fail_thresholds(app_dsn: str, dsn: str) -> None:
    dataset(dsn, dirty=True)
    checks = """
tables:
  order:
    checks:
      - {check: orphans, name: warn_only, columns: user_id, references_table: users, warn: "> 0", fail: "> 5"}
      - {check: orphans, name: fail_over_1, columns: user_id, references_table: users, warn: "> 0", fail: "> 1"}
      - {check: orphans, name: between, columns: user_id, references_table: users, fail: "not between 0 and 2"}
      - {check: avg, name: empty_avg, column: amount, filter: "amount > 1e9", fail: "> 0"}
      - {check: row_count, name: too_many, warn: ">= 20", fail: "> 100"}
"""
    r = by_name(run(app_dsn, checks))
    assert r["warn_only"]["status"] == "warn" and r["warn_only"]["failing_keys"] == [7, 9]
    assert r["fail_over_1"]["status"] == "fail"
    assert r["between"]["status"] == "pass" and r["between"]["failing_keys"] == []
    assert r["empty_avg"]["status"] == "fail" and "no rows" in r["empty_avg"]["message"]
    assert r["too_many"]["status"] == "warn" and r["too_many"]["threshold"] == "warn when >= 20; fail when > 100"


def test_column_metrics_of_a_table_are_one_scan(app_dsn: str, dsn: str) -> None:
    dataset(dsn, dirty=False)
    twenty = "\n".join(
        [f"      - {{check: missing_count, column: {c}}}" for c in ("id", "user_id", "amount", "status", "created_at")]
        + [f"      - {{check: invalid_count, column: amount, valid_min: 0, valid_max: {m}}}" for m in range(1000, 1010)]
        + [f"      - {{check: {a}, column: amount, fail: '< 0'}}" for a in ("sum", "avg", "min", "max")]
        + ["      - {check: row_count}"])
    checks = "tables:\n  order:\n    checks:\n" + twenty

    def seq_scans() -> int:
        with psycopg.connect(dsn) as conn:
            conn.execute("SELECT pg_stat_clear_snapshot()")
            row = conn.execute("SELECT seq_scan FROM pg_stat_user_tables WHERE relname = 'order'").fetchone()
        assert row
        return int(row[0])

    def settled(above: int = -1) -> int:
        """The count once it is above ``above`` and has stopped moving: a session's scans reach the statistics when
        it ends or after it has been idle a while (up to ~10 s on PostgreSQL 15+, longer on a loaded machine)."""
        import time
        last, since, deadline = seq_scans(), time.monotonic(), time.monotonic() + 60
        while time.monotonic() < deadline:
            time.sleep(0.25)
            if (now := seq_scans()) != last:
                last, since = now, time.monotonic()
            elif now > above and time.monotonic() - since >= 2:  # unchanged for 2 s (CI: 0.5 s was not enough)
                return now
        return last

    before = settled()  # the data set's own scans counted first
    report = run(app_dsn, checks)
    assert len(report.checks) == 20 and report.status == "pass"
    assert report.summary.queries == 1
    assert settled(before) - before == 1


def test_sample_reads_a_tablesample_and_says_so(app_dsn: str, dsn: str) -> None:
    with psycopg.connect(dsn, autocommit=True) as conn:
        conn.execute("CREATE TABLE big (id int PRIMARY KEY, v int); "
                     "INSERT INTO big SELECT g, CASE WHEN g % 100 = 0 THEN NULL ELSE g END "
                     "FROM generate_series(1, 20000) g;"
                     "GRANT SELECT ON big TO PUBLIC")
    checks = """
tables:
  big:
    sample: 10%
    checks:
      - {check: row_count, warn: "> 0"}
      - {check: missing_count, column: v}
"""
    report = run(app_dsn, checks, max_keys=0)
    rows, missing = report.checks
    assert "TABLESAMPLE BERNOULLI (10)" in rows.sample and "sampled rows" in rows.sample
    assert 1000 < rows.value < 3000 and rows.status == "warn"
    assert "TABLESAMPLE BERNOULLI" in missing.query and "REPEATABLE" in missing.query
    # the keys listed are the sampled rows that were counted (same REPEATABLE seed)
    assert missing.failing_count == len(missing.failing_keys) and 0 < missing.failing_count < 60
    assert all(k % 100 == 0 for k in missing.failing_keys)


def test_a_table_without_a_primary_key_and_a_key_override(app_dsn: str, dsn: str) -> None:
    with psycopg.connect(dsn, autocommit=True) as conn:
        conn.execute('CREATE SCHEMA "select"; CREATE TABLE "select"."user" ("group" int NOT NULL, "from" text, '
                     'UNIQUE ("group")); INSERT INTO "select"."user" VALUES (1, \'a\'), (2, NULL), (3, NULL);'
                     'CREATE TABLE "select".nokey (a int, b text); INSERT INTO "select".nokey VALUES (1, NULL), '
                     '(2, \'x\'), (3, NULL); GRANT USAGE ON SCHEMA "select" TO PUBLIC; '
                     'GRANT SELECT ON ALL TABLES IN SCHEMA "select" TO PUBLIC')
    checks = """
tables:
  select.user:
    checks:
      - {check: missing_count, column: from}
  select.nokey:
    checks:
      - {check: missing_count, column: b}
  '"select".nokey':
    checks:
      - {check: missing_count, column: b}
"""
    unique_key, ctid, overridden = run(app_dsn, checks).checks
    assert unique_key.table == "select.user" and unique_key.key_columns == ["group"]
    assert unique_key.failing_keys == [2, 3] and "unique key" in unique_key.message
    assert ctid.key_columns == ["ctid"] and ctid.failing_keys == ["(0,1)", "(0,3)"]
    assert overridden.status == "error" and "not found" in overridden.message  # names are not SQL: no quotes
    keyed = run(app_dsn, "tables:\n  select.nokey:\n    key: a\n    checks:\n      - {check: missing_count, column: b}"
                ).checks[0]
    assert keyed.key_columns == ["a"] and keyed.failing_keys == [1, 3]


def test_user_sql_goes_through_the_safety_gate(app_dsn: str, dsn: str) -> None:
    dataset(dsn, dirty=True)
    checks = """
tables:
  order:
    checks:
      - {check: sql, name: reads_a_file, sql: "SELECT pg_read_file('/etc/passwd')"}
      - {check: sql, name: deletes, sql: "DELETE FROM \\"order\\" RETURNING id"}
      - {check: sql, name: two_statements, sql: "SELECT 1; DELETE FROM \\"order\\""}
      - {check: row_count, name: escaping_filter, filter: "true) UNION SELECT 1 WHERE (true"}
      - {check: row_count, name: fine}
"""
    r = by_name(run(app_dsn, checks))
    assert r["reads_a_file"]["status"] == "error" and "pg_read_file" in r["reads_a_file"]["message"]
    assert r["deletes"]["status"] == "error" and "refused" in r["deletes"]["message"]
    assert r["two_statements"]["status"] == "error" and "2 statements" in r["two_statements"]["message"]
    assert r["escaping_filter"]["status"] == "error" and "more than one condition" in r["escaping_filter"]["message"]
    assert r["fine"]["status"] == "pass" and r["fine"]["value"] == 20
    with psycopg.connect(dsn) as conn:
        assert conn.execute('SELECT count(*) FROM "order"').fetchone() == (20,)


def test_a_superuser_login_scans_nothing_unless_allowed(dsn: str) -> None:
    """A check built from the catalog scans the table too, and the planner folds its index expressions — code the
    table's owner wrote, run as the login (review r29 F8): as a superuser only with --allow-privileged-reads, like
    user SQL."""
    dataset(dsn, dirty=True)
    checks = """
tables:
  order:
    checks:
      - {check: orphans, columns: user_id, references_table: users}
      - {check: row_count, filter: "amount > 100", fail: "< 20"}
      - {check: missing_count, column: status}
  users:
    checks:
      - {check: sql, sql: "SELECT id FROM users WHERE id > 9"}
"""
    for refused in run(dsn, checks).checks:
        assert refused.status == "error" and "superuser" in refused.message and "--read-dsn" in refused.message
    orphans, filtered, missing, custom = run(dsn, checks, allow_privileged_reads=True).checks
    assert orphans.status == "fail" and orphans.failing_keys == [7, 9]
    assert missing.status == "fail" and missing.failing_keys == [6]
    assert custom.status == "fail" and custom.failing_keys == [10]
    assert filtered.status == "fail" and filtered.value == 11  # amounts 110…200, and order 8 at 20000


def test_a_timed_out_check_is_an_error_not_a_pass(app_dsn: str, dsn: str) -> None:
    dataset(dsn, dirty=False)
    checks = """
tables:
  order:
    checks:
      - {check: sql, name: slow, sql: "SELECT id FROM \\"order\\" WHERE pg_sleep(0.5) IS NULL"}
      - {check: row_count, name: quick}
"""
    r = by_name(run(app_dsn, checks, statement_timeout="200ms"))
    assert r["slow"]["status"] == "error" and "statement_timeout (200ms)" in r["slow"]["message"]
    assert r["quick"]["status"] == "pass"


def test_failing_keys_are_capped_by_the_caller_and_streamed_in_full(app_dsn: str, dsn: str) -> None:
    with psycopg.connect(dsn, autocommit=True) as conn:
        conn.execute("CREATE TABLE t (id int PRIMARY KEY, v int); INSERT INTO t SELECT g, NULLIF(g % 3, 0) "
                     "FROM generate_series(1, 30000) g; GRANT SELECT ON t TO PUBLIC")
    checks = "tables:\n  t:\n    checks:\n      - {check: missing_count, column: v}\n" \
             "      - {check: duplicate_count, columns: v}"
    missing, dups = run(app_dsn, checks, max_keys=5).checks
    assert missing.failing_count == 10000 and missing.failing_keys == [3, 6, 9, 12, 15] and missing.keys_capped
    assert dups.failing_count == 20000 and dups.failing_keys == [1, 2, 4, 5, 7] and dups.keys_capped
    missing, dups = run(app_dsn, checks, max_keys=0).checks
    assert missing.failing_keys == list(range(3, 30001, 3)) and not missing.keys_capped
    assert len(dups.failing_keys) == 20000


def test_toml_and_yaml_files_mean_the_same(app_dsn: str, dsn: str) -> None:
    with psycopg.connect(dsn, autocommit=True) as conn:
        conn.execute((ROOT / "examples/quality/shop.sql").read_text())
    yml = run(app_dsn, (ROOT / "examples/quality/charter.yml").read_text())
    toml = run(app_dsn, (ROOT / "examples/quality/charter.toml").read_text(), source="charter.toml")
    assert [(c.check, c.status, c.failing_keys) for c in yml.checks] == \
        [(c.check, c.status, c.failing_keys) for c in toml.checks] == [
            ("no_orphan_orders", "fail", [4]), ("no_order_without_user", "pass", []),
            ("revenue_within_range", "pass", []), ("no_duplicate_emails", "fail", [2, 3])]


def test_suggested_checks_pass_on_the_clean_data_and_fail_on_the_planted(pg, app_dsn: str, dsn: str) -> None:
    dataset(dsn, dirty=False)
    db = Database(session_settings(dsn=app_dsn))
    try:
        with db.read() as conn:
            text = suggest(conn, snapshot(conn), ["users", "order", "events"])
    finally:
        db.close()
    assert "check: orphans" in text and "references_table: public.users" in text
    assert run(app_dsn, text).status == "pass", text
    dirty_db = f"t_{uuid.uuid4().hex[:12]}"
    with psycopg.connect(pg.dsn, autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{dirty_db}"')
    try:
        dataset(pg.dsn_for(dirty_db), dirty=True)
        failed = {c.check: c.failing_keys for c in run(pg.dsn_for(dirty_db), text, allow_privileged_reads=True).checks
                  if c.status == "fail"}  # the test server's superuser login, accepted
    finally:
        with psycopg.connect(pg.dsn, autocommit=True) as conn:
            conn.execute(f'DROP DATABASE "{dirty_db}" WITH (FORCE)')
    assert failed == {
        "schema": [],  # users.status retyped
        "duplicate_count(email)": [5, 6],
        "orphans(user_id)": [7, 9],
        "missing_count(status)": [6],
        "invalid_count(status)": [10],
        "freshness(created_at)": [],
        "missing_count(kind)": ["(0,6)"],
    }, text


def _cli(*args: str, stdin: str | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "agent19", *args], capture_output=True, text=True, cwd=ROOT,
                          env={**os.environ, "DATABASE_URL": ""}, input=stdin, timeout=120)


def test_cli_json_junit_exit_status_and_on_failure(app_dsn: str, dsn: str, tmp_path: Path) -> None:
    with psycopg.connect(dsn, autocommit=True) as conn:
        conn.execute((ROOT / "examples/quality/shop.sql").read_text())
    out = _cli("check", "examples/quality/charter.yml", "--dsn", app_dsn, "--format", "json")
    assert out.returncode == 1, out.stderr
    data = json.loads(out.stdout)
    first = data["checks"][0]
    assert {"check", "table", "status", "value", "threshold", "failing_keys", "query"} <= set(first)
    assert first["table"] == "public.orders" and first["failing_keys"] == [4]
    assert data["summary"]["failed"] == 2
    junit = _cli("check", "examples/quality/charter.yml", "--dsn", app_dsn, "--format", "junit")
    suites = ET.fromstring(junit.stdout)
    assert junit.returncode == 1 and suites.get("failures") == "2" and suites.get("tests") == "4"
    failure = suites.find(".//testcase[@name='no_duplicate_emails']/failure")
    assert failure is not None and "[2, 3]" not in failure.text and "2, 3" in failure.text
    alert = tmp_path / "alert.json"
    text = _cli("check", "examples/quality/charter.yml", "--dsn", app_dsn, "--on-failure", f"cat > {alert}")
    assert text.returncode == 1 and "FAIL  no_orphan_orders" in text.stdout and "exited 0" in text.stdout
    assert json.loads(alert.read_text())["summary"]["failed"] == 2
    passing = tmp_path / "ok.yml"
    passing.write_text("tables:\n  users:\n    checks:\n      - {check: row_count}\n")
    ok = _cli("check", str(passing), "--dsn", app_dsn, "--on-failure", f"touch {tmp_path / 'never'}")
    assert ok.returncode == 0 and not (tmp_path / "never").exists()
    bad = _cli("check", str(tmp_path / "missing.yml"), "--dsn", app_dsn)
    assert bad.returncode == 2 and "cannot read checks file" in bad.stderr
    suggested = _cli("check", "--suggest", "orders", "users", "--dsn", app_dsn)
    assert suggested.returncode == 0 and suggested.stdout.startswith("# Suggested by")
    parse_checks(suggested.stdout)


async def test_through_the_mcp_client(app_dsn: str, dsn: str) -> None:
    with psycopg.connect(dsn, autocommit=True) as conn:
        conn.execute((ROOT / "examples/quality/shop.sql").read_text())
    async with stdio_session("--dsn", app_dsn) as session:
        tools = {t.name: t for t in (await session.list_tools()).tools}
        schema = tools["data_quality"].input_schema["properties"]
        assert "on_failure" not in schema and "checks" in schema  # a shell command is never an MCP argument
        assert tools["data_quality"].annotations.read_only_hint is True
        checks = (ROOT / "examples/quality/charter.toml").read_text()
        refused = await session.call_tool("data_quality", {"checks": checks, "max_keys": 1,
                                                           "on_failure": "touch /tmp/agent19-should-not-exist"})
        assert refused.is_error and "'on_failure'" in refused.content[0].text  # not an MCP argument: refused
        result = await session.call_tool("data_quality", {"checks": checks, "max_keys": 1})
        assert not result.is_error, result.content
        out = result.structured_content
        assert out["status"] == "fail" and out["untrusted_data"] is True
        dup = next(c for c in out["checks"] if c["check"] == "no_duplicate_emails")
        assert dup["failing_keys"] == [2] and dup["failing_count"] == 2 and dup["keys_capped"] is True
        assert not Path("/tmp/agent19-should-not-exist").exists()
        suggestion = await session.call_tool("data_quality", {"suggest": ["orders"]})
        assert "check: row_count" in suggestion.structured_content["suggested"]
        bad = await session.call_tool("data_quality", {"checks": "tables: {orders: {checks: [{check: nope}]}}"})
        assert bad.is_error and "nope" in bad.content[0].text


def test_the_readme_example_is_a_valid_checks_file() -> None:
    readme = (ROOT / "README.md").read_text()
    section = readme[readme.index("## Data quality"):]
    example = section[section.index("```yaml\n") + 8:section.index("```", section.index("```yaml\n") + 8)]
    checks = parse_checks(example).tables["orders"]
    assert checks.sample == 10 and [c.check for c in checks.checks] == ["orphans", "sum", "duplicate_count",
                                                                        "freshness"]


def test_a_malformed_type_in_a_schema_check_is_reported_and_the_rest_still_runs(app_dsn: str, dsn: str) -> None:
    dataset(dsn, dirty=False)
    checks = """
tables:
  users:
    checks:
      - {check: schema, types: {id: "big int(", email: "varchar", signup: "timestamptz"}}
      - {check: duplicate_count, columns: email}
"""
    schema, dups = run(app_dsn, checks).checks
    assert schema.status == "fail" and schema.details == [
        "type 'big int(' (for id) is not a type on this server", "column email is text, expected varchar"]
    assert dups.status == "pass"


def test_one_broken_check_does_not_take_the_table_down(app_dsn: str, dsn: str) -> None:
    with psycopg.connect(dsn, autocommit=True) as conn:
        conn.execute("CREATE TABLE line (order_id int, n int, sku text, qty int, PRIMARY KEY (order_id, n));"
                     "INSERT INTO line VALUES (1, 1, 'a', 1), (1, 2, NULL, 0), (2, 1, NULL, 5);"
                     "GRANT SELECT ON line TO PUBLIC")
    checks = """
tables:
  line:
    checks:
      - {check: missing_count, name: no_such_column, column: nope}
      - {check: invalid_count, name: type_mismatch, column: qty, valid_min: "many"}
      - {check: missing_count, name: sku_missing, column: sku}
      - {check: invalid_count, name: qty_positive, column: qty, valid_min: 1}
"""
    report = run(app_dsn, checks)
    r = by_name(report)
    assert r["no_such_column"]["status"] == "error" and "column nope is not in public.line" in \
        r["no_such_column"]["message"]
    assert r["type_mismatch"]["status"] == "error" and "many" in r["type_mismatch"]["message"]
    assert r["sku_missing"]["failing_keys"] == [[1, 2], [2, 1]] and r["sku_missing"]["key_columns"] == ["order_id", "n"]
    assert r["qty_positive"]["failing_keys"] == [[1, 2]]


def test_user_sql_runs_as_the_reader_login_when_one_is_set(app_dsn: str, dsn: str) -> None:
    dataset(dsn, dirty=True)
    checks = ('tables:\n  users:\n    checks:\n'
              '      - {check: sql, sql: "SELECT id, current_user FROM users WHERE id > 9"}\n')
    custom = run(dsn, checks, read_dsn=app_dsn).checks[0]
    assert custom.status == "fail" and custom.failing_keys == [[10, conninfo_to_dict(app_dsn)["user"]]]


def test_the_charter_example_on_every_server_version(dsn_any: str) -> None:
    with psycopg.connect(dsn_any, autocommit=True) as conn:
        conn.execute((ROOT / "examples/quality/shop.sql").read_text())
        conn.execute("ALTER TABLE orders ADD COLUMN day date DEFAULT current_date - 2")
    checks = (ROOT / "examples/quality/charter.yml").read_text() + \
        "      - {check: freshness, name: day_fresh, column: created_at, fail: '> 1h'}\n" \
        "  orders :\n    checks:\n      - {check: freshness, name: stale_day, column: day, fail: '> 1 day'}\n"
    r = by_name(run(dsn_any, checks.replace("  orders :", "  public.orders:"), allow_privileged_reads=True))
    assert r["no_orphan_orders"]["failing_keys"] == [4] and r["no_duplicate_emails"]["failing_keys"] == [2, 3]
    assert r["revenue_within_range"]["status"] == "pass" and r["revenue_within_range"]["value"] == 235.49
    assert r["day_fresh"]["status"] == "pass" and r["stale_day"]["status"] == "fail"


def test_views_and_materialized_views_are_checked_too(app_dsn: str, dsn: str) -> None:
    dataset(dsn, dirty=True)
    with psycopg.connect(dsn, autocommit=True) as conn:
        conn.execute('CREATE VIEW paid AS SELECT id, user_id, amount, status FROM "order" WHERE amount IS NOT NULL;'
                     " CREATE MATERIALIZED VIEW totals AS SELECT user_id, sum(amount) AS total "
                     'FROM "order" GROUP BY user_id; CREATE UNIQUE INDEX ON totals (user_id); '
                     "GRANT SELECT ON paid, totals TO PUBLIC")
    checks = """
tables:
  paid:
    checks:
      - {check: orphans, name: counted_only, columns: user_id, references_table: users}
      - {check: invalid_count, name: counted_only_range, column: amount, valid_min: 0, valid_max: 10000}
  public.paid:
    key: id
    checks:
      - {check: orphans, name: named, columns: user_id, references_table: users}
  totals:
    checks:
      - {check: orphans, name: mv, columns: user_id, references_table: users}
"""
    r = by_name(run(app_dsn, checks))
    assert r["counted_only"]["status"] == "fail" and r["counted_only"]["failing_count"] == 2
    assert r["counted_only"]["failing_keys"] == [] and "set key:" in r["counted_only"]["message"]
    assert r["counted_only_range"]["failing_count"] == 2 and r["counted_only_range"]["failing_keys"] == []
    assert r["named"]["failing_keys"] == [7, 9]
    assert r["mv"]["failing_keys"] == [999, 1000] and r["mv"]["key_columns"] == ["user_id"]
    with psycopg.connect(dsn) as conn:  # the listing query of a keyless view returns the whole failing rows
        assert [row[0] for row in conn.execute(r["counted_only"]["query"])] == [7, 9]


def test_junit_is_utf8_whatever_the_output_encoding(dsn: str, tmp_path: Path) -> None:
    """JUnit XML declares UTF-8: a latin-1 stdout writes every non-ASCII character as a character reference (the
    same text to any XML reader), never the latin-1 byte."""
    with psycopg.connect(dsn, autocommit=True) as conn:
        conn.execute('CREATE TABLE "commandé" (id int); INSERT INTO "commandé" VALUES (1)')
    charter = tmp_path / "charter.yml"
    charter.write_text('tables:\n  "commandé":\n    checks:\n      - {name: deux_lignes_é, check: row_count, '
                       'fail: "< 2"}\n', encoding="utf-8")
    runs = {}
    for encoding in ("latin-1", "utf-8"):
        runs[encoding] = subprocess.run([sys.executable, "-m", "agent19", "check", str(charter), "--dsn", dsn,
                                         "--format", "junit"], capture_output=True, cwd=ROOT, timeout=120,
                                        env={**os.environ, "DATABASE_URL": "", "PYTHONIOENCODING": encoding})
        assert runs[encoding].returncode == 1, runs[encoding].stderr
    assert runs["latin-1"].stdout.isascii() and b"command&#233;" in runs["latin-1"].stdout
    assert "commandé".encode() in runs["utf-8"].stdout  # a UTF-8 stdout: written as it is
    trees = [ET.fromstring(runs[e].stdout) for e in ("latin-1", "utf-8")]
    for tree in trees:
        for element in tree.iter():
            element.attrib.pop("time", None)  # the run's seconds
    assert ET.tostring(trees[0]) == ET.tostring(trees[1]) and "commandé" in ET.tostring(trees[0], "unicode")
