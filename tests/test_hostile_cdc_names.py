"""Hostile names in the SQL `cdc check` and `cdc debezium` hand out: mixed case, a space, a double and a single
quote, a reserved word, in table, schema and login names. Every fix parses (pglast, the server's grammar) and
runs on the server, after which the check passes; Debezium's setup SQL applies with psql; a cdc run captures
those tables too."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pglast
import psycopg
import pytest
from psycopg import sql
from psycopg.conninfo import make_conninfo

from agent19.etl.cdc_check import check_cdc
from tests.conftest import _fresh_database
from tests.reader_login import psql
from tests.test_etl_cdc import _db, _write

ROOT = Path(__file__).parent.parent
TABLES = [("My Schema", "Order Items"), ("public", 'it\'s "q"'), ("public", "select"), ("public", "MixedCase")]
NAMES = [f"{s}.{t}" for s, t in TABLES]  # as a user names them: schema.table, no quoting
LOGIN = 'Odd "Login" it\'s'
PUBLICATION = 'Pub "x"'


def _create(conn: psycopg.Connection) -> None:
    conn.execute(sql.SQL("CREATE SCHEMA IF NOT EXISTS {}").format(sql.Identifier("My Schema")))
    for s, t in TABLES:  # no primary key: REPLICA IDENTITY FULL is needed
        conn.execute(sql.SQL("CREATE TABLE {} (a int, b text)").format(sql.Identifier(s, t)))


@pytest.fixture
def source(dsn) -> Iterator[str]:
    with psycopg.connect(dsn, autocommit=True) as conn:
        _create(conn)
        conn.execute(sql.SQL("CREATE ROLE {} LOGIN").format(sql.Identifier(LOGIN)))
        conn.execute(sql.SQL("GRANT USAGE ON SCHEMA {} TO {}").format(sql.Identifier("My Schema"),
                                                                       sql.Identifier(LOGIN)))
        for s, t in TABLES:
            conn.execute(sql.SQL("GRANT SELECT ON {} TO {}").format(sql.Identifier(s, t), sql.Identifier(LOGIN)))
    yield dsn
    with psycopg.connect(dsn, autocommit=True) as conn:
        for (slot,) in conn.execute("SELECT slot_name FROM pg_replication_slots WHERE database = current_database()"
                                    ).fetchall():
            conn.execute("SELECT pg_drop_replication_slot(%s)", (slot,))
        conn.execute(sql.SQL("DROP OWNED BY {}").format(sql.Identifier(LOGIN)))
        conn.execute(sql.SQL("DROP ROLE {}").format(sql.Identifier(LOGIN)))


def _fix_runs(dsn: str, fix: str) -> None:
    statement = fix.split("--")[0].strip() if fix.startswith(("ALTER", "CREATE", "SELECT")) else fix
    assert len(pglast.parse_sql(statement)) == 1, statement  # one statement, the server's grammar
    with psycopg.connect(dsn, autocommit=True) as conn:
        conn.execute(statement)


def test_every_fix_of_cdc_check_parses_and_runs_with_hostile_names(source):
    as_login = make_conninfo(source, user=LOGIN)
    report = check_cdc(_db(as_login), NAMES, PUBLICATION)
    found = {f.check: f for f in report.findings}
    assert all(f.check != "table" for f in report.findings), report.findings  # each hostile name was found
    identity = [f for f in report.findings if f.check == "replica_identity"]
    assert len(identity) == 4 and all(f.status == "error" for f in identity)
    assert found["replication_privilege"].status == "error"
    for f in [*identity, found["replication_privilege"], found["publication"]]:
        _fix_runs(source, f.fix)
    again = check_cdc(_db(as_login), NAMES, PUBLICATION)
    bad = [f for f in again.findings if f.status != "ok" and f.check != "max_slot_wal_keep_size"]
    assert again.ready and not bad, bad
    with psycopg.connect(source) as conn:
        published = conn.execute("SELECT count(*) FROM pg_publication_tables WHERE pubname = %s",
                                 (PUBLICATION,)).fetchone()[0]
    assert published == 4


def test_debezium_setup_sql_applies_with_psql_with_hostile_names(source, tmp_path):
    env = {**os.environ, "DATABASE_URL": make_conninfo(source, user=LOGIN)}
    out = subprocess.run([sys.executable, "-m", "agent19", "cdc", "debezium", *NAMES, "--write-to", str(tmp_path),
                          "--format", "json"], cwd=ROOT, env=env, capture_output=True, text=True, timeout=120)
    assert out.returncode == 1, out.stderr  # not ready: no replica identity yet, no REPLICATION
    setup = (tmp_path / "setup.sql").read_text()
    assert json.loads(out.stdout)["setup_sql"] == setup
    assert len(pglast.parse_sql(setup)) == 3 + 4  # schema, heartbeat table, publication, 4 REPLICA IDENTITY FULL
    grants = "\n".join(line.removeprefix("-- ") for line in setup.splitlines() if line.startswith("-- GRANT")
                       or line.startswith("-- ALTER ROLE"))
    assert len(pglast.parse_sql(grants)) == 3, grants
    applied = subprocess.run([psql(), "-X", "-q", "-v", "ON_ERROR_STOP=1", "-d", source, "-f",
                              str(tmp_path / "setup.sql"), "-c", grants], capture_output=True, text=True, timeout=60)
    assert applied.returncode == 0, applied.stderr
    with psycopg.connect(source) as conn:
        published = {r for r in conn.execute("SELECT schemaname, tablename FROM pg_publication_tables "
                                             "WHERE pubname = 'agent19_cdc'")}
    assert published == {*TABLES, ("agent19_etl", "debezium_heartbeat")}
    ready = subprocess.run([sys.executable, "-m", "agent19", "cdc", "debezium", *NAMES, "--format", "json"],
                           cwd=ROOT, env=env, capture_output=True, text=True, timeout=120)
    assert ready.returncode == 0 and json.loads(ready.stdout)["readiness"]["ready"], ready.stdout


@pytest.fixture
def warehouse(pg) -> Iterator[str]:
    yield from _fresh_database(pg)


def test_cdc_run_captures_tables_with_hostile_names(source, warehouse):
    from agent19.etl.cdc import run_cdc

    with psycopg.connect(warehouse, autocommit=True) as conn:
        _create(conn)
    with psycopg.connect(source, autocommit=True) as conn:
        for s, t in TABLES:
            conn.execute(sql.SQL("ALTER TABLE {} REPLICA IDENTITY FULL").format(sql.Identifier(s, t)))
            conn.execute(sql.SQL("INSERT INTO {} VALUES (1, 'a'), (2, NULL)").format(sql.Identifier(s, t)))

    def run() -> object:
        with psycopg.connect(warehouse, autocommit=True, row_factory=psycopg.rows.dict_row) as conn:
            return run_cdc(_db(source), conn, slot="agent19_names", tables=NAMES)

    assert set(run().initial_copy.values()) == {2}
    for s, t in TABLES:
        name = sql.Identifier(s, t).as_string(None)
        _write(source, f"INSERT INTO {name} VALUES (3, 'c')", f"UPDATE {name} SET b = 'z' WHERE a = 1",
               f"DELETE FROM {name} WHERE a = 2")
    second = run()
    assert (second.inserts, second.updates, second.deletes) == (4, 4, 4)
    with psycopg.connect(source) as a, psycopg.connect(warehouse) as b:
        for s, t in TABLES:
            q = sql.SQL("SELECT a, b FROM {} ORDER BY a").format(sql.Identifier(s, t))
            assert a.execute(q).fetchall() == b.execute(q).fetchall() == [(1, "z"), (3, "c")]
    with psycopg.connect(warehouse, autocommit=True, row_factory=psycopg.rows.dict_row) as conn:
        run_cdc(_db(source), conn, slot="agent19_names", tables=NAMES, teardown=True)
