"""Lint fixes are SQL a user can run, and they make the same schema as the statement they replace.

Each test runs the flagged statement in one fresh database and the rule's fix in another (on tables with
rows, as the owner of the database — an application role, not a superuser), then compares the two schemas
as ``pg_dump --schema-only`` prints them. The fixes come from the zero-downtime patterns where one exists.
"""

from __future__ import annotations

import re
import subprocess
from collections.abc import Iterator
from contextlib import contextmanager

import psycopg
import pytest

from agent19.db.binaries import pg_binary
from agent19.db.child_env import child_connection
from agent19.db.throwaway import ThrowawayServer
from agent19.migrate.lint.engine import lint_sql
from tests.conftest import _fresh_database, owner_login


@contextmanager
def database(pg: ThrowawayServer, setup: str) -> Iterator[str]:
    """A fresh database owned by a new login role (not a superuser), with ``setup`` run as that role."""
    gen = _fresh_database(pg)
    dsn = next(gen)
    try:
        app = owner_login(dsn)
        with psycopg.connect(app, autocommit=True) as conn:
            conn.execute(setup)  # type: ignore[arg-type]
        yield app
    finally:
        gen.close()


def schema_of(pg: ThrowawayServer, dsn: str) -> str:
    tool = pg_binary("pg_dump", pg.major)
    assert tool, "pg_dump is installed with the server"
    conn, env = child_connection(dsn)
    out = subprocess.run([tool, "--schema-only", "--no-owner", "-d", conn], env=env, check=True,
                         capture_output=True, text=True).stdout
    return "\n".join(line for line in out.splitlines() if not re.match(r"\\(un)?restrict ", line))


def run(dsn: str, sql: str) -> None:
    """Each statement on its own, autocommit (as psql runs a script)."""
    with psycopg.connect(dsn, autocommit=True) as conn:
        conn.execute(sql)  # type: ignore[arg-type]


def fix_of(rule: str, sql: str, pg_version: int = 150000, at: int = -1) -> str:
    fixes = [f.fix for f in lint_sql(sql, pg_version=pg_version).statements[at].findings if f.rule == rule and f.fix]
    assert fixes, f"{rule} gives no fix for {sql!r}"
    return fixes[0]


def assert_same_schema(pg: ThrowawayServer, setup: str, original: str, fixed: str) -> None:
    with database(pg, setup) as a, database(pg, setup) as b:
        run(a, original)
        run(b, fixed)
        assert schema_of(pg, a) == schema_of(pg, b)


# -- A19007: NOT VALID + VALIDATE keeps every sub-command of the statement ---------------------------------

SETUP_7 = """
CREATE TABLE "group" (id bigint PRIMARY KEY);
INSERT INTO "group" SELECT g FROM generate_series(1, 50) g;
CREATE TABLE "order" (id bigint PRIMARY KEY, "user" bigint, "Total" numeric);
INSERT INTO "order" SELECT g, 1 + g % 50, g FROM generate_series(1, 500) g;
"""


@pytest.mark.parametrize("sql", [
    'ALTER TABLE "order" ADD COLUMN y int, ADD CONSTRAINT "y positive" CHECK ("Total" > 0), '
    'ADD CONSTRAINT order_user_fkey FOREIGN KEY ("user") REFERENCES "group" (id);',
    'ALTER TABLE "order" ADD COLUMN "select" text DEFAULT \'x\', ADD FOREIGN KEY ("user") REFERENCES "group";',
    'ALTER TABLE public."order" ADD CONSTRAINT c1 CHECK ("Total" >= 0), ALTER COLUMN "Total" SET DEFAULT 0, '
    'ADD COLUMN z int;',
])
def test_a19007_fix_keeps_every_sub_command_and_makes_the_same_schema(pg: ThrowawayServer, sql: str) -> None:
    fix = fix_of("A19007", sql)
    assert "NOT VALID" in fix and "VALIDATE CONSTRAINT" in fix
    assert_same_schema(pg, SETUP_7, sql, fix)
