"""The first `cdc run` never removes destination rows: tables with rows are refused (named, with their exact row
counts and what to do), before any slot exists, and again under a lock inside the copy's transaction (a row
committed in between is caught). The advice works: the confirmation protocol on the destination challenges the
TRUNCATE it names. Through the library, the CLI and the real MCP client."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
from collections.abc import Iterator
from pathlib import Path

import psycopg
import pytest

from agent19.errors import InputError
from tests.conftest import _fresh_database, session_settings, until
from tests.test_etl_cdc import DDL, _run, _same, _write

ROOT = Path(__file__).parent.parent


@pytest.fixture
def warehouse(pg) -> Iterator[str]:
    yield from _fresh_database(pg)


@pytest.fixture
def source(dsn) -> Iterator[str]:
    with psycopg.connect(dsn, autocommit=True) as conn:
        conn.execute(DDL)
        conn.execute("ALTER TABLE events REPLICA IDENTITY FULL")
        conn.execute("INSERT INTO items SELECT g, 'n' || g, 'b' FROM generate_series(1, 5) g")
    yield dsn
    with psycopg.connect(dsn, autocommit=True) as conn:
        for (slot,) in conn.execute("SELECT slot_name FROM pg_replication_slots WHERE database = current_database()"
                                    ).fetchall():
            conn.execute("SELECT pg_drop_replication_slot(%s)", (slot,))


def _slots(dsn: str) -> int:
    with psycopg.connect(dsn) as conn:
        return conn.execute("SELECT count(*) FROM pg_replication_slots").fetchone()[0]


def _rows(dsn: str, table: str) -> list[tuple]:
    with psycopg.connect(dsn) as conn:
        return conn.execute(f"SELECT * FROM {table} ORDER BY 1").fetchall()


def test_rows_in_the_destination_are_refused_named_and_counted_and_kept(source, warehouse):
    with psycopg.connect(warehouse, autocommit=True) as conn:
        conn.execute(DDL)
        conn.execute("INSERT INTO items VALUES (999, 'keep me', 'x'), (998, 'me too', 'y')")
        conn.execute("INSERT INTO events VALUES (1, 'e')")
    with pytest.raises(InputError) as refused:
        _run(source, warehouse)
    said = str(refused.value) + " " + (refused.value.hint or "")
    assert "public.items (2 rows)" in said and "public.events (1 rows)" in said
    assert "agent19 confirm 'TRUNCATE" in said and "Nothing was removed" in said
    assert _rows(warehouse, "items") == [(998, "me too", "y"), (999, "keep me", "x")]
    assert _slots(source) == 0
    with psycopg.connect(warehouse, autocommit=True) as conn:  # a person empties them: the run goes on
        conn.execute("TRUNCATE items, events")
    assert _run(source, warehouse).initial_copy == {"public.items": 5, "public.events": 0}
    _same(source, warehouse)
    assert _run(source, warehouse, teardown=True).dropped


def test_a_row_committed_after_the_first_check_is_caught_under_the_lock(source, warehouse):
    """A writer holds ROW EXCLUSIVE on a destination table (no xid yet: creating the slot does not wait for it):
    the pre-check sees an empty table, the copy's transaction waits on its EXCLUSIVE lock (observed in pg_locks),
    the writer inserts a row and commits, and the run is refused; the slot it had created is dropped."""
    with psycopg.connect(warehouse, autocommit=True) as conn:
        conn.execute(DDL)
    writer = psycopg.connect(warehouse)
    writer.execute("LOCK TABLE items IN ROW EXCLUSIVE MODE")
    waited: list[tuple] = []

    def commit_once_waiting() -> None:
        try:
            with psycopg.connect(warehouse) as watch:
                waited.extend(until("cdc waiting for its lock", lambda: watch.execute(
                    "SELECT l.mode, l.granted FROM pg_locks l WHERE l.relation = 'items'::regclass AND NOT l.granted"
                ).fetchall(), timeout=60))
        finally:  # never leave the writer open: the run would wait for it forever
            writer.execute("INSERT INTO items VALUES (7, 'late', 'z')")
            writer.commit()

    t = threading.Thread(target=commit_once_waiting)
    t.start()
    try:
        with pytest.raises(InputError, match=r"public\.items \(1 rows\)"):
            _run(source, warehouse)
    finally:
        t.join(timeout=60)
        writer.close()
    assert waited == [("ExclusiveLock", False)]
    assert _rows(warehouse, "items") == [(7, "late", "z")]
    assert _slots(source) == 0


def test_the_cli_refuses_and_the_advised_confirmation_challenges_the_truncate(source, warehouse):
    with psycopg.connect(warehouse, autocommit=True) as conn:
        conn.execute(DDL)
        conn.execute("INSERT INTO items VALUES (999, 'keep me', 'x')")
    env = {**os.environ, "DATABASE_URL": source, "WAREHOUSE_URL": warehouse}
    out = subprocess.run([sys.executable, "-m", "agent19", "cdc", "run", "items", "events", "--destination",
                          "env:WAREHOUSE_URL", "--slot", "agent19_test", "--mode", "execute"],
                         cwd=ROOT, env=env, capture_output=True, text=True, timeout=120)
    assert out.returncode == 2, out.stdout + out.stderr
    assert "public.items (1 rows)" in out.stderr and "agent19 confirm 'TRUNCATE public.items'" in out.stderr
    # the advice as a person runs it, against the destination: step 1 of the confirmation protocol
    step1 = subprocess.run([sys.executable, "-m", "agent19", "confirm", "TRUNCATE public.items", "--format", "json"],
                           cwd=ROOT, env={**env, "DATABASE_URL": warehouse}, capture_output=True, text=True,
                           timeout=120)
    report = json.loads(step1.stdout)
    assert report["outcome"] == "challenge" and report["report"]["phrase"], step1.stderr
    assert _rows(warehouse, "items") == [(999, "keep me", "x")] and _slots(source) == 0


@pytest.mark.asyncio
async def test_over_mcp_rows_are_refused_and_kept_then_an_empty_destination_runs(source, warehouse):
    from tests.mcp_client import stdio_session

    with psycopg.connect(warehouse, autocommit=True) as conn:
        conn.execute(DDL)
        conn.execute("INSERT INTO items VALUES (999, 'keep me', 'x')")
    env = {"DATABASE_URL": source, "WAREHOUSE_URL": warehouse}
    args = {"tables": ["items", "events"], "destination": "env:WAREHOUSE_URL", "slot": "agent19_mcp"}
    async with stdio_session("--mode", "execute", env=env) as session:
        refused = await session.call_tool("cdc_run", args)
        said = " ".join(getattr(c, "text", "") for c in refused.content)
        assert refused.is_error and "public.items (1 rows)" in said and "confirm" in said
        assert _rows(warehouse, "items") == [(999, "keep me", "x")] and _slots(source) == 0
        _write(warehouse, "DELETE FROM items")  # the person empties it (their decision, their tool)
        run = await session.call_tool("cdc_run", args)
        assert not run.is_error, run.content
        assert run.structured_content["initial_copy"] == {"public.items": 5, "public.events": 0}
        gone = await session.call_tool("cdc_run", {**args, "teardown": True})
    assert gone.structured_content["dropped"]
    _same(source, warehouse)
    assert _slots(source) == 0


def test_a_transaction_open_on_the_source_server_stops_the_slot_creation_with_its_name(source, warehouse):
    """Creating a logical slot waits for every transaction that began writing on the server (any database) to
    end; statement_timeout does not stop that wait. agent19 cancels it after the statement timeout and names the
    session it waited for — which is still in its transaction then (agent19 gave up; it did not outwait it); no
    slot is left behind."""
    from agent19.config import AccessMode
    from agent19.db.connection import Database
    from agent19.etl.cdc import run_cdc

    with psycopg.connect(warehouse, autocommit=True) as conn:
        conn.execute(DDL)
    holder = psycopg.connect(warehouse)  # another database on the same server: it still holds the slot up
    holder.execute("CREATE TABLE elsewhere (a int)")
    pid = holder.info.backend_pid
    ended: list[int] = []  # a safety net only: were the wait never cancelled, the run would wait forever

    def end_the_holder() -> None:
        ended.append(pid)
        with psycopg.connect(warehouse, autocommit=True) as admin:
            admin.execute("SELECT pg_terminate_backend(%s)", (pid,))

    watchdog = threading.Timer(60, end_the_holder)
    watchdog.start()
    db = Database(session_settings(dsn=source, mode=AccessMode.EXECUTE, statement_timeout="2s"))
    refused: InputError | None = None
    try:
        with psycopg.connect(warehouse, autocommit=True, row_factory=psycopg.rows.dict_row) as dest:
            try:
                run_cdc(db, dest, slot="agent19_wait", tables=["items", "events"])
            except InputError as exc:
                refused = exc
        watchdog.cancel()
        assert not ended, "the slot creation still waited after 60 s: the test ended the session it waited for"
        with psycopg.connect(warehouse) as watch:  # the session waited for is still in its transaction
            holding = watch.execute("SELECT state, backend_xid IS NOT NULL FROM pg_stat_activity WHERE pid = %s",
                                    (pid,)).fetchone()
    finally:
        watchdog.cancel()
        holder.close()
        db.close()
    assert refused is not None, "the run went on: it never waited for the open transaction"
    assert holding == ("idle in transaction", True), holding
    said = str(refused)
    assert f"pid {pid} (" in said and "idle in transaction" in said and "waited 2s" in said, said
    assert _slots(source) == 0
