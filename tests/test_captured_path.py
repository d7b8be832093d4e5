"""An overload of a built-in that someone else can change never runs in agent19's own queries (review r27b k01, k07).

agent19's sessions search pg_catalog first, but the server picks a function or operator by its arguments too: an exact
match anywhere on the path beats a pg_catalog one that needs a coercion. A database owner's ``public.||(text,
bigint)`` made agent19's impact count read "0 rows" for a full table, as agent19's (superuser) login. Now a session
whose path reaches such an overload owned by someone other than the login or a superuser is refused before agent19
reads anything; one the SQL agent19 ran made is caught before agent19 reads the catalog after it. Each overload here
advances a sequence when it runs (``nextval`` is not undone by a rollback), so "never ran" is observed.
"""

from __future__ import annotations

import psycopg
import pytest

from agent19.config import Settings
from agent19.db.captures import CapturedPath
from agent19.db.connection import Database
from tests.conftest import owner_login
from tests.test_cli import agent19

# exact matches for agent19's `text || bigint` and `'c' || oid` (pg_catalog has only ||(text, anynonarray)), and for
# `replace(name, text, text)` (pg_catalog has replace(text, text, text)): each counts its calls
OVERLOADS = """
CREATE SEQUENCE public.ran;
CREATE FUNCTION public.cat(a text, b bigint) RETURNS text LANGUAGE sql
    AS $$ SELECT a || pg_catalog.nextval('public.ran')::text $$;
CREATE OPERATOR public.|| (LEFTARG = text, RIGHTARG = bigint, FUNCTION = public.cat);
CREATE FUNCTION public.cat_oid(a text, b oid) RETURNS text LANGUAGE sql
    AS $$ SELECT a OPERATOR(pg_catalog.||) b::pg_catalog.text FROM (SELECT pg_catalog.nextval('public.ran')) s $$;
CREATE OPERATOR public.|| (LEFTARG = text, RIGHTARG = oid, FUNCTION = public.cat_oid);
CREATE FUNCTION public.replace(a name, b text, c text) RETURNS text LANGUAGE sql
    AS $$ SELECT pg_catalog.replace(a::pg_catalog.text, b, c) || pg_catalog.nextval('public.ran')::text $$;
"""


def _ran(dsn: str) -> int:
    with psycopg.connect(dsn, autocommit=True) as c:
        last, called = c.execute("SELECT last_value, is_called FROM public.ran").fetchone()
    return int(last) if called else 0


def _plant(dsn: str) -> str:
    """The overloads, made by the database's owner (not a superuser); its DSN."""
    owner = owner_login(dsn, "owner")
    with psycopg.connect(owner, autocommit=True) as c:
        c.execute("CREATE TABLE big AS SELECT g AS id FROM generate_series(1, 1000) g")
        c.execute(OVERLOADS)
        c.execute("GRANT USAGE, SELECT ON SEQUENCE public.ran TO PUBLIC")
    return owner


def test_an_owners_overload_stops_agent19_before_it_reads_anything(dsn):
    _plant(dsn)
    out = agent19("describe", "big", "--dsn", dsn, "--format", "json")
    assert out.returncode == 2, out.stdout + out.stderr
    assert "runs nothing on this database" in out.stderr, out.stderr
    assert "operator public.||(text, bigint) owned by owner_" in out.stderr, out.stderr
    assert "function public.replace(name, text, text) owned by owner_" in out.stderr, out.stderr
    assert "ALTER ROLE" in out.stderr  # what to do
    with pytest.raises(CapturedPath):
        Database(Settings(dsn=dsn)).connect()
    assert _ran(dsn) == 0


def test_the_logins_own_overload_is_trusted(dsn):
    """The login (here the owner itself) could run its own function anyway; nobody else can change it."""
    owner = _plant(dsn)
    out = agent19("describe", "big", "--dsn", owner, "--format", "json")
    assert out.returncode == 0, out.stdout + out.stderr
    assert '"big"' in out.stdout


def test_an_overload_planted_between_two_calls_stops_the_next(dsn):
    db = Database(Settings(dsn=dsn))
    try:
        assert db.execute_read("SELECT count(*) AS n FROM pg_catalog.pg_class")[0]["n"] > 0
        _plant(dsn)
        for _ in range(2):  # the pooled session, then the one opened instead of it
            with pytest.raises(CapturedPath, match=r"public\.\|\|\(text, bigint\)"):
                db.execute_read("SELECT 1 AS one")
    finally:
        db.close()
    assert _ran(dsn) == 0


def test_an_overload_a_verified_rollback_makes_is_caught_before_agent19_reads_after_it(dsn, tmp_path):
    """The up migration (run as this superuser login, so the overload is a superuser's) makes it; agent19's catalog
    read after the up would have called it: the check stops before that read."""
    with psycopg.connect(dsn, autocommit=True) as c:
        c.execute("CREATE TABLE big AS SELECT g AS id FROM generate_series(1, 1000) g")
        c.execute("CREATE SEQUENCE public.ran")
    up = tmp_path / "up.sql"
    up.write_text(OVERLOADS.replace("CREATE SEQUENCE public.ran;", "") + 'CREATE TABLE public."odd.name" (id int);\n')
    down = tmp_path / "down.sql"
    down.write_text('DROP TABLE public."odd.name";\nDROP OPERATOR public.|| (text, bigint);\n'
                    "DROP FUNCTION public.cat(text, bigint);\nDROP OPERATOR public.|| (text, oid);\n"
                    "DROP FUNCTION public.cat_oid(text, oid);\nDROP FUNCTION public.replace(name, text, text);\n")
    out = agent19("rollback-check", str(up), str(down), "--dsn", dsn, "--mode", "dry-run", "--format", "json")
    assert out.returncode != 0, out.stdout
    assert "appeared on the search_path of agent19's session" in out.stdout + out.stderr, out.stdout + out.stderr
    assert _ran(dsn) == 0


