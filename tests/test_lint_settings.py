"""What the SQL does not say: type changes without the old type, and the lock_timeout a migration runs under.

Sources of the cases: strong_migrations' README ("Changing the type of a column": the changes PostgreSQL makes
without a rewrite — varchar to text, a longer varchar, a wider numeric, timestamp to timestamptz under UTC on 12+),
squawk's changing-column-type and require-timeout-settings pages, PostgreSQL's SET page (SET LOCAL outside a
transaction block has no effect). Role and database settings are set and read back on the test server.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import psycopg
import pytest

from agent19.errors import ConfigError
from agent19.migrate.lint.config import LintConfig, load_config
from agent19.migrate.lint.engine import lint_sql
from agent19.tools.lint import render_json
from tests.conftest import owner_login, run_sql

ROOT = Path(__file__).parent.parent


def agent19(*args: str, cwd: Path | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "agent19", *args], capture_output=True, text=True, timeout=120,
                          env={**os.environ, "DATABASE_URL": "", "PYTHONPATH": str(ROOT)}, cwd=cwd or ROOT)


def a19005(sql: str, **options: object) -> list[tuple[str, str]]:
    report = lint_sql(sql, **{"pg_version": 160000, **options})  # type: ignore[arg-type]
    return [(f.severity, f.message) for f in report.statements[-1].findings if f.rule == "A19005"]


# -- type changes without a catalog ---------------------------------------------------------------------

@pytest.mark.parametrize(("target", "condition"), [
    ("text", "unless it is varchar (any length) or text already"),
    ("varchar(255)", "unless it is varchar(m) with m <= 255"),
    ("varchar", "unless it is varchar(n) or text"),
    ("numeric(12,2)", "unless it is numeric(q,2) with q <= 12"),
    ("timestamptz", "unless it is timestamptz of any precision, or timestamp and the migration's session TimeZone "
                    "is UTC"),
])
def test_a_possible_widening_is_a_warning_that_names_the_condition(target: str, condition: str) -> None:
    """strong_migrations' README lists these as the type changes that need no rewrite (with their conditions)."""
    ((severity, message),) = a19005(f"ALTER TABLE users ALTER COLUMN name TYPE {target};")
    assert severity == "warning" and condition in message and "--assume type-changes-widen" in message


@pytest.mark.parametrize("sql", [
    "ALTER TABLE users ALTER COLUMN id TYPE bigint;",  # squawk changing-column-type; no type widens to bigint free
    "ALTER TABLE users ALTER COLUMN name TYPE text USING lower(name);",  # a USING expression computes every row
    "ALTER TABLE users ALTER COLUMN tags TYPE text[];",
])
def test_a_change_that_always_rewrites_stays_an_error(sql: str) -> None:
    assert [s for s, _ in a19005(sql)] == ["error"]


def test_before_12_timestamptz_is_not_free_under_utc() -> None:
    ((_, message),) = a19005("ALTER TABLE users ALTER COLUMN at TYPE timestamptz;", pg_version=110000)
    assert "TimeZone" not in message


def test_assume_states_what_the_team_knows(tmp_path: Path) -> None:
    config = LintConfig(assume=["type-changes-widen"])
    assert a19005("ALTER TABLE users ALTER COLUMN name TYPE text;", config=config) == []
    assert [s for s, _ in a19005("ALTER TABLE users ALTER COLUMN id TYPE bigint;", config=config)] == ["error"]
    report = lint_sql("ALTER TABLE users ALTER COLUMN name TYPE text;", config=config)
    assert any("varchar(n) -> larger or text" in a for a in report.summary.assumptions)
    # the config file and the flag
    (tmp_path / "agent19.toml").write_text('[lint]\nassume = ["type-changes-widen"]\n')
    (tmp_path / "m.sql").write_text("SET lock_timeout = '5s';\nALTER TABLE users ALTER COLUMN name TYPE text;\n")
    data = json.loads(agent19("lint", "m.sql", "--format", "json", cwd=tmp_path).stdout)
    assert "A19005" not in data["summary"]["by_rule"] and "agent19.toml" in " ".join(data["summary"]["assumptions"])
    (tmp_path / "agent19.toml").unlink()
    flagged = json.loads(agent19("lint", "m.sql", "--format", "json", cwd=tmp_path).stdout)
    assert flagged["summary"]["by_rule"].get("A19005") == 1 and flagged["summary"]["warnings"] == 1
    assert agent19("lint", "m.sql", "--assume", "type-changes-widen", cwd=tmp_path).returncode == 0
    wrong = agent19("lint", "m.sql", "--assume", "tables-are-small", cwd=tmp_path)
    assert wrong.returncode == 2 and "tables-are-small" in wrong.stderr and "type-changes-widen" in wrong.stderr


