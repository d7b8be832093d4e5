"""A trial as a privileged login runs no other role's code (the lasting fix reviews r31 and r32 named; review r33).

A dry run runs the statement and everything the server runs around it — triggers, defaults, domains, views,
cascades, and the functions they call — as the --dsn login. agent19 reads that code first, but a catalog read is no
boundary: an object's owner can replace it between the check and the run, and links out of the statement's tables
are never all followed (r33 got the application's code run as a superuser through a superuser's trigger writing
into the application's table, a foreign-key cascade, and an overload the application added). So when the login is
privileged and the database has objects of a role that is not, no statement is tried: the dry run says to connect
as the application's role (or to accept it with --allow-privileged-reads). The application's code is observed
through a sequence it moves (sequences are not rolled back): it must not move.
"""

from __future__ import annotations

import uuid
from typing import Any

import psycopg
import pytest
from psycopg.conninfo import make_conninfo

from tests.conftest import owner_login
from tests.test_cli import agent19
from tests.trial_victims import dry_run_as, not_run

STRICT = {"AGENT19_ALLOW_PRIVILEGED_READS": "0"}  # the tests' default opts in (tests/conftest.py)
APP = """
CREATE SEQUENCE public.ran;
CREATE FUNCTION public.bump() RETURNS trigger LANGUAGE plpgsql AS
  $$ BEGIN PERFORM nextval('public.ran'); RETURN NEW; END $$;
CREATE TABLE public.audit_log (what text);
CREATE TRIGGER audit_bump BEFORE INSERT ON public.audit_log FOR EACH ROW EXECUTE FUNCTION public.bump();
CREATE TABLE public.mine (id int PRIMARY KEY, n int);
INSERT INTO public.mine VALUES (1, 0);
CREATE TRIGGER mine_bump BEFORE UPDATE ON public.mine FOR EACH ROW EXECUTE FUNCTION public.bump();
GRANT INSERT ON public.audit_log TO PUBLIC;
"""
# the superuser's own table, whose own trigger writes into the application's table (r33 F1)
SUPERUSERS = """
CREATE TABLE public.su_orders (id int PRIMARY KEY, qty int);
INSERT INTO public.su_orders VALUES (1, 1);
CREATE FUNCTION public.su_audit() RETURNS trigger LANGUAGE plpgsql AS
  $$ BEGIN INSERT INTO public.audit_log VALUES ('updated'); RETURN NEW; END $$;
CREATE TRIGGER su_audit AFTER UPDATE ON public.su_orders FOR EACH ROW EXECUTE FUNCTION public.su_audit();
"""


@pytest.fixture
def app(dsn: str) -> str:
    login = owner_login(dsn, "trialown")
    with psycopg.connect(login, autocommit=True) as c:
        c.execute(APP)
    with psycopg.connect(dsn, autocommit=True) as c:
        c.execute(SUPERUSERS)
    return login


def _moved(dsn: str) -> bool:
    with psycopg.connect(dsn) as c:
        row: Any = c.execute("SELECT is_called FROM public.ran").fetchone()
    return bool(row[0])


def test_a_superusers_trigger_writing_into_the_applications_table(dsn: str, app: str) -> None:
    r = dry_run_as(dsn, "UPDATE public.su_orders SET qty = qty + 1;")
    not_run(r.statements[0], "objects of role(s) trialown_", "as the login postgres, a superuser",
            "connect --dsn as the application's role", "--allow-privileged-reads")
    assert not _moved(dsn), "the application's trigger ran as the superuser"


def test_a_cascade_and_an_overload_reach_it_too(dsn: str, app: str) -> None:
    with psycopg.connect(dsn, autocommit=True) as c:
        c.execute("CREATE TABLE public.su_parent (id int PRIMARY KEY); INSERT INTO public.su_parent VALUES (1);"
                  "GRANT REFERENCES ON public.su_parent TO PUBLIC;"
                  "CREATE TABLE public.su_users (id int PRIMARY KEY, email varchar);"
                  "INSERT INTO public.su_users VALUES (1, 'a@b');"
                  "CREATE FUNCTION public.norm(text) RETURNS text LANGUAGE sql AS $$ SELECT lower($1) $$;"
                  "CREATE FUNCTION public.su_norm() RETURNS trigger LANGUAGE plpgsql AS "
                  "$$ BEGIN NEW.email := norm(NEW.email); RETURN NEW; END $$;"
                  "CREATE TRIGGER su_norm BEFORE UPDATE ON public.su_users FOR EACH ROW "
                  "EXECUTE FUNCTION public.su_norm();")
    with psycopg.connect(app, autocommit=True) as c:
        c.execute("CREATE TABLE public.child (p int REFERENCES public.su_parent ON DELETE CASCADE);"
                  "INSERT INTO public.child VALUES (1);"
                  "CREATE TRIGGER child_bump AFTER DELETE ON public.child FOR EACH ROW EXECUTE FUNCTION public.bump();"
                  "CREATE FUNCTION public.norm(varchar) RETURNS text LANGUAGE sql AS "
                  "$$ SELECT nextval('public.ran')::text $$;")
    r = dry_run_as(dsn, "DELETE FROM public.su_parent WHERE id = 1;\nUPDATE public.su_users SET id = id;")
    for res in r.statements:
        not_run(res, "objects of role(s) trialown_")
    assert not _moved(dsn)


def _role() -> str:
    return f"r_{uuid.uuid4().hex[:8]}"  # roles are the cluster's: one per test


