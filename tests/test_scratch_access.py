"""Who can reach a scratch database, and its drop by a non-superuser (agent19.migrate.dryrun.scratch): only its
owner login (and superusers) connect to it, whichever way it was made, so another login cannot hold a snapshot
there that makes CREATE INDEX CONCURRENTLY wait; an autovacuum worker in a fresh copy does not make the drop fail."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from typing import Any

import psycopg
import pytest
from psycopg.conninfo import conninfo_to_dict, make_conninfo

from agent19.db.connection import Database
from agent19.migrate.dryrun import scratch_pool
from agent19.migrate.dryrun.run import dry_run
from agent19.migrate.dryrun.scratch import list_scratch, scratch_database
from agent19.migrate.parse import parse_sql
from tests import scratch_dryruns as sd
from tests.conftest import _fresh_database, need, session_settings
from tools.throwaway import start_pgserver, start_system, system_versions

SETUP = """
CREATE TABLE t (id int PRIMARY KEY, a int NOT NULL, b int);
INSERT INTO t SELECT g, g, g FROM generate_series(1, 1000) g;
"""
CONCURRENTLY = "CREATE INDEX CONCURRENTLY t_b_idx ON t (b);\n"


def _owner(dsn: str, setup: str = SETUP) -> str:
    return sd.owner(dsn, setup)


def _other_login(dsn: str, owner: str) -> str:
    """A login with no privilege but LOGIN (any co-tenant of the server)."""
    name = f"other_{conninfo_to_dict(owner)['user']}"
    with psycopg.connect(dsn, autocommit=True) as c:
        c.execute(f"CREATE ROLE {name} LOGIN")
    return make_conninfo(owner, user=name)


def _db(dsn: str, **settings: Any) -> Database:
    return Database(session_settings(dsn=dsn, mode="dry-run", **settings))


@pytest.mark.parametrize("copy", ["template", "schema", "empty"])
def test_only_its_owner_connects_to_a_scratch_database(dsn, copy):
    owner = _owner(dsn)
    other = _other_login(dsn, owner)
    db = _db(owner)
    try:
        with scratch_database(db, copy=copy) as scratch:  # type: ignore[arg-type]
            assert scratch.strategy == ("schema_copy" if copy == "schema" else copy), scratch.notes
            with pytest.raises(psycopg.OperationalError, match="CONNECT privilege"):
                psycopg.connect(make_conninfo(other, dbname=scratch.name)).close()
            with psycopg.connect(scratch.dsn) as mine:  # its owner does, as does the superuser
                assert mine.execute("SELECT current_database()").fetchone() == (scratch.name,)
            with psycopg.connect(make_conninfo(dsn, dbname=scratch.name)) as su:
                assert su.execute("SELECT 1").fetchone() == (1,)
    finally:
        db.close()
    assert list_scratch(dsn) == []


def test_another_login_cannot_hold_up_a_dry_run_in_its_scratch_database(dsn):
    """A login that connects to every scratch database as soon as it appears and holds a snapshot there made
    CREATE INDEX CONCURRENTLY wait (lock/statement timeout), and a non-superuser's drop could not end it."""
    owner = _owner(dsn)
    other = _other_login(dsn, owner)
    stop, held, seen = threading.Event(), [], set()

    def intrude() -> None:
        with psycopg.connect(make_conninfo(other, dbname="postgres"), autocommit=True) as c:
            while not stop.is_set():
                for (name,) in c.execute(r"SELECT datname FROM pg_database WHERE datname LIKE 'agent19\_scratch\_%'"
                                         ).fetchall():
                    if name in seen:
                        continue
                    seen.add(name)
                    try:
                        m = psycopg.connect(make_conninfo(other, dbname=name))
                        m.execute("BEGIN ISOLATION LEVEL REPEATABLE READ")
                        m.execute("SELECT 1")
                        held.append(m)
                    except psycopg.Error:
                        pass
                time.sleep(0.005)

    scratch_pool.enable()  # the database made ahead waits idle between dry runs: the easiest one to reach
    intruder = threading.Thread(target=intrude)
    intruder.start()
    db = _db(owner, statement_timeout_ms=4000)
    try:
        results = [dry_run(db, parse_sql(CONCURRENTLY), scratch_copy="schema") for _ in range(3)]
        assert scratch_pool.settle(60)
    finally:
        stop.set()
        intruder.join()
        for m in held:
            m.close()
        db.close()
        scratch_pool.close()
    assert seen and not held  # it saw them all, and got into none
    for r in results:
        assert r.passed and r.complete and r.scratch.dropped, r.summary
        assert r.statements[0].error is None, r.statements[0]
    assert list_scratch(dsn) == []