def test_the_logins_own_overload_does_not_forge_a_measurement(dsn):
    """Execute mode measures a write with catalog reads (the rows a DELETE removes, as a share of the table). The
    login's own overloads are trusted at the start of a session (it could call them anyway), but a caller who made
    them in earlier calls must not forge the next call's measurement to skip the confirmation: the measurement runs
    under pg_catalog, pg_temp, sees 900 of 1,000 rows deleted, and nothing is kept without a confirmation."""
    with psycopg.connect(dsn, autocommit=True) as c:  # as agent19's login: what earlier `sql` calls would make
        c.execute("CREATE TABLE big AS SELECT g AS id FROM generate_series(1, 1000) g")
        c.execute(OVERLOADS)
    out = agent19("sql", "DELETE FROM big WHERE id <= 900", "--dsn", dsn, "--mode", "execute", "--format", "json")
    assert '"executed": false' in out.stdout, out.stdout
    assert "it deleted 900 of the 1000 rows of public.big" in out.stdout, out.stdout
    assert _ran(dsn) == 0
    with psycopg.connect(dsn, autocommit=True) as c:
        assert c.execute("SELECT count(*) FROM big").fetchone()[0] == 1000


def test_an_overload_taking_a_domain_of_the_owners_is_a_capture_too(dsn):
    """A literal matches any type: ``public.||(name, d_text)`` is what ``n.nspname || '.'`` calls, though d_text is
    no built-in type (review r28 F1)."""
    owner = owner_login(dsn, "owner")
    with psycopg.connect(owner, autocommit=True) as c:
        c.execute("CREATE TABLE big (id int)")
        c.execute("CREATE SEQUENCE public.ran; GRANT USAGE ON SEQUENCE public.ran TO PUBLIC; "
                  "CREATE DOMAIN public.d_text AS text; "
                  "CREATE FUNCTION public.cat_d(a name, b public.d_text) RETURNS text LANGUAGE sql AS "
                  "$$ SELECT a::pg_catalog.text OPERATOR(pg_catalog.||) b::pg_catalog.text "
                  "FROM (SELECT pg_catalog.nextval('public.ran')) s $$; "
                  "CREATE OPERATOR public.|| (LEFTARG = name, RIGHTARG = public.d_text, FUNCTION = public.cat_d)")
    out = agent19("describe", "big", "--dsn", dsn, "--format", "json")
    assert out.returncode == 2 and "operator public.||(name, d_text) owned by owner_" in out.stderr, out.stderr
    assert _ran(dsn) == 0


def test_a_role_the_database_sets_is_not_the_login(dsn):
    """``ALTER DATABASE ... SET role = owner`` makes agent19's sessions start as the owner: the owner's overload is
    still not the login's own (its code could RESET ROLE back to the login) — review r28 F5."""
    owner = _plant(dsn)
    db = psycopg.connect(owner, autocommit=True).execute("SELECT current_database()").fetchone()[0]
    owner_role = psycopg.conninfo.conninfo_to_dict(owner)["user"]
    with psycopg.connect(dsn, autocommit=True) as c:
        c.execute(f'ALTER DATABASE "{db}" SET role = {owner_role}')
    out = agent19("describe", "big", "--dsn", dsn, "--format", "json")
    assert out.returncode == 2 and "runs nothing on this database" in out.stderr, out.stderr
    assert _ran(dsn) == 0


def test_a_scratch_watchers_lock_never_runs_text_the_server_wrote(dsn):
    """The dry run watches a CREATE INDEX CONCURRENTLY from other sessions of the scratch database, locking the
    table by the name it reads back; a ``format()`` overload the migration made (replayed in the scratch database,
    owned by the login) wrote that name as statements of its own — an escape from the scratch database, a role left
    in the cluster, PASSED (review r28 F12). The name is read raw, under pg_catalog, pg_temp, and quoted in Python."""
    from agent19.db import catalog_first
    from agent19.migrate.dryrun.watch import _existing_tables

    payload = "public.orders IN ACCESS EXCLUSIVE MODE; COMMIT; CREATE ROLE r28_escaped; BEGIN; LOCK TABLE public.orders"
    with psycopg.connect(dsn, autocommit=True) as c:
        c.execute("CREATE TABLE orders (id int, note text)")
        c.execute("CREATE DOMAIN public.d_fmt AS text; "
                  "CREATE FUNCTION public.format(public.d_fmt, VARIADIC name[]) RETURNS text LANGUAGE sql "
                  f"AS $$ SELECT '{payload}'::pg_catalog.text $$")
    with catalog_first.connect(dsn, autocommit=True) as conn:  # the watcher's session: the login's own overload
        assert _existing_tables(conn, ["public.orders"]) == {"public.orders": '"public"."orders"'}
