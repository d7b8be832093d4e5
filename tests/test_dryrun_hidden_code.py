"""Code a dry run must see although no pg_depend row or stored tree shows it (hostile review r25, q01/q02,
q05-q07, q19b).

As an application role (not a superuser) with a live "application" session of the same role:

* an aggregate whose support function is an escaping built-in (``FINALFUNC = pg_cancel_backend``): built-ins
  are pinned, so no pg_depend row leads from the aggregate to it; pg_aggregate does;
* code that creates or replaces code (a ``CREATE FUNCTION`` inside a DO block or inside a function's body): the
  new body is a string nobody reads, and it runs later, in the same trial.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import psycopg
import pytest

from tests.scratch_dryruns import owner
from tests.trial_victims import application_session, dry_run_as, not_run

KILL = "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity WHERE application_name = 'the-app'"
SETUP = """
CREATE TABLE plain (id int);
CREATE SEQUENCE invoice_no START 5000;
SELECT nextval('invoice_no');
"""


@pytest.fixture
def app(dsn: str) -> str:
    return owner(dsn, SETUP)  # not a superuser: scratch_dryruns.owner checks


@pytest.fixture
def peer(app: str) -> Iterator[psycopg.Connection[Any]]:
    """The application's session: same role, must survive every dry run (and its query must not be cancelled)."""
    yield from application_session(app, "the-app")


def _intact(login: str, peer: psycopg.Connection[Any]) -> None:
    assert peer.execute("SELECT 1").fetchone() == (1,)  # the application's session is alive
    with psycopg.connect(login, autocommit=True) as c:
        assert c.execute("SELECT last_value FROM invoice_no").fetchone()[0] == 5000  # never set back


PICK = "CREATE AGGREGATE pick(int) (SFUNC = int4larger, STYPE = int, FINALFUNC = pg_cancel_backend);"
PICKED = "SELECT pick(pid) FROM pg_stat_activity WHERE application_name = 'the-app'"


@pytest.mark.parametrize(("setup", "sql"), [
    (PICK, PICKED),
    (PICK + f"CREATE VIEW busy AS {PICKED};", "SELECT * FROM busy"),
    ("CREATE AGGREGATE pick(int) (SFUNC = int4larger, STYPE = int, FINALFUNC = bool, MSFUNC = int4larger, "
     "MINVFUNC = int4larger, MSTYPE = int, MFINALFUNC = pg_cancel_backend);",
     "SELECT pick(pid) OVER (ROWS BETWEEN CURRENT ROW AND 1 FOLLOWING) FROM pg_stat_activity "
     "WHERE application_name = 'the-app'"),
], ids=["finalfunc", "through-a-view", "moving-finalfunc"])
def test_an_aggregate_over_an_escaping_built_in_is_not_run(app, peer, setup, sql):
    r = dry_run_as(app, f"{sql};\n", setup)
    res = r.statements[0]
    assert res.ran_in == "skipped", res
    said = (res.untested or "") + (res.error.message if res.error else "")
    assert "pg_cancel_backend()" in said, said
    _intact(app, peer)


MADE_KILL = ("CREATE OR REPLACE FUNCTION zap() RETURNS int LANGUAGE plpgsql AS $f$ BEGIN PERFORM "
             "pg_terminate_backend(pid) FROM pg_stat_activity WHERE application_name = 'the-app'; RETURN 1; END $f$")
MADE_REWIND = "CREATE FUNCTION rewind() RETURNS bigint LANGUAGE sql AS $f$ SELECT setval('invoice_no', 1) $f$"


