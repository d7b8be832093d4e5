"""What can go wrong with a scratch database made ahead (agent19.migrate.dryrun.scratch_pool): another login
cannot connect to it; a dry run waits for the one being made instead of making its own alongside (a role's
connection limit); one lost before use (idle_session_timeout) stops the pool for that target; a change of the
login's privileges since it was made discards it; SIGTERM does not wait for a long load."""

from __future__ import annotations

import logging
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
from tests.conftest import need, until


def test_another_login_cannot_connect_to_the_ready_database(dsn, pool):
    owner = sd.owner(dsn)
    other = f"other_{conninfo_to_dict(owner)['user']}"
    with psycopg.connect(dsn, autocommit=True) as c:
        c.execute(f"CREATE ROLE {other} LOGIN")
    sd.run(owner)
    ready = sd.ready_one(dsn)
    with pytest.raises(psycopg.OperationalError, match="CONNECT privilege"):
        psycopg.connect(make_conninfo(owner, user=other, dbname=ready)).close()
    assert sd.made_ahead(sd.run(owner))  # still good for its own login


def test_back_to_back_dry_runs_under_a_connection_limit_all_complete(dsn, pool):
    """With the login at CONNECTION LIMIT 5, a dry run making its own scratch database while the next one was
    being made ahead could run out of connections (an incomplete result); it waits for that one and takes it."""
    owner = sd.owner(dsn)
    sd.alter_role(dsn, owner, "CONNECTION LIMIT 5")
    results = [sd.run(owner) for _ in range(8)]  # no settle in between
    assert all(r.complete and r.passed for r in results), [(r.summary, r.scratch.notes) for r in results]
    assert [sd.made_ahead(r) for r in results] == [False] + [True] * 7, [r.scratch.notes for r in results]


def test_an_idle_session_timeout_means_none_is_made_ahead(dsn, pool, caplog):
    """The login's idle_session_timeout would end a ready database's idle owner session (then a leftover to drop,
    made again every time, never used): with one set, none is made ahead for that target, said once."""
    owner = sd.owner(dsn)
    sd.alter_role(dsn, owner, "SET idle_session_timeout = '2s'")
    try:
        with caplog.at_level(logging.INFO, logger=scratch_pool.__name__):
            first = sd.run(owner)
            assert scratch_pool.settle(60) and list_scratch(dsn) == []
            second = sd.run(owner)
            assert scratch_pool.settle(60) and list_scratch(dsn) == []
    finally:
        sd.alter_role(dsn, owner, "RESET idle_session_timeout")
    assert first.complete and second.complete and not sd.made_ahead(second), second.summary
    said = [r.getMessage() for r in caplog.records if "idle_session_timeout" in r.getMessage()]
    assert len(said) == 1 and "2s" in said[0], said


def test_a_ready_database_lost_once_is_made_again(dsn, pool):
    """An owner session ended once (a restart, a reaper): that ready database is a leftover, the next one is made."""
    owner = sd.owner(dsn)
    sd.run(owner)
    ready = sd.ready_one(dsn)
    with psycopg.connect(dsn, autocommit=True) as c:
        c.execute("SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE application_name = %s", (ready,))
    until("the owner session to end", lambda: not _owner_session(dsn, ready))
    second = sd.run(owner)
    assert second.complete and not sd.made_ahead(second), second.scratch.notes
    again = sd.ready_one(dsn)
    assert again != ready
    third = sd.run(owner)
    assert third.complete and sd.made_ahead(third) and third.scratch.name == again, third.scratch.notes


def test_a_preparation_of_an_older_schema_is_not_waited_for(dsn, pool, monkeypatch):
    """The schema changed while the next database was being made: it could not be used, so the dry run does not
    wait for it (with the wait raised to 10 minutes, the dry run ends while that load is still held up)."""
    monkeypatch.setattr(scratch_pool, "WAIT", 600.0)
    owner = sd.owner(dsn, sd.SETUP + BIG)
    sd.run(owner)
    held = _hold_up_the_load(owner, dsn)
    try:
        with psycopg.connect(owner, autocommit=True) as c:
            c.execute("ALTER TABLE t ADD COLUMN c int")
        outcome: list[Any] = []
        runner = threading.Thread(target=lambda: outcome.append(sd.run(owner)), daemon=True)
        runner.start()
        runner.join(120)
        assert not runner.is_alive(), "the dry run waited for a database made ahead of the old schema"
        assert not scratch_pool.settle(0)  # that load is still held up
    finally:
        held.close()
    assert outcome and outcome[0].complete and not sd.made_ahead(outcome[0]), outcome
    assert scratch_pool.settle(60)


