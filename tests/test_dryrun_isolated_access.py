"""The isolated copy decides as the target would (agent19.migrate.dryrun.isolated_access): the target's owners,
privileges and database/role settings are reproduced there, so a statement the target refuses for want of a privilege
fails in the copy too, and one that resolves through the target's search_path passes there too."""

from __future__ import annotations

import os
import uuid
from pathlib import Path
from typing import Any

import psycopg
import pytest
from psycopg.conninfo import conninfo_to_dict

from agent19.db.connection import Database
from agent19.migrate.dryrun.isolated import isolated_dry_run
from agent19.migrate.dryrun.isolated_access import owner_statement, split_list
from agent19.migrate.dryrun.isolated_acl import Unexpected, acl_statement
from agent19.migrate.dryrun.run import dry_run
from agent19.migrate.parse import parse_sql
from tests.conftest import need, session_settings
from tests.scratch_dryruns import owner


def _run(login: str, sql: str, work: Path | None = None) -> Any:
    db = Database(session_settings(dsn=login, mode="dry-run"))
    try:
        return isolated_dry_run(db, parse_sql(sql), work_base=work) if work else dry_run(db, parse_sql(sql))
    finally:
        db.close()


@pytest.fixture
def app(dsn: str) -> str:
    need(os.path.exists("/usr/lib/postgresql/15/bin/initdb"), "PostgreSQL 15 server programs are not installed")
    return owner(dsn, "CREATE TABLE mine (id int);")


@pytest.fixture
def other(dsn: str) -> str:
    """A NOLOGIN role owning two tables of the database; the app login may only SELECT them."""
    role = f"owner_{uuid.uuid4().hex[:8]}"
    with psycopg.connect(dsn, autocommit=True) as c:
        c.execute(f"CREATE ROLE {role} NOLOGIN")
        for t in ("foreign_owned", "noinsert"):
            c.execute(f"CREATE TABLE public.{t} (id int)")
            c.execute(f"ALTER TABLE public.{t} OWNER TO {role}")
            c.execute(f"GRANT SELECT ON public.{t} TO PUBLIC")
    return role



def _user(login: str) -> str:
    return conninfo_to_dict(login)["user"]


@pytest.mark.parametrize(("sql", "error"), [
    ("ALTER TABLE foreign_owned ADD COLUMN c int;\n", "must be owner of table foreign_owned"),
    ("INSERT INTO public.noinsert VALUES (1);\n", "permission denied for table noinsert"),
])
def test_what_the_login_may_not_do_on_the_target_fails_in_the_copy(app, other, work, sql, error):
    plain = _run(app, sql)
    assert plain.summary.startswith("COULD NOT TEST"), plain.summary
    assert "lacks a privilege" in (plain.statements[0].untested or ""), plain.statements[0]
    assert error in (plain.statements[0].untested or ""), plain.statements[0]

    r = _run(app, sql, work)  # the copy's server refuses it as the target's does: the same verdict
    assert r.summary.startswith("COULD NOT TEST") and not r.complete, r.summary
    assert "lacks a privilege" in (r.statements[0].untested or ""), r.statements[0]
    assert error in (r.statements[0].untested or ""), r.statements[0]
    assert r.isolated is not None and "owners, privileges" in r.isolated.where
    assert not r.isolated.restore_errors, r.isolated.restore_errors


def test_a_granted_privilege_and_a_membership_make_it_pass_in_the_copy(app, other, dsn, work):
    with psycopg.connect(dsn, autocommit=True) as c:
        c.execute(f"GRANT INSERT ON public.noinsert TO {_user(app)}")
        c.execute(f"GRANT {other} TO {_user(app)}")  # the owner's privileges: ALTER TABLE of its table
    r = _run(app, "INSERT INTO public.noinsert VALUES (1);\nALTER TABLE foreign_owned ADD COLUMN c int;\n", work)
    assert r.passed and r.summary.startswith("PASSED"), (r.summary, r.statements)
    assert not r.isolated.restore_errors, r.isolated.restore_errors


def test_a_column_privilege_and_a_revoked_default_are_the_targets(app, other, dsn, work):
    with psycopg.connect(dsn, autocommit=True) as c:
        c.execute("CREATE TABLE public.cols (a int, b int)")
        c.execute(f"ALTER TABLE public.cols OWNER TO {other}")
        c.execute(f"GRANT INSERT (a) ON public.cols TO {_user(app)}")
        c.execute("GRANT SELECT ON public.cols TO PUBLIC")  # pg_dump reads it
        c.execute("CREATE FUNCTION public.f() RETURNS int LANGUAGE sql AS 'SELECT 1'")
        c.execute("REVOKE EXECUTE ON FUNCTION public.f() FROM PUBLIC")
        c.execute(f"ALTER FUNCTION public.f() OWNER TO {other}")
    ok = _run(app, "INSERT INTO public.cols (a) VALUES (1);\n", work)
    assert ok.passed, (ok.summary, ok.statements)
    refused = _run(app, "INSERT INTO public.cols (b) VALUES (1);\n", work)
    assert "permission denied for table cols" in (refused.statements[0].untested or ""), refused.statements[0]
    for where in (None, work):  # the target, then the copy: the same refusal
        no_exec = _run(app, "CREATE TABLE t2 AS SELECT public.f();\n", where)
        assert "permission denied for function f" in (no_exec.statements[0].untested or ""), no_exec.statements[0]


