"""The target's schema gives no power to the isolated copy's superuser (r26b j01, j03, j04): the target's settings
reach the login only and the superuser's sessions pin their search_path, the superuser's name is random per run, and
no copied object is owned by a predefined role."""

from __future__ import annotations

import os
import re
import uuid
from pathlib import Path
from typing import Any

import psycopg
import pytest
from psycopg.conninfo import conninfo_to_dict, make_conninfo
from psycopg.rows import tuple_row

from agent19.db.connection import Database
from agent19.errors import InputError
from agent19.migrate.dryrun import isolated
from agent19.migrate.dryrun.isolated import isolated_copy
from tests.conftest import need, session_settings
from tests.scratch_dryruns import owner


@pytest.fixture
def app(dsn: str) -> str:
    need(os.path.exists("/usr/lib/postgresql/15/bin/initdb"), "PostgreSQL 15 server programs are not installed")
    return owner(dsn, "CREATE TABLE mine (id int);")



def _copy_facts(app: str, work: Path, query: str) -> tuple[Any, list[str], str]:
    """``query``'s first row, read as the login in an isolated copy of ``app``'s database; the copy's restore notes;
    the copy's superuser's name."""
    db = Database(session_settings(dsn=app, mode="dry-run"))
    try:
        with isolated_copy(db, work_base=work) as copy, copy.db.read() as read:
            conn = read.cursor(row_factory=tuple_row)
            row = conn.execute(query).fetchone()
            su = conn.execute("SELECT rolname::text FROM pg_catalog.pg_roles WHERE rolsuper").fetchone()[0]
            return row, copy.info.restore_errors, su
    finally:
        db.close()


SHADOW = """
CREATE SCHEMA evil;
CREATE FUNCTION evil.pwn(n name) RETURNS name LANGUAGE plpgsql AS $$
BEGIN
  IF (SELECT rolsuper FROM pg_catalog.pg_roles WHERE rolname = current_user) THEN
    BEGIN
      EXECUTE 'CREATE TABLE public.ran_as_superuser (who text)';
    EXCEPTION WHEN others THEN NULL;
    END;
  END IF;
  RETURN n;
END $$;
CREATE VIEW evil.pg_extension AS SELECT e.oid, evil.pwn(e.extname) AS extname, e.extowner, e.extnamespace,
       e.extrelocatable, e.extversion, e.extconfig, e.extcondition FROM pg_catalog.pg_extension e;
"""


def test_a_database_search_path_reaches_the_login_only_never_the_copys_superuser(app, dsn, work):
    """j01: ``ALTER DATABASE … SET search_path = evil, pg_catalog`` on the target, a view named like a catalog in the
    login's schema: the copy's superuser never reads it (it ran the login's code as superuser)."""
    with psycopg.connect(app, autocommit=True) as c:
        c.execute(SHADOW)
    with psycopg.connect(dsn, autocommit=True) as c:
        c.execute(f'ALTER DATABASE "{conninfo_to_dict(dsn)["dbname"]}" SET search_path = evil, pg_catalog, public')
    db = Database(session_settings(dsn=app, mode="dry-run"))
    try:
        with isolated_copy(db, work_base=work) as copy:
            with copy.db.read() as read:
                conn = read.cursor(row_factory=tuple_row)
                ran = conn.execute("SELECT pg_catalog.to_regclass('public.ran_as_superuser')").fetchone()[0]
                login_path = conn.execute("SHOW search_path").fetchone()[0]
                su = conn.execute("SELECT rolname::text FROM pg_catalog.pg_roles WHERE rolsuper").fetchone()[0]
            # a superuser session opened without agent19's options: the target's setting is not the database's
            with psycopg.connect(make_conninfo(copy.db.settings.dsn.get_secret_value(), user=su)) as c:
                su_path = c.execute("SHOW search_path").fetchone()[0]
            # the login's own session in the copy (not agent19's): its setting is there as on the target
            with psycopg.connect(copy.db.settings.dsn.get_secret_value()) as c:
                own_path = c.execute("SHOW search_path").fetchone()[0]
    finally:
        db.close()
    assert ran is None, "the login's view ran as the copy's superuser"
    assert own_path == "evil, pg_catalog, public", own_path  # the login resolves names as on the target
    # agent19's sessions search pg_catalog first (agent19.db.catalog_first.pin); evil still precedes public
    assert login_path == '"evil", "public"', login_path
    assert "evil" not in su_path, su_path


