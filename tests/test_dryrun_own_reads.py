"""agent19's own reads inside a dry run's transaction are looked up in pg_catalog only (review r27b k14, k06).

Searching pg_catalog first is not enough for names the server looks up by their arguments: an *exact* match in any
schema of the path beats a pg_catalog candidate that needs a coercion. A migration under test can create such an
overload in its own transaction — ``public.replace(name, text, text)``, which agent19's lock and file-node reads call
for a relation named with a dot — and a database owner can leave one there before (``public.>=(oid, integer)``, which
hid every lock from the report). Between statements agent19 reads the catalog with ``search_path = pg_catalog,
pg_temp`` and gives the migration its path back before its next statement.
"""

from __future__ import annotations

import psycopg

from tests import test_dryrun_closure as base
from tests.test_cli import agent19
from tests.test_dryrun_closure import KILL, _intact
from tests.trial_victims import dry_run_as as _run
from tests.trial_victims import not_run as _not_run

app, peer = base.app, base.peer  # the application's role (not a superuser) and its live session

REPLACE = ("CREATE FUNCTION public.replace(a name, b text, c text) RETURNS text LANGUAGE plpgsql AS $f$ BEGIN "
           f"PERFORM ({KILL}); RETURN pg_catalog.replace(a::pg_catalog.text, b, c); END $f$;\n")


def test_an_overload_the_migration_creates_is_never_called_by_agent19s_reads(app, peer):
    """The overload is the migration's own (rolled back with it); a table whose name holds a dot makes agent19's
    reads write its name with replace(): with the migration's path they would call the overload, which kills the
    application's session."""
    r = _run(app, REPLACE + 'CREATE TABLE public."odd.name" (id int);\n'
                            'ALTER TABLE public."odd.name" ADD COLUMN v int;')
    _intact(app, peer)
    assert all(s.error is None for s in r.statements), r.statements
    locks = {(lk.relation, lk.mode) for s in r.statements[1:] for lk in s.locks}
    assert ('"public"."odd.name"', "AccessExclusiveLock") in locks, locks


def test_a_planted_operator_does_not_hide_the_migrations_locks(app, peer):
    """``>=(oid, integer)`` answering false made agent19's read of pg_locks (``l.relation >= 16384``) see none of the
    migration's locks: "longest lock: none" for an ACCESS EXCLUSIVE one."""
    with psycopg.connect(app, autocommit=True) as c:
        c.execute("CREATE FUNCTION public.never(oid, integer) RETURNS boolean LANGUAGE sql IMMUTABLE "
                  "AS 'SELECT false'; CREATE OPERATOR public.>= (LEFTARG = oid, RIGHTARG = integer, "
                  "FUNCTION = public.never)")
    r = _run(app, "ALTER TABLE customers ADD COLUMN note text")
    modes = {lk.mode for lk in r.statements[0].locks if lk.relation == "public.customers"}
    assert "AccessExclusiveLock" in modes, r.statements[0].locks
    _intact(app, peer)


def test_a_planted_operator_does_not_blind_the_guard(app, peer):
    """The guard's one catalog read (the closure of user code, ``oid >= 16384`` among its filters) under the login's
    path called ``public.>=(oid, integer)``: answering false, it hid every user function, and a migration calling a
    function that kills the application's session was run."""
    with psycopg.connect(app, autocommit=True) as c:
        c.execute("CREATE FUNCTION public.never(oid, integer) RETURNS boolean LANGUAGE sql IMMUTABLE "
                  "AS 'SELECT false'; CREATE OPERATOR public.>= (LEFTARG = oid, RIGHTARG = integer, "
                  "FUNCTION = public.never)")
    r = _run(app, "SELECT q_kill()")
    _not_run(r.statements[0], "pg_terminate_backend()")
    _intact(app, peer)


def test_a_planted_operator_does_not_blind_read_only_mode(app, peer):
    """The read-only guard's walk (which functions an operator runs: ``o.oid >= 16384``) called the planted
    ``public.>=(oid, integer)``: answering false, it let a volatile operator function run in read-only mode."""
    with psycopg.connect(app, autocommit=True) as c:
        c.execute("CREATE FUNCTION public.never(oid, integer) RETURNS boolean LANGUAGE sql IMMUTABLE "
                  "AS 'SELECT false'; CREATE OPERATOR public.>= (LEFTARG = oid, RIGHTARG = integer, "
                  "FUNCTION = public.never);"
                  "CREATE FUNCTION public.kill_op(integer, integer) RETURNS integer LANGUAGE sql VOLATILE "
                  f"AS $$ {KILL} $$; CREATE OPERATOR public.### (LEFTARG = integer, RIGHTARG = integer, "
                  "FUNCTION = public.kill_op)")
    out = agent19("sql", "SELECT 1 ### 2", "--mode", "read-only", "--dsn", app)
    assert out.returncode != 0 and "refused" in out.stderr, (out.stdout, out.stderr)
    _intact(app, peer)
