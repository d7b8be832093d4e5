"""Execute mode measures what a statement's hidden code changed besides rows and drops: a trigger that renames
or moves a view, an index, a function, a type or a schema, turns row level security off, or grants and revokes
privileges (on a table, function, type, schema, or by default). Each is rolled back and goes through the
confirmation protocol like its direct form; nothing is kept. A change another session makes while the statement
runs is not the statement's: an ordinary INSERT is committed. Through the CLI, as the database's non-superuser owner.
"""

from __future__ import annotations

import os
import subprocess
import sys
import threading
import time
from pathlib import Path

import psycopg
from psycopg.conninfo import conninfo_to_dict

from tests.conftest import owner_login

SETUP = """
CREATE TABLE base (id int, v text);
CREATE INDEX base_v_idx ON base (v);
CREATE VIEW report_v AS SELECT id FROM base;
CREATE TABLE pol (id int);
ALTER TABLE pol ENABLE ROW LEVEL SECURITY;
ALTER TABLE pol FORCE ROW LEVEL SECURITY;
CREATE TABLE customers (id int);
CREATE TABLE movable (id int);
CREATE SCHEMA app2;
CREATE FUNCTION f() RETURNS int LANGUAGE sql AS 'SELECT 1';
CREATE TYPE mood AS ENUM ('ok');
"""
# what a trigger does on INSERT -> what the refusal says it did (through a trigger, rule or function)
HIDDEN = {
    "ALTER VIEW report_v RENAME TO report_v2": "renamed view public.report_v to public.report_v2",
    "ALTER INDEX base_v_idx RENAME TO base_v_idx2": "renamed index public.base_v_idx to public.base_v_idx2",
    "ALTER FUNCTION f() RENAME TO f2": "renamed function public.f to public.f2",
    "ALTER TYPE mood RENAME TO mood2": "renamed type public.mood to public.mood2",
    "ALTER SCHEMA app2 RENAME TO app3": "renamed schema app2 to app3",
    "ALTER TABLE movable SET SCHEMA app2": "moved table public.movable to app2.movable",
    "ALTER TABLE pol DISABLE ROW LEVEL SECURITY": "disabled row level security on table public.pol",
    "ALTER TABLE pol NO FORCE ROW LEVEL SECURITY": "stopped forcing row level security on table public.pol",
    "REVOKE ALL ON customers FROM PUBLIC; GRANT ALL ON customers TO PUBLIC":
        "granted SELECT, INSERT, UPDATE, DELETE, TRUNCATE, REFERENCES, TRIGGER",
    "REVOKE INSERT ON customers FROM CURRENT_USER": "revoked INSERT on table public.customers from {owner}",
    "REVOKE EXECUTE ON FUNCTION f() FROM PUBLIC": "revoked EXECUTE on function public.f from PUBLIC",
    "REVOKE USAGE ON TYPE mood FROM PUBLIC": "revoked USAGE on type public.mood from PUBLIC",
    "GRANT USAGE, CREATE ON SCHEMA app2 TO PUBLIC": "granted USAGE, CREATE on schema app2 to PUBLIC",
    'GRANT SELECT ON customers TO "odd, role" WITH GRANT OPTION':  # quoted in the ACL, and in its array
        "granted SELECT, the grant option for SELECT on table public.customers to odd, role",
    "ALTER DEFAULT PRIVILEGES IN SCHEMA public GRANT SELECT ON TABLES TO PUBLIC":
        "granted SELECT on tables {owner} creates in schema public to PUBLIC (default privileges)",
}


def _agent19(data_dir: Path, *args: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "AGENT19_DATA_DIR": str(data_dir)}
    return subprocess.run([sys.executable, "-m", "agent19", *args], env=env, capture_output=True, text=True,
                          timeout=120)


def _state(c: psycopg.Connection) -> tuple:
    """Names, row level security and privileges of everything the triggers touch, and the rows inserted."""
    return c.execute(
        "SELECT (SELECT array_agg(relname::text || ' ' || relnamespace::regnamespace::text || ' ' || relrowsecurity"
        "                         || relforcerowsecurity || ' ' || coalesce(relacl::text, '-') ORDER BY relname)"
        "          FROM pg_class WHERE relnamespace IN ('public'::regnamespace, 'app2'::regnamespace)),"
        " (SELECT array_agg(proname::text || coalesce(proacl::text, '-')) FROM pg_proc"
        "   WHERE pronamespace = 'public'::regnamespace),"
        " (SELECT array_agg(typname::text || coalesce(typacl::text, '-')) FROM pg_type"
        "   WHERE typnamespace = 'public'::regnamespace AND typtype = 'e'),"
        " (SELECT array_agg(nspname::text || coalesce(nspacl::text, '-')) FROM pg_namespace WHERE nspname ~ '^app'),"
        " (SELECT count(*) FROM pg_default_acl)").fetchone()


