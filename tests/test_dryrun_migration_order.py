"""What a dry run's guard judges as the migration goes: code the migration makes reachable, event triggers, and
code another session swaps while the trial runs (hostile review, holes n21, n22, n27, n36).

As an application role (not a superuser) with a live "application" session of the same role (``victimapp``),
which must survive every dry run, and a sequence that must never be set back:

* an object the migration itself creates (a trigger, a CHECK) whose function a later statement of the migration
  replaces with one that kills or sets a sequence back: everything after the replacement is not run;
* an event trigger (a superuser's) on a harmless function of the role: a migration that replaces that function
  with a killer is not run from that statement on (its own ``ddl_command_end`` would run the new body);
* another session replaces a trigger's function while the migration waits on its row lock: the server runs the
  new body, which the guard never saw — a dry run cannot stop that, so it says so: the result is an error, not
  PASSED.
"""

from __future__ import annotations

import os
import subprocess
import sys
import threading
from collections.abc import Callable, Iterator
from typing import Any

import psycopg
import pytest

from agent19.db.connection import Database
from agent19.migrate.dryrun.rollback_check import verify_rollback
from agent19.migrate.parse import parse_sql
from tests.conftest import session_settings, until
from tests.scratch_dryruns import owner
from tests.trial_victims import application_session, dry_run_as, not_run

KILL = "PERFORM pg_terminate_backend(pid) FROM pg_stat_activity WHERE application_name = 'victimapp'"
SETUP = """
CREATE SCHEMA app;
CREATE TABLE app.customers (id serial PRIMARY KEY, email text);
INSERT INTO app.customers (email) SELECT 'c' || g FROM generate_series(1, 1000) g;
"""
CHANGED = "code the server runs was changed by another session during the trial"


@pytest.fixture
def app(dsn: str) -> str:
    return owner(dsn, SETUP)  # not a superuser: scratch_dryruns.owner checks


@pytest.fixture
def victim(app: str) -> Iterator[psycopg.Connection[Any]]:
    yield from application_session(app, "victimapp")


def _intact(login: str, victim: psycopg.Connection[Any]) -> None:
    assert victim.execute("SELECT 1").fetchone() == (1,)  # the application's session is alive
    with psycopg.connect(login, autocommit=True) as c:
        assert c.execute("SELECT last_value FROM app.customers_id_seq").fetchone()[0] == 1000  # never set back


def test_a_trigger_the_migration_made_whose_function_it_then_replaces_stops_what_follows(app, victim):
    r = dry_run_as(app, "CREATE TABLE app.newt (x int);\n"
                  "CREATE FUNCTION app.tf() RETURNS trigger LANGUAGE plpgsql AS $$ BEGIN RETURN NULL; END $$;\n"
                  "CREATE TRIGGER newt_t AFTER INSERT ON app.newt FOR EACH ROW EXECUTE FUNCTION app.tf();\n"
                  f"CREATE OR REPLACE FUNCTION app.tf() RETURNS trigger LANGUAGE plpgsql AS $$ BEGIN {KILL}; "
                  "RETURN NULL; END $$;\n"
                  "INSERT INTO app.newt VALUES (1);\n")
    *made, replace, insert = r.statements
    assert all(s.ran_in == "transaction" for s in made + [replace]), r.statements
    not_run(insert, "statement 3", "statement 4", "tf", "pg_terminate_backend()")
    assert r.summary.startswith("COULD NOT TEST"), r.summary
    _intact(app, victim)


def test_a_check_the_migration_made_whose_function_it_then_replaces_stops_what_follows(app, victim):
    r = dry_run_as(app, "CREATE FUNCTION app.ok(int) RETURNS bool LANGUAGE sql AS $$ SELECT true $$;\n"
                  "CREATE TABLE app.newc (x int CHECK (app.ok(x)));\n"
                  "CREATE OR REPLACE FUNCTION app.ok(int) RETURNS bool LANGUAGE sql AS "
                  "$$ SELECT setval('app.customers_id_seq', 1) > 0 $$;\n"
                  "INSERT INTO app.newc VALUES (1);\n")
    create, table, replace, insert = r.statements
    assert create.ran_in == table.ran_in == replace.ran_in == "transaction", r.statements
    not_run(insert, "statement 2", "statement 3", "setval()")
    _intact(app, victim)


def test_a_function_the_migration_made_that_calls_one_it_then_replaces_is_judged_again(app, victim):
    r = dry_run_as(app, "CREATE FUNCTION app.helper() RETURNS int LANGUAGE sql AS $$ SELECT 1 $$;\n"
                  "CREATE FUNCTION app.outer_f() RETURNS int LANGUAGE sql AS $$ SELECT app.helper() $$;\n"
                  f"CREATE OR REPLACE FUNCTION app.helper() RETURNS int LANGUAGE plpgsql AS $$ BEGIN {KILL}; "
                  "RETURN 1; END $$;\n"
                  "SELECT app.outer_f();\n")
    not_run(r.statements[-1], "function helper (created earlier in this migration) calls "
                                "pg_terminate_backend()")
    _intact(app, victim)


