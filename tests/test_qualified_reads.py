"""``agent19 plan``'s write activity and a dry run's own reads call no overload the login owns on its path.

The login's own overloads of built-ins are trusted when a session starts (:mod:`agent19.db.captures`), so only
qualification keeps agent19's reads from calling them: the modules these reads live in declare ``QUALIFIED_SQL``
(``tests/test_qualified_sql.py``). Each overload here is an exact match for an argument list the unqualified text gave,
which the server prefers to ``pg_catalog``'s candidate that needs a coercion:

* ``format('%I.%I', schemaname, relname)``: two ``name`` arguments, which ``format(text, VARIADIC "any")`` matches
  neither exactly (write activity's counters, column widths, unlogged tables), ``quote_ident(current_user)``: a
  ``name`` (what pg_stat_statements hides): both ran in ``agent19 plan`` (the first failed it: a READ ONLY transaction);
* ``concat_ws(' ', oid, spcname, spcoptions)``: the kept schema dump's digest, read on the dry run's session (it ran);
* ``l.database = 0``: ``oid = integer``, the guard a statement watched in the scratch database runs before it commits
  (it ran there, failing the statement);
* ``l.relation >= 16384``: ``oid >= integer``, the lock reads after each statement and of a watched one (under
  ``pg_catalog, pg_temp`` already, :func:`agent19.db.catalog_first.read_own`: never called, qualified as well);
* ``'p' || x.oid || ':' || x.xmin``: ``text || xid``, which ``pg_catalog.||(text, anynonarray)`` matches only
  polymorphically: the fingerprint of the code the server may run (:data:`agent19.safety.fingerprint.CODE`) that
  ``agent19 rollback-check`` reads again on the target after the check (it ran, once per user row of code);
* ``rolname !~ '^pg_'``: ``name !~ unknown``, first tried as an exact ``!~(name, name)`` (``pg_catalog`` has
  ``!~(name, text)``): an isolated dry run's reads of the target's roles, owners and privileges, SECURITY DEFINER
  functions (``isolated.Q_TARGET``, ``isolated_access``, ``isolated_definers``; in a READ ONLY transaction, so it
  raises: the dry run failed);
* ``n.nspname NOT LIKE 'pg\\_%'``: ``name !~~ unknown``, first tried as an exact ``!~~(name, name)`` (``pg_catalog``
  has ``!~~(name, text)``): ``agent19 backup verify``'s read of whose code a restore into a scratch database would run
  (:func:`agent19.ops.backup.restorer.scratch_objection`, on the target's session: it raises).

Each advances a sequence when it runs (kept through a rollback), or raises where it would run in a scratch database
that is dropped afterwards.
"""

from __future__ import annotations

import json
import os
import uuid

import psycopg
import pytest

from agent19.db.connection import Database
from agent19.migrate.dryrun.isolated import isolated_dry_run
from agent19.migrate.dryrun.rollback_check import verify_rollback
from agent19.migrate.dryrun.run import dry_run
from agent19.migrate.dryrun.scratch import list_scratch
from agent19.migrate.parse import parse_sql
from agent19.ops.backup import restorer
from tests.conftest import need, need_stat_statements, owner_login, session_settings
from tests.scratch_dryruns import alter_role
from tests.test_captured_path import _ran
from tests.test_cli import agent19

