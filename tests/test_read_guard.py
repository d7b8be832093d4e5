"""The read-only promise against statements that hide what they do, through the real MCP client.

Each class of escape from issue 11 (and the ones found while fixing it) runs through ``run_sql`` and
``explain_query`` in read-only mode, once as the reader login `agent19 setup-role` creates and once as
the superuser with the explicit opt-in. A refused statement must be refused with a reason and leave
no trace: no advisory lock held afterwards (pg_locks, read from another session), no file written,
no session terminated. Harmless reads of the same objects still work, so the guard is not a wall.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import uuid
from pathlib import Path

import psycopg
import pytest

from tests.conftest import need, owner_login
from tests.mcp_client import stdio_session
from tests.reader_login import reader_login

LOCK = 4242

SETUP = f"""
CREATE EXTENSION IF NOT EXISTS tablefunc;
CREATE EXTENSION IF NOT EXISTS file_fdw;
CREATE TABLE t (id int PRIMARY KEY, v int, secret text);
INSERT INTO t VALUES (1, 1, 'alpha'), (2, 2, 'beta');
CREATE FUNCTION lock_it() RETURNS int LANGUAGE plpgsql STABLE AS
  $$ BEGIN PERFORM pg_advisory_lock({LOCK}); RETURN 1; END $$;
CREATE FUNCTION inner_lock() RETURNS int LANGUAGE sql STABLE AS 'SELECT 1 FROM (SELECT pg_advisory_lock({LOCK})) s';
CREATE FUNCTION outer_fn() RETURNS int LANGUAGE sql IMMUTABLE AS 'SELECT inner_lock()';
CREATE FUNCTION atomic_fn() RETURNS int LANGUAGE sql STABLE BEGIN ATOMIC SELECT inner_lock(); END;
CREATE FUNCTION dyn() RETURNS int LANGUAGE plpgsql STABLE AS
  $$ BEGIN EXECUTE 'SELECT 1'; RETURN 1; END $$;
CREATE FUNCTION definer() RETURNS int LANGUAGE sql STABLE SECURITY DEFINER AS 'SELECT 1';
CREATE VIEW locking_view AS SELECT lock_it() AS x;
CREATE VIEW nested_view AS SELECT * FROM locking_view;
CREATE FUNCTION lock_op(int, int) RETURNS bool LANGUAGE sql IMMUTABLE AS 'SELECT inner_lock() = $1 + $2';
CREATE OPERATOR === (LEFTARG = int, RIGHTARG = int, FUNCTION = lock_op);
CREATE TYPE boxed AS (v int);
CREATE FUNCTION to_boxed(int) RETURNS boxed LANGUAGE sql IMMUTABLE AS 'SELECT ROW(inner_lock())::boxed';
CREATE CAST (int AS boxed) WITH FUNCTION to_boxed(int);
CREATE FUNCTION sneaky(t) RETURNS int LANGUAGE sql STABLE AS 'SELECT inner_lock()';
CREATE VIEW creds AS SELECT * FROM pg_catalog.pg_user_mappings;
CREATE TABLE guarded (id int);
INSERT INTO guarded VALUES (1);
ALTER TABLE guarded ENABLE ROW LEVEL SECURITY;
CREATE POLICY lock_on_read ON guarded USING (inner_lock() = 1);
CREATE SERVER files FOREIGN DATA WRAPPER file_fdw;
CREATE FUNCTION quoted_lock() RETURNS int LANGUAGE plpgsql STABLE AS
  $$ BEGIN PERFORM "pg_advisory_lock"({LOCK}); RETURN 1; END $$;
CREATE FUNCTION hashes() RETURNS SETOF text LANGUAGE plpgsql STABLE AS
  $$ BEGIN RETURN QUERY SELECT rolpassword::text FROM pg_authid; END $$;