def test_a_harmless_migration_around_its_own_objects_still_runs(app, victim):
    """Recording what the migration makes costs nothing when its functions stay harmless; a GRANT or COMMENT
    naming a function that later reads SQL built at run time leaves no code that runs it."""
    r = dry_run_as(app, "CREATE FUNCTION app.ok(int) RETURNS bool LANGUAGE sql AS $$ SELECT true $$;\n"
                  "CREATE TABLE app.newc (x int CHECK (app.ok(x)));\n"
                  "CREATE OR REPLACE FUNCTION app.ok(int) RETURNS bool LANGUAGE sql AS $$ SELECT $1 >= 0 $$;\n"
                  "INSERT INTO app.newc VALUES (1);\n"
                  "CREATE FUNCTION app.dyn() RETURNS int LANGUAGE sql AS $$ SELECT 1 $$;\n"
                  "GRANT EXECUTE ON FUNCTION app.dyn() TO PUBLIC;\n"
                  "COMMENT ON FUNCTION app.dyn() IS 'made dynamic below';\n"
                  "CREATE OR REPLACE FUNCTION app.dyn() RETURNS int LANGUAGE plpgsql AS $$ BEGIN "
                  "EXECUTE 'SELECT 1'; RETURN 1; END $$;\n"
                  "INSERT INTO app.newc VALUES (2);\n")
    assert [s.ran_in for s in r.statements] == ["transaction"] * 9, r.statements
    assert r.passed, r.summary


@pytest.fixture
def event_trigger(dsn: str, app: str) -> None:
    """A superuser's event trigger on the application role's harmless function app.evt()."""
    with psycopg.connect(app, autocommit=True) as c:
        c.execute("CREATE FUNCTION app.evt() RETURNS event_trigger LANGUAGE plpgsql AS $$ BEGIN NULL; END $$")
    with psycopg.connect(dsn, autocommit=True) as c:
        c.execute("CREATE EVENT TRIGGER e ON ddl_command_end EXECUTE FUNCTION app.evt()")


def test_replacing_an_event_triggers_function_with_a_killer_is_not_run(app, victim, event_trigger):
    r = dry_run_as(app, "CREATE OR REPLACE FUNCTION app.evt() RETURNS event_trigger LANGUAGE plpgsql AS $$ BEGIN "
                        f"{KILL}; END $$;\nCREATE TABLE app.zz (x int);\n")
    replace, table = r.statements
    not_run(replace, "event trigger", "pg_terminate_backend()")
    not_run(table, "statement 1")
    _intact(app, victim)


def test_with_an_event_trigger_renaming_bad_code_to_a_name_it_calls_is_not_run(dsn, app, victim):
    """The event trigger's function calls app.helper(), which does not exist yet (PL/pgSQL binds at run time);
    renaming a killer to that name would make the server run it at the end of the rename itself."""
    with psycopg.connect(app, autocommit=True) as c:
        c.execute(f"CREATE FUNCTION app.bad_k() RETURNS int LANGUAGE plpgsql AS $$ BEGIN {KILL}; RETURN 1; END $$;"
                  "CREATE FUNCTION app.evt() RETURNS event_trigger LANGUAGE plpgsql AS $$ BEGIN PERFORM app.helper(); "
                  "EXCEPTION WHEN undefined_function THEN NULL; END $$")
    with psycopg.connect(dsn, autocommit=True) as c:
        c.execute("CREATE EVENT TRIGGER e ON ddl_command_end EXECUTE FUNCTION app.evt()")
    r = dry_run_as(app, "ALTER FUNCTION app.bad_k() RENAME TO helper;\nCREATE TABLE app.zz (x int);\n")
    rename, table = r.statements
    not_run(rename, "event trigger", "pg_terminate_backend()")
    not_run(table, "statement 1")
    _intact(app, victim)


def test_with_an_event_trigger_a_harmless_function_is_still_created(app, victim, event_trigger):
    r = dry_run_as(app, "CREATE FUNCTION app.tidy() RETURNS int LANGUAGE sql AS $$ SELECT 1 $$;\n"
                  "CREATE TABLE app.zz (x int);\n")
    assert [s.ran_in for s in r.statements] == ["transaction", "transaction"], r.statements
    assert r.passed, r.summary


