"""A dry run stopped (SIGTERM, Ctrl-C) while its scratch database is still being made ends without waiting for it
and leaves nothing: no scratch database, no session.

Real ``agent19 dry-run`` processes, real signals. The test holds the work at the moment it interrupts it, so the
moment is certain and the work would never end by itself:

* the owner session's ``CREATE DATABASE … TEMPLATE template0`` waits for template0's lock, held by a transaction
  renaming it (r24b D3: the signal cleanup dropped nothing, the process ended, the CREATE committed after it);
* the schema load (psql) waits for a transaction of the login's own in the scratch database that creates, not yet
  committed, the schema the load creates first (r24b D4: Ctrl-C waited for the whole load to end);
* the schema's pg_dump waits for a table's lock (Ctrl-C waited for it: it is stopped, agent19.children.stop_owned).
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time

import psycopg
import pytest
from psycopg.conninfo import conninfo_to_dict, make_conninfo

from agent19.migrate.dryrun.scratch import list_scratch
from tests.conftest import as_at_a_terminal, owner_login, run_sql, until

MIGRATION = "CREATE INDEX CONCURRENTLY t_b ON held.t (b);\n"  # run in a scratch database: one is made
SIGNALS = [signal.SIGTERM, signal.SIGINT]
OWNER_CREATING = r"""SELECT 1 FROM pg_stat_activity WHERE usename = %s AND application_name LIKE 'agent19\_scratch\_%%'
 AND query LIKE 'CREATE DATABASE%%' AND wait_event_type = 'Lock'"""


@pytest.fixture
def app(dsn: str) -> str:
    """The application's login (not a superuser, CREATEDB) owning the target, with a table in schema ``held``."""
    login = owner_login(dsn, "intr")
    run_sql(dsn, f"ALTER ROLE {conninfo_to_dict(login)['user']} CREATEDB")
    run_sql(login, "CREATE SCHEMA held; CREATE TABLE held.t (id int PRIMARY KEY, b int)")
    return login


def _start(app: str, tmp_path) -> subprocess.Popen[bytes]:
    path = tmp_path / "0001_index.sql"
    path.write_text(MIGRATION)
    return subprocess.Popen(  # a session of its own: Ctrl-C reaches its process group, as from a terminal
        [sys.executable, "-m", "agent19", "dry-run", str(path), "--dsn", app, "--mode", "dry-run",
         "--scratch-copy", "schema"],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, start_new_session=True, preexec_fn=as_at_a_terminal,
        cwd=os.path.dirname(os.path.dirname(__file__)))


def _found(dsn: str, query: str, *args: object) -> object:
    with psycopg.connect(dsn, autocommit=True) as conn:
        return conn.execute(query, args).fetchone()


def _interrupt(proc: subprocess.Popen[bytes], sig: signal.Signals) -> None:
    """``sig`` as a user sends it (Ctrl-C: to the process group); the process must end by itself."""
    assert proc.poll() is None, proc.communicate()
    if sig == signal.SIGINT:
        os.killpg(proc.pid, sig)
    else:
        proc.send_signal(sig)
    sent = time.monotonic()
    try:
        out, err = proc.communicate(timeout=60)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        out, err = proc.communicate()
        pytest.fail(f"agent19 still ran 60 s after {sig.name}: it waited for its scratch database's creation\n"
                    f"{err.decode()[-2000:]}")
    print(f"{sig.name}: exit {proc.returncode} {time.monotonic() - sent:.2f} s after the signal")
    assert proc.returncode == (130 if sig == signal.SIGINT else -sig), (out + err).decode()[-2000:]


def _nothing_left(dsn: str, app: str, proc: subprocess.Popen[bytes]) -> None:
    """No session of the login is left, then no scratch database of that process (named after its pid)."""
    role = conninfo_to_dict(app)["user"]
    until(f"every session of {role} to end",
          lambda: _found(dsn, "SELECT count(*) = 0 FROM pg_stat_activity WHERE usename = %s", role) == (True,))
    assert [n for n in list_scratch(dsn) if n.startswith(f"agent19_scratch_{proc.pid}_")] == []


def _hold_template0(dsn: str) -> psycopg.Connection:
    """A transaction that renames template0 (roll it back): ``CREATE DATABASE … TEMPLATE template0`` waits for its
    lock until then, and goes on once it ends."""
    conn = psycopg.connect(dsn)
    conn.execute("ALTER DATABASE template0 RENAME TO agent19_test_template0_held")
    return conn


@pytest.mark.parametrize("sig", SIGNALS, ids=lambda s: s.name)
def test_signal_while_the_owner_creates_the_scratch_database(dsn, app, tmp_path, sig):
    template0_held = _hold_template0(dsn)
    proc = _start(app, tmp_path)
    try:
        until("the owner session's CREATE DATABASE, waiting for template0",
              lambda: _found(dsn, OWNER_CREATING, conninfo_to_dict(app)["user"]) or proc.poll() is not None)
        _interrupt(proc, sig)
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
        template0_held.close()  # rolled back: a CREATE DATABASE still waiting (its process gone) would now commit
    _nothing_left(dsn, app, proc)


@pytest.mark.parametrize("sig", SIGNALS, ids=lambda s: s.name)
def test_signal_during_the_schema_load(dsn, app, tmp_path, sig):
    role = conninfo_to_dict(app)["user"]
    dump_waits = psycopg.connect(dsn)  # pg_dump waits behind it: the test takes the load's schema before the load
    dump_waits.execute("LOCK TABLE held.t IN ACCESS EXCLUSIVE MODE")
    proc = _start(app, tmp_path)
    blocker = template0_held = None
    try:
        name = until("the scratch database, open to its owner", lambda: proc.poll() is not None or _found(
            dsn, r"SELECT datname FROM pg_database WHERE datname LIKE 'agent19\_scratch\_%%' AND datallowconn"))
        assert proc.poll() is None, proc.communicate()
        # the login's own session (the dry run's drop may end it): the load's CREATE SCHEMA held waits for this one
        blocker = psycopg.connect(make_conninfo(app, dbname=name[0]))
        blocker.execute("CREATE SCHEMA held")
        dump_waits.rollback()
        until("the schema load, waiting", lambda: proc.poll() is not None or _found(
            dsn, "SELECT 1 FROM pg_stat_activity WHERE datname = %s AND usename = %s"
            " AND query LIKE 'CREATE SCHEMA held%%' AND wait_event_type = 'Lock'", name[0], role))
        # a database made again (the load failed: its psql was stopped) waits, and would be made after the exit
        template0_held = _hold_template0(dsn)
        _interrupt(proc, sig)
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
        for conn in (dump_waits, blocker, template0_held):
            if conn is not None:
                conn.close()
    _nothing_left(dsn, app, proc)


def test_ctrl_c_while_its_pg_dump_waits(dsn, app, tmp_path):
    """The schema's pg_dump waits for a lock (held here): Ctrl-C stops it, not waits for it."""
    role = conninfo_to_dict(app)["user"]
    dump_waits = psycopg.connect(dsn)
    dump_waits.execute("LOCK TABLE held.t IN ACCESS EXCLUSIVE MODE")
    proc = _start(app, tmp_path)
    try:
        until("pg_dump, waiting for the table", lambda: proc.poll() is not None or _found(
            dsn, "SELECT 1 FROM pg_stat_activity WHERE usename = %s AND application_name = 'pg_dump'"
            " AND wait_event_type = 'Lock'", role))
        _interrupt(proc, signal.SIGINT)
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
        dump_waits.close()
    _nothing_left(dsn, app, proc)