CREATE FUNCTION agg_step(int, int) RETURNS int LANGUAGE sql IMMUTABLE AS 'SELECT inner_lock() + $2';
CREATE AGGREGATE sneaky_sum(int) (SFUNC = agg_step, STYPE = int, INITCOND = '0');
CREATE OPERATOR <<< (LEFTARG = int, RIGHTARG = int, FUNCTION = lock_op);
CREATE FUNCTION harmless_stable(int) RETURNS int LANGUAGE sql STABLE AS 'SELECT $1 + 1';
CREATE VIEW harmless_view AS SELECT id, harmless_stable(v) AS w FROM t;
"""


def _escapes(db: str, marker: Path) -> dict[str, str]:
    return {
        # names resolved as the server resolves them
        "three_part_builtin": f"SELECT {db}.pg_catalog.pg_advisory_lock({LOCK})",
        "three_part_user_fn": f"SELECT {db}.public.lock_it()",
        "other_database": "SELECT other_db.pg_catalog.now()",
        "quoted_name": f'SELECT "pg_catalog"."pg_advisory_lock"({LOCK})',
        # SQL given as a string
        "crosstab": "SELECT * FROM crosstab('SELECT secret, secret, secret FROM t') AS c(a text, b text)",
        "connectby": "SELECT * FROM connectby('t', 'id', 'v', '1', 0) AS c(id int, v int, level int)",
        "ts_stat": f"SELECT * FROM ts_stat('SELECT to_tsvector(x::text) FROM (SELECT pg_advisory_lock({LOCK})) x')",
        "ts_rewrite": f"SELECT ts_rewrite('a'::tsquery, 'SELECT ''a''::tsquery, ''b''::tsquery FROM "
                      f"(SELECT pg_advisory_lock({LOCK})) x')",
        "query_to_xml": f"SELECT query_to_xml('SELECT pg_advisory_lock({LOCK})', true, false, '')",
        # what the text does not show
        "stable_plpgsql": "SELECT lock_it()",
        "view": "SELECT * FROM locking_view",
        "nested_view": "SELECT * FROM nested_view",
        "function_calls_function": "SELECT outer_fn()",
        "atomic_body": "SELECT atomic_fn()",
        "dynamic_sql": "SELECT dyn()",
        "security_definer": "SELECT definer()",
        "operator": "SELECT 1 === 2",
        "cast": "SELECT 1::boxed",
        "attribute_notation": "SELECT t.sneaky FROM t",
        "row_level_policy": "SELECT * FROM guarded",
        "subquery_in_where": "SELECT id FROM t WHERE id IN (SELECT x FROM locking_view)",
        "aggregate_state_function": "SELECT sneaky_sum(v) FROM t",
        "quoted_call_in_plpgsql": "SELECT quoted_lock()",
        "plpgsql_reads_password_hashes": "SELECT * FROM hashes()",
        "cte_shadows_a_view_read_elsewhere": "SELECT * FROM locking_view, (WITH locking_view AS (SELECT 1 AS y) "
                                             "SELECT * FROM locking_view) s",
        "operator_any_sublink": "SELECT 1 === ANY (SELECT 2)",
        "order_by_using": "SELECT id FROM t ORDER BY id USING <<<",
        # credentials
        "user_mapping_options": "SELECT * FROM information_schema.user_mapping_options",
        "user_mappings_view": "SELECT * FROM creds",
        "pg_user_mappings": "SELECT * FROM pg_catalog.pg_user_mappings",
        "subscription_conninfo": "SELECT subconninfo FROM pg_subscription",
        # reaching outside the database
        "file_fdw_program": "SELECT * FROM program_table",
        "large_object": "SELECT lo_import('/etc/hostname')",
        "marker_untouched": f"SELECT pg_read_file('{marker}')",
    }


HARMLESS = {
    "SELECT count(*) FROM t": [[2]],
    "SELECT w FROM harmless_view ORDER BY id": [[2], [3]],
    "SELECT harmless_stable(41)": [[42]],
    "SELECT lower(secret) FROM t ORDER BY 1 LIMIT 1": [["alpha"]],
    "SELECT count(*) > 0 FROM pg_stat_activity": [[True]],
    "SELECT count(*) >= 0 FROM pg_locks": [[True]],
    "SELECT 1 WHERE now() IS NOT NULL": [[1]],
    "WITH t AS (SELECT 5 AS id) SELECT id FROM t": [[5]],
    "SELECT sum(v) FROM t": [[3]],
}


def _locks(dsn: str) -> int:
    with psycopg.connect(dsn, autocommit=True) as conn:
        return conn.execute("SELECT count(*) FROM pg_locks WHERE locktype = 'advisory' AND objid = %s",
                            (LOCK,)).fetchone()[0]


def _text(result) -> str:
    return " ".join(getattr(c, "text", "") for c in result.content)


@pytest.fixture
def target(dsn, tmp_path):
    marker = tmp_path / "program-ran"
    os.chmod(tmp_path, 0o777)
    with psycopg.connect(dsn, autocommit=True) as conn:
        try:
            conn.execute(SETUP)
        except psycopg.errors.UndefinedFile as exc:  # pragma: no cover - a server without contrib
            need(False, f"contrib extensions missing: {exc}")
        conn.execute(f"CREATE FOREIGN TABLE program_table (line text) SERVER files "
                     f"OPTIONS (program 'touch {marker}')")
        db = conn.execute("SELECT current_database()").fetchone()[0]
    return dsn, db, marker


@pytest.mark.asyncio
@pytest.mark.parametrize("login", ["reader", "privileged"])
async def test_hidden_effects_are_refused_and_leave_no_trace(target, tmp_path, login):
    dsn, db, marker = target
    escapes = _escapes(db, marker)
    with reader_login(dsn, tmp_path) as read_dsn:
        env = {"DATABASE_URL": dsn, "AGENT19_ALLOW_PRIVILEGED_READS": "1"} if login == "privileged" else \
            {"DATABASE_URL": dsn, "AGENT19_READ_DSN": read_dsn, "AGENT19_ALLOW_PRIVILEGED_READS": "0"}
        with psycopg.connect(dsn, autocommit=True) as bystander:
            failures = []
            async with stdio_session(env=env) as session:
                for name, sql in escapes.items():
                    for tool in ("run_sql", "explain_query"):
                        result = await session.call_tool(tool, {"sql": sql})
                        if name == "row_level_policy" and login == "privileged":  # a superuser runs no policy
                            if result.is_error:  # (review r32 F3): nothing to refuse, and nothing ran
                                failures.append(f"{tool} {name}: refused for a superuser: {_text(result)[:200]}")
                        elif not result.is_error or "refused" not in _text(result):
                            failures.append(f"{tool} {name}: not refused: {_text(result)[:200]}")
                        if _locks(dsn):
                            failures.append(f"{tool} {name}: an advisory lock outlived the call")
                            break
                for sql, rows in HARMLESS.items():
                    result = await session.call_tool("run_sql", {"sql": sql})
                    got = None if result.is_error else result.structured_content["result"]["rows"]
                    if got != rows:
                        failures.append(f"harmless read {sql!r} gave {got}: {_text(result)[:200]}")
                    explained = await session.call_tool("explain_query", {"sql": sql})
                    if explained.is_error:
                        failures.append(f"harmless explain {sql!r} failed: {_text(explained)[:200]}")
            assert bystander.execute("SELECT 1").fetchone() == (1,)
    assert not marker.exists(), "a foreign table's program ran"
    assert not failures, "\n".join(failures)


@pytest.mark.asyncio
async def test_three_part_names_of_the_current_database_still_resolve(target, tmp_path):
    dsn, db, _ = target
    async with stdio_session(env={"DATABASE_URL": dsn}) as session:
        result = await session.call_tool("run_sql", {"sql": f"SELECT {db}.pg_catalog.length('abc')"})
    assert not result.is_error and result.structured_content["result"]["rows"] == [[3]]


@pytest.mark.asyncio
async def test_explain_timeout_is_capped_at_the_session_statement_timeout(dsn):
    async with stdio_session("--statement-timeout", "1s", env={"DATABASE_URL": dsn}) as session:
        result = await session.call_tool("explain_query", {"sql": "SELECT pg_sleep(3)", "timeout_ms": 600000})
    out = result.structured_content
    assert not result.is_error, _text(result)
    assert out["execution"] == "plain", "a 3 s query ran to the end under a 1 s statement_timeout"
    assert any("statement_timeout" in n for n in out["notes"])


@pytest.mark.asyncio
async def test_a_privileged_login_is_refused_with_directions(dsn, tmp_path):
    member = f"m_{uuid.uuid4().hex[:8]}"
    with psycopg.connect(dsn, autocommit=True) as conn:
        conn.execute("CREATE TABLE t (id int)")
        conn.execute(f"CREATE ROLE {member} LOGIN; GRANT pg_read_server_files TO {member}; "
                     f"GRANT SELECT ON t TO {member}")
    member_dsn = psycopg.conninfo.make_conninfo(dsn, user=member)
    try:
        for url, what in ((dsn, "superuser"), (member_dsn, "pg_read_server_files")):
            env = {"DATABASE_URL": url, "AGENT19_ALLOW_PRIVILEGED_READS": "0"}
            async with stdio_session(env=env) as session:
                for tool in ("run_sql", "explain_query", "advise_indexes"):
                    result = await session.call_tool(tool, {"sql": "SELECT * FROM t"})
                    text = _text(result)
                    assert result.is_error and what in text, text
                    assert "setup-role" in text and "--read-dsn" in text and "--allow-privileged-reads" in text
                info = (await session.call_tool("server_info", {})).structured_content
                assert info["reads"]["privileged"] is True and info["reads"]["separate_reader"] is False
    finally:
        with psycopg.connect(dsn, autocommit=True) as conn:
            conn.execute(f"DROP OWNED BY {member}; DROP ROLE {member}")


@pytest.mark.asyncio
async def test_reads_run_as_the_reader_login(dsn, tmp_path):
    with psycopg.connect(dsn, autocommit=True) as conn:
        conn.execute("CREATE TABLE t (id int); INSERT INTO t VALUES (1), (2)")
    with reader_login(dsn, tmp_path) as read_dsn:
        reader = psycopg.conninfo.conninfo_to_dict(read_dsn)["user"]
        env = {"DATABASE_URL": dsn, "AGENT19_READ_DSN": read_dsn, "AGENT19_ALLOW_PRIVILEGED_READS": "0"}
        async with stdio_session(env=env) as session:
            info = (await session.call_tool("server_info", {})).structured_content
            assert info["reads"] == {**info["reads"], "login": reader, "privileged": False, "separate_reader": True}
            result = await session.call_tool("run_sql", {"sql": "SELECT session_user, count(*) FROM t GROUP BY 1"})
            assert result.structured_content["result"]["rows"] == [[reader, 2]]
            text = json.dumps((await session.call_tool("server_info", {})).structured_content)
            assert read_dsn.split("password=")[-1].split()[0] not in text  # the reader's password never shows


def test_the_reader_login_itself_is_least_privilege(dsn, tmp_path):
    """Past agent19's parser, the server refuses the reader what the guard refuses."""
    with psycopg.connect(dsn, autocommit=True) as conn:
        conn.execute("CREATE TABLE t (id int); INSERT INTO t VALUES (1)")
    with reader_login(dsn, tmp_path) as read_dsn, psycopg.connect(dsn, autocommit=True) as other:
        with psycopg.connect(read_dsn, autocommit=True) as conn:
            row = conn.execute("SELECT current_setting('default_transaction_read_only'), "
                               "current_setting('statement_timeout'), (SELECT count(*) FROM t)").fetchone()
            assert row == ("on", "5s", 1)
            for sql in ("SELECT pg_read_file('/etc/hostname')", "SELECT lo_import('/etc/hostname')",
                        f"SELECT pg_terminate_backend({other.info.backend_pid})", "COPY t TO PROGRAM 'true'",
                        "SELECT rolpassword FROM pg_authid", "SELECT umoptions FROM pg_user_mapping"):
                with pytest.raises((psycopg.errors.InsufficientPrivilege, psycopg.errors.ReadOnlySqlTransaction)):
                    conn.execute(sql)
            with pytest.raises((psycopg.errors.InsufficientPrivilege, psycopg.errors.ReadOnlySqlTransaction)):
                conn.execute("BEGIN READ WRITE; CREATE TABLE public.planted (id int)")
            conn.rollback()
        assert other.execute("SELECT 1").fetchone() == (1,)