def _autovacuum_in(dsn: str, name: str, wait: float) -> bool:
    deadline = time.monotonic() + wait
    with psycopg.connect(dsn, autocommit=True) as c:
        while time.monotonic() < deadline:
            if c.execute("SELECT 1 FROM pg_stat_activity WHERE datname = %s AND backend_type = 'autovacuum worker'",
                         (name,)).fetchone():
                return True
            time.sleep(0.02)
    return False


@pytest.fixture(params=["system", "pgserver"])
def busy_autovacuum(request: pytest.FixtureRequest) -> Iterator[str]:
    """A fresh database on a server of its own whose autovacuum visits every database each second: the system's
    PostgreSQL and pgserver's (another major version: 16 reworded the refusal to end another role's process)."""
    if request.param == "system":
        need(bool(system_versions()), "no system PostgreSQL binaries")
        server = start_system(settings={"autovacuum_naptime": "1s"})
    else:
        server = start_pgserver()
        with psycopg.connect(server.dsn, autocommit=True) as c:
            c.execute("ALTER SYSTEM SET autovacuum_naptime = '1s'")
            c.execute("SELECT pg_reload_conf()")
    try:
        yield from _fresh_database(server)
    finally:
        server.stop()


def test_a_non_superuser_drops_it_while_autovacuum_works_there(busy_autovacuum):
    """New catalog rows (many tables) start an autovacuum worker in the fresh database; a non-superuser's
    DROP … WITH (FORCE) cannot end it ("must be a member of the role whose process is being terminated"): the
    drop is retried until the worker is done."""
    dsn = busy_autovacuum
    owner = _owner(dsn, setup="")
    db = _db(owner)
    busy = 0
    try:
        for _ in range(5):
            with scratch_database(db, copy="empty") as scratch:
                with psycopg.connect(scratch.dsn, autocommit=True) as c:
                    c.execute("".join(f"CREATE TABLE big{j} (id int PRIMARY KEY, a text);" for j in range(200)))
                busy += _autovacuum_in(dsn, scratch.name, 10)
            assert scratch.name not in list_scratch(dsn)
    finally:
        db.close()
    assert busy >= 3, f"an autovacuum worker was seen in {busy} of 5 fresh scratch databases: too few to test"
    assert list_scratch(dsn) == []


def test_a_drop_refused_for_good_is_not_retried(dsn, caplog):
    """Only the autovacuum worker's refusal ("must be a member of the role whose process is being terminated")
    is waited out; a superuser's session in a non-superuser's scratch database ("must be a superuser to terminate
    superuser process") is said at once, not after seconds of retries."""
    owner = _owner(dsn, "")
    db = _db(owner)
    su: psycopg.Connection[Any] | None = None
    try:
        with caplog.at_level("DEBUG", logger="agent19.migrate.dryrun.scratch"):
            with pytest.raises(psycopg.errors.InsufficientPrivilege, match="(?i)superuser"):
                with scratch_database(db, copy="empty") as scratch:
                    su = psycopg.connect(make_conninfo(dsn, dbname=scratch.name), autocommit=True)
        assert not [r for r in caplog.records if "dropping again" in r.getMessage()]
    finally:
        db.close()
        if su is not None:
            su.close()
        with psycopg.connect(dsn, autocommit=True) as c:
            for name in list_scratch(dsn):
                c.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
