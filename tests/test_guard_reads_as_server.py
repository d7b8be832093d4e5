"""The guards read names as the server reads them (hostile review r25: q03, q04, q18).

As the application role (not a superuser) with a live session of it: the server folds an unquoted name's
A-Z only (``downcase_identifier``: in a UTF8 database ``Ökill`` stays ``Ökill``), while the guards folded it
with Python's ``str.lower`` (``ökill``, another name), so ``SELECT Ökill()`` of ``"Ökill"`` ran the killer in a
dry run and in read-only mode.
"""

from __future__ import annotations

import psycopg
import psycopg.conninfo
import pytest

from agent19.db.connection import Database
from tests import test_dryrun_closure as base
from tests.conftest import session_settings
from tests.test_cli import agent19
from tests.test_dryrun_closure import KILL, _intact
from tests.trial_victims import dry_run_as as _run
from tests.trial_victims import not_run as _not_run

app, peer = base.app, base.peer  # the same fixtures: the application's role, its live session

UPPER = (f'CREATE FUNCTION "Ökill"() RETURNS bigint LANGUAGE sql STABLE AS $$ {KILL} $$; '
         "CREATE FUNCTION w() RETURNS bigint LANGUAGE plpgsql STABLE AS $$ BEGIN PERFORM Ökill(); RETURN 1; END $$; "
         """CREATE FUNCTION "Übump"() RETURNS bigint LANGUAGE sql AS $$ SELECT setval('customers_id_seq', 1) $$;""")


@pytest.mark.parametrize(("sql", "words"), [
    ("SELECT Ökill()", "pg_terminate_backend()"),
    ("SELECT w()", "pg_terminate_backend()"),
    ("SELECT public.Übump()", "setval()"),
], ids=["call", "call-in-a-body", "setval"])
def test_a_non_ascii_upper_case_name_is_the_one_the_server_calls(app, peer, sql, words):
    r = _run(app, sql, UPPER)
    _not_run(r.statements[0], words)
    _intact(app, peer)


def test_read_only_mode_follows_a_non_ascii_upper_case_call_in_a_body(app, peer):
    _run(app, "SELECT 1", UPPER)
    out = agent19("sql", "SELECT w()", "--mode", "read-only", "--dsn", app)
    assert out.returncode == 1 and "refused in read-only" in out.stderr, (out.stdout, out.stderr)
    _intact(app, peer)


ZAP = f"CREATE SCHEMA app; CREATE FUNCTION app.zap(c customers) RETURNS bigint LANGUAGE sql AS $$ {KILL} $$;"


@pytest.mark.parametrize("sql", [
    "SELECT public.zap FROM customers public LIMIT 1",  # an alias named like a schema: zap is in app
    "CREATE TABLE snap AS SELECT c.zap FROM customers c LIMIT 1",
    "CREATE VIEW vz AS SELECT c.zap FROM customers c LIMIT 1;\nSELECT * FROM vz;",
    "ALTER TABLE customers ALTER COLUMN email TYPE text USING (email || customers.zap::text)",
    # after a parenthesis (review r25d): a row in parentheses, in DDL that names columns too
    "CREATE TABLE snap AS SELECT (c).zap FROM customers c LIMIT 1",
    "ALTER TABLE customers ADD CONSTRAINT k CHECK ((customers).zap >= 0)",
    "CREATE MATERIALIZED VIEW mz AS SELECT (c).zap FROM customers c LIMIT 1",
], ids=["alias-named-like-a-schema", "create-table-as", "view", "alter-column-using", "parenthesized-row-ctas",
        "parenthesized-row-check", "parenthesized-row-matview"])
def test_attribute_notation_runs_the_function_it_names(app, peer, sql):
    """``c.zap`` is ``zap(c)``: a qualified name without a parenthesis may be a call, in any schema, in any
    statement kind (DDL that names columns too)."""
    r = _run(app, sql, ZAP)
    assert all(s.ran_in == "skipped" for s in r.statements), r.statements
    _not_run(r.statements[0], "pg_terminate_backend()")
    _intact(app, peer)


# agent19 reads this body with standard_conforming_strings on: 'a\' then ';...' then 'z';... — all text. With it
# off the server reads 'a\'; v := ' as one string, and the PERFORM runs.
HIDDEN = ("SET check_function_bodies = off; CREATE FUNCTION b() RETURNS int LANGUAGE plpgsql AS $f$ DECLARE v text; "
          "BEGIN v := 'a\\'; v := ';\n PERFORM pg_terminate_backend(pid) FROM pg_stat_activity WHERE "
          "application_name = 'the-app'; v := 'z';\n -- '\n RETURN 1; END $f$;")
READS_OFF = "ALTER DATABASE {db} SET standard_conforming_strings = off; "


