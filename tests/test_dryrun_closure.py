"""A dry run decides what it may run from the server's catalog, not from reading text (hostile review r24c).

As an application role (not a superuser) with a live "application" session of the same role: every path the
review found from a statement to ``pg_terminate_backend`` or ``setval`` — a quoted or mixed-case name, a
``BEGIN ATOMIC`` body, a CHECK constraint, a trigger behind a DO block's INSERT or an FK cascade, an operator over
``setval``, a function created then renamed in the migration — is not run: the session survives, the sequence
stays. Reading text also refused harmless code: a comment that says "execute", a same-named function elsewhere.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import psycopg
import pytest

from tests.scratch_dryruns import owner
from tests.trial_victims import application_session, dry_run_as, not_run

KILL = "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity WHERE application_name = 'the-app'"
SETUP = f"""
CREATE TABLE customers (id serial PRIMARY KEY, email text);
INSERT INTO customers (email) SELECT 'c' || g FROM generate_series(1, 1000) g;
CREATE TABLE plain (id int);
CREATE FUNCTION q_kill() RETURNS bigint LANGUAGE sql AS
  $$ SELECT count("pg_terminate_backend"(pid)) FROM pg_stat_activity WHERE application_name = 'the-app' $$;
CREATE FUNCTION "Kill"() RETURNS bigint LANGUAGE sql AS $$ {KILL} $$;
CREATE FUNCTION atomic_kill() RETURNS bigint LANGUAGE sql BEGIN ATOMIC {KILL}; END;
CREATE FUNCTION c_setval() RETURNS bigint LANGUAGE sql AS
  $$ SELECT setval -- a comment between the name and its arguments
     ('customers_id_seq', 1) $$;
"""


@pytest.fixture
def app(dsn: str) -> str:
    return owner(dsn, SETUP)  # not a superuser: scratch_dryruns.owner checks


@pytest.fixture
def peer(app: str) -> Iterator[psycopg.Connection[Any]]:
    """The application's session: same role, must survive every dry run."""
    yield from application_session(app, "the-app")


def _intact(login: str, peer: psycopg.Connection[Any]) -> None:
    assert peer.execute("SELECT 1").fetchone() == (1,)  # the application's session is alive
    with psycopg.connect(login, autocommit=True) as c:
        assert c.execute("SELECT last_value FROM customers_id_seq").fetchone()[0] >= 1000  # never set back


@pytest.mark.parametrize(("sql", "words"), [
    ("SELECT q_kill()", ["function public.q_kill calls pg_terminate_backend()"]),  # quoted name in the body
    ('SELECT "Kill"()', ['function public.Kill calls pg_terminate_backend()']),  # mixed-case function name
    ("SELECT atomic_kill()", ["function public.atomic_kill calls pg_terminate_backend()"]),  # BEGIN ATOMIC
    ("SELECT c_setval()", ["function public.c_setval calls setval()", "sequences are not transactional"]),
], ids=["quoted", "mixed-case", "begin-atomic", "comment-before-parenthesis"])
def test_a_call_the_text_hides_is_not_run(app, peer, sql, words):
    r = dry_run_as(app, sql)
    not_run(r.statements[0], *words)
    _intact(app, peer)


KILLER_BOOL = ("CREATE FUNCTION killer_bool(x int) RETURNS bool LANGUAGE plpgsql AS $$ BEGIN "
               "PERFORM pg_terminate_backend(pid) FROM pg_stat_activity WHERE application_name = 'the-app'; "
               "RETURN true; END $$;")
KILLER_INT = ("CREATE FUNCTION killer_int(x int) RETURNS int IMMUTABLE LANGUAGE plpgsql AS $$ BEGIN "
              "PERFORM pg_terminate_backend(pid) FROM pg_stat_activity WHERE application_name = 'the-app'; "
              "RETURN 1; END $$;")
KILLER_TRIGGER = ("CREATE FUNCTION killer_trg() RETURNS trigger LANGUAGE plpgsql AS $$ BEGIN "
                  "PERFORM pg_terminate_backend(pid) FROM pg_stat_activity WHERE application_name = 'the-app'; "
                  "RETURN NEW; END $$;")


