"""Scratch databases: dropped always — on success, on error, on SIGTERM; after SIGKILL by the next run."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time

import psycopg
import pytest
from psycopg.rows import dict_row

from agent19.db.catalog import snapshot
from agent19.db.connection import Database
from agent19.migrate.dryrun.run import dry_run
from agent19.migrate.dryrun.schema_diff import diff_snapshots
from agent19.migrate.dryrun.scratch import drop_leftovers, list_scratch, scratch_database
from agent19.migrate.parse import parse_sql
from tests.conftest import session_settings

# slow() sleeps only inside scratch databases: the target's copy of a statement stays fast, the scratch
# database's is slow enough to measure blocking and to kill the process in the middle of it.
SETUP = """
CREATE FUNCTION slow(i int) RETURNS int LANGUAGE plpgsql IMMUTABLE AS $$
BEGIN
  IF current_database() LIKE 'agent19\\_scratch\\_%' THEN PERFORM pg_sleep(0.05); END IF;
  RETURN i;
END $$;
CREATE TABLE t (id bigint PRIMARY KEY, b int);
INSERT INTO t SELECT g, g FROM generate_series(1, 400) g;
ANALYZE t;
"""


def populate(dsn: str) -> None:
    with psycopg.connect(dsn, autocommit=True) as conn:
        conn.execute(SETUP)


def database(dsn: str) -> Database:
    return Database(session_settings(dsn=dsn, mode="dry-run"))


def schema(dsn: str):
    with psycopg.connect(dsn, autocommit=True, row_factory=dict_row) as conn:
        return snapshot(conn)


def test_scratch_is_dropped_on_error_and_copies_schema_and_sample(dsn):
    populate(dsn)
    db = database(dsn)
    try:
        with pytest.raises(RuntimeError):
            with scratch_database(db, copy="schema", sample_tables=["public.t"], sample_rows=10) as s:
                assert s.strategy == "schema_copy" and s.sampled_rows == {"public.t": 10}
                with psycopg.connect(s.dsn) as conn:
                    assert conn.execute("SELECT count(*) FROM t").fetchone() == (10,)
                raise RuntimeError("boom")
        assert list_scratch(dsn) == []
        with scratch_database(db, copy="empty") as s:
            assert s.strategy == "empty"
        db.close()
        # nobody else is connected now: a TEMPLATE copy (with all the data) is possible
        with scratch_database(db, copy="auto") as s:
            assert s.strategy == "template"
            with psycopg.connect(s.dsn) as conn:
                assert conn.execute("SELECT count(*) FROM t").fetchone() == (400,)
    finally:
        db.close()
    assert list_scratch(dsn) == []


def test_leftovers_without_an_owner_are_dropped_and_live_ones_kept(dsn, pg):
    populate(dsn)
    run = lambda sql: psycopg.connect(dsn, autocommit=True).execute(sql)  # noqa: E731
    run("CREATE DATABASE agent19_scratch_1_dead")
    owner = psycopg.connect(dsn, autocommit=True, application_name="agent19_scratch_2_alive")
    run("CREATE DATABASE agent19_scratch_2_alive")
    try:
        db = database(dsn)
        assert drop_leftovers(db) == ["agent19_scratch_1_dead"]
        assert list_scratch(dsn) == ["agent19_scratch_2_alive"]
    finally:
        owner.close()
        run("DROP DATABASE agent19_scratch_2_alive")


def test_blocking_measurement_and_extrapolation(dsn):
    populate(dsn)
    db = database(dsn)
    try:
        sql = "CREATE INDEX t_slow ON t (slow(b)); CREATE INDEX CONCURRENTLY t_b ON t (b)"
        r = dry_run(db, parse_sql(sql), measure_blocking=True,
                    scratch_copy="schema", sample_rows=20, probe_timeout_ms=20_000)
    finally:
        db.close()
    s = r.statements[0]
    probes = {p.kind: p for p in s.probes}
    assert probes["insert"].waited is True and probes["insert"].table == "public.t"
    assert probes["select"].waited is False  # ShareLock lets reads through
    assert s.ran_in == "transaction" and s.extrapolated_ms is None  # measured on the real table
    cic = r.statements[1]
    assert cic.ran_in == "scratch" and cic.extrapolated_ms is not None
    assert "20 sampled rows" in (cic.extrapolation or "") and "400/20" in (cic.extrapolation or "")
    assert r.scratch is not None and r.scratch.dropped and list_scratch(dsn) == []


def _start(dsn: str, path: str) -> subprocess.Popen[bytes]:
    return subprocess.Popen(
        [sys.executable, "-m", "agent19", "dry-run", path, "--dsn", dsn, "--mode", "dry-run",
         "--sample-rows", "400", "--scratch-copy", "schema", "--statement-timeout", "120s"],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, cwd=os.path.dirname(os.path.dirname(__file__)),
    )


def _wait_for_slow_statement(dsn: str, proc: subprocess.Popen[bytes]) -> str:
    deadline = time.monotonic() + 60
    with psycopg.connect(dsn, autocommit=True) as conn:
        while time.monotonic() < deadline:
            assert proc.poll() is None, proc.communicate()
            row = conn.execute(
                r"SELECT datname FROM pg_stat_activity WHERE datname LIKE 'agent19\_scratch\_%' "
                "AND query LIKE 'CREATE INDEX CONCURRENTLY%' AND state = 'active'"
            ).fetchone()
            if row:
                return row[0]
            time.sleep(0.05)
    raise AssertionError("the slow statement never started in a scratch database")


def _wait(predicate, what: str) -> None:
    deadline = time.monotonic() + 30
    while not predicate():
        assert time.monotonic() < deadline, what
        time.sleep(0.1)


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGKILL])
def test_killing_the_process_mid_statement_leaves_nothing(dsn, tmp_path, sig):
    populate(dsn)
    start = schema(dsn)
    path = tmp_path / "0001_slow.sql"
    path.write_text("ALTER TABLE t ADD COLUMN c int;\nCREATE INDEX CONCURRENTLY t_slow ON t (slow(b));\n")
    proc = _start(dsn, str(path))
    try:
        name = _wait_for_slow_statement(dsn, proc)
        proc.send_signal(sig)
        proc.wait(timeout=30)
    finally:
        if proc.poll() is None:
            proc.kill()
    if sig == signal.SIGTERM:
        # the handler dropped the scratch database before the process ended
        assert name not in list_scratch(dsn)
    else:
        # nothing can run on SIGKILL: the next run finds the database without its owner and drops it
        def owner_gone() -> bool:
            with psycopg.connect(dsn, autocommit=True) as conn:
                return conn.execute("SELECT count(*) FROM pg_stat_activity WHERE application_name = %s",
                                    (name,)).fetchone() == (0,)

        _wait(owner_gone, "the killed run's owner session is still there")
        db = database(dsn)
        try:
            r = dry_run(db, parse_sql("SELECT 1"))
        finally:
            db.close()
        assert name in r.leftovers_dropped
    assert list_scratch(dsn) == []
    assert diff_snapshots(start, schema(dsn)) == []
