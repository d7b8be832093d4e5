"""Read-only escapes a hostile review found, through the real MCP client.

Each statement below once ran in read-only mode and terminated another session (an application
login may terminate its own role's sessions without any grant, so the parse and catalog guard is all
that stands between a steered model and the application's connections when no reader login is set).
The holes: built-in functions called by a view, a policy, a domain CHECK or a default argument
(pg_depend records no dependency on built-ins, so the catalog walk never saw them); views read by SQL
and PL/pgSQL function bodies; domains reached through function arguments, composite fields,
record functions, column definition lists and casts written as calls; PL/pgSQL bodies that hide a
call behind a comment or a Unicode escape, or call a user-defined operator. Each must now be
refused and leave the victim session alive, as the application login (no reader) and as the
superuser with --allow-privileged-reads; ordinary reads of catalog views still work.
"""

from __future__ import annotations

import psycopg
import pytest

from tests.conftest import owner_login
from tests.mcp_client import stdio_session

SETUP = """
CREATE FUNCTION kill_victims() RETURNS int LANGUAGE sql STABLE AS
  $$ SELECT count(pg_terminate_backend(pid))::int FROM pg_stat_activity WHERE application_name = 'victim' $$;
CREATE VIEW killer AS SELECT pg_terminate_backend(pid) AS k FROM pg_stat_activity WHERE application_name = 'victim';
CREATE VIEW killing_view AS SELECT kill_victims() AS x;
CREATE FUNCTION via_view() RETURNS int LANGUAGE sql STABLE AS 'SELECT x FROM killing_view';
CREATE FUNCTION via_builtin_view() RETURNS bigint LANGUAGE sql STABLE AS 'SELECT count(*) FROM killer';
CREATE FUNCTION pl_via_view() RETURNS int LANGUAGE plpgsql STABLE AS
  $$ DECLARE r int; BEGIN SELECT x INTO r FROM killing_view; RETURN r; END $$;
CREATE FUNCTION pl_comment() RETURNS int LANGUAGE plpgsql STABLE AS
  $$ BEGIN PERFORM kill_victims/**/(); RETURN 1; END $$;
CREATE FUNCTION pl_uescape() RETURNS int LANGUAGE plpgsql STABLE AS
  $$ BEGIN PERFORM U&"kill_victim\\0073"(); RETURN 1; END $$;
CREATE FUNCTION chk(int) RETURNS bool LANGUAGE sql IMMUTABLE AS 'SELECT kill_victims() >= 0';
CREATE DOMAIN killdom AS int CHECK (chk(VALUE));
CREATE DOMAIN builtin_killdom AS int CHECK (pg_terminate_backend(VALUE));
CREATE FUNCTION takes_dom(x killdom) RETURNS int LANGUAGE plpgsql IMMUTABLE AS 'BEGIN RETURN x; END';
CREATE TYPE comp AS (v killdom);
CREATE FUNCTION sql_dom() RETURNS int LANGUAGE sql STABLE AS 'SELECT 1::killdom';
CREATE FUNCTION with_default(a int DEFAULT kill_victims()) RETURNS int LANGUAGE sql IMMUTABLE AS 'SELECT $1';
CREATE FUNCTION with_builtin_default(a bool DEFAULT pg_terminate_backend(0)) RETURNS bool LANGUAGE sql
  IMMUTABLE AS 'SELECT $1';
CREATE FUNCTION kill_op(int, int) RETURNS bool LANGUAGE sql IMMUTABLE AS 'SELECT kill_victims() = $1 + $2';
CREATE OPERATOR === (LEFTARG = int, RIGHTARG = int, FUNCTION = kill_op);
CREATE FUNCTION pl_op() RETURNS int LANGUAGE plpgsql STABLE AS
  $$ BEGIN IF 1 === 2 THEN RETURN 1; END IF; RETURN 0; END $$;
CREATE TABLE guarded (id int);
INSERT INTO guarded VALUES (1);
ALTER TABLE guarded ENABLE ROW LEVEL SECURITY;
ALTER TABLE guarded FORCE ROW LEVEL SECURITY;
CREATE POLICY p ON guarded USING (pg_terminate_backend(0) IS NOT NULL OR true);
CREATE TABLE t (id int);
INSERT INTO t VALUES (1), (2);
CREATE VIEW plain_view AS SELECT id FROM t WHERE id > 0;
CREATE FUNCTION harmless() RETURNS bigint LANGUAGE sql STABLE AS 'SELECT count(*) FROM plain_view';
"""

ESCAPES = [
    "SELECT * FROM killer",
    "SELECT via_view()",
    "SELECT via_builtin_view()",
    "SELECT pl_via_view()",
    "SELECT pl_comment()",
    "SELECT pl_uescape()",
    "SELECT takes_dom(1)",
    "SELECT * FROM json_populate_record(NULL::comp, '{\"v\": 1}')",
    "SELECT ROW(1)::comp",
    "SELECT * FROM json_to_record('{\"v\": 1}') AS x(v killdom)",
    "SELECT sql_dom()",
    "SELECT killdom(1)",
    "SELECT 1::builtin_killdom",
    "SELECT with_default()",
    "SELECT with_builtin_default()",
    "SELECT pl_op()",
    "SELECT * FROM guarded",
]
READS = ["SELECT count(*) FROM pg_stat_activity", "SELECT rolname FROM pg_roles LIMIT 1",
         "SELECT count(*) FROM pg_settings", "SELECT count(*) FROM information_schema.tables",
         "SELECT harmless()", "SELECT count(*) FROM plain_view"]


@pytest.fixture
def app_db(dsn):
    app = owner_login(dsn)
    with psycopg.connect(app, autocommit=True) as c:
        c.execute(SETUP)
    return dsn, app


POLICY_ONLY = {"SELECT * FROM guarded"}
"""Escapes only through a table's policy, which applies to the application login (FORCE) but never to a superuser."""


@pytest.mark.parametrize("login", ["application login", "superuser opted in"])
async def test_hidden_calls_are_refused_and_touch_no_session(app_db, login):
    superuser, app = app_db
    args = ["--dsn", app] if login == "application login" else ["--dsn", superuser, "--allow-privileged-reads"]
    victim = psycopg.connect(app, application_name="victim", autocommit=True)
    try:
        async with stdio_session(*args) as s:
            for sql in ESCAPES:
                for tool in ("run_sql", "explain_query"):
                    r = await s.call_tool(tool, {"sql": sql})
                    text = r.content[0].text if r.content else ""
                    if sql in POLICY_ONLY and login != "application login":  # a superuser runs no policy (r32 F3)
                        assert not r.is_error, (tool, sql, text)
                    else:
                        assert r.is_error and "refused in read-only" in text, (tool, sql, text)
                    assert victim.execute("SELECT 1").fetchone() == (1,), (tool, sql, "the victim was terminated")
            for sql in READS:
                r = await s.call_tool("run_sql", {"sql": sql})
                assert not r.is_error and r.structured_content["executed"], (sql, r.content)
    finally:
        victim.close()