@pytest.mark.parametrize(("setup", "sql", "through"), [
    (KILLER_BOOL + "CREATE TABLE chk_t (x int CHECK (killer_bool(x)));",
     "INSERT INTO chk_t VALUES (1)", "constraint chk_t_x_check on table public.chk_t"),
    (KILLER_TRIGGER + "CREATE TABLE trg_t (x int); CREATE TRIGGER k AFTER INSERT ON trg_t FOR EACH ROW "
                      "EXECUTE FUNCTION killer_trg();",
     "DO $$ BEGIN INSERT INTO trg_t VALUES (1); END $$", "trigger k on table public.trg_t"),
    (KILLER_TRIGGER + "CREATE TABLE p (id int PRIMARY KEY); INSERT INTO p VALUES (1); CREATE TABLE ch "
                      "(p int REFERENCES p ON DELETE CASCADE); INSERT INTO ch VALUES (1); CREATE TRIGGER k AFTER "
                      "DELETE ON ch FOR EACH ROW EXECUTE FUNCTION killer_trg();",
     "DELETE FROM p", "trigger k on table public.ch"),
    (KILLER_BOOL + "CREATE DOMAIN safe_int AS int CHECK (killer_bool(VALUE)); CREATE TABLE dom_t (x safe_int);",
     "INSERT INTO dom_t VALUES (1)", "constraint safe_int_check"),
    (KILLER_INT + "CREATE TABLE idx_t (x int); CREATE INDEX idx_k ON idx_t (killer_int(x));",
     "INSERT INTO idx_t VALUES (1)", "index public.idx_k"),
    (KILLER_BOOL + "CREATE TABLE rls_t (x int); ALTER TABLE rls_t ENABLE ROW LEVEL SECURITY; ALTER TABLE rls_t "
                   "FORCE ROW LEVEL SECURITY; CREATE POLICY p ON rls_t USING (killer_bool(x));",
     "SELECT count(*) FROM rls_t", "policy p on table public.rls_t"),
    (KILLER_INT.replace("(x int)", "(x int, y int)") + "CREATE OPERATOR + (LEFTARG = int, RIGHTARG = int, "
                                                       "FUNCTION = killer_int);",
     "SET search_path = public, pg_catalog;\nUPDATE plain SET id = 1 + 2", "operator public.+(integer,integer)"),
], ids=["check-constraint", "trigger-behind-do-block", "fk-cascade-to-trigger", "domain-check", "index-expression",
        "rls-policy", "plus-shadowed"])
def test_code_the_server_runs_on_its_own_stops_every_statement(app, peer, setup, sql, through):
    """The object is named by the statement, or reached without being named (a DO block's INSERT, a cascade):
    either way nothing that can run code is tried on this database; the reason names the object."""
    r = dry_run_as(app, f"{sql};\nINSERT INTO plain VALUES (1);\n", setup)
    *_, first, unrelated = r.statements
    not_run(first, "pg_terminate_backend()")
    not_run(unrelated, through, "a dry run on this database cannot contain it")
    assert unrelated.error is None  # not a failure: could not test
    _intact(app, peer)


def test_an_aggregate_over_a_killer_is_judged_by_its_state_function(app, peer):
    r = dry_run_as(app, "SELECT kagg(x) FROM (VALUES (1)) v(x)",
             "CREATE FUNCTION k_sfunc(s int, x int) RETURNS int LANGUAGE plpgsql AS $$ BEGIN PERFORM "
             "pg_terminate_backend(pid) FROM pg_stat_activity WHERE application_name = 'the-app'; RETURN s; END $$; "
             "CREATE AGGREGATE kagg(int) (SFUNC = k_sfunc, STYPE = int, INITCOND = '0')")
    not_run(r.statements[0], "function public.k_sfunc calls pg_terminate_backend()")
    _intact(app, peer)


def test_an_operator_over_setval_is_not_run(app, peer):
    r = dry_run_as(app, "SELECT 'customers_id_seq'::regclass #@# 1",
             "CREATE OPERATOR #@# (FUNCTION = pg_catalog.setval, LEFTARG = regclass, RIGHTARG = bigint)")
    not_run(r.statements[0], "setval()", "sequences are not transactional")
    _intact(app, peer)


def test_a_function_created_then_renamed_in_the_migration_keeps_its_verdict(app, peer):
    r = dry_run_as(app, f"CREATE FUNCTION harmless() RETURNS bigint LANGUAGE sql AS $$ {KILL} $$;\n"
                  "ALTER FUNCTION harmless() RENAME TO tidy;\n"
                  "SELECT tidy();\n")
    create, rename, call = r.statements
    assert create.ran_in == rename.ran_in == "transaction", r.statements
    not_run(call, "function harmless (created earlier in this migration) calls pg_terminate_backend()")
    _intact(app, peer)