def test_a_login_with_createrole_is_privileged(dsn: str, app: str) -> None:
    dba = _role()
    with psycopg.connect(dsn, autocommit=True) as c:
        c.execute(f"CREATE ROLE {dba} LOGIN CREATEROLE")
    r = dry_run_as(make_conninfo(dsn, user=dba), "UPDATE public.su_orders SET qty = qty + 1;")
    not_run(r.statements[0], f"as the login {dba}, a role with CREATEROLE")
    assert not _moved(dsn)


def test_the_applications_role_runs_it_and_the_opt_in_runs_it(dsn: str, app: str) -> None:
    r = dry_run_as(app, "UPDATE public.mine SET n = n + 1;")
    assert r.statements[0].ran_in != "skipped" and not r.statements[0].error, r.statements[0]
    assert _moved(dsn), "the owner's dry run did not run its own trigger"
    opted = dry_run_as(dsn, "UPDATE public.su_orders SET qty = qty + 1;", allow_privileged_reads=True)
    assert opted.statements[0].ran_in != "skipped" and not opted.statements[0].error, opted.statements[0]


def test_a_database_only_superusers_own_is_tried(dsn: str) -> None:
    """No false refusal: names that are keywords or built-ins' (a function "set", a table "now") are the superuser's."""
    with psycopg.connect(dsn, autocommit=True) as c:
        c.execute('CREATE FUNCTION public."set"() RETURNS int LANGUAGE sql AS $$ SELECT 1 $$;'
                  "CREATE TABLE public.now (id int)")
    sql = ("CREATE TABLE public.t (id int);\nALTER TABLE public.t ADD COLUMN x int DEFAULT 0;\n"
           "UPDATE public.t SET x = 1;\nINSERT INTO public.now VALUES (1);")
    r = dry_run_as(dsn, sql)
    assert [s.ran_in != "skipped" and not s.error for s in r.statements] == [True] * 4, r.statements


def test_explain_analyze_of_a_write_as_a_superuser(dsn: str, app: str) -> None:
    out = agent19("explain", "--dsn", dsn, "--mode", "dry-run", "UPDATE public.su_orders SET qty = qty + 1",
                  env=STRICT)
    text = out.stdout + out.stderr
    assert out.returncode != 0 and "objects of role(s) trialown_" in text and "--allow-privileged-reads" in text, text
    assert not _moved(dsn)


def test_a_role_that_may_create_in_a_schema(dsn: str) -> None:
    """It owns nothing yet, but could make its first function while the dry run runs."""
    planter = _role()
    with psycopg.connect(dsn, autocommit=True) as c:
        c.execute(f"CREATE ROLE {planter} LOGIN; CREATE SCHEMA shared; GRANT CREATE ON SCHEMA shared TO {planter};"
                  "CREATE TABLE public.t (id int)")
    r = dry_run_as(dsn, "INSERT INTO public.t VALUES (1);")
    not_run(r.statements[0], f"role(s) {planter}", f"the right to create in schema shared (granted to {planter})")


@pytest.mark.parametrize("grant", ["GRANT ALL ON public.t TO {helper}", "GRANT TRIGGER ON public.t TO PUBLIC",
                                   "GRANT CREATE ON SCHEMA public TO PUBLIC"])
def test_a_right_to_add_a_trigger_or_to_create(dsn: str, grant: str) -> None:
    """A role with TRIGGER on a table owns nothing, yet can add a trigger (its WHEN clause runs any expression)
    while the dry run waits for the table's lock, after the check (review r34 F1, F2); to PUBLIC likewise."""
    helper = _role()
    with psycopg.connect(dsn, autocommit=True) as c:
        c.execute(f"CREATE ROLE {helper} LOGIN; CREATE TABLE public.t (id int); {grant.format(helper=helper)}")
    r = dry_run_as(dsn, "INSERT INTO public.t VALUES (1);")
    who = helper if "helper" in grant else "PUBLIC"
    what = "the right to create " + ("in schema public" if "SCHEMA" in grant else "triggers on table public.t")
    not_run(r.statements[0], f"role(s) {who}", f"{what} (granted to {who})")


def test_a_login_that_is_a_member_of_a_superuser_role(dsn: str, app: str) -> None:
    """It can SET ROLE to the superuser role, and so can the code it runs (review r34 F3)."""
    admin, deploy = _role(), _role()
    with psycopg.connect(dsn, autocommit=True) as c:
        c.execute(f"CREATE ROLE {admin} SUPERUSER NOLOGIN; CREATE ROLE {deploy} LOGIN IN ROLE {admin}")
    r = dry_run_as(make_conninfo(dsn, user=deploy), "UPDATE public.su_orders SET qty = qty + 1;")
    not_run(r.statements[0], f"as the login {deploy}, a member of {admin}, a superuser")
    assert not _moved(dsn)


def test_a_replication_login_and_what_to_revoke(dsn: str) -> None:
    """REPLICATION lets code make replication slots (review r35 F4); a grant's refusal says what to revoke."""
    repl = _role()
    with psycopg.connect(dsn, autocommit=True) as c:
        c.execute(f"CREATE ROLE {repl} LOGIN REPLICATION; CREATE TABLE public.t (id int);"
                  f"GRANT ALL ON public.t TO {repl}; GRANT TRIGGER ON public.t TO PUBLIC")
    r = dry_run_as(make_conninfo(dsn, user=repl), "INSERT INTO public.t VALUES (1);")
    not_run(r.statements[0], f"as the login {repl}, a role with REPLICATION",
            "revoke a right to add code that is not needed (REVOKE TRIGGER ON public.t FROM PUBLIC")