def test_a_migration_s_temp_table_under_set_role_replays_in_the_scratch_database(dsn):
    """TEMPORARY on a scratch database stays PUBLIC's (only who may connect could use it): a migration that sets a
    role and makes a temporary table replays there, so its later statements are re-observed."""
    owner = sd.owner(dsn)
    user = conninfo_to_dict(owner)["user"]
    app = f"app_{user}"
    with psycopg.connect(dsn, autocommit=True) as c:
        c.execute(f"CREATE ROLE {app} NOLOGIN")
        c.execute(f"GRANT {app} TO {user}")
    with psycopg.connect(owner, autocommit=True) as c:
        c.execute(f"GRANT CREATE, USAGE ON SCHEMA public TO {app}")
        c.execute(f"ALTER TABLE t OWNER TO {app}")
    result = sd.run(owner, f"""SET ROLE {app};
CREATE TEMP TABLE tmp_ids AS SELECT id FROM t WHERE a > 10;
ALTER TABLE t ADD COLUMN u int;
UPDATE t SET u = 1 WHERE id IN (SELECT id FROM tmp_ids);
CREATE INDEX CONCURRENTLY t_u_idx ON t (u);
""")
    assert result.complete, (result.summary, result.scratch.notes)
    assert not any("temporary" in n for n in result.scratch.notes), result.scratch.notes


def _owner_session(dsn: str, name: str) -> bool:
    with psycopg.connect(dsn, autocommit=True) as c:
        return c.execute("SELECT 1 FROM pg_stat_activity WHERE application_name = %s", (name,)).fetchone() is not None


def test_a_change_of_the_login_s_privileges_discards_the_ready_database(dsn, pool):
    """The copy's extension set depends on what the login could create when it was made: pageinspect is left out
    of a copy made by a non-superuser; once the login is a superuser the next dry run uses a copy that has it."""
    with psycopg.connect(dsn, autocommit=True) as c:
        available = c.execute("SELECT 1 FROM pg_available_extensions WHERE name = 'pageinspect'").fetchone()
        need(available is not None, "the pageinspect extension is not installed")
        c.execute("CREATE EXTENSION pageinspect")
    owner = sd.owner(dsn)
    migration = ("ALTER TABLE t ADD COLUMN u int DEFAULT 0;\n"
                 "CREATE TABLE pi AS SELECT lower FROM page_header(get_raw_page('t', 0));\n"
                 "CREATE INDEX t_a_idx ON t (a);\n")
    first = sd.run(owner, migration)
    assert any("pageinspect not copied" in n for n in first.scratch.notes), first.scratch.notes
    made = sd.ready_one(dsn)
    sd.alter_role(dsn, owner, "SUPERUSER")
    second = sd.run(owner, migration)
    assert not sd.made_ahead(second) and second.scratch.name != made, second.scratch.notes
    assert not any("pageinspect not copied" in n for n in second.scratch.notes), second.scratch.notes
    assert made not in list_scratch(dsn)
    assert scratch_pool.settle(60) and len(list_scratch(dsn)) == 1
    sd.alter_role(dsn, owner, "NOSUPERUSER NOCREATEDB")  # it may no longer make scratch databases: nor use one made
    third = sd.run(owner, migration)
    assert not sd.made_ahead(third)


SCRIPT = sd.POOLED_PROCESS + """
print("preparing" if not scratch_pool.settle(0) else "done", flush=True)
sys.stdin.readline()
"""
BIG = "".join(f"CREATE TABLE big{i} (id int PRIMARY KEY, b int REFERENCES t (id));" for i in range(300))


def _hold_up_the_load(owner: str, dsn: str) -> psycopg.Connection[Any]:
    """A session of the owner login in the database being made ahead, holding a lock on ``t`` as soon as the load
    has created it: the load then waits at its foreign keys (the dump sets lock_timeout = 0) — a long load."""
    name = until("the database made ahead to be created", lambda: list_scratch(dsn) and list_scratch(dsn)[0])
    conn = until("a session in it", lambda: _connect(make_conninfo(owner, dbname=name)))
    while True:
        try:
            conn.execute("BEGIN")
            conn.execute("LOCK TABLE public.t IN ACCESS EXCLUSIVE MODE")
            break
        except psycopg.errors.UndefinedTable:
            conn.execute("ROLLBACK")
            time.sleep(0.005)
    loaded = conn.execute("SELECT count(*) FROM pg_constraint WHERE contype = 'f'").fetchone()
    assert loaded == (0,), "the load was done before it could be held up"
    return conn


def _connect(dsn: str) -> psycopg.Connection[Any] | None:
    try:
        return psycopg.connect(dsn, autocommit=True)
    except psycopg.OperationalError:
        return None


def test_sigterm_does_not_wait_for_a_long_preparation(dsn, tmp_path: Path):
    """SIGTERM while the database made ahead is loading (``docker stop`` SIGKILLs after 10 s): it is dropped at
    once, which ends the load, instead of being waited for; nothing is left behind."""
    owner = sd.owner(dsn, sd.SETUP + BIG)
    script = tmp_path / "serve_like.py"
    script.write_text(SCRIPT)
    proc = subprocess.Popen([sys.executable, str(script), owner, sd.MIGRATION], stdin=subprocess.PIPE,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            cwd=os.path.dirname(os.path.dirname(__file__)))
    held = None
    try:
        assert proc.stdout is not None and proc.stdout.readline() == b"preparing\n", proc.communicate()
        held = _hold_up_the_load(owner, dsn)
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            pytest.fail("still running 10 s after SIGTERM: it waited for the load")
    finally:
        if proc.poll() is None:
            proc.kill()
        if held is not None:
            held.close()
    assert proc.returncode == -signal.SIGTERM, proc.communicate()
    assert list_scratch(dsn) == []
