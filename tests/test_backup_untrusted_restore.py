"""Restoring a backup to verify it must not run the database owners' functions as a superuser.

A non-superuser owner plants a function that, when the *session* user is a superuser, resets its role
and runs ``COPY … TO PROGRAM 'touch <marker>'`` (a shell command as the server's OS user). The
function is reached during a restore by a CHECK constraint, a generated column, an index expression,
a trigger and a materialized view's refresh. The test first proves the weapon works (called by a
superuser, the marker appears), then verifies the backup through the CLI, as an operator connected as
a superuser would, in every format: the marker must never appear and the backup must still verify.
Real server, real pg_dump / pg_restore / psql, the CLI.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import uuid
from pathlib import Path

import psycopg
import pytest
from psycopg.conninfo import make_conninfo

from agent19.db.binaries import pg_binary
from tests.conftest import need, owner_login, run_sql
from tools.throwaway import ThrowawayServer

ROOT = Path(__file__).resolve().parent.parent


def _plant(owner_dsn: str, marker: Path) -> None:
    run_sql(owner_dsn, f"""
CREATE FUNCTION escape() RETURNS void LANGUAGE plpgsql AS $f$
BEGIN
  IF (SELECT rolsuper FROM pg_roles WHERE rolname = session_user) THEN
    BEGIN
      EXECUTE 'RESET ROLE';
      EXECUTE $c$COPY (SELECT 1) TO PROGRAM 'touch {marker}'$c$;
    EXCEPTION WHEN OTHERS THEN NULL;   -- silent: the restore must look normal
    END;
  END IF;
