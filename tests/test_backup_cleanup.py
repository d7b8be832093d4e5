"""Nothing is left behind: SIGTERM cleans up at once; after a SIGKILL the next run does.

The verification runs as a real ``agent19 backup verify`` process; the test kills it while its
scratch database or its throwaway server exists, and looks at the server and the disk.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import psycopg
import pytest
from psycopg.conninfo import conninfo_to_dict

from agent19.migrate.dryrun.scratch import list_scratch
from tests.conftest import as_at_a_terminal, owner_login, run_sql


@pytest.fixture
def big(dsn: str) -> str:
    """Enough rows that the comparison takes a moment (the window in which the test kills the run)."""
    run_sql(dsn, "CREATE TABLE big (id int PRIMARY KEY, pad text);"
                 "INSERT INTO big SELECT g, repeat('x', 200) FROM generate_series(1, 300000) g")
    return dsn


def _start(dsn: str, *args: str) -> subprocess.Popen[bytes]:
    return subprocess.Popen([sys.executable, "-m", "agent19", "backup", "verify", "--dsn", dsn, *args],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, preexec_fn=as_at_a_terminal)


def _wait_for(condition: Callable[[], object], proc: subprocess.Popen[bytes], timeout: float = 60) -> object:
    deadline = time.monotonic() + timeout
    while True:
        found = condition()
        if found:
            return found
        if proc.poll() is not None:
            out, err = proc.communicate()
            pytest.fail(f"the verification ended before the test could interrupt it:\n{out.decode()}{err.decode()}")
        assert time.monotonic() < deadline
        time.sleep(0.02)


def _running_postmaster(base: Path) -> int | None:
    for pidfile in base.glob("agent19-backup-*/**/postmaster.pid"):
        try:
            pid = int(pidfile.read_text().splitlines()[0])
            os.kill(pid, 0)
            return pid
        except (OSError, ValueError, IndexError):
            continue
    return None


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return Path(f"/proc/{pid}").exists() and "Z" not in Path(f"/proc/{pid}/stat").read_text().split()[2]


def test_sigkill_mid_logical_verify_then_rerun_leaves_nothing(pg, big, public_tmp):
    # a scratch-database restore runs as the login: the application's role (a superuser's is refused)
    app = owner_login(big, "cleanup")
    role = conninfo_to_dict(app)["user"]
    run_sql(big, f"ALTER TABLE big OWNER TO {role}; ALTER ROLE {role} CREATEDB")
    big = app
    proc = _start(big, "--mode", "dry-run", "--restore-into", "scratch", "--work-dir", str(public_tmp))
    _wait_for(lambda: list_scratch(pg.dsn), proc)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    assert list_scratch(pg.dsn), "the killed run's scratch database is still there"
    assert list(public_tmp.glob("agent19-backup-*")), "and its work directory"
    done = subprocess.run([sys.executable, "-m", "agent19", "backup", "verify", "--dsn", big, "--mode", "dry-run",
                           "--restore-into", "scratch", "--work-dir", str(public_tmp)], capture_output=True, text=True)
    assert done.returncode == 0, done.stdout + done.stderr
    assert list_scratch(pg.dsn) == []
    assert list(public_tmp.glob("agent19-backup-*")) == []


def test_sigkill_mid_physical_verify_then_rerun_stops_the_orphaned_server(pg, big, public_tmp):
    proc = _start(big, "--kind", "physical", "--work-dir", str(public_tmp))
    pid = _wait_for(lambda: _running_postmaster(public_tmp), proc)
    assert isinstance(pid, int)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    assert _alive(pid), "the throwaway server outlives a SIGKILLed agent19"
    done = subprocess.run([sys.executable, "-m", "agent19", "backup", "verify", "--dsn", big, "--kind", "physical",
                           "--work-dir", str(public_tmp)], capture_output=True, text=True)
    assert done.returncode == 0, done.stdout + done.stderr
    deadline = time.monotonic() + 15
    while _alive(pid) and time.monotonic() < deadline:
        time.sleep(0.1)
    assert not _alive(pid), "the next run stopped the orphaned server"
    assert list(public_tmp.glob("agent19-backup-*")) == []


def test_sigterm_mid_verify_cleans_up_at_once(pg, big, public_tmp):
    proc = _start(big, "--kind", "physical", "--work-dir", str(public_tmp))
    pid = _wait_for(lambda: _running_postmaster(public_tmp), proc)
    assert isinstance(pid, int)
    proc.send_signal(signal.SIGTERM)
    proc.wait(timeout=60)
    assert proc.returncode != 0
    assert not _alive(pid)
    assert list(public_tmp.glob("agent19-backup-*")) == []
    with psycopg.connect(pg.dsn, autocommit=True) as conn:   # the source server is untouched and reachable
        assert conn.execute("SELECT 1").fetchone() == (1,)


def _agent19_sessions(admin_dsn: str) -> list[tuple[str, str, str]]:
    with psycopg.connect(admin_dsn, autocommit=True) as conn:
        return conn.execute(
            r"SELECT coalesce(datname, ''), application_name, state FROM pg_stat_activity"
            r" WHERE application_name LIKE 'agent19%' OR datname LIKE 'agent19\_scratch\_%'").fetchall()


@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM])
def test_interrupt_while_pg_dump_streams_stops_at_once_and_leaves_nothing(pg, dsn, public_tmp, sig):
    # F3: the cleanup's DROP DATABASE … WITH (FORCE) waited for pg_dump's backend, blocked writing COPY into a
    # pg_dump that agent19 no longer read: Ctrl-C hung until a second one, leaving the scratch database behind
    # (SIGTERM's handler dropped it the same way, first)
    # the restore's CHECK is slow (made so after the rows are in): pg_dump waits on the pipe into pg_restore for
    # as long as the test needs, its backend on pg_dump; hex pads: its compression leaves megabytes to write
    run_sql(dsn, "CREATE FUNCTION pad_ok(text) RETURNS boolean LANGUAGE plpgsql IMMUTABLE AS 'BEGIN RETURN true; END';"
                 "CREATE TABLE big (id int PRIMARY KEY, pad text CHECK (pad_ok(pad)));"
                 "INSERT INTO big SELECT g, md5(g::text) || md5((-g)::text) || md5((g + 1)::text) || md5((g - 1)::text)"
                 " FROM generate_series(1, 300000) g;"
                 "CREATE OR REPLACE FUNCTION pad_ok(text) RETURNS boolean LANGUAGE plpgsql IMMUTABLE"
                 " AS 'BEGIN PERFORM pg_sleep(0.0002); RETURN true; END'")
    app = owner_login(dsn, "sigint")
    role = conninfo_to_dict(app)["user"]
    run_sql(dsn, f"ALTER TABLE big OWNER TO {role}; ALTER FUNCTION pad_ok(text) OWNER TO {role};"
                 f"ALTER ROLE {role} CREATEDB")
    proc = _start(app, "--mode", "dry-run", "--restore-into", "scratch", "--work-dir", str(public_tmp))
    try:
        _wait_for(lambda: _copying(pg.dsn), proc)
        proc.send_signal(sig)
        try:
            _, err = proc.communicate(timeout=20)  # generous for a loaded machine: the point is that it ends
        except subprocess.TimeoutExpired:
            pytest.fail(f"agent19 backup verify still runs 20 s after {sig.name} while pg_dump was streaming")
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
            with psycopg.connect(pg.dsn, autocommit=True) as conn:  # what the hung run left: not for the next test
                conn.execute("SELECT pg_terminate_backend(pid) FROM pg_stat_activity"
                             " WHERE application_name LIKE 'agent19%' AND pid <> pg_backend_pid()")
    message = err.decode()
    if sig == signal.SIGINT:
        assert proc.returncode == 130, message
        assert "interrupted" in message and "scratch database agent19_scratch_" in message, message
        assert "pg_dump" in message and str(public_tmp) in message, message
    else:
        assert proc.returncode == -signal.SIGTERM, message
    assert list_scratch(pg.dsn) == []
    assert list(public_tmp.glob("agent19-backup-*")) == []
    deadline = time.monotonic() + 10  # a closed session's backend exits a moment later
    while (left := _agent19_sessions(pg.dsn)) and time.monotonic() < deadline:
        time.sleep(0.1)
    assert left == [], "agent19's sessions (its own or pg_dump's) outlived it"


def _copying(admin_dsn: str) -> bool:
    """pg_dump's backend is copying the big table out (the dump is mid-stream) and agent19's own checksum of it is
    not running (the interruption reaches agent19 while it waits for the dump)."""
    with psycopg.connect(admin_dsn, autocommit=True) as conn:
        return conn.execute(
            "SELECT bool_or(query LIKE 'COPY public.big %TO stdout%')"
            " AND NOT bool_or(query LIKE '%hashtextextended%') FROM pg_stat_activity"
            " WHERE application_name = 'agent19 backup verify' AND state = 'active'"
        ).fetchone() == (True,)


def test_sigint_during_initdb_of_the_throwaway_cluster_leaves_no_work_directory(pg, big, public_tmp):
    # initdb killed alone left its bootstrap postgres writing into the directory being removed (F3: restore/ left)
    proc = _start(big, "--restore-into", "cluster", "--work-dir", str(public_tmp))
    _wait_for(lambda: list(public_tmp.glob("agent19-backup-*/restore/base")), proc)
    proc.send_signal(signal.SIGINT)
    try:
        _, err = proc.communicate(timeout=20)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()
        pytest.fail("agent19 backup verify still runs 20 s after SIGINT during initdb")
    assert proc.returncode == 130, err.decode()
    assert "removed work directory" in err.decode(), err.decode()
    assert list(public_tmp.glob("agent19-backup-*")) == []