def _swapped_during(app: str, trial: Callable[[], Any]) -> Any:
    """Run ``trial`` (which updates app.rt's row x = 1) while another session holds that row; once the trial
    waits on it, that session replaces the AFTER UPDATE trigger's harmless function and commits."""
    with psycopg.connect(app, autocommit=True) as c:
        c.execute("CREATE TABLE app.rt (x int); INSERT INTO app.rt VALUES (1);"
                  "CREATE FUNCTION app.rt_trg() RETURNS trigger LANGUAGE plpgsql AS $$ BEGIN RETURN NULL; END $$;"
                  "CREATE TRIGGER rt AFTER UPDATE ON app.rt FOR EACH ROW EXECUTE FUNCTION app.rt_trg()")
    other = psycopg.connect(app, autocommit=True, application_name="swapper")
    other.execute("BEGIN")
    other.execute("SELECT * FROM app.rt WHERE x = 1 FOR UPDATE")

    def swap() -> None:  # once the trial's UPDATE waits on the row lock (seen from a session of its own:
        watch = psycopg.connect(app, autocommit=True)  # pg_stat_activity holds still within a transaction)
        until("the trial to wait on the row lock", lambda: watch.execute(
            "SELECT 1 FROM pg_stat_activity WHERE wait_event_type = 'Lock' AND pid <> pg_backend_pid() "
            "AND position('UPDATE app.rt SET' in query) > 0"
        ).fetchone(), timeout=60)
        watch.close()
        other.execute(f"CREATE OR REPLACE FUNCTION app.rt_trg() RETURNS trigger LANGUAGE plpgsql AS $$ BEGIN "
                      f"{KILL.replace('victimapp', 'nobody')}; RETURN NULL; END $$")
        other.execute("COMMIT")

    t = threading.Thread(target=swap)
    t.start()
    try:
        return trial()
    finally:
        t.join()
        other.close()


def test_a_trigger_function_swapped_by_another_session_during_the_trial_is_an_error(app, victim):
    """The guard read the harmless body; the migration's UPDATE waits on a row another session locked; that
    session replaces the body with a killer and commits; the server runs the new body. The dry run cannot
    prevent it — it must not say PASSED."""
    r = _swapped_during(app, lambda: dry_run_as(app, "UPDATE app.rt SET x = 2 WHERE x = 1;\n"))
    assert r.statements[0].ran_in == "transaction", r.statements
    assert not r.passed and r.summary.startswith("FAILED"), r.summary
    said = [f.message for f in r.findings if f.severity == "error"]
    assert any(CHANGED in m and "cannot be trusted" in m for m in said), r.findings


@pytest.mark.parametrize("face", [("sql",), ("explain", "--analyze")], ids=["sql", "explain-analyze"])
def test_every_face_that_runs_a_trial_says_code_swapped_during_it(app, tmp_path, face):
    def cli() -> subprocess.CompletedProcess[str]:
        return subprocess.run([sys.executable, "-m", "agent19", *face, "--mode", "dry-run", "--dsn", app,
                               "UPDATE app.rt SET x = 2 WHERE x = 1"], capture_output=True, text=True, timeout=120,
                              env={**os.environ, "AGENT19_DATA_DIR": str(tmp_path)})

    r = _swapped_during(app, cli)
    out = r.stdout + r.stderr
    assert r.returncode == 1, out
    assert f"error: {CHANGED}" in out and "cannot be trusted" in out, out


def test_the_rollback_check_is_not_verified_when_code_was_swapped_during_it(app):
    def check() -> Any:
        db = Database(session_settings(dsn=app, mode="dry-run"))
        try:
            return verify_rollback(db, parse_sql("UPDATE app.rt SET x = 2 WHERE x = 1;\n", "up.sql"),
                                   parse_sql("UPDATE app.rt SET x = 1 WHERE x = 2;\n", "down.sql"))
        finally:
            db.close()

    r = _swapped_during(app, check)
    assert not r.verified and r.summary.startswith(f"rollback not verified: {CHANGED}"), r.summary
    assert "cannot be trusted" in r.summary, r.summary


def test_a_trial_with_no_other_session_changing_code_passes(app, victim, tmp_path):
    with psycopg.connect(app, autocommit=True) as c:
        c.execute("CREATE TABLE app.rt (x int); INSERT INTO app.rt VALUES (1);"
                  "CREATE FUNCTION app.rt_trg() RETURNS trigger LANGUAGE plpgsql AS $$ BEGIN RETURN NULL; END $$;"
                  "CREATE TRIGGER rt AFTER UPDATE ON app.rt FOR EACH ROW EXECUTE FUNCTION app.rt_trg()")
    r = dry_run_as(app, "CREATE OR REPLACE FUNCTION app.rt_trg() RETURNS trigger LANGUAGE plpgsql AS $$ BEGIN "
                  "RETURN NEW; END $$;\nUPDATE app.rt SET x = 2 WHERE x = 1;\n")
    assert r.passed, r.summary  # the migration's own change to the code is rolled back: not another session's
    r = subprocess.run([sys.executable, "-m", "agent19", "sql", "--mode", "dry-run", "--dsn", app,
                        "UPDATE app.rt SET x = 2 WHERE x = 1"], capture_output=True, text=True, timeout=120,
                       env={**os.environ, "AGENT19_DATA_DIR": str(tmp_path)})
    assert r.returncode == 0 and "error:" not in r.stdout, r.stdout + r.stderr