END $f$;
CREATE FUNCTION planted(v int) RETURNS int LANGUAGE plpgsql IMMUTABLE AS $f$
BEGIN PERFORM public.escape(); RETURN v; END $f$;
CREATE FUNCTION planted_trigger() RETURNS trigger LANGUAGE plpgsql AS $f$
BEGIN PERFORM public.planted(1); RETURN NEW; END $f$;
CREATE TABLE orders (
    id int PRIMARY KEY CHECK (planted(id) = id),
    qty int DEFAULT planted(1),
    doubled int GENERATED ALWAYS AS (planted(id) * 2) STORED
);
CREATE INDEX orders_planted ON orders ((planted(qty)));
CREATE TRIGGER orders_touch BEFORE INSERT OR UPDATE ON orders FOR EACH ROW EXECUTE FUNCTION planted_trigger();
INSERT INTO orders (id, qty) SELECT g, g % 7 FROM generate_series(1, 200) g;
CREATE MATERIALIZED VIEW order_totals AS SELECT planted(count(*)::int) AS n FROM orders;
""")


def _verify(dsn: str, *args: str) -> tuple[int, dict, str]:
    done = subprocess.run([sys.executable, "-m", "agent19", "backup", "verify", "--dsn", dsn, "--mode", "dry-run",
                           "--format", "json", *args], capture_output=True, text=True, cwd=ROOT, timeout=300,
                          env={**os.environ, "DATABASE_URL": ""})
    assert done.returncode in (0, 1), done.stdout + done.stderr
    return done.returncode, json.loads(done.stdout), done.stderr


@pytest.fixture
def planted(pg: ThrowawayServer, dsn: str):
    need(pg_binary("initdb", pg.major) is not None, "PostgreSQL server binaries are not installed")
    marker = Path(f"/tmp/agent19-planted-{uuid.uuid4().hex}")  # writable by the server's OS user
    owner = owner_login(dsn, "planter")
    _plant(owner, marker)
    # the weapon works: a superuser session that reaches the function runs the shell command
    with psycopg.connect(dsn, autocommit=True) as conn:
        conn.execute("SELECT planted(1)")
    assert marker.exists(), "the planted function did not run its command as a superuser: the test proves nothing"
    marker.unlink()
    yield dsn, owner, marker
    marker.unlink(missing_ok=True)


def test_verifying_as_a_superuser_never_runs_the_owners_functions_as_one(pg, planted, tmp_path):
    dsn, owner, marker = planted
    # the live database, streamed custom format (default); auto chooses a throwaway cluster for a superuser
    code, out, err = _verify(dsn)
    assert not marker.exists(), "restoring the streamed dump ran the planted function as a superuser"
    assert code == 0 and out["verified"], out["summary"] + err
    assert "agent19_restorer" in out["restored_into"] and "no superuser" in out["restored_into"]
    assert any("may not run the dump's SQL in a scratch database (it is a superuser)" in n for n in out["notes"])
    rows = {t["table"]: (t["rows_source"], t["rows_restored"]) for t in out["tables"]}
    assert rows == {"public.orders": (200, 200)}

    # directory format with parallel jobs
    code, out, err = _verify(dsn, "--jobs", "2")
    assert not marker.exists(), "the directory-format restore ran the planted function as a superuser"
    assert code == 0 and out["verified"], out["summary"] + err

    # existing dump files: custom and plain (psql), made by the owner as an application would
    pg_dump = pg_binary("pg_dump", pg.major)
    custom, plain = tmp_path / "nightly.dump", tmp_path / "nightly.sql"
    subprocess.run([pg_dump, "-Fc", "-f", custom, "-d", owner], check=True, capture_output=True)
    subprocess.run([pg_dump, "-f", plain, "-d", owner], check=True, capture_output=True)
    for dump in (custom, plain):
        code, out, err = _verify(dsn, "--from", str(dump), "--restore-into", "cluster")
        assert not marker.exists(), f"restoring {dump.name} ran the planted function as a superuser"
        assert code == 0 and out["verified"], f"{dump.name}: {out['summary']} {err}"


def test_a_scratch_database_is_refused_to_a_superuser_login_with_what_to_do(planted):
    dsn, _, marker = planted
    done = subprocess.run([sys.executable, "-m", "agent19", "backup", "verify", "--dsn", dsn, "--mode", "dry-run",
                           "--restore-into", "scratch"], capture_output=True, text=True, cwd=ROOT, timeout=120,
                          env={**os.environ, "DATABASE_URL": ""})
    assert done.returncode not in (0, 1), done.stdout
    said = done.stdout + done.stderr
    assert "refusing to restore into a scratch database" in said and "it is a superuser" in said, said
    assert "--restore-into cluster" in said
    assert not marker.exists()


def test_the_application_role_itself_may_restore_into_a_scratch_database(pg, planted):
    dsn, owner, marker = planted
    with psycopg.connect(dsn, autocommit=True) as conn:
        role = conn.execute("SELECT datdba::regrole::text FROM pg_database WHERE datname = current_database()"
                            ).fetchone()[0]
        conn.execute(f"ALTER ROLE {role} CREATEDB")
    code, out, err = _verify(owner, "--restore-into", "scratch")
    assert not marker.exists()
    assert code == 0 and out["verified"], out["summary"] + err
    assert out["restored_into"].startswith("scratch database")


def test_a_login_that_can_run_programs_is_not_trusted_with_a_scratch_restore(pg, planted):
    dsn, owner, _ = planted
    with psycopg.connect(dsn, autocommit=True) as conn:
        role = conn.execute("SELECT datdba::regrole::text FROM pg_database WHERE datname = current_database()"
                            ).fetchone()[0]
        conn.execute(f"ALTER ROLE {role} CREATEDB")
        conn.execute(f"GRANT pg_execute_server_program TO {role}")
    try:
        done = subprocess.run([sys.executable, "-m", "agent19", "backup", "verify", "--dsn", owner, "--mode",
                               "dry-run", "--restore-into", "scratch"], capture_output=True, text=True, cwd=ROOT,
                              timeout=120, env={**os.environ, "DATABASE_URL": ""})
        said = done.stdout + done.stderr
        assert done.returncode not in (0, 1) and "member of pg_execute_server_program" in said, said
    finally:
        with psycopg.connect(dsn, autocommit=True) as conn:
            conn.execute(f"REVOKE pg_execute_server_program FROM {role}")


def test_an_untrusted_extension_is_created_for_the_restorer_and_the_backup_verifies(pg, dsn, tmp_path):
    """hypopg may be created only by a superuser: created first by the throwaway cluster's superuser,
    in its own schema, then everything else restored by the unprivileged role."""
    need(pg_binary("initdb", pg.major) is not None, "PostgreSQL server binaries are not installed")
    with psycopg.connect(dsn, autocommit=True) as conn:
        if not conn.execute("SELECT 1 FROM pg_available_extensions WHERE name = 'hypopg'").fetchone():
            need(False, "hypopg is not installed")
        conn.execute("CREATE SCHEMA tools; CREATE EXTENSION hypopg WITH SCHEMA tools;"
                     "CREATE TABLE t (id int PRIMARY KEY); INSERT INTO t SELECT generate_series(1, 10)")
    code, out, err = _verify(dsn)
    assert code == 0 and out["verified"], out["summary"] + err + json.dumps(out["errors"])
    dump = tmp_path / "x.dump"
    subprocess.run([pg_binary("pg_dump", pg.major), "-Fc", "-f", dump, "-d", make_conninfo(dsn)], check=True)
    code, out, err = _verify(dsn, "--from", str(dump), "--restore-into", "cluster")
    assert code == 0 and out["verified"], out["summary"] + err + json.dumps(out["errors"])


def test_a_scratch_restore_is_refused_when_other_roles_code_would_run_as_the_login(pg, planted, tmp_path):
    """The application's login verifies a database where another, lesser role owns functions: restored by the
    login on the target's server, they would run with its privileges (it could even change its own password).
    A dump file is refused there too: its SQL comes from outside. auto takes a throwaway cluster instead."""
    dsn, owner, marker = planted
    app = owner_login(dsn, "verifier")
    app_role = app.split("user=")[1].split()[0]
    planter = owner.split("user=")[1].split()[0]
    run_sql(dsn, f"ALTER ROLE {app_role} CREATEDB; GRANT SELECT ON ALL TABLES IN SCHEMA public TO {app_role};"
                 f"GRANT USAGE ON SCHEMA public TO {app_role}")
    done = subprocess.run([sys.executable, "-m", "agent19", "backup", "verify", "--dsn", app, "--mode", "dry-run",
                           "--restore-into", "scratch"], capture_output=True, text=True, cwd=ROOT, timeout=120,
                          env={**os.environ, "DATABASE_URL": ""})
    said = done.stdout + done.stderr
    assert done.returncode not in (0, 1) and f"owned by {planter} would run as this login" in said, said
    code, out, err = _verify(app)   # auto: a throwaway cluster, restored by agent19_restorer
    assert code == 0 and out["verified"] and "agent19_restorer" in out["restored_into"], out["summary"] + err
    assert any(f"owned by {planter} would run as this login" in n for n in out["notes"])

    dump = tmp_path / "x.dump"
    subprocess.run([pg_binary("pg_dump", pg.major), "-Fc", "-f", dump, "-d", owner], check=True)
    done = subprocess.run([sys.executable, "-m", "agent19", "backup", "verify", "--dsn", owner, "--mode", "dry-run",
                           "--from", str(dump), "--restore-into", "scratch"], capture_output=True, text=True, cwd=ROOT,
                          timeout=120, env={**os.environ, "DATABASE_URL": ""})
    said = done.stdout + done.stderr
    assert done.returncode not in (0, 1) and "a dump file is SQL from outside" in said, said
    assert not marker.exists()


def test_a_dump_file_does_not_choose_which_extensions_a_superuser_installs(pg, dsn, tmp_path):
    """Only extensions the target database has are created by the throwaway cluster's superuser: one a dump
    file asks for on its own is left to the unprivileged restorer, which may not create it."""
    need(pg_binary("initdb", pg.major) is not None, "PostgreSQL server binaries are not installed")
    with psycopg.connect(dsn, autocommit=True) as conn:
        if not conn.execute("SELECT 1 FROM pg_available_extensions WHERE name = 'hypopg'").fetchone():
            need(False, "hypopg is not installed")
        conn.execute("CREATE TABLE t (id int PRIMARY KEY); INSERT INTO t VALUES (1)")
    plain = tmp_path / "asks.sql"
    subprocess.run([pg_binary("pg_dump", pg.major), "-f", plain, "-d", dsn], check=True, capture_output=True)
    plain.write_text("CREATE EXTENSION IF NOT EXISTS hypopg WITH SCHEMA public;\n" + plain.read_text())
    code, out, err = _verify(dsn, "--from", str(plain), "--restore-into", "cluster")
    assert code == 1 and not out["verified"], out["summary"] + err
    assert any("permission denied to create extension" in e and "hypopg" in e for e in out["errors"]), out["errors"]