@pytest.mark.asyncio
async def test_pg_read_all_data_reads_password_hashes_so_the_reader_does_not_get_it(dsn, tmp_path):
    """Why setup-role grants per-schema SELECT: the server lets pg_read_all_data read pg_authid."""
    role = f"all_{uuid.uuid4().hex[:8]}"
    with psycopg.connect(dsn, autocommit=True) as conn:
        conn.execute(f"CREATE ROLE {role} LOGIN; GRANT pg_read_all_data TO {role}")
    try:
        all_data = psycopg.conninfo.make_conninfo(dsn, user=role)
        with psycopg.connect(all_data, autocommit=True) as conn:
            assert conn.execute("SELECT count(rolpassword) >= 0 FROM pg_authid").fetchone() == (True,)
        env = {"DATABASE_URL": dsn, "AGENT19_READ_DSN": all_data, "AGENT19_ALLOW_PRIVILEGED_READS": "0"}
        async with stdio_session(env=env) as session:
            result = await session.call_tool("run_sql", {"sql": "SELECT rolname, rolpassword FROM pg_authid"})
            assert result.is_error and "credentials" in _text(result)
    finally:
        with psycopg.connect(dsn, autocommit=True) as conn:
            conn.execute(f"DROP ROLE {role}")
    out = subprocess.run([sys.executable, "-m", "agent19", "setup-role", "--dsn", dsn], capture_output=True,
                         text=True, timeout=60, cwd=Path(__file__).parent.parent)
    assert out.returncode == 0 and "GRANT SELECT ON ALL TABLES IN SCHEMA public" in out.stdout
    assert "GRANT pg_read_all_data" not in out.stdout and "pg_read_server_files" not in out.stdout.split("-- note")[0]


