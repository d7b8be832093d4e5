"""A dry run does not run on the target what its rollback cannot contain (found by a hostile review, r24a F1/F2).

As an application role (not a superuser), through the library as `agent19 dry-run` runs it:

* F1: ``setval`` in a PL/pgSQL body reset a sequence 1001 -> 1 and the dry run said PASSED; every INSERT then
  failed with duplicate keys. Now: not run, "could not test", the sequence where it was.
* F2: a function that builds ``pg_terminate_backend(...)`` at run time (``EXECUTE``) killed the application's
  other session of the same role; PASSED. Now: default-deny for code the guard cannot read — not run, the
  session alive — unless the operator set ``allow_unreadable_code``.
* A sequence set back by a path the screen does not follow (an operator over ``setval``) is seen afterwards:
  ``target_unchanged`` false, the sequence named. ``nextval`` moving one forward is an effect left on the target
  (a ``warning`` with the amount, r27 k06), not an error; ``ALTER SEQUENCE
  RESTART`` (transactional), are not differences.
"""

from __future__ import annotations

from typing import Any

import psycopg
import pytest

from agent19.db.connection import Database
from agent19.migrate.dryrun.run import dry_run
from agent19.migrate.parse import parse_sql
from agent19.safety import gate
from agent19.safety.trial import Untestable
from tests.conftest import session_settings
from tests.scratch_dryruns import owner

SETUP = """
CREATE TABLE customers (id serial PRIMARY KEY, email text);
INSERT INTO customers (email) SELECT 'c' || g || '@x.org' FROM generate_series(1, 1000) g;
CREATE FUNCTION reset_static() RETURNS bigint LANGUAGE plpgsql AS
  $$ BEGIN RETURN setval('customers_id_seq', 1); END $$;
CREATE FUNCTION kill_peers() RETURNS int LANGUAGE plpgsql AS $$
DECLARE r record; n int := 0;
BEGIN
  FOR r IN SELECT pid FROM pg_stat_activity WHERE usename = current_user AND pid <> pg_backend_pid() LOOP
    EXECUTE 'SELECT pg_' || 'terminate_backend(' || r.pid || ')';
    n := n + 1;
  END LOOP;
  RETURN n;
END $$;
"""


def _dry_run(login: str, sql: str, **settings: Any) -> Any:
    db = Database(session_settings(dsn=login, mode="dry-run", **settings))
    try:
        return dry_run(db, parse_sql(sql))
    finally:
        db.close()


def _last_value(login: str) -> tuple[int, bool]:
    with psycopg.connect(login, autocommit=True) as c:
        return c.execute("SELECT last_value, is_called FROM customers_id_seq").fetchone()


@pytest.fixture
def app(dsn: str) -> str:
    """The application's role: owns the database and its tables, not a superuser."""
    return owner(dsn, SETUP)  # not a superuser: scratch_dryruns.owner checks


def test_setval_in_a_function_body_or_do_block_is_not_run(app):
    before = _last_value(app)
    assert before == (1000, True)
    r = _dry_run(app, "SELECT reset_static();\n"
                      "DO $$ BEGIN PERFORM reset_static(); END $$;\n"
                      "DO $$ BEGIN PERFORM setval('customers_id_seq', 1); END $$;\n"
                      "INSERT INTO customers (email) VALUES ('new@x.org');\n")
    call, do_call, do_setval, insert = r.statements
    for res in (call, do_call, do_setval):
        assert res.ran_in == "skipped" and res.error is None, res
        assert res.untested and "setval()" in res.untested and "sequences are not transactional" in res.untested
    assert "public.reset_static" in (call.untested or "")
    assert insert.ran_in == "transaction" and insert.error is None, insert
    assert r.passed and r.summary.startswith("COULD NOT TEST"), r.summary
    (moved,) = r.target_differences  # the INSERT's nextval, nothing else: setval never ran
    assert moved.severity == "warning" and moved.detail.startswith("advanced by 1 (1,000 -> 1,001)"), moved
    assert _last_value(app)[0] >= before[0]  # never set back (the INSERT's nextval may move it forward)
    with psycopg.connect(app, autocommit=True) as c:  # the application still inserts
        c.execute("INSERT INTO customers (email) VALUES ('after@x.org')")


