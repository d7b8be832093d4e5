"""A hostile review of cdc run: an application login without the REPLICATION attribute.

The first run failed with the server's "connection failed: … must be superuser or replication role to start
walsender" (exit 1), naming nothing to do. It is refused before any slot or copy, with the ALTER ROLE to run.
"""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Iterator

import psycopg
import pytest

from tests.conftest import _fresh_database, owner_login


@pytest.fixture
def warehouse(pg) -> Iterator[str]:
    yield from _fresh_database(pg)


def test_a_login_without_replication_is_told_what_to_grant(dsn, warehouse):
    app = owner_login(dsn)
    with psycopg.connect(app, autocommit=True) as conn:
        conn.execute("CREATE TABLE e (id int PRIMARY KEY, v text); INSERT INTO e VALUES (1, 'x')")
        role = conn.execute("SELECT current_user").fetchone()[0]
    with psycopg.connect(warehouse, autocommit=True) as conn:
        conn.execute("CREATE TABLE e (id int PRIMARY KEY, v text)")
    env = {**os.environ, "DATABASE_URL": app, "WAREHOUSE_URL": warehouse}
    done = subprocess.run([sys.executable, "-m", "agent19", "cdc", "run", "public.e", "--destination",
                           "env:WAREHOUSE_URL", "--mode", "execute"], capture_output=True, text=True, env=env,
                          timeout=120)
    assert done.returncode == 2, done.stderr
    assert f"ALTER ROLE {role} REPLICATION" in done.stderr and "no slot was created" in done.stderr
    with psycopg.connect(dsn) as conn:
        slots = conn.execute("SELECT count(*) FROM pg_replication_slots WHERE database = current_database()")
        assert slots.fetchone() == (0,)
    with psycopg.connect(warehouse) as conn:
        assert conn.execute("SELECT count(*) FROM e").fetchone() == (0,)


def test_a_later_run_after_the_login_lost_replication_is_told_what_to_grant(dsn, warehouse):
    app = owner_login(dsn)
    with psycopg.connect(app, autocommit=True) as conn:
        conn.execute("CREATE TABLE e (id int PRIMARY KEY, v text); INSERT INTO e VALUES (1, 'x')")
        role = conn.execute("SELECT current_user").fetchone()[0]
    with psycopg.connect(warehouse, autocommit=True) as conn:
        conn.execute("CREATE TABLE e (id int PRIMARY KEY, v text)")
    with psycopg.connect(dsn, autocommit=True) as conn:
        conn.execute(f"ALTER ROLE {role} REPLICATION")
    env = {**os.environ, "DATABASE_URL": app, "WAREHOUSE_URL": warehouse}
    args = [sys.executable, "-m", "agent19", "cdc", "run", "public.e", "--destination", "env:WAREHOUSE_URL",
            "--mode", "execute"]
    try:
        first = subprocess.run(args, capture_output=True, text=True, env=env, timeout=120)
        assert first.returncode == 0, first.stderr
        with psycopg.connect(dsn, autocommit=True) as conn:
            conn.execute(f"ALTER ROLE {role} NOREPLICATION")
        later = subprocess.run(args, capture_output=True, text=True, env=env, timeout=120)
        assert later.returncode == 2, later.stderr
        assert f"ALTER ROLE {role} REPLICATION" in later.stderr and "nothing was read or applied" in later.stderr
    finally:
        with psycopg.connect(dsn, autocommit=True) as conn:
            conn.execute("SELECT pg_drop_replication_slot(slot_name) FROM pg_replication_slots "
                         "WHERE database = current_database() AND NOT active")