SCHEMA = """
CREATE SEQUENCE public.ran;
CREATE TABLE orders (id bigint PRIMARY KEY, status text, note text);
INSERT INTO orders SELECT g, 'new', '' FROM generate_series(1, 500) g;
UPDATE orders SET note = 'seen' WHERE id < 50;
CREATE UNLOGGED TABLE scratchpad (id int);
ANALYZE;
"""
COUNTED = "FROM (SELECT pg_catalog.nextval('public.ran')) s"
OVERLOADS = f"""
CREATE FUNCTION public.format(f text, a name, b name) RETURNS text LANGUAGE sql
    AS $$ SELECT pg_catalog.format(f, a, b) {COUNTED} $$;
CREATE FUNCTION public.quote_ident(a name) RETURNS text LANGUAGE sql
    AS $$ SELECT pg_catalog.quote_ident(a::pg_catalog.text) {COUNTED} $$;
CREATE FUNCTION public.concat_ws(f text, a oid, b name, c text[]) RETURNS text LANGUAGE sql
    AS $$ SELECT pg_catalog.concat_ws(f, a, b, c) {COUNTED} $$;
CREATE FUNCTION public.ge(a oid, b integer) RETURNS boolean LANGUAGE sql
    AS $$ SELECT a OPERATOR(pg_catalog.>=) b::pg_catalog.oid {COUNTED} $$;
CREATE OPERATOR public.>= (LEFTARG = oid, RIGHTARG = integer, FUNCTION = public.ge);
"""
# in a scratch database (a copy of the target, dropped afterwards) a count is lost: this one says so by failing
RAISES = """
CREATE FUNCTION public.eq(a oid, b integer) RETURNS boolean LANGUAGE plpgsql
    AS $$ BEGIN RAISE EXCEPTION 'the login''s =(oid, integer) ran'; END $$;
CREATE OPERATOR public.= (LEFTARG = oid, RIGHTARG = integer, FUNCTION = public.eq);
"""


@pytest.fixture
def owner(dsn: str) -> str:
    """The database's owner (not a superuser; CREATEDB), with :data:`SCHEMA` made by it; pg_stat_statements is
    readable."""
    need_stat_statements(dsn)
    login = owner_login(dsn, "owner")
    alter_role(dsn, login, "CREATEDB")  # for the scratch databases of a dry run
    with psycopg.connect(login, autocommit=True) as c:
        c.execute(SCHEMA)
    return login


def _plant(owner: str, sql: str = OVERLOADS) -> None:
    with psycopg.connect(owner, autocommit=True) as c:
        c.execute(sql)


def _activity(owner: str) -> dict:
    out = agent19("plan", "--sql", "CREATE INDEX CONCURRENTLY orders_status ON orders (status)", "--dsn", owner,
                  "--format", "json")
    assert out.returncode == 0, out.stdout + out.stderr
    cost = json.loads(out.stdout)["index_costs"][0]  # from the table's write activity (write_activity)
    assert cost["inserts_per_second"] > 0 and cost["updates_per_second"] > 0, cost
    login = psycopg.conninfo.conninfo_to_dict(owner)["user"]
    assert f"GRANT pg_read_all_stats TO {login}" in cost["summary"], cost  # hidden_statements' quote_ident
    return {k: v for k, v in cost.items() if k in ("table", "index", "columns", "hot_lost", "estimated_size_bytes")}


def test_plan_measures_write_activity_without_the_logins_overloads(owner):
    before = _activity(owner)
    assert before["table"] == "public.orders", before
    _plant(owner)
    assert _activity(owner) == before
    assert _ran(owner) == 0


def _dry_run(owner: str, sql: str, **kw: object) -> object:
    db = Database(session_settings(dsn=owner, mode="dry-run"))
    try:
        return dry_run(db, parse_sql(sql), **kw)
    finally:
        db.close()


# statement 2 takes a lock statement 1 holds: re-observed in a schema-only copy, made from the schema dump
MIGRATION = "ALTER TABLE orders ADD COLUMN u int DEFAULT 0;\nCREATE INDEX orders_note ON orders (note);\n"


def test_a_dry_run_calls_none_of_the_logins_overloads(owner):
    """Its locks and file nodes after each statement, the shared catalogs' check, the schema dump's digest (read on
    the dry run's session, on the login's path, when a dump of the target is kept: after the first run), and a
    watched statement's guard in the scratch database (``measure_blocking``)."""
    first = _dry_run(owner, MIGRATION, scratch_copy="schema")
    assert first.passed and first.statements[1].isolated, first.summary
    _plant(owner)
    _plant(owner, RAISES)
    again = _dry_run(owner, MIGRATION, scratch_copy="schema")
    assert again.passed and again.target_unchanged, again.summary
    assert [s.locks for s in again.statements] == [s.locks for s in first.statements]
    assert _ran(owner) == 0
    watched = _dry_run(owner, "ALTER TABLE orders ADD COLUMN w int;", measure_blocking=True)
    assert watched.passed, watched.summary
    assert watched.statements[0].error is None and watched.scratch is not None, watched.statements
    assert not [n for n in watched.scratch.notes if "failed" in n], watched.scratch.notes  # the guard ran as written
    assert {p.kind for p in watched.statements[0].probes} == {"select", "insert"}, watched.statements[0].probes
    assert list_scratch(owner) == []
    assert _ran(owner) == 0