def test_the_logins_own_setting_still_overrides_the_databases(app, dsn, work):
    """Both are the login's in the copy: a database-wide one the login's role setting overrides on the target is not
    set (``ALTER ROLE … IN DATABASE`` would win over ``ALTER ROLE … SET``)."""
    dbname, login = conninfo_to_dict(dsn)["dbname"], conninfo_to_dict(app)["user"]
    with psycopg.connect(app, autocommit=True) as c:
        c.execute("CREATE SCHEMA a; CREATE SCHEMA b")
    with psycopg.connect(dsn, autocommit=True) as c:
        c.execute(f'ALTER DATABASE "{dbname}" SET search_path = a')
        c.execute(f"ALTER ROLE {login} SET search_path = b")
    try:
        with psycopg.connect(app) as c:
            on_target = c.execute("SHOW search_path").fetchone()[0]
        row, notes, _ = _copy_facts(app, work, "SHOW search_path")
    finally:
        with psycopg.connect(dsn, autocommit=True) as c:  # roles are the server's: other tests' logins differ
            c.execute(f"ALTER ROLE {login} RESET ALL")
    assert on_target == "b"
    assert row[0] == on_target, (row, notes)


def test_the_copys_superuser_has_a_random_name_and_a_target_role_named_so_owns_nothing_powerful(app, dsn, work):
    """j03: a target role named as the copy's superuser used to be (agent19_isolated_admin) owning a SECURITY DEFINER
    function: in the copy it is an ordinary role, the function no superuser's."""
    role = "agent19_isolated_admin"
    with psycopg.connect(dsn, autocommit=True) as c:
        c.execute(f"CREATE ROLE {role} NOLOGIN")
    try:
        with psycopg.connect(dsn, autocommit=True) as c:
            c.execute(f"GRANT CREATE ON SCHEMA public TO {role}")
            c.execute("CREATE FUNCTION public.sd() RETURNS text LANGUAGE sql SECURITY DEFINER AS 'SELECT 1::text'")
            c.execute(f"ALTER FUNCTION public.sd() OWNER TO {role}")
        row, notes, su = _copy_facts(app, work, """
            SELECT r.rolname::text, r.rolsuper FROM pg_catalog.pg_proc p
              JOIN pg_catalog.pg_roles r ON r.oid = p.proowner WHERE p.proname = 'sd'""")
    finally:
        with psycopg.connect(dsn, autocommit=True) as c:
            c.execute(f"DROP OWNED BY {role}")
            c.execute(f"DROP ROLE {role}")
    assert row == (role, False), (row, notes)
    assert re.fullmatch(r"agent19_isolated_admin_[0-9a-f]{16}", su), su
    assert isolated.bootstrap_name() != isolated.bootstrap_name()


def test_a_target_role_named_as_this_runs_superuser_is_refused(app, dsn, work, monkeypatch):
    role = f"agent19_isolated_admin_{uuid.uuid4().hex[:16]}"
    monkeypatch.setattr(isolated, "bootstrap_name", lambda: role)  # the name cannot be predicted: this run's, given
    with psycopg.connect(dsn, autocommit=True) as c:
        c.execute(f"CREATE ROLE {role} NOLOGIN")
    db = Database(session_settings(dsn=app, mode="dry-run"))
    try:
        with pytest.raises(InputError, match="the name is the throwaway cluster's own"), \
                isolated_copy(db, work_base=work):
            pass
    finally:
        db.close()
        with psycopg.connect(dsn, autocommit=True) as c:
            c.execute(f"DROP ROLE {role}")


@pytest.mark.parametrize("predefined", ["pg_execute_server_program", "pg_write_server_files"])
def test_an_object_a_predefined_role_owns_on_the_target_is_the_logins_in_the_copy(app, dsn, work, predefined):
    """j04: a SECURITY DEFINER function owned by pg_execute_server_program would run shell commands on agent19's
    machine in the copy: it stays the login's there, and the result says so."""
    with psycopg.connect(dsn, autocommit=True) as c:
        c.execute(f"GRANT CREATE ON SCHEMA public TO {predefined}")
        c.execute("CREATE FUNCTION public.sd() RETURNS text LANGUAGE sql SECURITY DEFINER AS 'SELECT 1::text'")
        c.execute(f"ALTER FUNCTION public.sd() OWNER TO {predefined}")
    row, notes, _ = _copy_facts(app, work, """
        SELECT r.rolname::text FROM pg_catalog.pg_proc p
          JOIN pg_catalog.pg_roles r ON r.oid = p.proowner WHERE p.proname = 'sd'""")
    assert row == (conninfo_to_dict(app)["user"],), (row, notes)
    assert any(predefined in n and "stay owned by" in n and "FUNCTION public.sd()" in n for n in notes), notes