@pytest.mark.parametrize(("setting", "message"), [
    ('fail_on = "critical"', "('fail_on',): Input should be 'error', 'warning', 'info' or 'never'"),
    ('disable = "A19001"', "('disable',): Input should be a valid list"),
    ('enable = ["prefer-text-field", 2]', "('enable', 1): Input should be a valid string"),
    ('severity = { "A19001" = "fatal" }', "('severity', 'A19001'): Input should be 'error', 'warning' or 'info'"),
    ('style = "maybe"', "('style',): Input should be a valid boolean"),
    ('pg_version = 15.5', "('pg_version',): Input should be a valid integer"),
    ('pg_version = "\u0661\u0665"', "('pg_version',): Input should be a valid integer"),  # Arabic-Indic 15
    ('pg_version = "15.5"', "('pg_version',): Input should be a valid integer"),
    ('pg_version = "1e1"', "('pg_version',): Input should be a valid integer"),
    ('style = " yes "', "('style',): Input should be a valid boolean"),
    ("migration_lock_timeout = 5", "('migration_lock_timeout',): Input should be a valid string"),
    ('colour = "red"', "('colour',): Extra inputs are not permitted"),
    ('source = "other.toml"', "('source',): Extra inputs are not permitted"),  # agent19 says where it came from
])
def test_a_wrong_setting_names_the_file_and_the_setting(tmp_path: Path, setting: str, message: str) -> None:
    (tmp_path / "agent19.toml").write_text(f"[lint]\n{setting}\n")
    with pytest.raises(ConfigError) as err:
        load_config(start=tmp_path)
    assert str(err.value).startswith(f"{(tmp_path / 'agent19.toml').resolve()}: invalid lint settings: {message}")
    assert "allowed: disable, enable (lists)" in str(err.value)


def test_toml_spellings_are_read_as_the_settings_types(tmp_path: Path) -> None:
    (tmp_path / "agent19.toml").write_text('[lint]\npg_version = "15"\nstyle = "yes"\nfail_on = "warning"\n')
    config = load_config(start=tmp_path)
    assert (config.pg_version, config.style, config.fail_on) == (150000, True, "warning")
    assert config.source == str((tmp_path / "agent19.toml").resolve())
    (tmp_path / "agent19.toml").write_text("[lint]\npg_version = 5\n")
    with pytest.raises(ConfigError, match="pg_version 5 is not a PostgreSQL version"):
        load_config(start=tmp_path)
    with pytest.raises(ConfigError, match="unknown assumption"):
        LintConfig(assume=["tables-are-small"])


# -- lock_timeout from SET LOCAL, the config, the role and the database ---------------------------------------

def test_set_local_counts_inside_its_transaction_only() -> None:
    """PostgreSQL's SET page: SET LOCAL lasts until the transaction ends; outside a block it does nothing."""
    inside = lint_sql("BEGIN;\nSET LOCAL lock_timeout = '5s';\nALTER TABLE users ADD COLUMN a text;\nCOMMIT;\n"
                      "ALTER TABLE users ADD COLUMN b text;\n", pg_version=160000)
    flagged = [s.sql for s in inside.statements if any(f.rule == "A19012" for f in s.findings)]
    assert flagged == ["ALTER TABLE users ADD COLUMN b text"]
    outside = lint_sql("SET LOCAL lock_timeout = '5s';\nALTER TABLE users ADD COLUMN a text;\n", pg_version=160000)
    assert "A19012" in {f.rule for f in outside.statements[1].findings}