def test_dynamic_sql_that_signals_sessions_is_not_run_and_the_peer_survives(app):
    peer = psycopg.connect(app, application_name="the-app", autocommit=True)  # the application's pool, same role
    try:
        r = _dry_run(app, "SELECT kill_peers()")
        (res,) = r.statements
        assert res.ran_in == "skipped" and res.error is None, res
        assert res.untested and res.untested.startswith(
            "not run: runs SQL built at run time (EXECUTE in public.kill_peers): a dry run cannot prove it acts "
            "only inside the transaction"), res.untested
        assert "--allow-unreadable-code" in res.untested
        assert r.passed and r.summary.startswith("COULD NOT TEST"), r.summary
        assert peer.execute("SELECT 1").fetchone() == (1,)
        # the same choke point guards EXPLAIN ANALYZE of a write (a trial too): not run either
        db = Database(session_settings(dsn=app, mode="dry-run"))
        try:
            with pytest.raises(Untestable, match="EXECUTE in public.kill_peers"):
                gate.admit(db, "UPDATE customers SET email = kill_peers()::text WHERE id = 1", gate.Purpose.TRIAL)
        finally:
            db.close()
        assert peer.execute("SELECT 1").fetchone() == (1,)
    finally:
        peer.close()


@pytest.mark.parametrize("opted_in", [False, True], ids=["default", "allow_unreadable_code"])
def test_a_do_block_with_execute_is_untested_unless_the_operator_opted_in(app, opted_in):
    migration = ("DO $$ BEGIN EXECUTE format('ALTER TABLE %I ADD COLUMN note text', 'customers'); END $$;\n"
                 "CREATE INDEX customers_note ON customers (note);\n")
    r = _dry_run(app, migration, allow_unreadable_code=opted_in or None)
    do, index = r.statements
    if opted_in:
        assert do.ran_in == "transaction" and do.error is None and not do.untested, do
        assert index.ran_in == "transaction" and index.error is None, index
        assert r.passed and r.summary.startswith("PASSED"), r.summary
    else:
        assert do.ran_in == "skipped" and "EXECUTE in the DO block" in (do.untested or ""), do
        assert index.error is None and (index.untested or "").startswith("depends on statement 1"), index
        assert r.passed and r.summary.startswith("COULD NOT TEST"), r.summary
    assert r.target_unchanged, r.target_differences
    with psycopg.connect(app, autocommit=True) as c:
        assert c.execute("SELECT count(*) FROM pg_attribute WHERE attrelid = 'customers'::regclass "
                         "AND attname = 'note'").fetchone() == (0,)


def test_setval_stays_untested_even_when_opted_in(app):
    r = _dry_run(app, "SELECT reset_static()", allow_unreadable_code=True)
    assert r.statements[0].ran_in == "skipped" and "setval()" in (r.statements[0].untested or "")
    assert _last_value(app) == (1000, True)