@pytest.mark.asyncio
async def test_the_index_advisor_plans_as_the_reader(dsn, tmp_path):
    with psycopg.connect(dsn, autocommit=True) as conn:
        try:
            conn.execute("CREATE EXTENSION hypopg")
        except psycopg.errors.UndefinedFile:  # pragma: no cover - hypopg not installed here
            need(False, "hypopg is not installed")
        conn.execute("CREATE TABLE orders (id int PRIMARY KEY, customer int, note text); INSERT INTO orders "
                     "SELECT g, g % 5000, 'x' FROM generate_series(1, 50000) g; ANALYZE orders")
    with reader_login(dsn, tmp_path) as read_dsn:
        env = {"DATABASE_URL": dsn, "AGENT19_READ_DSN": read_dsn, "AGENT19_ALLOW_PRIVILEGED_READS": "0"}
        async with stdio_session(env=env) as session:
            result = await session.call_tool("advise_indexes", {"sql": "SELECT * FROM orders WHERE customer = 42"})
            assert not result.is_error, _text(result)
            assert any("customer" in r["sql"] for r in result.structured_content["recommendations"])
            refused = await session.call_tool("advise_indexes", {"sql": "SELECT * FROM orders "
                                                                 "WHERE pg_try_advisory_lock(customer)"})
            assert refused.is_error and "pg_try_advisory_lock" in _text(refused)
        with psycopg.connect(dsn, autocommit=True) as conn:
            assert conn.execute("SELECT count(*) FROM pg_locks WHERE locktype = 'advisory'").fetchone() == (0,)


