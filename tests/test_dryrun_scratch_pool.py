"""A running server's scratch database made ahead (agent19.migrate.dryrun.scratch_pool): the next dry run of an
unchanged schema takes it instead of running CREATE DATABASE, with its own settings; a changed schema, another login
or a second dry run at once never gets it; nothing is left behind — pool off, at exit, on SIGTERM, after SIGKILL."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

import psycopg
import pytest
from psycopg.conninfo import conninfo_to_dict, make_conninfo

from agent19.migrate.dryrun import scratch_pool
from agent19.migrate.dryrun.scratch import list_scratch
from tests import scratch_dryruns as sd
from tests.conftest import until
from tests.mcp_client import stdio_session


def _exists(dsn: str, name: str) -> bool:
    with psycopg.connect(dsn, autocommit=True) as c:
        return c.execute("SELECT 1 FROM pg_database WHERE datname = %s", (name,)).fetchone() is not None


def test_the_next_dry_run_takes_the_database_made_ahead(dsn, pool):
    owner = sd.owner(dsn)
    first = sd.run(owner)
    assert first.passed and not sd.made_ahead(first), first.summary
    ready = sd.ready_one(dsn)
    assert ready != first.scratch.name and _exists(dsn, ready)  # made before the second dry run begins

    second = sd.run(owner)
    assert second.passed and second.complete, second.summary
    assert second.scratch is not None and second.scratch.name == ready and sd.made_ahead(second), second.scratch
    assert second.scratch.strategy == "schema_copy" and [s.isolated for s in second.statements] == [False, True, True]
    assert second.statements[1].lock_comparison[0].observed == "ShareLock"
    # dropped before dry_run returned, as any scratch database
    assert second.scratch.dropped and not _exists(dsn, ready)
    again = sd.ready_one(dsn)  # the next one, and nothing else
    assert again not in (ready, first.scratch.name)


def test_a_changed_schema_drops_the_database_made_ahead_and_uses_the_new_schema(dsn, pool):
    owner = sd.owner(dsn)
    sd.run(owner)
    stale = sd.ready_one(dsn)
    with psycopg.connect(owner, autocommit=True) as c:
        c.execute("ALTER TABLE t ADD COLUMN c int DEFAULT 1")
    # statement 2 needs the new column, in the scratch database too (it is re-observed there)
    changed = sd.run(owner, "ALTER TABLE t ADD COLUMN u int DEFAULT 0;\nALTER TABLE t ALTER COLUMN c SET NOT NULL;\n")
    assert changed.passed and changed.complete, changed.summary
    assert not sd.made_ahead(changed) and changed.scratch.name != stale
    assert changed.statements[1].isolated and not any("failed" in n for n in changed.scratch.notes), changed.scratch
    assert not _exists(dsn, stale)
    fresh = sd.ready_one(dsn)  # made from the new schema; nothing else left over
    assert fresh not in (stale, changed.scratch.name)


def test_off_by_default_nothing_stays(dsn):
    assert not scratch_pool.enabled()
    owner = sd.owner(dsn)
    result = sd.run(owner)
    assert result.passed and result.scratch is not None and result.scratch.dropped
    assert list_scratch(dsn) == []
    time.sleep(1)  # no background work either
    assert scratch_pool.settle(0) and list_scratch(dsn) == []


SCRIPT = sd.POOLED_PROCESS + """
assert scratch_pool.settle(60)
print("ready", flush=True)
sys.stdin.readline()  # the test has seen the database made ahead: exit now (or wait for a signal)
if sys.argv[3] != "exit":
    time.sleep(600)
"""


@pytest.mark.parametrize("how", ["exit", signal.SIGTERM, signal.SIGKILL])
def test_the_database_made_ahead_goes_with_the_process(dsn, tmp_path: Path, how):
    owner = sd.owner(dsn)
    script = tmp_path / "serve_like.py"
    script.write_text(SCRIPT)
    proc = subprocess.Popen([sys.executable, str(script), owner, sd.MIGRATION, str(how)], stdin=subprocess.PIPE,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            cwd=os.path.dirname(os.path.dirname(__file__)))
    try:
        assert proc.stdout is not None and proc.stdout.readline() == b"ready\n", proc.communicate()
        ready = sd.ready_one(dsn)
        assert proc.stdin is not None
        proc.stdin.write(b"go\n")
        proc.stdin.flush()
        if how != "exit":
            time.sleep(0.2)  # it is waiting for the signal
            proc.send_signal(how)
        proc.wait(timeout=30)
    finally:
        if proc.poll() is None:
            proc.kill()
    if how == signal.SIGKILL:  # nothing ran: the owner session is gone, and the next dry run drops it
        assert _exists(dsn, ready)
        until("the killed process's owner session to go", lambda: not _sessions(dsn, ready))
        assert ready in sd.run(owner, "SELECT 1").leftovers_dropped
    else:
        assert proc.returncode in (0, -signal.SIGTERM), proc.communicate()
    assert list_scratch(dsn) == []


HOLDING = sd.POOLED_PROCESS + """
import os, signal
assert scratch_pool.settle(60)
print("ready", flush=True)
sys.stdin.readline()
with {"scratch": scratch._LOCK, "scratch_pool": scratch_pool._LOCK}[sys.argv[3]]:
    os.kill(os.getpid(), signal.SIGTERM)  # its handler runs here, on the main thread, while the lock is held
    time.sleep(600)
