"""A trial as a privileged login does not run another role's code (the lasting fix reviews r31 and r32 named).

A dry run runs the statement and everything the server runs around it — a table's triggers, defaults, and the
functions they call — as the --dsn login. agent19 reads that code first, but a catalog read is no boundary: the
table's owner can replace a function between the check and the run. So when the login is a superuser and a
statement reaches objects of a role that is not, the statement is not run, and the dry run says to connect as the
application's role (or to accept it with --allow-privileged-reads). The owner's code is observed through a sequence
it moves (sequences are not rolled back): it must not move.
"""

from __future__ import annotations

from typing import Any

import psycopg
import pytest

from tests.conftest import owner_login
from tests.test_cli import agent19
from tests.trial_victims import dry_run_as, not_run

STRICT = {"AGENT19_ALLOW_PRIVILEGED_READS": "0"}  # the tests' default opts in (tests/conftest.py)
OWNED = """
CREATE SEQUENCE public.ran;
CREATE TABLE public.orders (id int PRIMARY KEY, n int);
INSERT INTO public.orders VALUES (1, 0);
CREATE FUNCTION public.bump() RETURNS trigger LANGUAGE plpgsql AS
  $$ BEGIN PERFORM nextval('public.ran'); RETURN NEW; END $$;
CREATE TRIGGER orders_bump BEFORE UPDATE ON public.orders FOR EACH ROW EXECUTE FUNCTION public.bump();
CREATE FUNCTION public.tag_of() RETURNS bigint LANGUAGE sql AS $$ SELECT nextval('public.ran') $$;
"""


@pytest.fixture
def owner(dsn: str) -> str:
    login = owner_login(dsn, "trialown")
    with psycopg.connect(login, autocommit=True) as c:
        c.execute(OWNED)
    return login


def _moved(dsn: str) -> bool:
    with psycopg.connect(dsn) as c:
        row: Any = c.execute("SELECT is_called FROM public.ran").fetchone()
    return bool(row[0])


def test_the_owners_trigger_is_not_run_as_a_superuser(dsn: str, owner: str) -> None:
    r = dry_run_as(dsn, "UPDATE public.orders SET n = n + 1;")
    not_run(r.statements[0], "role(s) trialown_", "function public.bump", "as the login", "a superuser",
            "connect --dsn as the application's role", "--allow-privileged-reads")
    assert not _moved(dsn), "the owner's trigger ran as the superuser"


def test_the_owner_runs_it_and_the_opt_in_runs_it(dsn: str, owner: str) -> None:
    r = dry_run_as(owner, "UPDATE public.orders SET n = n + 1;")
    assert r.statements[0].ran_in != "skipped" and not r.statements[0].error, r.statements[0]
    assert _moved(dsn), "the owner's dry run did not run its own trigger"
    opted = dry_run_as(dsn, "UPDATE public.orders SET n = n + 2;", allow_privileged_reads=True)
    assert opted.statements[0].ran_in != "skipped" and not opted.statements[0].error, opted.statements[0]


def test_a_superusers_table_whose_default_calls_the_owners_function(dsn: str, owner: str) -> None:
    with psycopg.connect(dsn, autocommit=True) as c:
        c.execute("CREATE TABLE public.logs (id int, tag bigint DEFAULT public.tag_of())")
    r = dry_run_as(dsn, "INSERT INTO public.logs (id) VALUES (1);")
    not_run(r.statements[0], "table public.logs, whose column default calls function public.tag_of", "trialown_")
    assert not _moved(dsn)


def test_a_column_of_the_owners_domain_and_the_owners_partition(dsn: str, owner: str) -> None:
    """The domain's CHECK and the partition's trigger are the owner's code, reached through a superuser's table."""
    with psycopg.connect(owner, autocommit=True) as c:
        c.execute("CREATE DOMAIN public.counted AS int CHECK (public.tag_of() > 0)")
    with psycopg.connect(dsn, autocommit=True) as c:
        c.execute("CREATE TABLE public.tally (n public.counted)")
        c.execute("CREATE TABLE public.parts (id int, n int) PARTITION BY RANGE (id)")
    with psycopg.connect(owner, autocommit=True) as c:
        c.execute("CREATE TABLE public.part1 (id int, n int)")
        c.execute("CREATE TRIGGER part1_bump BEFORE INSERT ON public.part1 FOR EACH ROW "
                  "EXECUTE FUNCTION public.bump()")
    with psycopg.connect(dsn, autocommit=True) as c:
        c.execute("ALTER TABLE public.parts ATTACH PARTITION public.part1 FOR VALUES FROM (0) TO (100)")
    r = dry_run_as(dsn, "INSERT INTO public.tally VALUES (1);\nINSERT INTO public.parts VALUES (1, 1);")
    not_run(r.statements[0], "table public.tally, whose column n is of type public.counted", "trialown_")
    not_run(r.statements[1], "table public.part1 (under public.parts)", "function public.bump")
    assert not _moved(dsn)


def test_a_superusers_own_tables_still_run(dsn: str, owner: str) -> None:
    sql = ("CREATE TABLE public.mine (id int);\nALTER TABLE public.mine ADD COLUMN x int;\n"
           "INSERT INTO public.mine VALUES (1, 2);")
    r = dry_run_as(dsn, sql)
    assert [s.ran_in != "skipped" and not s.error for s in r.statements] == [True, True, True], r.statements


def test_explain_analyze_of_the_write_as_a_superuser(dsn: str, owner: str) -> None:
    out = agent19("explain", "--dsn", dsn, "--mode", "dry-run", "UPDATE public.orders SET n = n + 1", env=STRICT)
    text = out.stdout + out.stderr
    assert out.returncode != 0 and "function public.bump" in text and "--allow-privileged-reads" in text, text
    assert not _moved(dsn)
