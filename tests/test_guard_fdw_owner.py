"""A postgres_fdw table is not read as a superuser when a non-superuser owns its server (review r31 F10).

The owner of a foreign server may create user mappings for any role, the superuser login's too, and postgres_fdw
asks a superuser local user for no password: the owner's mapping made agent19's superuser login connect back to the
database as the superuser and run the owner's view there (a function that acts only as a superuser). The read guard
now refuses such a table for a superuser login, naming the server's owner; a server a superuser owns is still read."""

from __future__ import annotations

import psycopg
from psycopg.conninfo import conninfo_to_dict

from tests.conftest import need, owner_login
from tests.test_cli import agent19

REMOTE = """
CREATE FUNCTION public.remote_evil() RETURNS text LANGUAGE plpgsql VOLATILE AS $$
BEGIN
  IF pg_catalog.current_setting('is_superuser') OPERATOR(pg_catalog.=) 'on' THEN
    RAISE EXCEPTION 'owner code ran as superuser %', current_user;
  END IF;
  RETURN 'ok';
END $$;
CREATE VIEW public.remote_src AS SELECT public.remote_evil() AS v;
"""


def _foreign(dsn: str, maker: str, table: str, server: str) -> None:
    """``maker`` makes the server, a mapping for the superuser login, and the foreign table."""
    params = conninfo_to_dict(dsn)
    with psycopg.connect(dsn) as s:
        superuser = s.execute("SELECT session_user::text").fetchone()[0]
    with psycopg.connect(maker, autocommit=True) as c:
        c.execute(f"CREATE SERVER {server} FOREIGN DATA WRAPPER postgres_fdw OPTIONS (host '{params.get('host')}', "
                  f"port '{params.get('port')}', dbname '{params.get('dbname')}')")
        c.execute(f"CREATE USER MAPPING FOR {superuser} SERVER {server} OPTIONS (user '{superuser}')")
        c.execute(f"CREATE FOREIGN TABLE public.{table} (v text) SERVER {server} "
                  "OPTIONS (schema_name 'public', table_name 'remote_src')")


def _setup(dsn: str) -> str:
    with psycopg.connect(dsn, autocommit=True) as c:
        try:
            c.execute("CREATE EXTENSION IF NOT EXISTS postgres_fdw")
        except psycopg.Error as exc:
            need(False, f"postgres_fdw is not available on the test server: {exc}")
    owner = owner_login(dsn, "fdwowner")
    role = conninfo_to_dict(owner)["user"]
    with psycopg.connect(dsn, autocommit=True) as c:
        c.execute(f"GRANT USAGE ON FOREIGN DATA WRAPPER postgres_fdw TO {role}")
    with psycopg.connect(owner, autocommit=True) as c:
        c.execute(REMOTE)
    return owner


def test_a_superuser_does_not_read_through_an_owners_foreign_server(dsn: str) -> None:
    owner = _setup(dsn)
    _foreign(dsn, owner, "remote_report", "loopback")
    out = agent19("sql", "--dsn", dsn, "SELECT * FROM public.remote_report")
    text = out.stdout + out.stderr
    assert "owner code ran" not in text, text
    assert out.returncode != 0 and "is a foreign table of server loopback" in text, text


def test_a_superuser_does_not_read_its_own_servers_table_of_an_owners_view(dsn: str) -> None:
    """A superuser-owned server and mapping: the foreign table still reaches the owner's remote view, whose code
    agent19 cannot see (review r32 F4); only a login that is not a superuser reads foreign tables."""
    _setup(dsn)
    _foreign(dsn, dsn, "own_report", "trusted")
    out = agent19("sql", "--dsn", dsn, "SELECT * FROM public.own_report")
    text = out.stdout + out.stderr
    assert "owner code ran" not in text, text
    assert out.returncode != 0 and "is a foreign table of server trusted" in text, text