@pytest.mark.parametrize(("setup", "sql"), [
    (HIDDEN + "CREATE FUNCTION a() RETURNS int LANGUAGE plpgsql AS $$ BEGIN PERFORM set_config('standard_' || "
              "'conforming_strings', 'off', true); RETURN b(); END $$;", "SELECT a()"),
    (READS_OFF + HIDDEN + "CREATE FUNCTION a() RETURNS int LANGUAGE plpgsql AS $$ BEGIN RESET ALL; RETURN b(); "
                          "END $$;", "SELECT a()"),
    (READS_OFF + HIDDEN + "CREATE FUNCTION a() RETURNS int LANGUAGE plpgsql AS $$ BEGIN RETURN b(); END $$; "
                          "CREATE FUNCTION r() RETURNS int LANGUAGE plpgsql AS $$ BEGIN RESET ALL; RETURN 1; END $$;",
     "SELECT a() FROM (SELECT r()) x"),
    (HIDDEN + "CREATE FUNCTION a() RETURNS int LANGUAGE plpgsql AS $$ BEGIN UPDATE pg_settings SET setting = 'off' "
              "WHERE name = 'standard_' || 'conforming_strings'; RETURN b(); END $$;", "SELECT a()"),
], ids=["set_config-built-name", "reset-all-in-a-body", "reset-all-before-the-call", "update-pg_settings-in-a-body"])
def test_code_that_may_change_how_strings_are_read_is_not_run(app, peer, setup, sql):
    db = psycopg.conninfo.conninfo_to_dict(app)["dbname"]
    r = _run(app, sql, setup.format(db=db))
    assert r.statements[0].ran_in == "skipped", r.statements[0]
    _intact(app, peer)


def test_reset_all_returns_to_the_strings_agent19_parsed_with(app):
    """standard_conforming_strings is a startup option of agent19's sessions, not a SET: RESET ALL returns it to
    on, whatever the database defaults to."""
    _run(app, "SELECT 1", READS_OFF.format(db=psycopg.conninfo.conninfo_to_dict(app)["dbname"]))
    db = Database(session_settings(dsn=app, mode="dry-run"))
    try:
        with db.session() as conn:
            conn.execute("RESET ALL")
            assert conn.execute("SHOW standard_conforming_strings").fetchone()["standard_conforming_strings"] == "on"
    finally:
        db.close()


def test_the_dsn_options_still_apply_with_agent19s_own(app):
    """agent19's startup option is added to the options of the user's DSN, not put in their place."""
    db = Database(session_settings(dsn=psycopg.conninfo.make_conninfo(app, options="-c work_mem=7MB"), mode="dry-run"))
    try:
        with db.session() as conn:
            row = conn.execute("SELECT current_setting('work_mem') AS w, "
                               "current_setting('standard_conforming_strings') AS s").fetchone()
            assert row == {"w": "7MB", "s": "on"}
    finally:
        db.close()


def test_update_of_pg_settings_is_refused_in_every_mode(app, peer):
    """pg_settings' rule calls set_config with each row's name: the statement names neither (review r25d)."""
    sql = "UPDATE pg_settings SET setting = 'off' WHERE name = 'standard_' || 'conforming_strings'"
    r = _run(app, sql)
    assert r.statements[0].ran_in == "skipped" and not r.passed, r.statements[0]
    assert "UPDATE pg_settings changes settings" in (r.statements[0].error.message if r.statements[0].error
                                                     else r.statements[0].untested or ""), r.statements[0]
    _intact(app, peer)



SETTINGS_VIEW = "CREATE VIEW my_settings AS SELECT name, setting FROM pg_settings; "


def test_a_statement_that_changes_how_strings_are_read_is_refused_whatever_its_text(app, peer):
    """What a statement's text hides, the server shows: after every statement the dry run reads
    standard_conforming_strings in the round trip of its locks. Here an UPDATE of a view over pg_settings (the
    migration's own) turned it off: the next statement's body (b, harmless as agent19 reads it with the setting on)
    would have been read by the server with it off, and its PERFORM would have ended the application's session."""
    sql = (SETTINGS_VIEW + "UPDATE my_settings SET setting = 'off' WHERE name = 'standard_conforming_strings';\n"
           "SELECT b();")
    r = _run(app, sql, HIDDEN)
    update, after = r.statements[1], r.statements[2]
    assert not r.passed and update.ran_in == "skipped", update
    assert "set standard_conforming_strings to off" in update.error.message, update.error
    assert after.ran_in == "transaction", after  # with it on again (the savepoint undid it): read as agent19 read it
    _intact(app, peer)