@pytest.mark.parametrize("level", ["database", "role in database"])
def test_the_targets_search_path_is_the_copys(app, dsn, work, level):
    dbname = conninfo_to_dict(dsn)["dbname"]
    with psycopg.connect(app, autocommit=True) as c:
        c.execute("CREATE SCHEMA myschema")
        c.execute("CREATE TABLE myschema.orders (id int)")
    where = f'DATABASE "{dbname}"' if level == "database" else f'ROLE {_user(app)} IN DATABASE "{dbname}"'
    with psycopg.connect(dsn, autocommit=True) as c:
        c.execute(f"ALTER {where} SET search_path = myschema, public")
    sql = "ALTER TABLE orders ADD COLUMN c int;\n"
    plain = _run(app, sql)
    assert plain.passed, (plain.summary, plain.statements)
    r = _run(app, sql, work)
    assert r.passed and r.summary.startswith("PASSED"), (r.summary, r.statements)
    assert r.statements[0].strongest == ("AccessExclusiveLock", "myschema.orders"), r.statements[0].locks


def test_a_setting_the_copy_refuses_is_said(app, dsn, work):
    dbname = conninfo_to_dict(dsn)["dbname"]
    with psycopg.connect(dsn, autocommit=True) as c:
        c.execute(f"ALTER ROLE {_user(app)} SET agent19.isolated_copy = 'from-the-target'")
        c.execute(f"ALTER ROLE {_user(app)} SET default_text_search_config = 'public.nosuch'")
        c.execute(f"ALTER ROLE {_user(app)} IN DATABASE {dbname} SET session_preload_libraries = 'auto_explain'")
    try:
        r = _run(app, "ALTER TABLE mine ADD COLUMN c int;\n", work)
    finally:
        with psycopg.connect(dsn, autocommit=True) as c:  # roles are the server's: other tests' logins differ
            c.execute(f"ALTER ROLE {_user(app)} RESET ALL")
            c.execute(f"ALTER ROLE {_user(app)} IN DATABASE {dbname} RESET ALL")
    assert r.passed, (r.summary, r.statements)  # the guard's token is the copy's own, not the target's
    notes = r.isolated.restore_errors
    assert any("agent19.isolated_copy=from-the-target is not copied" in n for n in notes), notes
    assert any("session_preload_libraries=auto_explain is not copied" in n for n in notes), notes
    assert any("default_text_search_config=public.nosuch" in n and "does not exist" in n for n in notes), notes
    assert any(f.severity == "warning" and "isolated copy differs from the target" in f.message for f in r.findings)


def test_list_settings_split_as_the_server_stores_them():
    assert split_list('"$user", public') == ["$user", "public"]
    assert split_list('myschema,public') == ["myschema", "public"]
    assert split_list('"a,""b" , c') == ['a,"b', "c"]
    assert split_list("") == []


def test_a_noinherit_login_has_not_the_privileges_of_its_roles_in_the_copy(app, other, dsn, work):
    with psycopg.connect(dsn, autocommit=True) as c:
        c.execute(f"GRANT {other} TO {_user(app)}")
        c.execute(f"ALTER ROLE {_user(app)} NOINHERIT")  # a member, but the owner's rights only after SET ROLE
    sql = "ALTER TABLE foreign_owned ADD COLUMN c int;\n"
    for where in (None, work):  # the target, then the copy: the same refusal
        r = _run(app, sql, where)
        assert "must be owner of table foreign_owned" in (r.statements[0].untested or ""), (where, r.statements[0])
    r = _run(app, f"SET ROLE {other};\nALTER TABLE foreign_owned ADD COLUMN c int;\n", work)
    assert r.statements[1].error is None and not r.statements[1].untested, r.statements