"""


@pytest.mark.parametrize("lock", ["scratch", "scratch_pool"])
def test_sigterm_while_the_main_thread_holds_the_lock_still_drops_and_exits(dsn, tmp_path: Path, lock):
    """SIGTERM's handler runs on the main thread between two of its bytecodes — also while that thread holds the
    lock the cleanup takes (the active scratch databases' or the pool's): the handler must not wait for it (it
    never comes back), but drop the database made ahead and let the process end."""
    owner = sd.owner(dsn)
    script = tmp_path / "holding.py"
    script.write_text(HOLDING)
    proc = subprocess.Popen([sys.executable, str(script), owner, sd.MIGRATION, lock], stdin=subprocess.PIPE,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            cwd=os.path.dirname(os.path.dirname(__file__)))
    try:
        assert proc.stdout is not None and proc.stdout.readline() == b"ready\n", proc.communicate()
        sd.ready_one(dsn)
        assert proc.stdin is not None
        proc.stdin.write(b"go\n")
        proc.stdin.flush()
        try:
            proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            pytest.fail(f"still running 30 s after SIGTERM with {lock}._LOCK held: its handler deadlocked")
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == -signal.SIGTERM, proc.communicate()
    assert list_scratch(dsn) == []


def _sessions(dsn: str, name: str) -> int:
    with psycopg.connect(dsn, autocommit=True) as c:
        row = c.execute("SELECT count(*) FROM pg_stat_activity WHERE application_name = %s", (name,)).fetchone()
    return int(row[0]) if row else 0


def test_another_login_never_takes_it(dsn, pool):
    owner = sd.owner(dsn)
    other = f"other_{conninfo_to_dict(owner)['user']}"
    with psycopg.connect(dsn, autocommit=True) as c:  # may run the migration too: a member of the owner role
        c.execute(f"CREATE ROLE {other} LOGIN CREATEDB IN ROLE {conninfo_to_dict(owner)['user']}")
    sd.run(owner)
    mine = sd.ready_one(dsn)
    theirs = sd.run(make_conninfo(owner, user=other))
    assert theirs.passed and not sd.made_ahead(theirs) and theirs.scratch.name != mine, theirs.summary
    assert _exists(dsn, mine)  # still there, for its own login
    assert scratch_pool.settle(60) and mine in list_scratch(dsn) and len(list_scratch(dsn)) == 2
    assert sd.made_ahead(sd.run(owner))


def test_two_dry_runs_at_once_never_share_it(dsn, pool):
    owner = sd.owner(dsn)
    sd.run(owner)
    ready = sd.ready_one(dsn)
    results: list[Any] = []
    start = threading.Barrier(2)

    def one() -> None:
        start.wait()
        results.append(sd.run(owner))

    threads = [threading.Thread(target=one) for _ in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(results) == 2 and all(r.passed and r.complete for r in results), [r.summary for r in results]
    assert [sd.made_ahead(r) for r in results].count(True) == 1
    assert {r.scratch.name for r in results if sd.made_ahead(r)} == {ready}
    assert all(r.scratch.dropped for r in results)
    assert sd.ready_one(dsn) != ready  # one ready for the next: at most one per target


def test_the_taking_dry_run_s_own_timeouts_apply_in_it(dsn, pool):
    owner = sd.owner(dsn)
    # fails only in the scratch database (where it is replayed), saying the timeouts it runs under there
    probe = ("DO $$ BEGIN IF current_database() LIKE 'agent19_scratch%' THEN RAISE EXCEPTION 'timeouts %/%', "
             "current_setting('statement_timeout'), current_setting('lock_timeout'); END IF; END $$;\n")
    sql = sd.MIGRATION.replace("CREATE INDEX", probe + "CREATE INDEX")
    first = sd.run(owner, sql, statement_timeout="10min", lock_timeout="9s")
    assert any("timeouts 10min/9s" in n for n in first.scratch.notes), first.scratch.notes
    sd.ready_one(dsn)
    second = sd.run(owner, sql, statement_timeout="7s", lock_timeout="3s")
    assert sd.made_ahead(second), second.scratch
    assert any("timeouts 7s/3s" in n for n in second.scratch.notes), second.scratch.notes


async def test_agent19_serve_keeps_the_next_scratch_database_ready(dsn):
    """The seam: `agent19 serve` turns the pool on (the CLI and the library leave it off). Through the real MCP
    client, the second test_migration takes the database made ahead; when the server exits, nothing is left."""
    owner = sd.owner(dsn)
    async with stdio_session("--dsn", owner, "--mode", "dry-run") as session:
        results = [(await session.call_tool("test_migration", {"sql": sd.MIGRATION, "detail": "full"}))
                   for _ in range(2)]
    first, second = (r.structured_content for r in results)
    assert not any(r.is_error for r in results), [r.content for r in results]
    assert first["passed"] and second["passed"], (first["summary"], second["summary"])
    assert scratch_pool.MADE_AHEAD not in first["scratch"]["notes"]
    assert scratch_pool.MADE_AHEAD in second["scratch"]["notes"], second["scratch"]
    assert second["scratch"]["dropped"] is True
    until("the server's ready scratch database to be dropped at exit", lambda: list_scratch(dsn) == [])