def test_code_that_writes_a_view_over_pg_settings_is_code_agent19_cannot_read(app, peer):
    """A view over pg_settings is pg_settings by another name: a body that updates it may turn
    standard_conforming_strings off mid-statement, before another body is read (found in the catalog: pg_depend of
    the view's rule, over views of views too)."""
    setup = (HIDDEN + SETTINGS_VIEW + "CREATE VIEW my_settings2 AS SELECT * FROM my_settings; "
             "CREATE FUNCTION a() RETURNS int LANGUAGE plpgsql AS $$ BEGIN UPDATE my_settings2 SET setting = 'off' "
             "WHERE name = 'standard_' || 'conforming_strings'; RETURN b(); END $$;")
    r = _run(app, "SELECT a()", setup)
    _not_run(r.statements[0], "my_settings2", "pg_settings")
    _intact(app, peer)


def test_a_login_whose_search_path_puts_pg_catalog_later_is_judged_from_the_true_catalog(app, peer):
    """agent19 reads the catalog by its names; a role's own setting that searches a schema before pg_catalog made
    its view shadow.pg_proc answer the guard, which then missed a trigger's setval (review r26b j07). agent19's
    sessions now search pg_catalog first whatever the login's path (agent19.db.catalog_first.pin): the guard reads
    the true catalog, sees the trigger's setval and does not run the INSERT (the refusal of a shadowed path, for a
    path set later, is tested below)."""
    login = psycopg.conninfo.conninfo_to_dict(app)["user"]
    with psycopg.connect(app, autocommit=True) as c:
        c.execute("CREATE SCHEMA shadow; CREATE VIEW shadow.pg_proc AS SELECT p.*, p.xmin FROM pg_catalog.pg_proc p "
                  "WHERE p.proname <> 'bump'; "
                  "CREATE SEQUENCE counter; CREATE TABLE bumped (id int); "
                  "CREATE FUNCTION bump() RETURNS trigger LANGUAGE plpgsql AS "
                  "$$ BEGIN PERFORM setval('counter', 999999); RETURN NEW; END $$; "
                  "CREATE TRIGGER bump BEFORE INSERT ON bumped FOR EACH ROW EXECUTE FUNCTION bump()")
        c.execute(f'ALTER ROLE "{login}" SET search_path = shadow, pg_catalog, public')
    try:
        r = _run(app, "INSERT INTO bumped VALUES (1)")
        _not_run(r.statements[0], "setval")
        with psycopg.connect(app, autocommit=True) as c:
            assert c.execute("SELECT last_value FROM counter").fetchone()[0] == 1
    finally:
        with psycopg.connect(app, autocommit=True) as c:
            c.execute(f'ALTER ROLE "{login}" RESET search_path')
    _intact(app, peer)


def test_the_trial_guard_refuses_to_judge_code_when_its_session_path_searches_a_schema_first(app):
    """Defence for a path set after agent19 configured its session (a statement, a function's SET clause): the
    guard's catalog read reads the path (qualified) and refuses to judge code from a catalog a view may shadow."""
    from agent19.migrate.parse import parse_sql
    from agent19.safety.readonly import ReadOnlyViolation
    from agent19.safety.trial import TrialCatalog

    with psycopg.connect(app, autocommit=True) as c:
        c.execute("CREATE SCHEMA shadow; CREATE TABLE bumped (id int)")
    db = Database(session_settings(dsn=app, mode="dry-run"))
    try:
        with db.read() as conn:
            conn.execute("SET LOCAL search_path = shadow, pg_catalog, public")
            with pytest.raises(ReadOnlyViolation, match="searches schema shadow before pg_catalog"):
                TrialCatalog(conn, parse_sql("INSERT INTO bumped VALUES (1)"))
    finally:
        db.close()


@pytest.mark.parametrize(("sql", "words"), [
    ("CREATE TEMP TABLE pg_locks AS SELECT * FROM pg_catalog.pg_locks WHERE false;\nSELECT 1;",
     "temporary relations named like catalog ones (pg_locks)"),
], ids=["temporary-catalog-name"])
def test_a_statement_that_makes_the_catalog_resolve_elsewhere_is_refused(app, peer, sql, words):
    """The migration itself may shadow the catalog agent19 reads after each statement (its locks, file nodes):
    read again, qualified, after every statement; such a statement is rolled back and refused. (A search_path
    that lists pg_catalog after another schema is pinned instead: tests/test_dryrun_reset_search_path.py.)"""
    r = _run(app, sql)
    refused = next(s for s in r.statements if s.error is not None)
    assert not r.passed and refused.index == len(r.statements) - 2, refused  # the one before the last SELECT 1
    # refused by the check, or (a shadow that lacks a column agent19 reads) failing as its own error: never PASSED
    assert words in refused.error.message or refused.error.sqlstate == "42703", refused.error
    _intact(app, peer)
