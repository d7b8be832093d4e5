"""Tools that read only the server's catalog and statistics search ``pg_catalog, pg_temp``, nothing of the user's.

A function or operator in a schema on the login's search_path, named like a built-in and matching agent19's
arguments more exactly, is what agent19's unqualified queries would call (review r27b k01, r28 F1). The check of the
path at each call (agent19.db.captures) refuses a database where someone other than the login owns one — a denial
of service by anyone who may create in ``public`` (r28 F8) — and cannot see one planted while a call runs, say
while a lock holds the call still (r28 F2). A tool declared ``catalog_only`` (health, info, replication,
capacity, index health, backup status and runbook, PgBouncer config, setup-role) resolves nothing through the
user's path: every session it uses searches ``pg_catalog, pg_temp``, where no role but a superuser creates anything.
This test walks the registry: every such tool runs as a user runs it on a database full of a non-superuser owner's
overloads, as a superuser login, and none of them runs (each advances a sequence when called). What a search_path
cannot cover — a relation agent19 reads at a fixed name, code the planner runs on a table it scans — is covered
where it is read: tests/test_capacity_samples_shape.py, tests/test_capacity_privileged_scan.py."""

from __future__ import annotations

import psycopg
import pytest

from agent19.config import Settings
from agent19.db import catalog_first
from agent19.db.connection import Database
from agent19.tools import load_all
from agent19.tools.registry import REGISTRY
from tests.conftest import owner_login
from tests.test_captured_path import OVERLOADS, _ran
from tests.test_cli import agent19

# what health's, capacity's and the backup reads' format('%I.%I', ...) and round(...) would call, beside
# test_captured_path's || and replace: a literal matches the owner's domain as well as a built-in type
MORE = """
CREATE DOMAIN public.d_text AS text;
CREATE FUNCTION public.format(f public.d_text, VARIADIC a name[]) RETURNS text LANGUAGE sql
    AS $$ SELECT pg_catalog.concat(pg_catalog.nextval('public.ran'), f) $$;
CREATE FUNCTION public.cat_d(a name, b public.d_text) RETURNS text LANGUAGE sql
    AS $$ SELECT pg_catalog.concat(a, b, pg_catalog.nextval('public.ran')) $$;
CREATE OPERATOR public.|| (LEFTARG = name, RIGHTARG = public.d_text, FUNCTION = public.cat_d);
CREATE FUNCTION public.round(x double precision, n integer) RETURNS numeric LANGUAGE sql
    AS $$ SELECT pg_catalog.round(x::pg_catalog.numeric, n) + pg_catalog.nextval('public.ran') * 0 $$;
"""
COMMANDS = {
    "health_check": ["health"],
    "server_info": ["info"],
    "replication_status": ["replication"],
    "capacity_plan": ["capacity", "--window", "0"],
    "capacity_sample": ["capacity", "sample"],
    "index_health": ["index-health"],
    "backup_status": ["backup", "status"],
    "restore_runbook": ["backup", "runbook"],
    "pgbouncer_config": ["pgbouncer", "config"],
    "setup_role": ["setup-role"],
}


def _planted(dsn: str) -> str:
    """A database whose owner (not a superuser) made the overloads, with a table to report on; the owner's DSN."""
    owner = owner_login(dsn, "catonly")
    with psycopg.connect(owner, autocommit=True) as c:
        c.execute("CREATE TABLE orders AS SELECT g AS id, g % 7 AS n FROM generate_series(1, 5000) g")
        c.execute("CREATE INDEX orders_n ON orders (n); CREATE INDEX orders_n_again ON orders (n); ANALYZE orders")
        c.execute(OVERLOADS + MORE)
        c.execute("GRANT USAGE, SELECT ON SEQUENCE public.ran TO PUBLIC")
    return owner


