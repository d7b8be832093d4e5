"""What the scratch-database dry-run tests share: a table whose migration needs a schema-only scratch database
(statements 2 and 3 take locks statement 1 already holds: re-observed there), an owner login that may create
databases, a dry run as the library runs it, and what the scratch pool (agent19.migrate.dryrun.scratch_pool) shows."""

from __future__ import annotations

from typing import Any

import psycopg
from psycopg.conninfo import conninfo_to_dict

from agent19.db.connection import Database
from agent19.migrate.dryrun import scratch_pool
from agent19.migrate.dryrun.run import dry_run
from agent19.migrate.dryrun.scratch import list_scratch
from agent19.migrate.parse import parse_sql
from tests.conftest import owner_login, session_settings

SETUP = """
CREATE TABLE t (id int PRIMARY KEY, a int NOT NULL, b int);
INSERT INTO t SELECT g, g, g FROM generate_series(1, 1000) g;
ALTER TABLE t ADD CONSTRAINT t_a_nonneg CHECK (a >= 0) NOT VALID;
"""
MIGRATION = """ALTER TABLE t ADD COLUMN u int DEFAULT 0;
CREATE INDEX t_a_idx ON t (a);
ALTER TABLE t VALIDATE CONSTRAINT t_a_nonneg;
"""


def alter_role(dsn: str, login: str, change: str) -> None:
    """``ALTER ROLE <login's user> <change>``, as the superuser of ``dsn``."""
    with psycopg.connect(dsn, autocommit=True) as c:
        c.execute(f"ALTER ROLE {conninfo_to_dict(login)['user']} {change}")


def owner(dsn: str, setup: str = SETUP) -> str:
    """A new login (CREATEDB) that owns the tables of ``setup``."""
    login = owner_login(dsn)
    alter_role(dsn, login, "CREATEDB")
    with psycopg.connect(login, autocommit=True) as c:
        if setup:
            c.execute(setup)
        # the application's role as users run agent19: never a superuser (a test that passed as one proves nothing)
        assert c.execute("SELECT rolsuper FROM pg_roles WHERE rolname = current_user").fetchone() == (False,)
    return login


def run(dsn: str, sql: str = MIGRATION, **settings: Any) -> Any:
    """A dry run of ``sql`` on ``dsn`` (dry-run mode, ``settings`` on top), its Database closed after."""
    db = Database(session_settings(dsn=dsn, mode="dry-run", **settings))
    try:
        return dry_run(db, parse_sql(sql))
    finally:
        db.close()


def made_ahead(result: Any) -> bool:
    """The dry run used a scratch database the pool made ahead."""
    return result.scratch is not None and scratch_pool.MADE_AHEAD in result.scratch.notes


def ready_one(dsn: str) -> str:
    """After the pool's background work: the one scratch database on the server, made ahead."""
    assert scratch_pool.settle(60)
    names = list_scratch(dsn)
    assert len(names) == 1, names
    return names[0]


POOLED_PROCESS = """
import os, sys, time
from agent19.config import Settings
from agent19.db.connection import Database
from agent19.migrate.dryrun import scratch, scratch_pool
from agent19.migrate.dryrun.run import dry_run
from agent19.migrate.parse import parse_sql
scratch.install_signal_handlers()
scratch_pool.enable()
db = Database(Settings.load(env={"AGENT19_DATA_DIR": os.environ["AGENT19_DATA_DIR"]}, dsn=sys.argv[1],
                            mode="dry-run"))  # the test session's data directory
assert dry_run(db, parse_sql(sys.argv[2])).passed
db.close()
"""
"""A process as ``agent19 serve`` keeps the pool (signal handlers, the pool on) after one dry run of ``argv[2]`` on
``argv[1]``: a test's script goes on from there."""