def test_nextval_inserts_and_a_restart_run_and_leave_only_the_sequences_advanced(app):
    """nextval through a column default and in a trigger's body (followed, not stopped at)."""
    with psycopg.connect(app, autocommit=True) as c:
        c.execute("CREATE SEQUENCE tickets; CREATE FUNCTION stamp() RETURNS trigger LANGUAGE plpgsql AS "
                  "$$ BEGIN NEW.email := NEW.email || '#' || nextval('tickets'); RETURN NEW; END $$; "
                  "CREATE TRIGGER stamp BEFORE INSERT ON customers FOR EACH ROW EXECUTE FUNCTION stamp()")
    r = _dry_run(app, "INSERT INTO customers (email) SELECT 'n' || g FROM generate_series(1, 5) g;\n"
                      "INSERT INTO customers (email) VALUES ('one more');\n"
                      "ALTER SEQUENCE customers_id_seq RESTART WITH 1;\n")  # transactional: rolled back
    assert [s.ran_in for s in r.statements] == ["transaction"] * 3, r.statements
    assert all(s.error is None and not s.untested for s in r.statements), r.statements
    assert r.passed and not r.target_unchanged, r.target_differences  # said: nextval is not rolled back
    moved = {d.object: d for d in r.target_differences if d.kind == "sequence"}
    assert set(moved) == {"public.customers_id_seq", "public.tickets"}, r.target_differences
    assert all(d.severity == "warning" for d in moved.values()), moved
    assert moved["public.customers_id_seq"].detail.startswith("advanced by 6 (1,000 -> 1,006)"), moved
    assert moved["public.tickets"].detail.startswith("first called: last_value now 6"), moved
    assert _last_value(app)[0] >= 1000


def test_a_sequence_set_back_by_a_path_the_screen_misses_is_reported(app):
    """SQL built at run time that the operator let run (``allow_unreadable_code``): no call in the text, nothing
    to read. It runs, and the snapshot after the rollback sees the sequence moved backward. (An operator over
    setval is no such path any more: tests/test_dryrun_closure.py.)"""
    r = _dry_run(app, "DO $$ BEGIN EXECUTE 'SELECT set' || 'val(''customers_id_seq'', 1)'; END $$",
                 allow_unreadable_code=True)
    try:
        assert r.statements[0].ran_in == "transaction"
        assert not r.target_unchanged and not r.passed, r.summary
        (back,) = [d for d in r.target_differences if d.kind == "sequence"]
        assert back.object == "public.customers_id_seq" and back.severity == "error", back
        assert back.detail.startswith("last_value 1000 -> 1: moved backward"), back.detail
        assert any(f.kind == "target_changed" and "customers_id_seq" in f.message for f in r.findings), r.findings
    finally:
        with psycopg.connect(app, autocommit=True) as c:
            c.execute("SELECT setval('customers_id_seq', 1000)")


def test_a_rollback_check_whose_statements_were_not_run_is_not_verified(app):
    """Up and down both build their DDL at run time: neither runs, so nothing is proven — never 'verified'."""
    from agent19.migrate.dryrun.rollback_check import verify_rollback

    up = "DO $$ BEGIN EXECUTE 'ALTER TABLE customers ADD COLUMN note text'; END $$"
    down = "DO $$ BEGIN EXECUTE 'ALTER TABLE customers DROP COLUMN note'; END $$"
    db = Database(session_settings(dsn=app, mode="dry-run"))
    try:
        r = verify_rollback(db, parse_sql(up), parse_sql(down))
    finally:
        db.close()
    assert not r.verified and r.untested and "EXECUTE in the DO block" in r.untested, r
    assert r.summary.startswith("could not test the rollback: up statement 1"), r.summary


async def test_a_write_whose_code_cannot_be_read_is_not_measured_before_confirmation(app, tmp_path):
    """confirm_destructive measures a write in a rolled-back trial (before anyone confirmed it) when its text shows
    nothing destructive; code that trial cannot read is not run there: unmeasured, so treated as destructive."""
    from tests.mcp_client import stdio_session

    with psycopg.connect(app, autocommit=True) as c:
        c.execute("CREATE FUNCTION touch_all() RETURNS trigger LANGUAGE plpgsql AS $$ BEGIN "
                  "PERFORM kill_peers(); RETURN NEW; END $$; CREATE TRIGGER touch BEFORE UPDATE ON customers "
                  "FOR EACH ROW EXECUTE FUNCTION touch_all()")
    peer = psycopg.connect(app, application_name="the-app", autocommit=True)
    try:
        async with stdio_session("--dsn", app, "--mode", "dry-run", "--data-dir", str(tmp_path)) as session:
            out = await session.call_tool("confirm_destructive", {"sql": "UPDATE customers SET email = 'x' "
                                                                          "WHERE id = 1"})
        assert not out.is_error, out.content
        findings = out.structured_content["report"]["findings"]
        assert findings and findings[0]["reason"].startswith(
            "not measured, so treated as destructive: runs SQL built at run time (EXECUTE in public.kill_peers)"), \
            out.structured_content
        assert peer.execute("SELECT 1").fetchone() == (1,)
    finally:
        peer.close()