def test_migration_lock_timeout_from_the_config(tmp_path: Path) -> None:
    """squawk's require-timeout-settings asks for SET lock_timeout in the file; teams that set it in the migration
    tool's connection options say so once."""
    (tmp_path / "m.sql").write_text("ALTER TABLE users ADD COLUMN a text;\n")
    assert "A19012" in json.loads(agent19("lint", "m.sql", "--format", "json", cwd=tmp_path).stdout)[
        "summary"]["by_rule"]
    (tmp_path / "pyproject.toml").write_text('[tool.agent19.lint]\nmigration_lock_timeout = "3s"\n')
    data = json.loads(agent19("lint", "m.sql", "--format", "json", cwd=tmp_path).stdout)
    assert "A19012" not in data["summary"]["by_rule"]
    assert any("lock_timeout = 3s" in a for a in data["summary"]["assumptions"])
    (tmp_path / "pyproject.toml").unlink()
    flag = agent19("lint", "m.sql", "--migration-lock-timeout", "2s", "--format", "json", cwd=tmp_path)
    assert "A19012" not in json.loads(flag.stdout)["summary"]["by_rule"]
    # 0 disables lock_timeout: it protects nothing
    zero = agent19("lint", "m.sql", "--migration-lock-timeout", "0", "--format", "json", cwd=tmp_path)
    assert "A19012" in json.loads(zero.stdout)["summary"]["by_rule"]


@pytest.mark.parametrize("scope", ["role", "role in database", "database"])
def test_role_or_database_lock_timeout_read_from_the_catalog(dsn: str, scope: str) -> None:
    """As an application role (not a superuser): ALTER ROLE / ALTER DATABASE … SET lock_timeout is what a new
    session of the migration's login starts with; lint reads it from pg_db_role_setting."""
    app = owner_login(dsn)
    with psycopg.connect(app) as conn:
        role, db = conn.execute("SELECT session_user, current_database()").fetchone()  # type: ignore[misc]
    sql = "ALTER TABLE users ADD COLUMN note text"
    run_sql(app, "CREATE TABLE users (id bigint PRIMARY KEY)")
    before = json.loads(agent19("lint", "--sql", sql, "--dsn", app, "--format", "json").stdout)
    assert before["summary"]["live"] and "A19012" in before["summary"]["by_rule"]
    statement = {"role": f'ALTER ROLE "{role}" SET lock_timeout = \'3s\'',
                 "role in database": f'ALTER ROLE "{role}" IN DATABASE "{db}" SET lock_timeout = \'3s\'',
                 "database": f'ALTER DATABASE "{db}" SET lock_timeout = \'3s\''}[scope]
    run_sql(dsn, statement)
    with psycopg.connect(app) as conn:  # the server: a new session of the login starts with it
        assert conn.execute("SHOW lock_timeout").fetchone() == ("3s",)
    after = json.loads(agent19("lint", "--sql", sql, "--dsn", app, "--format", "json").stdout)
    assert after["summary"]["live"] and "A19012" not in after["summary"]["by_rule"]
    assert any("pg_db_role_setting" in a and "3s" in a for a in after["summary"]["assumptions"])
    # a more specific 0 wins over the broader setting: the role in this database runs without a timeout
    run_sql(dsn, f'ALTER ROLE "{role}" IN DATABASE "{db}" SET lock_timeout = 0')
    with psycopg.connect(app) as conn:
        assert conn.execute("SHOW lock_timeout").fetchone() == ("0",)
    again = json.loads(agent19("lint", "--sql", sql, "--dsn", app, "--format", "json").stdout)
    assert "A19012" in again["summary"]["by_rule"]
    run_sql(dsn, f'ALTER ROLE "{role}" RESET ALL; ALTER ROLE "{role}" IN DATABASE "{db}" RESET ALL; '
                 f'ALTER DATABASE "{db}" RESET ALL')


@pytest.mark.parametrize("spelling", ['"15.0"', '" 15 "', "15.0", '"15"'])
def test_a_whole_version_is_read_in_any_spelling_pydantic_read(tmp_path: Path, spelling: str) -> None:
    (tmp_path / "agent19.toml").write_text(f"[lint]\npg_version = {spelling}\n")
    assert load_config(start=tmp_path).pg_version == 150000


