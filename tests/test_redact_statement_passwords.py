"""Passwords in statement text read back from the statistics views are masked in every form PostgreSQL accepts
(r27-k07): ``PASSWORD/*c*/'…'``, ``PASSWORD'…'``, ``OPTIONS ("password" '…')``, ``sslpassword=``, conninfo
literals, and the password of agent19's own DSN wherever it appears."""

from __future__ import annotations

import json

import psycopg
import pytest
from psycopg.conninfo import make_conninfo

from agent19.config import Settings
from agent19.db import Database
from agent19.db.redact import redact_value
from agent19.ops.capacity.measure import measure
from agent19.ops.health.check import health_check
from agent19.ops.health.probe import Probe
from agent19.ops.health.thresholds import HealthThresholds
from agent19.safety.run import run_read
from tests.conftest import need, owner_login


@pytest.mark.parametrize(("text", "secret", "kept"), [
    ("ALTER ROLE app PASSWORD/*rotate*/'leak-1'", "leak-1", "ALTER ROLE app PASSWORD"),
    ("ALTER ROLE app PASSWORD'leak-2'", "leak-2", "ALTER ROLE app"),
    ("alter role app encrypted password -- next line\n 'leak-3'", "leak-3", "alter role app"),
    ("ALTER ROLE app PASSWORD $x$leak-4$x$", "leak-4", "ALTER ROLE app"),
    ("CREATE USER MAPPING FOR app SERVER s OPTIONS (user 'app', \"password\" 'leak-5')", "leak-5", "user 'app'"),
    ("ALTER USER MAPPING FOR app SERVER s OPTIONS (SET password 'leak-6')", "leak-6", "SET password"),
    ("CREATE SERVER s FOREIGN DATA WRAPPER w OPTIONS (sslpassword 'leak-7', host 'h')", "leak-7", "host 'h'"),
    ("CREATE SUBSCRIPTION sub CONNECTION 'host=h password=leak-8 dbname=d' PUBLICATION p", "leak-8", "host=h"),
    ("CREATE SUBSCRIPTION sub CONNECTION 'postgresql://u:leak-9@h/d' PUBLICATION p", "leak-9", "@h/d"),
    ("host=h sslpassword=leak-10", "leak-10", "host=h"),
    ("PGPASSWORD=leak-11 psql -h h", "leak-11", "psql -h h"),
    ('{"user": "u", "password": "leak-12"}', "leak-12", '"user": "u"'),
    ("ALTER ROLE app PASSWORD 'leak-13 cut at the statistics vi", "leak-13", "ALTER ROLE app"),
])
def test_every_written_form_of_a_password_is_masked(text: str, secret: str, kept: str) -> None:
    shown = redact_value(text)
    assert secret not in shown and kept in shown, shown


def test_a_value_without_credentials_is_left_as_it_is() -> None:
    for text in ["Don't panic", "SELECT 'a' || 'b'", "mail bob@example.com", "password reset requested"]:
        assert redact_value(text) in (text,), text


def test_statistics_views_show_no_password_to_the_reader(dsn: str) -> None:
    """Another session's statements as pg_stat_statements and pg_stat_activity keep them, read through run_sql,
    capacity's top statements and health's session list, by a login whose own DSN carries a password."""
    with psycopg.connect(dsn, autocommit=True) as conn:
        conn.execute("CREATE EXTENSION IF NOT EXISTS pg_stat_statements")
        try:
            conn.execute("CREATE EXTENSION IF NOT EXISTS postgres_fdw")
            fdw = True
        except psycopg.errors.FeatureNotSupported:
            fdw = False
        except psycopg.errors.UndefinedFile:
            fdw = False
        need(fdw, "postgres_fdw is not installed (postgresql-contrib)")
        conn.execute("CREATE SERVER remote1 FOREIGN DATA WRAPPER postgres_fdw OPTIONS (host '127.0.0.1')")
    owner = owner_login(dsn)
    role = psycopg.conninfo.conninfo_to_dict(owner)["user"]
    with psycopg.connect(dsn, autocommit=True) as conn:
        conn.execute(f"GRANT USAGE ON FOREIGN SERVER remote1 TO {role}")
        conn.execute(f"GRANT pg_read_all_stats TO {role}")
    own = "DsnPw-own-s3cret"  # the password in agent19's DSN (the test server trusts loopback: not checked)
    secrets = ["OwnerPw-rotate-1", "OwnerPw-bare-2", "FdwPw-leak-3", own]
    with psycopg.connect(owner, autocommit=True) as other:
        other.execute(f"ALTER ROLE {role} PASSWORD/*rotate*/'OwnerPw-rotate-1'")
        other.execute(f"ALTER ROLE {role} PASSWORD'OwnerPw-bare-2'")
        other.execute(f"CREATE USER MAPPING FOR {role} SERVER remote1 OPTIONS (user 'x', \"password\" 'FdwPw-leak-3')")
        other.execute(f"DO $$ BEGIN EXECUTE format('ALTER ROLE %I PASSWORD %L', current_user, '{own}'); END $$")
        other.execute("BEGIN")
        other.execute(f"ALTER ROLE {role} PASSWORD/**/'OwnerPw-rotate-1'")  # stays: idle in transaction
        db = Database(Settings.load(dsn=make_conninfo(owner, password=own), env={}))
        try:
            result = run_read(db, "SELECT query FROM pg_stat_statements WHERE query ~* 'password' UNION ALL "
                                  "SELECT query FROM pg_stat_activity WHERE query ~* 'password'", 100)
            shown = json.dumps(result.model_dump())
            assert len(result.rows) >= 5, shown
            assert "ALTER ROLE" in shown and "USER MAPPING" in shown
            probe = Probe.open(db, HealthThresholds())
            try:
                state = measure(probe, window_s=0, statements=1000)
            finally:
                probe.close()
            top = json.dumps([s.model_dump() for s in state.top_statements])
            assert "USER MAPPING" in top, top
            report = health_check(db, HealthThresholds(idle_in_transaction_s=0), only=["idle_in_transaction"])
            idle = json.dumps(report.model_dump())
            assert "ALTER ROLE" in idle, idle
        finally:
            db.close()
        other.execute("ROLLBACK")
    for text in (shown, top, idle):
        for secret in secrets:
            assert secret not in text, (secret, text)