def test_a_trigger_created_in_the_migration_stops_itself_and_what_follows(app, peer):
    r = dry_run_as(app, KILLER_TRIGGER + "\nCREATE TRIGGER k AFTER INSERT ON plain FOR EACH ROW EXECUTE FUNCTION "
                                   "killer_trg();\nINSERT INTO plain VALUES (1);\n")
    create, trigger, insert = r.statements
    assert create.ran_in == "transaction", create
    not_run(trigger, "pg_terminate_backend()")
    not_run(insert, "statement 2 creates code the server runs on its own")
    _intact(app, peer)


def test_a_trigger_function_replaced_by_the_migration_stops_what_follows(app, peer):
    """The trigger exists and is harmless; the migration replaces its function's body with a killer: from
    then on the server would run it on its own, so nothing after the replacement runs."""
    setup = ("CREATE FUNCTION stamp() RETURNS trigger LANGUAGE plpgsql AS $$ BEGIN RETURN NEW; END $$; "
             "CREATE TRIGGER stamp BEFORE INSERT ON plain FOR EACH ROW EXECUTE FUNCTION stamp();")
    r = dry_run_as(app, KILLER_TRIGGER.replace("FUNCTION killer_trg", "OR REPLACE FUNCTION stamp") +
             "\nINSERT INTO plain VALUES (1);\n", setup)
    replace, insert = r.statements
    assert replace.ran_in == "transaction", replace
    not_run(insert, "statement 1 makes trigger stamp on table public.plain reach code a dry run cannot contain")
    _intact(app, peer)


def test_a_column_named_like_a_killer_is_no_call(app, peer):
    """DDL names columns: there only a name with its parenthesis is a call. A column ``q_kill`` runs; a CHECK
    that calls ``q_kill()`` is not run, nor what follows it (the server would run it on its own)."""
    r = dry_run_as(app, "ALTER TABLE plain ADD COLUMN q_kill bigint;\nCREATE INDEX plain_q_kill ON plain (q_kill);\n"
                  "ALTER TABLE plain ADD CONSTRAINT k CHECK (q_kill() >= 0);\nINSERT INTO plain VALUES (1);\n")
    add, index, check, insert = r.statements
    assert add.ran_in == index.ran_in == "transaction" and not add.untested and not index.untested, r.statements
    not_run(check, "function public.q_kill calls pg_terminate_backend()")
    not_run(insert, "statement 3 creates code the server runs on its own")
    _intact(app, peer)


def test_execute_in_a_comment_runs(app, peer):
    """The word is in a comment, not code: the lexer drops comments (reading text refused it)."""
    r = dry_run_as(app, "CREATE FUNCTION touch() RETURNS int LANGUAGE plpgsql AS $$ BEGIN\n"
                  "  -- the nightly job will execute this\n"
                  "  UPDATE customers SET email = email WHERE id = 1; RETURN 1; END $$;\n"
                  "SELECT touch();\n")
    assert [s.ran_in for s in r.statements] == ["transaction", "transaction"], r.statements
    assert r.passed and r.summary.startswith("PASSED"), r.summary


def test_a_same_named_function_elsewhere_is_judged_with_the_called_one(app, peer):
    """The choice: a trigger is judged by its function's OID (``public.log_change``: readable, it runs), not by
    a same-named ``audit.log_change`` that uses EXECUTE; a body that names ``audit.log_change`` is judged by
    it. Names resolve as the server may at run time (schema-qualified: that schema while no code moves schemas;
    unqualified: any schema — see test_dryrun_unreadable_code's
    test_called_functions_are_resolved_by_schema_as_the_server_would, test_dryrun_closure_resolution)."""
    setup = ("CREATE SCHEMA audit; CREATE FUNCTION audit.log_change() RETURNS int LANGUAGE plpgsql AS $$ BEGIN "
             "EXECUTE 'SELECT 1'; RETURN 1; END $$; CREATE FUNCTION log_change() RETURNS trigger LANGUAGE plpgsql "
             "AS $$ BEGIN NEW.email := lower(NEW.email); RETURN NEW; END $$; CREATE TRIGGER lc BEFORE INSERT ON "
             "customers FOR EACH ROW EXECUTE FUNCTION log_change();")
    r = dry_run_as(app, "INSERT INTO customers (email) VALUES ('X@y.org')", setup)
    assert r.statements[0].ran_in == "transaction", r.statements[0]  # the trigger's own body is readable
    assert r.passed, r.summary
    r = dry_run_as(app, "SELECT log_change_caller()", "CREATE FUNCTION log_change_caller() RETURNS int LANGUAGE sql "
                                                "AS $$ SELECT audit.log_change() $$")
    not_run(r.statements[0], "EXECUTE in audit.log_change")
    _intact(app, peer)
