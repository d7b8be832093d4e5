"""Change data capture on a real server: wal2json slot, initial copy at the exported snapshot, inserts, updates
(TOASTed values left unchanged, a key change), deletes, a REPLICA IDENTITY FULL table without a key, kill -9
mid-stream and restart; slots are always dropped."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import psycopg
import pytest

from agent19.config import AccessMode
from agent19.db.connection import Database
from agent19.errors import InputError
from agent19.etl.cdc import run_cdc
from agent19.etl.cdc_check import check_cdc
from tests.conftest import _fresh_database, session_settings

ROOT = Path(__file__).parent.parent
DDL = """
CREATE TABLE items (id int PRIMARY KEY, name text, body text);
CREATE TABLE events (a int, b text);
"""
CHECK = {"items": "SELECT count(*), md5(string_agg(format('%s|%s|%s', id, name, md5(body)), ',' ORDER BY id)) "
                  "FROM items",
         "events": "SELECT count(*), md5(string_agg(format('%s|%s', a, b), ',' ORDER BY a, b)) FROM events"}


@pytest.fixture
def warehouse(pg) -> Iterator[str]:
    yield from _fresh_database(pg)


@pytest.fixture
def source(dsn) -> Iterator[str]:
    with psycopg.connect(dsn, autocommit=True) as conn:
        conn.execute(DDL)
    yield dsn
    with psycopg.connect(dsn, autocommit=True) as conn:  # never leave a slot behind
        for (slot,) in conn.execute("SELECT slot_name FROM pg_replication_slots WHERE database = current_database()"
                                    ).fetchall():
            conn.execute("SELECT pg_drop_replication_slot(%s)", (slot,))


def _db(dsn: str) -> Database:
    return Database(session_settings(dsn=dsn, mode=AccessMode.EXECUTE))


def _write(dsn: str, *statements: str) -> None:
    with psycopg.connect(dsn, autocommit=True) as conn:
        conn.execute("SET synchronous_commit = on")  # the test server runs with it off: decoding reads flushed WAL
        for st in statements:
            conn.execute(st)


def _same(src: str, dst: str) -> None:
    with psycopg.connect(src) as a, psycopg.connect(dst) as b:
        for q in CHECK.values():
            assert a.execute(q).fetchone() == b.execute(q).fetchone()


def _run(src: str, dst: str, **kw) -> object:
    with psycopg.connect(dst, autocommit=True, row_factory=psycopg.rows.dict_row) as conn:
        return run_cdc(_db(src), conn, slot="agent19_test", tables=["items", "public.events"], **kw)


def test_check_finds_what_blocks_cdc_with_the_fix(source):
    with psycopg.connect(source, autocommit=True) as conn:
        conn.execute("CREATE TABLE nokey (a int)")
    report = check_cdc(_db(source), ["items", "events", "nokey", "missing"])
    bad = {(f.check, f.detail.split(":")[0]): f for f in report.findings if f.status == "error"}
    assert not report.ready
    assert ("replica_identity", "public.events") in bad and "REPLICA IDENTITY FULL" in bad[("replica_identity",
                                                                                              "public.events")].fix
    assert ("table", "public.missing not found (or not visible)") in bad
    assert any(f.check == "wal_level" and f.status == "ok" for f in report.findings)
    assert any(f.check == "max_slot_wal_keep_size" and f.status == "warning" and "ALTER SYSTEM" in f.fix
               for f in report.findings)
    with psycopg.connect(source, autocommit=True) as conn:
        conn.execute("ALTER TABLE events REPLICA IDENTITY FULL")
        conn.execute("DROP TABLE nokey")
    assert check_cdc(_db(source), ["items", "events"]).ready


def test_initial_copy_then_inserts_updates_deletes_toast_and_full_identity(source, warehouse):
    big = "(SELECT string_agg(md5(g::text), '') FROM generate_series(1, 4000) g)"  # 128 kB: TOASTed
    _write(source, "ALTER TABLE events REPLICA IDENTITY FULL",
           f"INSERT INTO items SELECT g, 'n' || g, {big} FROM generate_series(1, 50) g",
           "INSERT INTO events SELECT g, 'e' || g FROM generate_series(1, 20) g")
    with psycopg.connect(warehouse, autocommit=True) as conn:
        conn.execute(DDL)
    first = _run(source, warehouse)
    assert first.initial_copy == {"public.items": 50, "public.events": 20} and first.caught_up
    _same(source, warehouse)
    _write(source,
           f"INSERT INTO items VALUES (51, 'new', {big})",
           "UPDATE items SET name = 'renamed' WHERE id = 1",  # body unchanged and TOASTed: not in the change
           "UPDATE items SET id = 1001 WHERE id = 2",  # a key change
           "DELETE FROM items WHERE id BETWEEN 10 AND 14",
           "UPDATE events SET b = 'changed' WHERE a = 3",
           "DELETE FROM events WHERE a = 4",
           "INSERT INTO events VALUES (5, 'e5')",  # a duplicate row: FULL identity, no key
           "DELETE FROM events WHERE ctid = (SELECT min(ctid) FROM events WHERE a = 5)")
    second = _run(source, warehouse)
    assert second.initial_copy == {}
    assert (second.inserts, second.updates, second.deletes) == (2, 3, 7)
    assert second.caught_up and second.lag_bytes is not None and second.retained_wal_bytes is not None
    _same(source, warehouse)
    with psycopg.connect(warehouse) as conn:
        assert conn.execute("SELECT length(body) FROM items WHERE id = 1").fetchone()[0] == 128_000
    gone = _run(source, warehouse, teardown=True)
    assert gone.dropped
    with psycopg.connect(source) as conn:
        assert conn.execute("SELECT count(*) FROM pg_replication_slots").fetchone()[0] == 0


@pytest.mark.parametrize("plugin", ["wal2json", "pgoutput"])
def test_kill_9_mid_stream_then_restart_applies_every_change_once(source, warehouse, tmp_path, plugin):
    _write(source, "ALTER TABLE events REPLICA IDENTITY FULL", "CREATE PUBLICATION agent19_cdc FOR TABLE items, events")
    with psycopg.connect(warehouse, autocommit=True) as conn:
        conn.execute(DDL)
    _run(source, warehouse, plugin=plugin)  # slot and (empty) initial copy
    for i in range(40):  # 40 transactions of 500 rows each, in events (no key: a duplicate would show)
        _write(source, f"INSERT INTO events SELECT g, 'k{i}' FROM generate_series({i * 500}, {i * 500 + 499}) g",
               f"UPDATE items SET name = 'v{i}' WHERE id = 1" if i else "INSERT INTO items VALUES (1, 'v0', 'b')")
    env = {**os.environ, "DATABASE_URL": source, "WAREHOUSE_URL": warehouse}
    cmd = [sys.executable, "-m", "agent19", "cdc", "run", "items", "public.events",
           "--destination", "env:WAREHOUSE_URL", "--slot", "agent19_test", "--batch-changes", "600",
           "--mode", "execute", "--format", "json", "--plugin", plugin]
    proc = subprocess.Popen(cmd, cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    deadline = time.monotonic() + 120
    with psycopg.connect(warehouse, autocommit=True) as conn:
        while time.monotonic() < deadline and proc.poll() is None:
            n = conn.execute("SELECT changes FROM agent19_etl.cdc_state WHERE slot = 'agent19_test'").fetchone()[0]
            if n >= 3000:
                break
            time.sleep(0.01)
    proc.send_signal(signal.SIGKILL)
    proc.wait(timeout=30)
    with psycopg.connect(warehouse) as conn:
        partial = conn.execute("SELECT count(*) FROM events").fetchone()[0]
    assert 0 < partial < 20_000, f"the kill did not land mid-stream ({partial} rows)"
    done = subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    _same(source, warehouse)
    _run(source, warehouse, teardown=True)


def test_a_missing_destination_table_is_refused_before_any_slot_exists(source, warehouse):
    _write(source, "INSERT INTO items SELECT g, 'n', 'b' FROM generate_series(1, 10) g")
    with psycopg.connect(warehouse, autocommit=True) as conn:
        conn.execute("CREATE TABLE items (id int PRIMARY KEY, name text, body text)")  # events is missing
    with pytest.raises(InputError, match="no table public.events"):
        _run(source, warehouse)
    with psycopg.connect(source) as conn:
        assert conn.execute("SELECT count(*) FROM pg_replication_slots").fetchone()[0] == 0
    with psycopg.connect(warehouse, autocommit=True) as conn:
        conn.execute("CREATE TABLE events (a int, b text)")
    assert _run(source, warehouse).initial_copy["public.items"] == 10
    _run(source, warehouse, teardown=True)


@pytest.mark.parametrize("plugin", ["wal2json", "pgoutput"])
def test_cdc_as_a_replication_role_without_superuser(source, warehouse, plugin):
    role = f"cdc_{uuid.uuid4().hex[:8]}"
    _write(source, f"CREATE ROLE {role} LOGIN REPLICATION", f"GRANT SELECT ON items, events TO {role}",
           "ALTER TABLE events REPLICA IDENTITY FULL", "INSERT INTO items VALUES (1, 'a', 'b')",
           "CREATE PUBLICATION agent19_cdc FOR TABLE items, events")
    with psycopg.connect(warehouse, autocommit=True) as conn:
        conn.execute(DDL)
    user_source = psycopg.conninfo.make_conninfo(source, user=role)
    try:
        assert _run(user_source, warehouse, plugin=plugin).initial_copy["public.items"] == 1
        _write(source, "INSERT INTO items VALUES (2, 'c', 'd')")
        assert _run(user_source, warehouse, plugin=plugin).inserts == 1
        _same(source, warehouse)
        assert _run(user_source, warehouse, plugin=plugin, teardown=True).dropped
    finally:
        _write(source, f"DROP OWNED BY {role}", f"DROP ROLE {role}")


def test_the_slot_advances_while_the_captured_tables_are_quiet(source, warehouse):
    """Other tables' writes add WAL; once caught up, the slot moves past them (no retained WAL piling up)."""
    with psycopg.connect(warehouse, autocommit=True) as conn:
        conn.execute(DDL)
    _run(source, warehouse)
    _write(source, "CREATE TABLE other (v text)",
           "INSERT INTO other SELECT repeat('x', 1000) FROM generate_series(1, 5000)")  # ~5 MB of WAL
    with psycopg.connect(source) as conn:
        written = conn.execute("SELECT pg_current_wal_flush_lsn()").fetchone()[0]
    quiet = _run(source, warehouse)
    assert quiet.transactions == 0 and quiet.caught_up
    with psycopg.connect(source) as conn:
        behind = conn.execute("SELECT pg_wal_lsn_diff(%s, confirmed_flush_lsn) FROM pg_replication_slots "
                              "WHERE slot_name = 'agent19_test'", (written,)).fetchone()[0]
    assert behind <= 0, f"the slot stayed {behind} bytes behind WAL it had already decoded"
    _run(source, warehouse, teardown=True)