@pytest.mark.parametrize(("setup", "sql", "words"), [
    ("", f"DO $d$ BEGIN {MADE_KILL}; END $d$;\nSELECT zap();\n", ["the DO block creates or changes code"]),
    ("", f"DO $d$ BEGIN {MADE_REWIND}; END $d$;\nSELECT rewind();\n", ["the DO block creates or changes code"]),
    ("CREATE FUNCTION zap() RETURNS int LANGUAGE sql AS $$ SELECT 1 $$; "
     f"CREATE FUNCTION maker() RETURNS int LANGUAGE plpgsql AS $m$ BEGIN {MADE_KILL}; RETURN zap(); END $m$;",
     "SELECT maker();\n", ["function public.maker creates or changes code"]),
    ("CREATE TABLE lt (x int); CREATE FUNCTION lt_trg() RETURNS trigger LANGUAGE plpgsql AS "
     "$$ BEGIN RETURN NEW; END $$; CREATE TRIGGER lt AFTER INSERT ON lt FOR EACH ROW EXECUTE FUNCTION lt_trg(); "
     "CREATE FUNCTION upgrade() RETURNS void LANGUAGE plpgsql AS $u$ BEGIN "
     + MADE_KILL.replace("zap() RETURNS int", "lt_trg() RETURNS trigger").replace("RETURN 1", "RETURN NEW")
     + "; END $u$;",
     "SELECT upgrade();\n", ["function public.upgrade creates or changes code"]),
    ("CREATE FUNCTION upgrade() RETURNS void LANGUAGE sql AS $u$ ALTER FUNCTION plain_f() RENAME TO other $u$;"
     "CREATE FUNCTION plain_f() RETURNS int LANGUAGE sql AS $$ SELECT 1 $$;",
     "SELECT upgrade();\n", ["function public.upgrade creates or changes code"]),
    ("CREATE FUNCTION nested() RETURNS int LANGUAGE plpgsql AS $n$ BEGIN DO $x$ BEGIN PERFORM "
     "pg_terminate_backend(pid) FROM pg_stat_activity WHERE application_name = 'the-app'; END $x$; RETURN 1; "
     "END $n$;",
     "SELECT nested();\n", ["function public.nested creates or changes code", "(DO)"]),
    ("CREATE FUNCTION chk(int) RETURNS int LANGUAGE sql AS $$ SELECT 1 $$; CREATE FUNCTION guard() RETURNS void "
     "LANGUAGE plpgsql AS $g$ BEGIN ALTER TABLE plain ADD CONSTRAINT c CHECK (chk(id) > 0); END $g$;",
     "SELECT guard();\n" + MADE_KILL.replace("zap()", "chk(int)") + ";\nINSERT INTO plain VALUES (1);\n",
     ["function public.guard creates or changes code", "(ALTER TABLE)"]),
], ids=["do-creates-killer", "do-creates-setval", "function-replaces-function", "function-replaces-trigger-fn",
        "sql-function-alters-function", "function-runs-a-do-block", "function-adds-a-check-later-replaced"])
def test_code_that_creates_code_is_not_run(app, peer, setup, sql, words):
    """The body's new code is a string the guard never reads (or a change of what a name resolves to), and the
    trial would run it: the body is unreadable, like EXECUTE."""
    r = dry_run_as(app, sql + "INSERT INTO lt VALUES (1);\n" if "lt_trg" in setup else sql, setup)
    not_run(r.statements[0], *words, "a dry run cannot prove it acts only inside the transaction")
    _intact(app, peer)


def test_a_do_block_that_makes_code_it_shows_runs_and_is_judged_again(app, peer):
    """A DO block's DDL is read (the usual idempotent ``IF NOT EXISTS ... ALTER TABLE``): it runs. What it made
    for the server to run later is judged again when a later statement replaces a function: a trigger made
    over a harmless function the migration then replaces with a killer stops every statement after."""
    r = dry_run_as(app, "DO $$ BEGIN IF NOT EXISTS (SELECT 1 FROM pg_attribute WHERE attrelid = 'plain'::regclass "
                  "AND attname = 'note') THEN ALTER TABLE plain ADD COLUMN note text; END IF; END $$;\n"
                  "DO $$ BEGIN CREATE TRIGGER t AFTER INSERT ON plain FOR EACH ROW EXECUTE FUNCTION stamp(); END $$;\n"
                  + MADE_KILL.replace("zap() RETURNS int", "stamp() RETURNS trigger").replace("RETURN 1", "RETURN NEW")
                  + ";\nINSERT INTO plain VALUES (1);\n",
             "CREATE FUNCTION stamp() RETURNS trigger LANGUAGE plpgsql AS $$ BEGIN RETURN NEW; END $$;")
    alter, trigger, replace, insert = r.statements
    assert alter.ran_in == trigger.ran_in == replace.ran_in == "transaction", r.statements
    not_run(insert, "statement 2 made code the server runs on its own, which statement 3 makes reach code")
    _intact(app, peer)


def test_a_cast_the_server_ignores_does_not_stop_the_dry_run(app, peer):
    """A cast from a domain is never used (the server warns so when it is made): its built-in function is no
    entry point, and statements still run."""
    r = dry_run_as(app, "INSERT INTO plain VALUES (1);\n",
             "CREATE DOMAIN d AS int; CREATE CAST (d AS bool) WITH FUNCTION pg_cancel_backend(int)")
    assert [s.ran_in for s in r.statements] == ["transaction"], r.statements
    _intact(app, peer)


def test_code_whose_text_is_read_still_runs(app, peer):
    """A function that only reads and writes tables runs; a BEGIN ATOMIC body (the server prints it as CREATE
    FUNCTION ... BEGIN ATOMIC) is no code that creates code."""
    r = dry_run_as(app, "CREATE FUNCTION atomic_one() RETURNS int LANGUAGE sql BEGIN ATOMIC SELECT 1; END;\n"
                  "SELECT atomic_one();\nSELECT kept();\n",
             "CREATE FUNCTION kept() RETURNS int LANGUAGE sql BEGIN ATOMIC SELECT count(*)::int FROM plain; END;")
    assert [s.ran_in for s in r.statements] == ["transaction"] * 3, r.statements
    assert r.passed, r.summary
    _intact(app, peer)