def test_a_function_created_earlier_in_the_migration_is_read_too(app):
    r = _dry_run(app, "CREATE FUNCTION add_note() RETURNS void LANGUAGE plpgsql AS "
                      "$$ BEGIN EXECUTE 'ALTER TABLE customers ADD COLUMN note text'; END $$;\n"
                      "SELECT add_note();\n"
                      "CREATE FUNCTION rewind() RETURNS void LANGUAGE sql AS "
                      "$$ SELECT setval('customers_id_seq', 1) $$;\n"
                      "SELECT rewind();\n")
    create, call, create2, call2 = r.statements
    assert create.ran_in == create2.ran_in == "transaction" and not create.error and not create2.error
    assert "EXECUTE in add_note (created earlier in this migration)" in (call.untested or ""), call
    assert "function rewind (created earlier in this migration) calls setval()" in (call2.untested or ""), call2
    assert _last_value(app) == (1000, True)


def test_code_run_by_the_operators_opt_in_is_named_in_the_result(app):
    """--allow-unreadable-code runs the code, and the result says which statement ran what agent19 could not read
    (a note and an info finding, in the JSON and the text) — a pass that does not prove that code harmless."""
    from agent19.tools.dryrun import render_dry_run

    with psycopg.connect(app, autocommit=True) as c:
        c.execute("CREATE FUNCTION add_note() RETURNS void LANGUAGE plpgsql AS "
                  "$$ BEGIN EXECUTE 'ALTER TABLE customers ADD COLUMN note text'; END $$")
    r = _dry_run(app, "SELECT add_note();\nCREATE INDEX customers_note ON customers (note);\n",
                 allow_unreadable_code=True)
    call, index = r.statements
    expected = ("ran code agent19 cannot read (EXECUTE in public.add_note) because --allow-unreadable-code is set: "
                "what it did outside the transaction is not known")
    assert call.ran_in == "transaction" and call.error is None and not call.untested, call
    assert call.note == expected and index.note is None, (call.note, index.note)
    ran = [f for f in r.findings if f.kind == "unreadable_code_ran"]
    assert [(f.severity, f.statement, f.message) for f in ran] == [("info", 0, expected)], r.findings
    assert r.passed and r.summary.startswith("PASSED"), r.summary
    assert expected in r.model_dump_json() and render_dry_run(r).count(expected) == 2  # the statement, the finding


def test_the_opt_in_never_runs_a_statement_whose_code_also_calls_setval(app):
    """kill_peers (EXECUTE: unreadable, the opt-in would let it run) is followed before reset_static (setval)."""
    r = _dry_run(app, "SELECT kill_peers(), reset_static()", allow_unreadable_code=True)
    (res,) = r.statements
    assert res.ran_in == "skipped" and "setval()" in (res.untested or ""), res
    assert _last_value(app) == (1000, True)