def test_every_catalog_only_tool_runs_and_calls_no_overload(dsn, tmp_path):
    load_all()
    declared = {name for name, spec in REGISTRY.items() if spec.catalog_only}
    assert declared == set(COMMANDS), f"a catalog_only tool without a command here, or one no longer declared: " \
                                      f"{sorted(declared ^ set(COMMANDS))}"
    _planted(dsn)
    for name, args in COMMANDS.items():
        out = agent19(*args, "--dsn", dsn, "--format", "json", env={"AGENT19_DATA_DIR": str(tmp_path)})
        said = f"{name}: exit {out.returncode}\n{out.stdout[-2000:]}\n{out.stderr[-2000:]}"
        assert "runs nothing on this database" not in out.stderr, said
        assert out.returncode in (0, 1) and out.stdout.lstrip().startswith("{"), said
        assert _ran(dsn) == 0, said


def test_a_tool_that_resolves_the_users_names_is_still_refused(dsn):
    """describe resolves table names through the login's path: the check still applies to it."""
    _planted(dsn)
    out = agent19("describe", "orders", "--dsn", dsn, "--format", "json")
    assert out.returncode == 2 and "runs nothing on this database" in out.stderr, out.stderr
    assert _ran(dsn) == 0


def test_an_overload_planted_during_a_call_is_not_what_its_reads_call(dsn):
    """r28 F2: the call has its session (a lock could hold it here) when the owner plants the overloads; the call's
    next read, ``name || '.'`` as agent19 writes it, still calls the built-in. The pooled session serves the next
    call, one that reads user names, with the login's own path and the check again."""
    owner = owner_login(dsn, "during")
    with psycopg.connect(owner, autocommit=True) as c:
        c.execute("CREATE SEQUENCE public.ran; GRANT USAGE, SELECT ON SEQUENCE public.ran TO PUBLIC")
    db = Database(Settings(dsn=dsn))
    try:
        with catalog_first.catalog_only(), db.read() as conn:
            with psycopg.connect(owner, autocommit=True) as c:
                c.execute(OVERLOADS.replace("CREATE SEQUENCE public.ran;", "") + MORE)
            row = conn.execute("SELECT current_setting('search_path') AS path, "
                               "n.nspname || '.' || 'x' AS dotted, 'c' || 42::bigint AS cat, "
                               "format('%I.%I', n.nspname, 'orders') AS formatted "
                               "FROM pg_namespace n WHERE n.nspname = 'public'").fetchone()
        assert row == {"path": catalog_first.OWN_PATH, "dotted": "public.x", "cat": "c42",
                       "formatted": "public.orders"}, row
        assert _ran(dsn) == 0
        with pytest.raises(Exception, match="runs nothing on this database"):  # the same pooled session, user path
            db.execute_read("SELECT 1 AS one")
        assert _ran(dsn) == 0
    finally:
        db.close()


def test_the_pooled_session_gets_the_users_path_back(dsn):
    """A catalog-only call leaves nothing behind: the next call on the same pooled session searches the login's
    path (its tables resolve), and the next catalog-only call searches pg_catalog, pg_temp again."""
    with psycopg.connect(dsn, autocommit=True) as c:
        c.execute("CREATE SCHEMA app; CREATE TABLE app.t (id int); ALTER ROLE CURRENT_USER IN DATABASE "
                  f"{c.info.dbname} SET search_path = app, public")
    db = Database(Settings(dsn=dsn))
    try:
        for _ in range(2):
            with catalog_first.catalog_only():
                assert db.execute_read("SELECT current_setting('search_path') AS p")[0]["p"] == catalog_first.OWN_PATH
            assert db.execute_read("SELECT current_setting('search_path') AS p, count(*) AS n FROM t")[0] == \
                {"p": "app, public", "n": 0}
        assert db.release_idle()
        with catalog_first.catalog_only():  # a new session opened inside the block
            assert db.execute_read("SELECT current_setting('search_path') AS p")[0]["p"] == catalog_first.OWN_PATH
    finally:
        db.close()
