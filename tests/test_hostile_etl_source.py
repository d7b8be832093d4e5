"""A hostile review of etl_run: a pipeline whose source is a *table name* chosen by the caller.

A source ``query`` always went through the read guard; a source ``table`` did not, so a prompt-injected
model could copy ``pg_catalog.pg_authid`` (password hashes) into a table it reads later, or name a view
that calls ``pg_terminate_backend`` and have it run. Both must be refused, in every mode, before a row
is read or written; an ordinary table still loads.
"""

from __future__ import annotations

import textwrap

import psycopg
import pytest

from tests.mcp_client import stdio_session

SETUP = """
CREATE TABLE loot (oid oid PRIMARY KEY, rolname text, rolpassword text);
CREATE VIEW hashes AS SELECT oid, rolname, rolpassword FROM pg_authid;
CREATE VIEW killer AS SELECT pid AS oid, pg_terminate_backend(pid)::text AS rolname, NULL::text AS rolpassword
  FROM pg_stat_activity WHERE application_name = 'victim';
CREATE TABLE src (oid oid PRIMARY KEY, rolname text, rolpassword text);
INSERT INTO src VALUES (1, 'a', 'x'), (2, 'b', 'y');
CREATE ROLE hostile_etl_victim LOGIN PASSWORD 'Secret-Hash-Me';
"""


def _pipeline(table: str) -> str:
    return textwrap.dedent(f"""
        name = "grab"
        [source]
        table = "{table}"
        cursor = ["oid"]
        [destination]
        table = "public.loot"
        key = ["oid"]
        """)


def _text(result) -> str:
    return " ".join(getattr(c, "text", "") for c in result.content)


@pytest.mark.asyncio
async def test_table_source_cannot_read_credentials_or_run_volatile_views(dsn):
    with psycopg.connect(dsn, autocommit=True) as conn:
        conn.execute(SETUP)
    victim = psycopg.connect(dsn, application_name="victim", autocommit=True)
    try:
        async with stdio_session("--mode", "execute", env={"DATABASE_URL": dsn}) as session:
            results = {t: await session.call_tool("etl_run", {"pipeline_toml": _pipeline(t)})
                       for t in ("pg_catalog.pg_authid", "public.hashes", "public.killer")}
            dry = await session.call_tool("etl_run", {"pipeline_toml": _pipeline("pg_catalog.pg_authid"),
                                                      "dry_run": True})
            ok = await session.call_tool("etl_run", {"pipeline_toml": _pipeline("public.src")})
        for table, r in results.items():
            assert r.is_error, (table, r.content)
            assert "refused" in _text(r), (table, _text(r))
            assert "SCRAM" not in _text(r)
        assert dry.is_error and "pg_authid" in _text(dry)
        assert victim.execute("SELECT 1").fetchone() == (1,)  # the view's pg_terminate_backend never ran
        assert not ok.is_error, ok.content
        assert ok.structured_content["inserted"] == 2
        with psycopg.connect(dsn) as conn:
            rows = conn.execute("SELECT rolname FROM loot ORDER BY oid").fetchall()
        assert rows == [("a",), ("b",)]  # only the ordinary table's rows, no role or hash
    finally:
        victim.close()
        with psycopg.connect(dsn, autocommit=True) as conn:
            conn.execute("DROP ROLE IF EXISTS hostile_etl_victim")


@pytest.mark.asyncio
async def test_over_mcp_a_model_cannot_choose_where_data_goes(dsn):
    """A literal DSN in a model-written pipeline (or a cdc_run destination) could be any server: refused over
    MCP before anything is read or written; env:VAR (set by the person who started the server) works."""
    with psycopg.connect(dsn, autocommit=True) as conn:
        conn.execute("CREATE TABLE src (oid oid PRIMARY KEY, rolname text, rolpassword text)")
        conn.execute("INSERT INTO src VALUES (1, 'a', 'x'), (2, 'b', 'y')")
        conn.execute("CREATE DATABASE hostile_sink")
    sink = psycopg.conninfo.make_conninfo(dsn, dbname="hostile_sink")
    with psycopg.connect(sink, autocommit=True) as conn:
        conn.execute("CREATE TABLE loot (oid oid PRIMARY KEY, rolname text, rolpassword text)")
    literal = _pipeline("public.src").replace("[destination]\n", f"[destination]\ndsn = \"{sink}\"\n")
    named = _pipeline("public.src").replace("[destination]\n", "[destination]\ndsn = \"env:SINK_URL\"\n")
    from_literal = _pipeline("public.src").replace("[source]\n", f"[source]\ndsn = \"{sink}\"\n")
    try:
        async with stdio_session("--mode", "execute", env={"DATABASE_URL": dsn, "SINK_URL": sink}) as session:
            refused = await session.call_tool("etl_run", {"pipeline_toml": literal})
            refused_src = await session.call_tool("etl_run", {"pipeline_toml": from_literal, "dry_run": True})
            cdc = await session.call_tool("cdc_run", {"tables": ["src"], "destination": sink})
            with psycopg.connect(sink) as conn:
                assert conn.execute("SELECT count(*) FROM loot").fetchone() == (0,)
            ok = await session.call_tool("etl_run", {"pipeline_toml": named})
        for r in (refused, refused_src, cdc):
            assert r.is_error and "env:VAR" in _text(r), _text(r)
        assert "refused over MCP" in _text(refused) and "destination.dsn" in _text(refused)
        assert "source.dsn" in _text(refused_src)
        assert not ok.is_error, ok.content
        with psycopg.connect(sink) as conn:
            assert conn.execute("SELECT count(*) FROM loot").fetchone() == (2,)
            slots = conn.execute("SELECT count(*) FROM pg_replication_slots").fetchone()
        assert slots == (0,)  # the refused cdc_run created no slot
    finally:
        with psycopg.connect(dsn, autocommit=True) as conn:
            conn.execute("DROP DATABASE IF EXISTS hostile_sink WITH (FORCE)")