@pytest.mark.parametrize(("given", "version"), [(15, 150000), (150000.0, 150000), (160004, 160004)])
def test_a_library_caller_may_give_a_major_version_or_a_whole_float(given: float, version: int) -> None:
    """lint_sql(pg_version=15) linted as PostgreSQL "0"; a float version stopped the JSON writer."""
    report = lint_sql("ALTER TABLE t ADD COLUMN c int;", pg_version=given)  # type: ignore[arg-type]
    assert report.summary.pg_version == version and type(report.summary.pg_version) is int
    assert json.loads("".join(render_json(report)))["summary"]["pg_version"] == version


@pytest.mark.parametrize(("file", "text", "says"), [
    ("agent19.toml", "lint = 5\n", "[lint] must be a table"),
    ("pyproject.toml", "[tool]\nagent19 = 5\n", "[tool.agent19] must be a table"),
    ("pyproject.toml", "tool = 5\n", "[tool] must be a table"),
    ("pyproject.toml", "[tool.agent19]\nlint = [1]\n", "[tool.agent19.lint] must be a table"),
])
def test_a_settings_table_that_is_not_a_table_is_a_clear_error(tmp_path: Path, file: str, text: str,
                                                               says: str) -> None:
    (tmp_path / file).write_text(text)
    with pytest.raises(ConfigError, match=re.escape(says)):
        load_config(start=tmp_path)


@pytest.mark.parametrize("value", ["abc", "5 seconds", "-1s", "30d", "2147483648", "\uff15s"])  # full-width 5
def test_a_lock_timeout_postgresql_would_refuse_is_refused(tmp_path: Path, value: str) -> None:
    (tmp_path / "agent19.toml").write_text(f'[lint]\nmigration_lock_timeout = "{value}"\n')
    with pytest.raises(ConfigError, match="migration_lock_timeout"):
        load_config(start=tmp_path)
    migration = tmp_path / "one.sql"
    migration.write_text("ALTER TABLE t ADD COLUMN c int;\n")
    out = subprocess.run([sys.executable, "-m", "agent19", "lint", str(migration), f"--migration-lock-timeout={value}"],
                         capture_output=True, text=True, timeout=120, cwd="/")
    assert out.returncode == 2 and "Traceback" not in out.stderr and "migration_lock_timeout" in out.stderr


def test_a_byte_order_mark_is_not_part_of_the_migration(tmp_path: Path) -> None:
    """Editors on Windows write one; psql skips it. It used to be a syntax error at line 1."""
    (tmp_path / "bom.sql").write_bytes("\ufeffALTER TABLE t ADD COLUMN c int DEFAULT random();\n".encode())
    out = subprocess.run([sys.executable, "-m", "agent19", "lint", str(tmp_path / "bom.sql"), "--format", "json"],
                         capture_output=True, text=True, timeout=120, cwd="/")
    statement = json.loads(out.stdout)["statements"][0]
    assert statement["sql"].startswith("ALTER TABLE") and statement["line"] == 1
    assert "A19004" in {f["rule"] for f in statement["findings"]}



@pytest.mark.parametrize(("value", "in_force"), [
    (".5s", True), ("5.", True), ("+5s", True), ("1e3", True), ("0x10", True), ("1.5min", True), ("500 ms", True),
    ("5us", False), ("0.4ms", False), ("0", False),  # PostgreSQL rounds these to 0 ms: no timeout at all
])
def test_migration_lock_timeout_is_read_as_postgresql_reads_it(tmp_path: Path, value: str, in_force: bool) -> None:
    """Every spelling SET lock_timeout takes is taken; one that rounds to 0 ms sets no timeout, so the statements
    still need their own SET lock_timeout (A19012)."""
    (tmp_path / "agent19.toml").write_text(f'[lint]\nmigration_lock_timeout = "{value}"\n')
    config = load_config(start=tmp_path)
    report = lint_sql("ALTER TABLE t ALTER COLUMN c SET DEFAULT 1;", config=config, pg_version=150000)
    assert ("A19012" in {f.rule for s in report.statements for f in s.findings}) is not in_force