@pytest.mark.asyncio
async def test_a_write_is_checked_as_the_login_that_plans_it(dsn, tmp_path):
    """EXPLAIN of a write is planned as the main login (the application's role: a privileged one is refused in
    read-only mode, tests/test_privileged_planner.py); "$user" in its search_path can resolve a name to another
    function than the reader would see. The planner folds immutable calls, so the check must resolve names as the
    main login does."""
    app = owner_login(dsn, "planner")
    with psycopg.connect(app, autocommit=True) as conn:
        main = conn.execute("SELECT session_user").fetchone()[0]
        conn.execute(f"""
            CREATE TABLE t (id int);
            CREATE FUNCTION public.shadowed(int) RETURNS int LANGUAGE sql IMMUTABLE AS 'SELECT $1';
            CREATE SCHEMA "{main}";
            CREATE FUNCTION "{main}".shadowed(int) RETURNS int LANGUAGE sql IMMUTABLE
              AS 'SELECT $1 FROM (SELECT pg_advisory_lock({LOCK})) s';
        """)
    with reader_login(dsn, tmp_path) as read_dsn:
        env = {"DATABASE_URL": app, "AGENT19_READ_DSN": read_dsn, "AGENT19_ALLOW_PRIVILEGED_READS": "0"}
        async with stdio_session(env=env) as session:
            result = await session.call_tool("explain_query", {"sql": "DELETE FROM t WHERE id = shadowed(1)"})
            assert result.is_error and "pg_advisory_lock" in _text(result), _text(result)
            ok = await session.call_tool("explain_query", {"sql": "DELETE FROM t WHERE id = 1"})
            assert not ok.is_error and ok.structured_content["execution"] == "plain"
    assert _locks(dsn) == 0


@pytest.mark.asyncio
async def test_a_read_dsn_for_another_database_is_refused(dsn):
    other = psycopg.conninfo.make_conninfo(dsn, dbname="postgres")
    env = {"DATABASE_URL": dsn, "AGENT19_READ_DSN": other, "AGENT19_ALLOW_PRIVILEGED_READS": "1"}
    async with stdio_session(env=env) as session:
        result = await session.call_tool("run_sql", {"sql": "SELECT 1"})
    assert result.is_error and "read DSN reaches database 'postgres'" in _text(result), _text(result)
