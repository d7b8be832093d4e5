"""What a rolled-back trial left outside its transaction, on every face that runs one (agent19.safety.aftermath).

A hostile review (as the database's non-superuser owner) moved a sequence 1000 -> 1 through a CHECK constraint
calling setval, with `agent19 sql --mode dry-run` and `explain --analyze`: exit 0, nothing said. The screen before
the trial does not follow CHECK constraints or triggers of a plain INSERT; the check after the rollback sees what
they did. Through the CLI, as a user runs it."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

import psycopg
import pytest
from psycopg.conninfo import conninfo_to_dict

from tests.conftest import owner_login, until


def _agent19(data_dir: Path, *args: str) -> subprocess.CompletedProcess[str]:
    # the operator's opt-in lets code the screen cannot read run (the CHECKs below hide their calls in EXECUTE):
    # the after-check is what sees what such code did - the screen before a trial catches the plain forms
    env = {**os.environ, "AGENT19_DATA_DIR": str(data_dir), "AGENT19_ALLOW_UNREADABLE_CODE": "1"}
    return subprocess.run([sys.executable, "-m", "agent19", *args], env=env, capture_output=True, text=True,
                          timeout=120)


def _last_value(app: str, name: str = "s") -> int:
    with psycopg.connect(app, autocommit=True) as c:
        return c.execute(f"SELECT last_value FROM {name}").fetchone()[0]


@pytest.fixture
def app(dsn):
    """The owner login, a sequence at 1000 and a table whose CHECK constraint sets it back to 1."""
    login = owner_login(dsn)
    with psycopg.connect(login, autocommit=True) as c:
        c.execute("CREATE SEQUENCE s; SELECT setval('s', 1000)")
        c.execute("CREATE FUNCTION reset_s(x int) RETURNS boolean LANGUAGE plpgsql AS "
                  "$$ BEGIN EXECUTE 'SELECT set' || 'val(''public.s'', 1)'; RETURN true; END $$")
        c.execute("CREATE TABLE chk (x int CHECK (reset_s(x)))")
        c.execute("CREATE TABLE plain (x int)")
    return login


@pytest.mark.parametrize("face", [("sql",), ("explain", "--analyze")], ids=["sql", "explain-analyze"])
def test_a_sequence_set_back_by_a_check_constraint_is_an_error_with_its_value(app, tmp_path, face):
    r = _agent19(tmp_path, *face, "--mode", "dry-run", "--dsn", app, "INSERT INTO chk VALUES (1)")
    out = r.stdout + r.stderr
    assert r.returncode == 1, out
    assert "set sequence public.s back from 1000 to 1 outside the transaction" in out, out
    assert "restore it with SELECT setval('public.s', 1000)" in out, out
    assert _last_value(app) == 1  # said, not restored: the operator decides


def test_a_write_that_leaves_the_sequences_alone_passes_quietly(app, tmp_path):
    r = _agent19(tmp_path, "sql", "--mode", "dry-run", "--dsn", app, "INSERT INTO plain VALUES (1)")
    assert r.returncode == 0 and "error:" not in r.stdout and "warning:" not in r.stdout, r.stdout + r.stderr
    assert "rolled back" in r.stdout


def test_sequences_the_login_may_set_but_not_read_are_said_to_be_not_compared(app, dsn, tmp_path):
    role = conninfo_to_dict(app)["user"]
    with psycopg.connect(dsn, autocommit=True) as c:  # as the superuser: the login gets UPDATE only
        c.execute("CREATE SCHEMA hidden; CREATE SEQUENCE hidden.invoice_no; SELECT setval('hidden.invoice_no', 5000)")
        c.execute(f"GRANT USAGE ON SCHEMA hidden TO {role}; GRANT UPDATE ON hidden.invoice_no TO {role}")
    r = _agent19(tmp_path, "sql", "--mode", "dry-run", "--dsn", app, "INSERT INTO plain VALUES (1)")
    assert "1 sequence this login may not read" in r.stdout and "were not compared" in r.stdout, r.stdout + r.stderr


def test_an_application_session_terminated_by_a_trigger_is_warned_about(app, tmp_path):
    with psycopg.connect(app, autocommit=True) as c:
        c.execute("CREATE FUNCTION kill_victims() RETURNS trigger LANGUAGE plpgsql AS $$ BEGIN "
                  "PERFORM pg_terminate_backend(pid) FROM pg_stat_activity WHERE application_name = 'victimapp'; "
                  "RETURN NEW; END $$")
        c.execute("CREATE TRIGGER kill AFTER INSERT ON plain FOR EACH ROW EXECUTE FUNCTION kill_victims()")
    victim = psycopg.connect(app, autocommit=True, application_name="victimapp")
    try:
        pid = victim.info.backend_pid
        with psycopg.connect(app, autocommit=True) as c:
            until("the application's session", lambda: c.execute(
                "SELECT 1 FROM pg_stat_activity WHERE pid = %s", (pid,)).fetchone())
        # the screen before a trial now sees this trigger's call: `agent19 sql --mode dry-run` does not run it
        r = _agent19(tmp_path, "sql", "--mode", "dry-run", "--dsn", app, "INSERT INTO plain VALUES (1)")
        assert r.returncode != 0 and "pg_terminate_backend" in r.stdout + r.stderr, (r.stdout, r.stderr)
        with psycopg.connect(app, autocommit=True) as c:
            assert c.execute("SELECT 1 FROM pg_stat_activity WHERE pid = %s", (pid,)).fetchone() == (1,)
        # the after-check is for what the screen misses: the same trial run past it, through the library
        from agent19.db.connection import Database
        from agent19.safety import aftermath
        from tests.conftest import session_settings

        db = Database(session_settings(dsn=app, mode="dry-run"))
        try:
            with aftermath.trial(db) as (conn, after):
                conn.execute("INSERT INTO plain VALUES (1)")
        finally:
            db.close()
        out = "\n".join(after.lines())
        assert "warning: during the trial, 1 other session(s) of role" in out, out
        assert f"(pids {pid})" in out, out
    finally:
        victim.close()


def test_no_session_warning_when_nothing_ended(app, tmp_path):
    with psycopg.connect(app, autocommit=True, application_name="bystander") as bystander:
        time.sleep(0.1)
        r = _agent19(tmp_path, "sql", "--mode", "dry-run", "--dsn", app, "INSERT INTO chk VALUES (1)")
        assert "warning:" not in r.stdout, r.stdout
        assert bystander.execute("SELECT 1").fetchone() == (1,)


def test_confirms_measuring_trial_that_sets_a_sequence_back_is_a_challenge_naming_it(app, tmp_path):
    """confirm_destructive measures an UPDATE in a rolled-back transaction; the CHECK it fires set the sequence
    back: not 'not destructive', but a challenge whose finding says what the rollback did not undo."""
    with psycopg.connect(app, autocommit=True) as c:
        c.execute("CREATE TABLE rows (id int PRIMARY KEY, x int CHECK (reset_s(x)))")
        c.execute("INSERT INTO rows SELECT g, 0 FROM generate_series(1, 10) g")
        c.execute("SELECT setval('s', 1000)")
    r = _agent19(tmp_path, "confirm", "--mode", "execute", "--dsn", app, "UPDATE rows SET x = 2 WHERE id = 1")
    out = r.stdout + r.stderr
    assert "outcome: challenge" in out, out
    assert ("measured, after the rollback: the statement set sequence public.s back from 1000 to 1 outside the "
            "transaction") in out, out
    with psycopg.connect(app, autocommit=True) as c:
        assert c.execute("SELECT x FROM rows WHERE id = 1").fetchone() == (0,)  # nothing kept


def test_a_statement_that_fails_after_setting_a_sequence_back_says_both(app, tmp_path):
    """The CHECK sets the sequence back, then rejects the row: the error is the violation, and what the rollback
    left is added to it."""
    with psycopg.connect(app, autocommit=True) as c:
        c.execute("CREATE FUNCTION reset_then_refuse(x int) RETURNS boolean LANGUAGE plpgsql AS "
                  "$$ BEGIN EXECUTE 'SELECT set' || 'val(''public.s'', 1)'; RETURN x > 0; END $$")
        c.execute("CREATE TABLE strict (x int CONSTRAINT positive CHECK (reset_then_refuse(x)))")
    r = _agent19(tmp_path, "sql", "--mode", "dry-run", "--dsn", app, "INSERT INTO strict VALUES (0)")
    out = r.stdout + r.stderr
    assert r.returncode != 0 and "positive" in out, out
    assert "after the rollback: error: the statement set sequence public.s back from 1000 to 1" in out, out


def test_the_dry_run_warns_of_an_application_session_its_migration_terminated(app, tmp_path):
    """The review's main face: a migration whose INSERT runs a CHECK constraint (the screen does not follow those)
    that terminates the application's session PASSED with nothing said. The catalog diff cannot see it; the
    sessions read before and after can."""
    with psycopg.connect(app, autocommit=True) as c:
        c.execute("CREATE FUNCTION kill_victims(x int) RETURNS boolean LANGUAGE plpgsql AS $$ DECLARE r record; "
                  "BEGIN FOR r IN SELECT pid FROM pg_stat_activity WHERE application_name = 'victimapp' LOOP "
                  "EXECUTE 'SELECT pg_' || 'terminate_backend(' || r.pid || ')'; END LOOP; RETURN true; END $$")
        c.execute("CREATE TABLE guarded (x int CHECK (kill_victims(x)))")
    migration = tmp_path / "001_fill.sql"
    migration.write_text("INSERT INTO guarded VALUES (1);\n")
    victim = psycopg.connect(app, autocommit=True, application_name="victimapp")
    try:
        pid = victim.info.backend_pid
        r = _agent19(tmp_path, "dry-run", str(migration), "--mode", "dry-run", "--dsn", app)
        out = r.stdout + r.stderr
        assert "during the trial, 1 other session(s) of role" in out and f"(pids {pid})" in out, out
    finally:
        victim.close()


def test_without_the_opt_in_the_screen_stops_the_same_trial_before_it_runs(app, tmp_path):
    """The plain form of the fixture's CHECK (setval called, not hidden in EXECUTE) is an entry point the screen
    reads from the catalog: `sql --mode dry-run` does not run the INSERT, and the sequence stays."""
    with psycopg.connect(app, autocommit=True) as c:
        c.execute("CREATE OR REPLACE FUNCTION reset_s(x int) RETURNS boolean LANGUAGE plpgsql AS "
                  "$$ BEGIN PERFORM setval('public.s', 1); RETURN true; END $$")
    env = {**os.environ, "AGENT19_DATA_DIR": str(tmp_path)}
    env.pop("AGENT19_ALLOW_UNREADABLE_CODE", None)
    r = subprocess.run([sys.executable, "-m", "agent19", "sql", "--mode", "dry-run", "--dsn", app,
                        "INSERT INTO chk VALUES (1)"], env=env, capture_output=True, text=True, timeout=120)
    assert r.returncode != 0 and "setval" in r.stdout + r.stderr, (r.stdout, r.stderr)
    assert _last_value(app) == 1000