# the code's fingerprint ends each row in text || xid
CODE_OVERLOAD = f"""
CREATE FUNCTION public.cat(a text, b xid) RETURNS text LANGUAGE sql
    AS $$ SELECT a OPERATOR(pg_catalog.||) b::pg_catalog.text {COUNTED} $$;
CREATE OPERATOR public.|| (LEFTARG = text, RIGHTARG = xid, FUNCTION = public.cat);
"""


def test_rollback_check_reads_the_code_fingerprint_without_the_logins_overload(owner):
    """The fingerprint read before (the screen's, under ``pg_catalog, pg_temp``) and after the check on the target's
    session: the second one called the login's ``||(text, xid)``."""
    _plant(owner, CODE_OVERLOAD)
    db = Database(session_settings(dsn=owner, mode="dry-run"))
    try:
        result = verify_rollback(db, parse_sql("ALTER TABLE orders ADD COLUMN c int;", "up.sql"),
                                 parse_sql("ALTER TABLE orders DROP COLUMN c;", "down.sql"))
    finally:
        db.close()
    assert result.verified and result.where == "transaction", result.summary
    assert _ran(owner) == 0


# read in a READ ONLY transaction: a count would fail there, so it says so itself (a SECURITY DEFINER function: the
# definers' read tests its schema's name)
NAME_MATCH = """
CREATE FUNCTION public.no_match(a name, b name) RETURNS boolean LANGUAGE plpgsql
    AS $$ BEGIN RAISE EXCEPTION 'the login''s !~(name, name) ran'; END $$;
CREATE OPERATOR public.!~ (LEFTARG = name, RIGHTARG = name, FUNCTION = public.no_match);
CREATE FUNCTION public.as_owner() RETURNS int LANGUAGE sql SECURITY DEFINER AS 'SELECT 1';
"""


def test_an_isolated_dry_run_reads_the_target_without_the_logins_overload(owner, work):
    """Its reads of the target's roles, owners, privileges and SECURITY DEFINER functions before the copy is made
    (the copy is loaded from the dump, the overload with it: the login's own sessions there may call it)."""
    need(os.path.exists("/usr/lib/postgresql/15/bin/initdb"), "PostgreSQL 15 server programs are not installed")
    _plant(owner, NAME_MATCH)
    db = Database(session_settings(dsn=owner, mode="dry-run"))
    try:
        result = isolated_dry_run(db, parse_sql("ALTER TABLE orders ADD COLUMN c int;"), work_base=work)
    finally:
        db.close()
    assert result.passed, result.summary
    assert result.isolated is not None and result.isolated.removed, result.isolated


NAME_NOT_LIKE = """
CREATE FUNCTION public.not_like(a name, b name) RETURNS boolean LANGUAGE plpgsql
    AS $$ BEGIN RAISE EXCEPTION 'the login''s !~~(name, name) ran'; END $$;
CREATE OPERATOR public.!~~ (LEFTARG = name, RIGHTARG = name, FUNCTION = public.not_like);
"""


def test_backup_verify_reads_whose_code_a_scratch_restore_runs_without_the_logins_overload(dsn, owner):
    """The owners of the functions and expressions a restore into a scratch database would run as this login, read on
    the target's session: a function another role owns is found, and the login's ``!~~(name, name)`` is not what
    filters out the system's schemas (with no such object, nothing is read past the owners' check)."""
    lesser = f"lesser_{uuid.uuid4().hex[:8]}"
    with psycopg.connect(dsn, autocommit=True) as c:
        c.execute(f"CREATE ROLE {lesser}")
        c.execute("CREATE FUNCTION public.lesser() RETURNS int LANGUAGE sql AS 'SELECT 1'")
        c.execute(f"ALTER FUNCTION public.lesser() OWNER TO {lesser}")
    _plant(owner, NAME_NOT_LIKE)
    with psycopg.connect(owner, autocommit=True) as conn:
        why = restorer.scratch_objection(conn, False)
    assert why is not None and f"owned by {lesser} would run as this login" in why, why
