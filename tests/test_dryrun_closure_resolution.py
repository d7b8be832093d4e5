"""Names resolved as the server may resolve them at run time; every stored expression read (hostile review r25).

As the application role (not a superuser) with a live session of it, each of these said PASSED and the session
was killed, or a sequence set back: an unqualified call whose schema code picks at run time (``SET SCHEMA``,
``set_config`` with a built name, ``SET LOCAL``), a qualified one into a schema the migration renames, a name
longer than the server keeps, a cast or aggregate hidden in an extension, a domain default or a function's
argument default that calls a built-in. Now none of them runs.
"""

from __future__ import annotations

import pytest

from tests import test_dryrun_closure as base
from tests.test_dryrun_closure import KILL, _intact
from tests.trial_victims import dry_run_as as _run
from tests.trial_victims import not_run as _not_run

app, peer = base.app, base.peer  # the same fixtures: the application's role, its live session

HELPER = f"CREATE SCHEMA evil; CREATE FUNCTION evil.helper() RETURNS bigint LANGUAGE sql AS $$ {KILL} $$;"
PLPGSQL = "CREATE FUNCTION f() RETURNS int LANGUAGE plpgsql AS $$ BEGIN {} PERFORM helper(); RETURN 1; END $$;"
STASH = (f"CREATE SCHEMA stash; CREATE FUNCTION stash.k() RETURNS bigint LANGUAGE sql AS $$ {KILL} $$; "
         "CREATE TABLE lt (x int); CREATE FUNCTION lt_trg() RETURNS trigger LANGUAGE plpgsql AS "
         "$$ BEGIN PERFORM evil2.k(); RETURN NEW; END $$; "
         "CREATE TRIGGER lt AFTER INSERT ON lt FOR EACH ROW EXECUTE FUNCTION lt_trg();")


@pytest.mark.parametrize(("setup", "sql"), [
    (HELPER, "SET SCHEMA 'evil';\nSELECT helper();"),
    (HELPER + PLPGSQL.format("PERFORM set_config('sea' || 'rch_path', 'evil, pg_catalog', true);"), "SELECT f()"),
    (HELPER + PLPGSQL.format("SET LOCAL SCHEMA 'evil';"), "SELECT f()"),
    (STASH, "ALTER SCHEMA stash RENAME TO evil2;\nINSERT INTO lt VALUES (1);"),  # evil2 does not exist yet
    (STASH + "CREATE SCHEMA evil2; CREATE FUNCTION evil2.k() RETURNS int LANGUAGE sql AS $$ SELECT 1 $$;",
     "ALTER SCHEMA evil2 RENAME TO old;\nALTER SCHEMA stash RENAME TO evil2;\nINSERT INTO lt VALUES (1);"),
], ids=["set-schema", "set_config-built-name", "set-local-in-body", "schema-renamed-into-place",
        "existing-schema-replaced"])
def test_the_schema_a_call_reaches_at_run_time_is_not_guessed(app, peer, setup, sql):
    """An unqualified call may reach a killer of that name in any schema; a qualified one too when its schema
    does not exist yet or the migration renames or creates schemas."""
    r = _run(app, sql, setup)
    _not_run(r.statements[-1], "pg_terminate_backend()")
    _intact(app, peer)


@pytest.mark.parametrize(("defined", "called"), [
    ("k_" + "a" * 61, "k_" + "a" * 61 + "_tidy_up"),
    ('"kk' + "é" * 30 + '"', '"kk' + "é" * 31 + '_x"'),  # 64 bytes: cut at 63 falls inside the last é
], ids=["ascii", "multibyte"])
def test_a_name_longer_than_the_server_keeps_is_cut_as_the_server_cuts_it(app, peer, defined, called):
    setup = (f"CREATE FUNCTION {defined}() RETURNS bigint LANGUAGE sql AS $$ {KILL} $$; CREATE FUNCTION w() "
             f"RETURNS int LANGUAGE plpgsql AS $$ BEGIN PERFORM {called}(); RETURN 1; END $$;")
    r = _run(app, "SELECT w()", setup)
    _not_run(r.statements[0], "pg_terminate_backend()")
    _intact(app, peer)


KILL_CAST = ("CREATE TYPE ct AS (x int); CREATE FUNCTION ct_int(ct) RETURNS int LANGUAGE plpgsql AS $$ BEGIN "
             "PERFORM pg_terminate_backend(pid) FROM pg_stat_activity WHERE application_name = 'the-app'; "
             "RETURN 1; END $$; CREATE CAST (ct AS int) WITH FUNCTION ct_int(ct);")
KILL_AGG = ("CREATE FUNCTION k_sfunc(s int, x int) RETURNS int LANGUAGE plpgsql AS $$ BEGIN PERFORM "
            "pg_terminate_backend(pid) FROM pg_stat_activity WHERE application_name = 'the-app'; RETURN s; END $$; "
            "CREATE AGGREGATE kagg(int) (SFUNC = k_sfunc, STYPE = int, INITCOND = '0');")


@pytest.mark.parametrize(("setup", "sql"), [
    (KILL_CAST + "ALTER EXTENSION tablefunc ADD CAST (ct AS int);", "SELECT (ROW(1)::ct)::int"),
    (KILL_CAST + "ALTER EXTENSION tablefunc ADD FUNCTION ct_int(ct); ALTER EXTENSION tablefunc ADD CAST (ct AS int);",
     "SELECT (ROW(1)::ct)::int"),
    (KILL_AGG + "ALTER EXTENSION tablefunc ADD AGGREGATE kagg(int);", "SELECT kagg(x) FROM (VALUES (1)) v(x)"),
], ids=["cast", "cast-and-its-function", "aggregate"])
def test_code_added_to_an_extension_the_role_owns_is_still_followed(app, peer, setup, sql):
    """tablefunc is trusted: the role creates it, owns it, and may add its own objects to it."""
    r = _run(app, sql, "CREATE EXTENSION tablefunc; " + setup)
    _not_run(r.statements[0], "pg_terminate_backend()")
    _intact(app, peer)


@pytest.mark.parametrize(("setup", "sql", "words"), [
    ("CREATE DOMAIN dk AS bool DEFAULT pg_terminate_backend({pid}); CREATE TABLE dd_t (x int, y dk);",
     "INSERT INTO dd_t (x) VALUES (1)", "type public.dk"),
    ("CREATE DOMAIN ds AS bigint DEFAULT setval('customers_id_seq', 1); CREATE TABLE ds_t (x int, y ds);",
     "INSERT INTO ds_t (x) VALUES (1)", "type public.ds"),
], ids=["domain-default", "domain-default-setval"])
def test_a_domain_default_is_code_the_server_runs_on_its_own(app, peer, setup, sql, words):
    """Built-ins leave no pg_depend row: the default's stored tree is read; nothing runs on this database."""
    r = _run(app, f"{sql};\nINSERT INTO plain VALUES (1);\n", setup.format(pid=peer.info.backend_pid))
    for res in r.statements:
        _not_run(res, words)
    _intact(app, peer)


def test_a_function_whose_argument_default_calls_a_killer_is_not_called(app, peer):
    """The default is the function's code: a call that leaves the argument out runs it."""
    r = _run(app, "SELECT fd()", f"CREATE FUNCTION fd(x bool DEFAULT pg_terminate_backend({peer.info.backend_pid})) "
                                 "RETURNS bool LANGUAGE sql AS $$ SELECT x $$;")
    _not_run(r.statements[0], "pg_terminate_backend()")
    _intact(app, peer)