@pytest.mark.asyncio
async def test_cdc_tools_through_the_mcp_client(source, warehouse):
    from tests.mcp_client import stdio_session

    _write(source, "INSERT INTO items VALUES (1, 'a', 'b')", "ALTER TABLE events REPLICA IDENTITY FULL")
    with psycopg.connect(warehouse, autocommit=True) as conn:
        conn.execute(DDL)
    env = {"DATABASE_URL": source, "WAREHOUSE_URL": warehouse}
    args = {"tables": ["items", "events"], "destination": "env:WAREHOUSE_URL", "slot": "agent19_mcp"}
    async with stdio_session("--mode", "read-only", env=env) as session:
        check = await session.call_tool("cdc_check", {"tables": ["items", "events"]})
        refused = await session.call_tool("cdc_run", args)
    assert not check.is_error and check.structured_content["ready"] is True
    assert refused.is_error and "execute" in " ".join(getattr(c, "text", "") for c in refused.content)
    async with stdio_session("--mode", "execute", env=env) as session:
        secret = await session.call_tool("cdc_run", {**args, "destination": make_password_dsn(warehouse)})
        run = await session.call_tool("cdc_run", args)
        _write(source, "UPDATE items SET name = 'z' WHERE id = 1")
        again = await session.call_tool("cdc_run", args)
        gone = await session.call_tool("cdc_run", {**args, "teardown": True})
    said = " ".join(getattr(c, "text", "") for c in secret.content)
    assert secret.is_error and "env:VAR" in said and "hunter2" not in said
    assert not run.is_error, run.content
    assert run.structured_content["initial_copy"] == {"public.items": 1, "public.events": 0}
    assert again.structured_content["updates"] == 1 and gone.structured_content["dropped"] is True
    _same(source, warehouse)
    with psycopg.connect(source) as conn:
        assert conn.execute("SELECT count(*) FROM pg_replication_slots").fetchone()[0] == 0


def make_password_dsn(dsn: str) -> str:
    return psycopg.conninfo.make_conninfo(dsn, password="hunter2")
