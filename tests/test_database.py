"""The connection layer on a real server: session settings, read-only enforcement, reconnects."""

import psycopg
import pytest

from agent19.db.connection import Database
from agent19.errors import DatabaseUnavailable, ModeError
from tests.conftest import run_sql, session_settings
from tools.throwaway import start_pgserver, start_system, system_versions


def test_every_session_sets_name_and_timeouts(dsn):
    db = Database(session_settings(dsn=dsn, statement_timeout="7s", lock_timeout="1500ms"))
    try:
        row = db.execute_read(
            "SELECT current_setting('application_name') AS app, current_setting('statement_timeout') AS st,"
            " current_setting('lock_timeout') AS lt, current_setting('transaction_read_only') AS ro"
        )[0]
    finally:
        db.close()
    assert row == {"app": "agent19", "st": "7s", "lt": "1500ms", "ro": "on"}


def test_read_only_mode_is_enforced_by_the_server(dsn):
    run_sql(dsn, "CREATE TABLE t (x int); INSERT INTO t VALUES (1)")
    db = Database(session_settings(dsn=dsn))
    try:
        with db.session() as conn:  # even outside agent19's read() helper
            with pytest.raises(psycopg.errors.ReadOnlySqlTransaction):
                conn.execute("DELETE FROM t")
        with pytest.raises(ModeError, match="dry-run"):
            with db.rolled_back():
                pass
    finally:
        db.close()
    with psycopg.connect(dsn) as conn:
        assert conn.execute("SELECT count(*) FROM t").fetchone() == (1,)


def test_rolled_back_transaction_leaves_nothing(dsn):
    run_sql(dsn, "CREATE TABLE t (x int)")
    db = Database(session_settings(dsn=dsn, mode="dry-run"))
    try:
        with db.rolled_back() as conn:
            conn.execute("INSERT INTO t VALUES (1)")
            assert conn.execute("SELECT count(*) AS n FROM t").fetchone() == {"n": 1}
    finally:
        db.close()
    with psycopg.connect(dsn) as conn:
        assert conn.execute("SELECT count(*) FROM t").fetchone() == (0,)


def test_lost_connection_is_a_clear_error_and_the_next_call_reconnects(dsn):
    db = Database(session_settings(dsn=dsn))
    try:
        assert db.execute_read("SELECT 1 AS one") == [{"one": 1}]
        # kill every agent19 session on the server, as a server restart would
        run_sql(dsn, "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE application_name = 'agent19'")
        try:
            db.execute_read("SELECT 2 AS two")
        except DatabaseUnavailable as exc:  # acceptable: said clearly, once
            assert "cannot reach PostgreSQL" in str(exc)
        assert db.execute_read("SELECT 3 AS three") == [{"three": 3}]
    finally:
        db.close()


def test_stopped_server_gives_a_clear_error():
    server = start_system() if system_versions() else start_pgserver()
    db = Database(session_settings(dsn=server.dsn))
    try:
        assert db.execute_read("SELECT 1 AS one") == [{"one": 1}]
        server.stop()
        with pytest.raises(DatabaseUnavailable, match="^(connection refused|server unavailable): "):
            db.execute_read("SELECT 1 AS one")
    finally:
        db.close()
        server.stop()


def test_unreachable_server_error_has_no_password():
    db = Database(session_settings(dsn="postgresql://app:Sup3rSecret@127.0.0.1:1/shop"))
    with pytest.raises(DatabaseUnavailable) as err:
        db.execute_read("SELECT 1")
    message = str(err.value)
    assert "Sup3rSecret" not in message
    assert "127.0.0.1" in message and "app:***@" in message


def test_session_options_give_other_sessions_the_same_timeouts(dsn):
    from psycopg.conninfo import make_conninfo

    db = Database(session_settings(dsn=dsn, statement_timeout="9s", lock_timeout="700ms"))
    with psycopg.connect(make_conninfo(dsn, **db.session_options())) as conn:
        row = conn.execute("SELECT current_setting('statement_timeout'), current_setting('lock_timeout'),"
                           " current_setting('application_name')").fetchone()
    assert row == ("9s", "700ms", "agent19")
