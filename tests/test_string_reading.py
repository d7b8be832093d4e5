"""The server reads every statement's strings as agent19 read them (review r24d): with standard_conforming_strings
off — a role's or database's default, a SET, a function's own SET — ``'a\\', '`` is one string to the server and
two to agent19, so code it took for text would run. Every session agent19 opens sets it on; statements that change
it, and code that does, are not run."""

from __future__ import annotations

import os
import subprocess
import sys

import psycopg
from psycopg.conninfo import conninfo_to_dict

from tests.conftest import owner_login

HIDDEN_KILL = ("SELECT 'a\\', ' || (SELECT count(pg_terminate_backend(pid))::text FROM pg_stat_activity "
               "WHERE application_name = concat(chr(116), chr(104), chr(101), chr(45), chr(97), chr(112), chr(112))) "
               "--'\n")  # 'the-app' spelled without a quote; the trailing comment hides the last quote from it


def _agent19(*args: str, tmp_path) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "AGENT19_DATA_DIR": str(tmp_path), "DATABASE_URL": ""}
    return subprocess.run([sys.executable, "-m", "agent19", *args], env=env, capture_output=True, text=True,
                          timeout=120)


def test_a_role_defaulting_to_off_cannot_hide_code_in_a_string(dsn, tmp_path):
    app = owner_login(dsn, "scs")
    with psycopg.connect(dsn, autocommit=True) as c:  # as an administrator: the role's default
        c.execute(f"ALTER ROLE {conninfo_to_dict(app)['user']} SET standard_conforming_strings = off")
    peer = psycopg.connect(app, application_name="the-app", autocommit=True)
    try:
        for mode in ("read-only", "dry-run"):
            r = _agent19("sql", HIDDEN_KILL, "--dsn", app, "--mode", mode, "--format", "json", tmp_path=tmp_path)
            assert peer.execute("SELECT 1").fetchone() == (1,), (mode, r.stdout, r.stderr)
    finally:
        peer.close()


def test_a_statement_or_function_that_turns_it_off_is_not_run(dsn, tmp_path):
    app = owner_login(dsn, "scs2")
    with psycopg.connect(app, autocommit=True) as c:
        c.execute("CREATE FUNCTION sneaky() RETURNS text LANGUAGE plpgsql SET standard_conforming_strings = off AS "
                  "$f$ BEGIN RETURN 'a\\', ' || (SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity "
                  "WHERE application_name = 'the-app')::text || ' --'; END $f$")
    peer = psycopg.connect(app, application_name="the-app", autocommit=True)
    try:
        migration = tmp_path / "m.sql"
        migration.write_text("SET standard_conforming_strings = off;\nSELECT 1;\n")
        r = _agent19("dry-run", str(migration), "--dsn", app, "--mode", "dry-run", tmp_path=tmp_path)
        assert r.returncode != 0 and "standard_conforming_strings" in r.stdout + r.stderr, (r.stdout, r.stderr)
        migration.write_text("SELECT sneaky();\n")
        r = _agent19("dry-run", str(migration), "--dsn", app, "--mode", "dry-run", tmp_path=tmp_path)
        assert "COULD NOT TEST" in r.stdout or r.returncode != 0, (r.stdout, r.stderr)
        assert peer.execute("SELECT 1").fetchone() == (1,)
    finally:
        peer.close()


def test_reading_the_setting_is_allowed_and_changing_it_is_refused_however_spelled(dsn, tmp_path):
    """The refusal is read from the parse tree, not the text: SHOW and current_setting() of it run; a SET, RESET,
    set_config or ALTER … SET of it is refused however it is spelled, and the refusal says what to do."""
    app = owner_login(dsn, "scs3")
    for sql in ("SHOW standard_conforming_strings", "SELECT current_setting('standard_conforming_strings')",
                "SELECT setting FROM pg_settings WHERE name = 'standard_conforming_strings'"):
        r = _agent19("sql", sql, "--dsn", app, "--format", "json", tmp_path=tmp_path)
        assert r.returncode == 0 and '"on"' in r.stdout, (sql, r.stdout, r.stderr)
    named = "SELECT standard_conforming_strings_seen FROM (SELECT 1 AS standard_conforming_strings_seen) s"
    r = _agent19("sql", named, "--dsn", app, "--format", "json", tmp_path=tmp_path)  # an identifier is not code
    assert r.returncode == 0, (r.stdout, r.stderr)
    for sql in ('SET LOCAL "Standard_Conforming_Strings" TO off', "RESET standard_conforming_strings",
                "SET SESSION standard_conforming_strings = DEFAULT", "RESET ALL", "DISCARD ALL",
                "SELECT set_config(' STANDARD_conforming_strings ', 'off', false)",
                "SELECT pg_catalog.set_config(lower('X'), 'off', false)",
                "ALTER ROLE CURRENT_USER SET standard_conforming_strings = off",
                "ALTER FUNCTION now() SET standard_conforming_strings = off",
                "DO $$ BEGIN EXECUTE 'SET standard_conforming_strings = off'; END $$"):
        r = _agent19("sql", sql, "--dsn", app, "--mode", "dry-run", tmp_path=tmp_path)
        out = r.stdout + r.stderr
        assert r.returncode != 0 and "refused" in out, (sql, out)
        assert "standard_conforming_strings" in out or "built at run time" in out, (sql, out)
        assert "nothing was run" in out, (sql, out)
