"""`agent19 setup-role`: the scripts apply with psql as printed, and the logins can do what they are for."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import tempfile
import uuid
from pathlib import Path

import psycopg
import pytest
from psycopg.conninfo import make_conninfo

from tests.conftest import need
from tests.reader_login import psql, reader_login

ROOT = Path(__file__).parent.parent


def _agent19(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "agent19", *args], cwd=ROOT, capture_output=True, text=True,
                          timeout=120, env={**os.environ, **(env or {})})


def test_migration_role_owns_the_objects_and_createdb_only_when_asked(dsn, tmp_path):
    with psycopg.connect(dsn, autocommit=True) as conn:
        conn.execute("CREATE TABLE orders (id int PRIMARY KEY); CREATE SEQUENCE s; CREATE VIEW v AS SELECT 1 AS x")
    name = f"mig_{uuid.uuid4().hex[:8]}"
    plain = _agent19("setup-role", "--kind", "migration", "--name", name, "--dsn", dsn)
    assert plain.returncode == 0, plain.stderr
    assert "NOCREATEDB" in plain.stdout and f"ALTER TABLE public.orders OWNER TO {name};" in plain.stdout
    assert "--createdb to allow it" in plain.stdout
    out = _agent19("setup-role", "--kind", "migration", "--name", name, "--createdb", "--dsn", dsn)
    assert " CREATEDB " in out.stdout and "each of which it owns" in out.stdout
    script = tmp_path / "migration.sql"
    script.write_text(out.stdout)
    password = uuid.uuid4().hex
    applied = subprocess.run([psql(), "-X", "-v", "ON_ERROR_STOP=1", "-d", dsn, "-f", str(script)],
                             capture_output=True, text=True, timeout=60,
                             env={**os.environ, "AGENT19_MIGRATOR_PASSWORD": password})
    assert applied.returncode == 0, applied.stderr
    assert password not in out.stdout
    try:
        with psycopg.connect(make_conninfo(dsn, user=name), autocommit=True) as conn:
            conn.execute("ALTER TABLE orders ADD COLUMN note text")  # the owner may change the schema
            conn.execute("CREATE INDEX ON orders (note)")
            row = conn.execute("SELECT rolsuper, rolcreatedb, rolcreaterole FROM pg_roles WHERE rolname = "
                               "current_user").fetchone()
            assert row == (False, True, False)
    finally:
        with psycopg.connect(dsn, autocommit=True) as conn:
            conn.execute(f'REASSIGN OWNED BY "{name}" TO CURRENT_USER; DROP OWNED BY "{name}"; DROP ROLE "{name}"')


def test_reader_script_reads_the_schemas_and_nothing_else(dsn, tmp_path):
    with psycopg.connect(dsn, autocommit=True) as conn:
        conn.execute("CREATE SCHEMA billing; CREATE TABLE billing.invoices (id int); INSERT INTO billing.invoices "
                     "VALUES (1); CREATE TABLE public.t (id int)")
    with reader_login(dsn, tmp_path) as read_dsn, psycopg.connect(read_dsn, autocommit=True) as conn:
        assert conn.execute("SELECT count(*) FROM billing.invoices").fetchone() == (1,)
        with psycopg.connect(dsn, autocommit=True) as admin:  # tables created later are readable too
            admin.execute("CREATE TABLE billing.later (id int); INSERT INTO billing.later VALUES (7)")
        assert conn.execute("SELECT id FROM billing.later").fetchone() == (7,)
        for sql in ("CREATE TABLE billing.x (id int)", "INSERT INTO public.t VALUES (1)"):
            try:
                conn.execute(sql)
            except (psycopg.errors.InsufficientPrivilege, psycopg.errors.ReadOnlySqlTransaction):
                continue
            raise AssertionError(f"the reader could run {sql}")


def test_cli_refuses_a_privileged_login_and_says_what_to_do(dsn):
    out = _agent19("sql", "SELECT 1", "--dsn", dsn, env={"AGENT19_ALLOW_PRIVILEGED_READS": "0"})
    assert out.returncode == 1, out.stdout + out.stderr
    assert "superuser" in out.stderr and "agent19 setup-role" in out.stderr and "--read-dsn" in out.stderr
    ok = _agent19("sql", "SELECT 1 AS one", "--dsn", dsn, "--allow-privileged-reads", "--format", "json",
                  env={"AGENT19_ALLOW_PRIVILEGED_READS": "0"})
    assert ok.returncode == 0, ok.stderr


@pytest.fixture
def embedded_dir():
    """A data directory outside pytest's own temporary tree: that tree is private (0700) and every pytest session
    on the machine makes it so again, while the embedded server's system user must reach the directory — another
    test run starting meanwhile failed this test with 'Permission denied'."""
    path = Path(tempfile.mkdtemp(prefix="agent19-embedded-"))
    yield path
    shutil.rmtree(path, ignore_errors=True)


def test_the_embedded_server_reads_as_its_own_reader_login(embedded_dir):
    """Without a DSN agent19 runs its own server; it creates the reader login there itself."""
    tmp_path = embedded_dir
    env = {k: v for k, v in os.environ.items() if k not in {"DATABASE_URL", "AGENT19_READ_DSN"}}
    env["AGENT19_ALLOW_PRIVILEGED_READS"] = "0"
    out = subprocess.run([sys.executable, "-m", "agent19", "sql", "SELECT session_user, "
                          "current_setting('transaction_read_only')", "--data-dir", str(tmp_path), "--format", "json"],
                         cwd=ROOT, capture_output=True, text=True, timeout=300, env=env)
    assert out.returncode == 0, out.stderr
    assert json.loads(out.stdout)["result"]["rows"] == [["agent19_reader", "on"]]
    info = subprocess.run([sys.executable, "-m", "agent19", "info", "--data-dir", str(tmp_path), "--format", "json"],
                          cwd=ROOT, capture_output=True, text=True, timeout=300, env=env)
    reads = json.loads(info.stdout)["reads"]
    assert reads["login"] == "agent19_reader" and reads["privileged"] is False
    refused = subprocess.run([sys.executable, "-m", "agent19", "sql", "SELECT pg_read_file('/etc/hostname')",
                              "--data-dir", str(tmp_path)], cwd=ROOT, capture_output=True, text=True, timeout=300,
                             env=env)
    assert refused.returncode == 1 and "pg_read_file" in refused.stderr


def test_reader_script_revokes_foreign_tables_that_run_programs(dsn, tmp_path):
    os.chmod(tmp_path, 0o777)
    marker = tmp_path / "ran"
    with psycopg.connect(dsn, autocommit=True) as conn:
        try:
            conn.execute("CREATE EXTENSION file_fdw")
        except psycopg.errors.UndefinedFile:  # pragma: no cover - a server without contrib
            need(False, "file_fdw (contrib) is not installed")
        conn.execute("CREATE SERVER files FOREIGN DATA WRAPPER file_fdw")
        conn.execute(f"CREATE FOREIGN TABLE public.runs (line text) SERVER files OPTIONS (program 'touch {marker}')")
    with reader_login(dsn, tmp_path) as read_dsn, psycopg.connect(read_dsn, autocommit=True) as conn:
        try:
            conn.execute("SELECT * FROM public.runs")
        except psycopg.errors.InsufficientPrivilege:
            pass
    assert not marker.exists(), "the reader login ran a file_fdw program"