@pytest.mark.parametrize(("sql", "runs"), [
    ("SELECT app.f()", True),  # other.f reads SQL built at run time; app.f is the one called
    ("SELECT other.f()", False),
    ("SELECT f()", False),  # unqualified: code can move the path as it runs, so other.f too
    ("SELECT calls_app_f()", True),  # a body naming app.f()
    ("SELECT calls_other_f()", False),
    ("SET search_path = other, public;\nSELECT f();", False),  # the migration moves the path: any schema
], ids=["app.f", "other.f", "unqualified", "body_app.f", "body_other.f", "search_path_set"])
def test_called_functions_are_resolved_by_schema_as_the_server_would(app, sql, runs):
    with psycopg.connect(app, autocommit=True) as c:
        c.execute("CREATE SCHEMA app; CREATE SCHEMA other;"
                  "CREATE FUNCTION app.f() RETURNS int LANGUAGE plpgsql AS $$ BEGIN RETURN 1; END $$;"
                  "CREATE FUNCTION public.f() RETURNS int LANGUAGE sql AS $$ SELECT 2 $$;"
                  "CREATE FUNCTION other.f() RETURNS int LANGUAGE plpgsql AS "
                  "$$ BEGIN EXECUTE 'SELECT 3'; RETURN 3; END $$;"
                  "CREATE FUNCTION calls_app_f() RETURNS int LANGUAGE sql AS $$ SELECT app.f() $$;"
                  "CREATE FUNCTION calls_other_f() RETURNS int LANGUAGE sql AS $$ SELECT other . f () $$")
    r = _dry_run(app, sql)
    res = r.statements[-1]
    if runs:
        assert res.ran_in == "transaction" and res.error is None and not res.untested, res
        assert r.summary.startswith("PASSED"), r.summary
    else:
        assert res.ran_in == "skipped" and "EXECUTE in other.f" in (res.untested or ""), res
        assert r.summary.startswith("COULD NOT TEST"), r.summary


@pytest.mark.parametrize(("up", "down", "verified"), [
    ("ALTER SEQUENCE customers_id_seq RESTART WITH 1", "SELECT 1", False),
    ("INSERT INTO customers (email) VALUES ('new@x.org')", "DELETE FROM customers WHERE email = 'new@x.org'", True),
], ids=["restart_not_undone", "nextval_forward"])
def test_the_rollback_check_reports_a_sequence_left_moved_backward(app, up, down, verified):
    """As the dry run does: a sequence up+down set back is not restored (nextval would hand out ids already in
    customers); one moved forward by nextval is a gap (info). As the application's role, not a superuser."""
    from agent19.migrate.dryrun.rollback_check import verify_rollback

    db = Database(session_settings(dsn=app, mode="dry-run"))
    try:
        r = verify_rollback(db, parse_sql(up), parse_sql(down))
    finally:
        db.close()
    (moved,) = [d for d in r.differences if d.kind == "sequence"]
    assert moved.object == "public.customers_id_seq", moved
    if verified:
        assert r.verified and moved.severity == "info" and "gaps are normal" in moved.detail, r
    else:
        assert not r.verified and moved.severity == "error", r
        assert moved.detail == ("last_value 1000 -> not called: moved backward (the rollback did not restore it), so "
                                "nextval will hand out numbers already used"), moved.detail
        assert r.summary == f"rollback not verified: {moved}", r.summary
    assert _last_value(app) == ((1001, True) if verified else (1000, True))  # the restart was rolled back


def test_sql_in_dry_run_mode_screens_the_code_it_reaches_as_a_dry_run_does(app):
    """Review r24c: `agent19 sql --mode dry-run` (a write rolled back) was admitted as WRITE, so the code its
    statement reaches was never screened: a function with dynamic SQL ended the application's session."""
    import subprocess
    import sys

    peer = psycopg.connect(app, application_name="the-app", autocommit=True)
    try:
        out = subprocess.run([sys.executable, "-m", "agent19", "sql", "UPDATE customers SET email = kill_peers()::text "
                              "WHERE id = 1", "--dsn", app, "--mode", "dry-run"], capture_output=True, text=True,
                             timeout=120)
        assert out.returncode != 0, out.stdout
        assert "EXECUTE in public.kill_peers" in out.stdout + out.stderr, (out.stdout, out.stderr)
        assert peer.execute("SELECT 1").fetchone() == (1,)  # still alive
    finally:
        peer.close()
