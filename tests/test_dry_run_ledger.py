"""require_dry_run's ledger on a real server, as a non-superuser through the CLI: a dry run counts for the
server as it identifies itself (not the DSN as written), for the schema it was tested on, for a limited time,
and a migration's changes run one call each in order."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest
from psycopg.conninfo import conninfo_to_dict, make_conninfo

from tests.conftest import owner_login, run_sql

SETUP = "CREATE TABLE accounts (id bigint PRIMARY KEY, name text); INSERT INTO accounts VALUES (1, 'a'), (2, 'b')"


def cli(state: Path, *args: str, max_age: str | None = None) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "DATABASE_URL": "", "AGENT19_REQUIRE_DRY_RUN": "1", "AGENT19_DATA_DIR": str(state)}
    if max_age is not None:
        env["AGENT19_DRY_RUN_MAX_AGE_HOURS"] = max_age
    return subprocess.run([sys.executable, "-m", "agent19", *args], capture_output=True, text=True, timeout=120,
                          env=env)


def dry_run(state: Path, dsn: str, sql: str) -> None:
    done = cli(state, "dry-run", "--sql", sql, "--dsn", dsn, "--mode", "dry-run", "--format", "json")
    assert done.returncode == 0, done.stdout + done.stderr
    assert json.loads(done.stdout)["passed"] is True


def execute(state: Path, dsn: str, sql: str, max_age: str | None = None) -> dict:
    done = cli(state, "sql", sql, "--dsn", dsn, "--mode", "execute", "--format", "json", max_age=max_age)
    assert done.returncode in (0, 1), done.stderr
    return json.loads(done.stdout)


@pytest.fixture
def spellings(dsn: str) -> tuple[str, str]:
    """The same database as an application role, spelled two ways: keyword DSN via localhost, URI via 127.0.0.1."""
    app_dsn = owner_login(dsn)
    run_sql(app_dsn, SETUP)  # the application's role owns its tables and applies the migrations
    app = conninfo_to_dict(app_dsn)
    assert app["host"] == "127.0.0.1"
    keyword = make_conninfo("", host="localhost", port=app["port"], dbname=app["dbname"], user=app["user"])
    uri = f"postgresql://{app['user']}@127.0.0.1:{app['port']}/{app['dbname']}"
    return keyword, uri


def columns(dsn: str) -> list[str]:
    import psycopg

    with psycopg.connect(dsn) as c:
        return [r[0] for r in c.execute("SELECT attname FROM pg_attribute WHERE attrelid = 'accounts'::regclass "
                                        "AND attnum > 0 AND NOT attisdropped ORDER BY attnum")]


def test_a_dry_run_via_localhost_counts_for_127_0_0_1_and_data_changes_do_not_void_it(spellings, tmp_path):
    keyword, uri = spellings
    sql = "ALTER TABLE accounts ADD COLUMN note text"
    refused = execute(tmp_path, uri, sql)
    assert refused["executed"] is False and "has not passed a dry run on this server" in refused["message"]
    dry_run(tmp_path, keyword, sql)
    run_sql(uri, "INSERT INTO accounts VALUES (3, 'c'); ANALYZE accounts")  # data and statistics: not the schema
    ran = execute(tmp_path, uri, sql + ";")
    assert ran["executed"] is True, ran
    assert "note" in columns(uri)
    ledger = (tmp_path / "dry-runs.jsonl").read_text()
    assert oct((tmp_path / "dry-runs.jsonl").stat().st_mode & 0o777) == "0o600"
    for secret in ("localhost", "127.0.0.1", conninfo_to_dict(uri)["dbname"], "accounts", "note"):
        assert secret not in ledger  # hashes and times only


def test_someone_elses_ddl_after_the_dry_run_voids_it(spellings, tmp_path, dsn):
    keyword, uri = spellings
    sql = "ALTER TABLE accounts ADD COLUMN note text"
    dry_run(tmp_path, keyword, sql)
    run_sql(dsn, "ALTER TABLE accounts ALTER COLUMN name SET NOT NULL")  # another session's DDL (a superuser)
    refused = execute(tmp_path, uri, sql)
    assert refused["executed"] is False
    assert "schema changed since" in refused["message"] and "test_migration" in refused["message"]
    assert "note" not in columns(uri)
    dry_run(tmp_path, uri, sql)  # tested again on the schema as it is now
    assert execute(tmp_path, uri, sql)["executed"] is True


def test_a_dry_run_expires(spellings, tmp_path):
    keyword, uri = spellings
    sql = "ALTER TABLE accounts ADD COLUMN note text"
    dry_run(tmp_path, keyword, sql)
    time.sleep(2.5)
    refused = execute(tmp_path, uri, sql, max_age="0.0005")  # 1.8 s
    assert refused["executed"] is False
    assert "h old, beyond the 0.0005 h" in refused["message"] and "AGENT19_DRY_RUN_MAX_AGE_HOURS" in refused["message"]
    assert execute(tmp_path, uri, sql)["executed"] is True  # within the default 24 h


def test_a_migrations_changes_run_in_order_each_on_the_schema_the_previous_one_left(spellings, tmp_path):
    keyword, uri = spellings
    first = "ALTER TABLE accounts ADD COLUMN note text"
    second = "CREATE INDEX accounts_note_idx ON accounts (note)"
    migration = tmp_path / "0042.sql"
    migration.write_text(f"{first};\nSELECT count(*) FROM accounts;\n{second};\n")
    done = cli(tmp_path / "state", "dry-run", str(migration), "--dsn", keyword, "--mode", "dry-run", "--format", "json")
    assert done.returncode == 0 and json.loads(done.stdout)["passed"], done.stdout + done.stderr
    state = tmp_path / "state"
    early = execute(state, uri, second)
    assert early["executed"] is False and "change 2 of a migration" in early["message"]
    assert execute(state, uri, first)["executed"] is True
    assert execute(state, uri, "SELECT count(*) FROM accounts")["executed"] is True  # reads always pass
    assert execute(state, uri, second)["executed"] is True
    again = execute(state, uri, "DROP INDEX accounts_note_idx")
    assert again["executed"] is False  # never dry-run


def test_a_statement_the_dry_run_could_not_run_is_not_recorded(spellings, tmp_path, dsn):
    keyword, uri = spellings
    run_sql(dsn, "CREATE TABLE audit (id int)")  # owned by the superuser: the application's role cannot alter it
    sql = "ALTER TABLE audit ADD COLUMN note text"
    done = cli(tmp_path, "dry-run", "--sql", sql, "--dsn", keyword, "--mode", "dry-run", "--format", "json")
    assert "must be owner" in json.loads(done.stdout)["statements"][0]["untested"]
    refused = execute(tmp_path, uri, sql)
    assert refused["executed"] is False and "has not passed a dry run" in refused["message"]


def test_where_pg_control_system_is_revoked_the_server_is_still_recognised(spellings, tmp_path, dsn):
    """Managed services may revoke pg_control_system(): the port, cluster_name and start time stand in."""
    keyword, uri = spellings
    run_sql(dsn, "REVOKE EXECUTE ON FUNCTION pg_control_system() FROM PUBLIC")  # this database only
    import psycopg

    with psycopg.connect(uri) as c, pytest.raises(psycopg.errors.InsufficientPrivilege):
        c.execute("SELECT system_identifier FROM pg_control_system()")
    sql = "ALTER TABLE accounts ADD COLUMN note text"
    dry_run(tmp_path, keyword, sql)
    assert execute(tmp_path, uri, sql)["executed"] is True


def test_a_dry_run_on_one_database_does_not_count_for_another_on_the_same_server(spellings, tmp_path, pg):
    import uuid

    import psycopg

    keyword, uri = spellings
    app = conninfo_to_dict(uri)
    other = f"t_{uuid.uuid4().hex[:12]}"
    with psycopg.connect(pg.dsn, autocommit=True) as c:
        c.execute(f'CREATE DATABASE "{other}" OWNER "{app["user"]}"')
    try:
        other_uri = f"postgresql://{app['user']}@127.0.0.1:{app['port']}/{other}"
        run_sql(other_uri, SETUP)  # the same schema, another database
        sql = "ALTER TABLE accounts ADD COLUMN note text"
        dry_run(tmp_path, keyword, sql)
        refused = execute(tmp_path, other_uri, sql)
        assert refused["executed"] is False and "has not passed a dry run on this server and database" in \
            refused["message"]
        assert execute(tmp_path, uri, sql)["executed"] is True
    finally:
        with psycopg.connect(pg.dsn, autocommit=True) as c:
            c.execute(f'DROP DATABASE IF EXISTS "{other}" WITH (FORCE)')


def test_a_data_directory_that_cannot_be_written_is_a_clear_error(spellings, tmp_path):
    """The ledger of passing dry runs lives in the data directory: where it cannot be written (here a file stands
    where the directory should be) the dry run says so and what to do, exit 2, instead of a traceback."""
    blocked = tmp_path / "state"
    blocked.write_text("not a directory")
    done = cli(blocked / "inner", "dry-run", "--sql", "ALTER TABLE accounts ADD COLUMN note text",
               "--dsn", spellings[0], "--mode", "dry-run", "--format", "json")
    assert done.returncode == 2, done.stdout + done.stderr
    assert "Traceback" not in done.stderr
    assert "cannot write" in done.stderr and "--data-dir" in done.stderr and "AGENT19_DATA_DIR" in done.stderr
    assert "note" not in columns(spellings[1])  # and the migration was rolled back, as always