KINDS = """
CREATE SCHEMA s2;
CREATE TYPE s2.mood AS ENUM ('a', 'b');
CREATE TYPE s2.pair AS (x int, y int);
CREATE TYPE s2.span AS RANGE (subtype = int4);
CREATE DOMAIN s2.pos AS int CHECK (VALUE > 0);
CREATE TABLE s2.t (id int GENERATED ALWAYS AS IDENTITY, n serial, m s2.mood, p s2.pos);
CREATE SEQUENCE s2.free_seq;
CREATE VIEW s2.v AS SELECT id FROM s2.t;
CREATE MATERIALIZED VIEW s2.mv AS SELECT id FROM s2.t;
CREATE TABLE s2.parted (k int) PARTITION BY RANGE (k);
CREATE FUNCTION s2.f(a int) RETURNS int LANGUAGE sql AS 'SELECT a';
CREATE PROCEDURE s2.pr() LANGUAGE sql AS 'SELECT 1';
CREATE AGGREGATE s2.total(int) (SFUNC = int4pl, STYPE = int);
CREATE OPERATOR s2.=== (LEFTARG = int, RIGHTARG = int, FUNCTION = int4eq);
CREATE COLLATION s2.c1 (locale = 'C');
CREATE TEXT SEARCH CONFIGURATION s2.cfg (COPY = pg_catalog.simple);
CREATE STATISTICS s2.st ON id, n FROM s2.t;
"""


def test_every_kind_of_object_has_the_targets_owner_and_acl_in_the_copy(app, other, dsn, work):
    """The copy's own catalog, read with the queries that read the target's, gives the same statements."""
    from agent19.migrate.dryrun.isolated import isolated_copy
    from agent19.migrate.dryrun.isolated_access import read_target

    with psycopg.connect(dsn, autocommit=True) as c:
        c.execute(f'GRANT CREATE ON DATABASE "{conninfo_to_dict(dsn)["dbname"]}" TO {other}')
        c.execute(f"SET ROLE {other}")  # every object the other role's
        c.execute(KINDS)
        c.execute("RESET ROLE")
        c.execute(f"GRANT USAGE ON SCHEMA s2 TO {_user(app)}")
        c.execute(f"GRANT SELECT ON ALL TABLES IN SCHEMA s2 TO {_user(app)}")  # pg_dump reads them
        c.execute(f"GRANT UPDATE ON SEQUENCE s2.free_seq TO {_user(app)} WITH GRANT OPTION")
        c.execute("REVOKE EXECUTE ON FUNCTION s2.f(int) FROM PUBLIC")
        c.execute(f"ALTER DEFAULT PRIVILEGES FOR ROLE {other} IN SCHEMA s2 GRANT SELECT ON TABLES TO {_user(app)}")
        c.execute(f"ALTER DEFAULT PRIVILEGES FOR ROLE {_user(app)} REVOKE EXECUTE ON FUNCTIONS FROM PUBLIC")
        c.execute(f'ALTER DATABASE "{conninfo_to_dict(dsn)["dbname"]}" SET search_path = s2, public')
    db = Database(session_settings(dsn=app, mode="dry-run"))
    try:
        with db.read() as conn:
            target = read_target(conn)
        with isolated_copy(db, work_base=work) as copy, copy.db.read() as conn:
            there = read_target(conn)
            notes = copy.info.restore_errors
    finally:
        db.close()
    assert not notes, notes
    assert ("OPERATOR", "s2.===(integer,integer)", other) in target.owners, target.owners
    assert len([row for row in target.owners if row[2] == other]) >= 17, target.owners
    assert there.owners == target.owners
    assert sorted(map(repr, there.acl)) == sorted(map(repr, target.acl)) and len(target.acl) >= 4, target.acl
    assert sorted(map(repr, there.default_acl)) == sorted(map(repr, target.default_acl)), target.default_acl
    assert len(target.default_acl) == 2, target.default_acl
    assert target.settings == [("database", ["search_path=s2, public"])]
    assert there.settings == [("role in database", ["search_path=s2, public"])]  # the login's only (r26b j01)


@pytest.mark.parametrize("identity", ["public.t; COPY x TO PROGRAM 'id'", "public.t -- ", "public.t /* */",
                                      '"unclosed', ""])
def test_a_crafted_row_from_the_target_makes_no_statement(identity):
    """The rows are composed here: an identity that is not names and argument lists, a keyword or privilege not in
    the lists, is refused before the copy's superuser runs anything."""
    with pytest.raises(Unexpected):
        owner_statement(("TABLE", identity, "app"))
    with pytest.raises(Unexpected):
        acl_statement(("GRANT", "pg_execute_server_program TO app --", "TABLE", "public.t", None, "app", False))
    with pytest.raises(Unexpected):
        owner_statement(("ROLE", "app", "app"))
    ok = owner_statement(("OPERATOR CLASS", 's."Odd ""cls"" ;--" USING btree', 'a"b'))
    assert ok.as_string(None) == 'ALTER OPERATOR CLASS s."Odd ""cls"" ;--" USING btree OWNER TO "a""b"'
