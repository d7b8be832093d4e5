"""A hostile review of cdc run: values whose text is not what the plugins put in their JSON.

Streamed changes (not the initial copy) corrupted three kinds of value: a json or jsonb column arrived as a JSON
*string* of its text (`"{\\"a\\": 1}"`), with either plugin; a bytea from wal2json became the bytes of its hex
digits (`\\x00ff` → `\\x30306666`); and a table without a primary key whose identity has a json column could not
be updated or deleted at all (json has no equality operator). Run through the CLI, for both plugins, with the
destination owned by a non-superuser login: after inserts, updates and deletes every row equals the source's,
compared as text.
"""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Iterator

import psycopg
import pytest

from tests.conftest import _fresh_database, owner_login

TABLES = """
CREATE TABLE keyed (id int PRIMARY KEY, j json, jb jsonb, b bytea, note text);
CREATE TABLE loose (j json, b bytea, n int);
ALTER TABLE loose REPLICA IDENTITY FULL;
"""
ROWS = """
INSERT INTO keyed VALUES (1, '{"q": 1,  "q": 2}', '{"k": [1, "x"]}', '\\x00ff', 'a'),
                         (2, '"just a string"', 'null', '\\x', 'b');
INSERT INTO loose VALUES ('{"a": "\\u0000"}', '\\xdeadbeef', 1), ('[1, 2]', '\\x01', 2);
"""
CHANGES = """
INSERT INTO keyed VALUES (3, '[{"nested": {"deep": true}}]', '{"s": "it''s"}', '\\xcafe', 'c');
UPDATE keyed SET note = 'changed' WHERE id = 1;
UPDATE keyed SET j = '{"new":   1}', b = '\\xbeef' WHERE id = 2;
INSERT INTO loose VALUES ('{"k": 3}', '\\xff00', 3);
UPDATE loose SET n = 20 WHERE n = 2;
DELETE FROM loose WHERE n = 1;
"""


@pytest.fixture
def warehouse(pg) -> Iterator[str]:
    yield from _fresh_database(pg)


def _cdc(source: str, warehouse: str, *args: str) -> None:
    env = {**os.environ, "DATABASE_URL": source, "WAREHOUSE_URL": warehouse}
    done = subprocess.run([sys.executable, "-m", "agent19", "cdc", "run", "public.keyed", "public.loose",
                           "--destination", "env:WAREHOUSE_URL", "--mode", "execute", *args],
                          capture_output=True, text=True, env=env, timeout=120)
    assert done.returncode == 0, done.stderr + done.stdout


def _rows(dsn: str) -> list:
    with psycopg.connect(dsn) as conn:
        return [conn.execute(f"SELECT t::text FROM {t} t ORDER BY t::text").fetchall() for t in ("keyed", "loose")]


@pytest.mark.parametrize("plugin", ["wal2json", "pgoutput"])
def test_json_and_bytea_changes_arrive_as_they_are_at_the_source(dsn, warehouse, plugin):
    dest = owner_login(warehouse)
    with psycopg.connect(dest, autocommit=True) as conn:
        conn.execute(TABLES)
    with psycopg.connect(dsn, autocommit=True) as conn:
        conn.execute(TABLES)
        conn.execute(ROWS)
        conn.execute("CREATE PUBLICATION agent19_cdc FOR TABLE keyed, loose")
    slot = f"agent19_types_{plugin}"
    try:
        _cdc(dsn, dest, "--plugin", plugin, "--slot", slot)  # the initial copy
        with psycopg.connect(dsn, autocommit=True) as conn:
            conn.execute("SET synchronous_commit = on")
            conn.execute(CHANGES)
        _cdc(dsn, dest, "--plugin", plugin, "--slot", slot)  # the streamed changes
        source, copied = _rows(dsn), _rows(dest)
        assert copied == source
        assert copied[0][0] == ('(1,"{""q"": 1,  ""q"": 2}","{""k"": [1, ""x""]}","\\\\x00ff",changed)',)
        assert len(copied[1]) == 2
    finally:
        _cdc(dsn, dest, "--plugin", plugin, "--slot", slot, "--teardown")