def test_hidden_renames_rls_and_privileges_need_confirmation_and_nothing_is_kept(dsn, tmp_path):
    with psycopg.connect(dsn, autocommit=True) as c:
        c.execute('DO $$ BEGIN CREATE ROLE "odd, role"; EXCEPTION WHEN duplicate_object THEN NULL; END $$')
    app = owner_login(dsn)
    owner = conninfo_to_dict(app)["user"]
    with psycopg.connect(app, autocommit=True) as c:
        c.execute(SETUP)
        for i, body in enumerate(HIDDEN):
            c.execute(f"CREATE TABLE inbox{i} (id int)")
            c.execute(f"CREATE FUNCTION hid{i}() RETURNS trigger LANGUAGE plpgsql AS $$ BEGIN {body}; RETURN NEW; "
                      "END $$")
            c.execute(f"CREATE TRIGGER hid AFTER INSERT ON inbox{i} FOR EACH ROW EXECUTE FUNCTION hid{i}()")
        before = _state(c)
    for i, (body, said) in enumerate(HIDDEN.items()):
        ran = _agent19(tmp_path, "sql", "--dsn", app, "--mode", "execute", f"INSERT INTO inbox{i} VALUES (1)")
        out = ran.stdout + ran.stderr
        assert ran.returncode != 0 and "confirm" in out, (body, out)
        assert f"measured: it {said.format(owner=owner)}" in out and "(through a trigger, rule or function)" in out, \
            (body, out)
        with psycopg.connect(app, autocommit=True) as c:
            assert c.execute(f"SELECT count(*) FROM inbox{i}").fetchone()[0] == 0, body
            assert _state(c) == before, f"kept: {body}"
    # the direct rename is on the allowlist of kinds that lose nothing: still run (measured) without a challenge
    ran = _agent19(tmp_path, "sql", "--dsn", app, "--mode", "execute", "ALTER VIEW report_v RENAME TO report_v9")
    assert ran.returncode == 0, ran.stdout + ran.stderr
    with psycopg.connect(app, autocommit=True) as c:
        assert c.execute("SELECT to_regclass('report_v9') IS NOT NULL").fetchone()[0]


def test_another_sessions_ddl_during_an_insert_is_not_the_inserts(dsn, tmp_path):
    """The INSERT's trigger waits on an advisory lock the test holds; meanwhile another session drops a table and a
    column, renames a view and a function, truncates a table, grants on a table and by default and turns row level
    security off, and commits. The INSERT then goes on: the
    measurement's second reading sees all of that, none of it this statement's, so the INSERT is committed."""
    app = owner_login(dsn)
    with psycopg.connect(app, autocommit=True) as c:
        c.execute(SETUP)
        c.execute("CREATE TABLE churn_t (id int)")
        c.execute("CREATE TABLE victim (id int)")
        c.execute("CREATE FUNCTION wait_for_test() RETURNS trigger LANGUAGE plpgsql AS $$ BEGIN "
                  "PERFORM pg_advisory_xact_lock_shared(4242); RETURN NEW; END $$")
        c.execute("CREATE TRIGGER waits BEFORE INSERT ON victim FOR EACH ROW EXECUTE FUNCTION wait_for_test()")
    holder = psycopg.connect(app, autocommit=True)
    holder.execute("SELECT pg_advisory_lock(4242)")
    result: dict[str, subprocess.CompletedProcess[str]] = {}
    runner = threading.Thread(target=lambda: result.update(ran=_agent19(
        tmp_path, "sql", "--dsn", app, "--mode", "execute", "INSERT INTO victim VALUES (1)")))
    runner.start()
    try:
        with psycopg.connect(app, autocommit=True) as watch:
            for _ in range(600):  # until the INSERT waits in its trigger, between the two readings
                if watch.execute("SELECT count(*) FROM pg_locks WHERE locktype = 'advisory' AND objid = 4242"
                                 " AND NOT granted").fetchone()[0]:
                    break
                time.sleep(0.1)
            else:
                raise AssertionError("the INSERT never reached its trigger")
            watch.execute("DROP TABLE churn_t")
            watch.execute("ALTER VIEW report_v RENAME TO report_v2")
            watch.execute("GRANT ALL ON customers TO PUBLIC")
            watch.execute("ALTER TABLE pol DISABLE ROW LEVEL SECURITY")
            watch.execute("ALTER FUNCTION f() RENAME TO f2")
            watch.execute("ALTER TABLE base DROP COLUMN v")  # and its index with it
            watch.execute("TRUNCATE customers")
            watch.execute("ALTER DEFAULT PRIVILEGES IN SCHEMA public GRANT SELECT ON TABLES TO PUBLIC")
    finally:
        holder.execute("SELECT pg_advisory_unlock(4242)")
        holder.close()
        runner.join(120)
    ran = result["ran"]
    assert ran.returncode == 0 and "committed" in ran.stdout, ran.stdout + ran.stderr
    with psycopg.connect(app, autocommit=True) as c:
        assert c.execute("SELECT count(*) FROM victim").fetchone()[0] == 1
