"""agent19 etl run: incremental upserts, exactly once across kill -9, lag window, dead letters, drift — on real
source and destination databases (two databases of the test server)."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import psycopg
import pytest

from agent19.config import AccessMode
from agent19.db.connection import Database
from agent19.errors import InputError, ModeError
from agent19.etl.batch import run_pipeline
from agent19.etl.pipeline import parse_pipeline
from agent19.safety.readonly import ReadOnlyViolation
from tests.conftest import _fresh_database, run_sql, session_settings

ROOT = Path(__file__).parent.parent
SOURCE_DDL = """
CREATE TABLE orders (id bigint PRIMARY KEY, email text, amount numeric(12,2), status text NOT NULL DEFAULT 'new',
                     updated_at timestamptz NOT NULL DEFAULT clock_timestamp());
CREATE INDEX ON orders (updated_at, id);
"""
DEST_DDL = """
CREATE SCHEMA analytics;
CREATE TABLE analytics.orders (id bigint PRIMARY KEY, email text, amount numeric(12,2), status text,
                               updated_at timestamptz);
"""
CHECKSUM = "SELECT count(*), md5(string_agg(format('%s|%s|%s|%s|%s', id, email, amount, status, updated_at), ',' " \
           "ORDER BY id)) FROM {}"


@pytest.fixture
def warehouse(pg) -> Iterator[str]:
    yield from _fresh_database(pg)


def _db(dsn: str, mode: AccessMode = AccessMode.EXECUTE) -> Database:
    return Database(session_settings(dsn=dsn, mode=mode))


def _pipeline(source: str, dest: str, *, strategy: str = "upsert", lag: str | None = None, batch: int = 1000,
              transform: bool = True, name: str = "orders", query: str | None = None,
              table: str = "analytics.orders") -> str:
    src = f'query = """{query}"""' if query else 'table = "public.orders"'
    text = f"""
name = "{name}"
batch_size = {batch}

[source]
dsn = "{source}"
{src}
cursor = ["updated_at", "id"]
{f'lag = "{lag}"' if lag else ''}

[destination]
dsn = "{dest}"
table = "{table}"
key = ["id"]
strategy = "{strategy}"
"""
    if transform:
        text += """
[transform.id]
type = "int"
[transform.email]
type = "str"
pattern = "^[^@ ]+@[^@ ]+$"
lower = true
[transform.amount]
type = "decimal"
ge = 0
[transform.status]
type = "str"
choices = ["new", "paid", "shipped"]
[transform.updated_at]
type = "datetime"
"""
    return text


def _fill(dsn: str, n: int) -> None:
    with psycopg.connect(dsn, autocommit=True) as conn:
        conn.execute(SOURCE_DDL)
        conn.execute("INSERT INTO orders (id, email, amount, status, updated_at) SELECT g, 'u' || g || '@x.org', "
                     "g %% 1000, (ARRAY['new','paid','shipped'])[1 + g %% 3], "
                     "'2026-01-01'::timestamptz + g * interval '1 second' FROM generate_series(1, %s) g", (n,))


def _checksum(dsn: str, table: str) -> tuple[int, str]:
    with psycopg.connect(dsn) as conn:
        row = conn.execute(CHECKSUM.format(table)).fetchone()
    assert row is not None
    return row[0], row[1]


def test_incremental_upsert_with_a_concurrent_writer_ends_equal(dsn, warehouse):
    _fill(dsn, 200_000)
    run_sql(warehouse, DEST_DDL)
    # no [transform]: the COPY → staging path, no row parsed in Python
    pipeline = parse_pipeline(_pipeline(dsn, warehouse, batch=5000, lag="1 minute", transform=False))
    stop = threading.Event()
    writes = {"n": 0}

    def writer() -> None:
        with psycopg.connect(dsn, autocommit=True) as conn:
            while not stop.is_set():
                conn.execute("UPDATE orders SET amount = amount + 1, updated_at = clock_timestamp() "
                             "WHERE id = (random() * 199999)::int + 1")
                conn.execute("INSERT INTO orders (id, email, amount) SELECT max(id) + 1, 'new@x.org', 5 FROM orders")
                writes["n"] += 1

    thread = threading.Thread(target=writer)
    thread.start()
    try:
        first = run_pipeline(pipeline, _db(dsn))
    finally:
        stop.set()
        thread.join()
    assert writes["n"] > 0
    assert first.inserted >= 200_000 and first.rejected == 0
    second = run_pipeline(pipeline, _db(dsn))
    assert second.resumed_from is not None and second.lag_window
    assert second.extracted < 200_000  # incremental: only the lag window and what changed since
    assert _checksum(dsn, "orders") == _checksum(warehouse, "analytics.orders")
    third = run_pipeline(pipeline, _db(dsn))
    assert third.inserted == 0 and third.updated == 0 and third.unchanged == third.extracted


@pytest.mark.parametrize("transform", [True, False], ids=["validated", "copy-path"])
def test_kill_9_mid_run_then_resume_loads_every_row_exactly_once(dsn, warehouse, tmp_path, transform):
    """append (no unique key in the destination): only the watermark's transaction keeps rows from doubling."""
    _fill(dsn, 60_000)
    run_sql(warehouse, DEST_DDL.replace("id bigint PRIMARY KEY", "id bigint"))
    run_sql(warehouse, "CREATE FUNCTION analytics.slow() RETURNS trigger LANGUAGE plpgsql AS 'BEGIN PERFORM "
                       "pg_sleep(0.05); RETURN NULL; END'; CREATE TRIGGER slow AFTER INSERT ON analytics.orders "
                       "FOR EACH STATEMENT EXECUTE FUNCTION analytics.slow()")  # slow batches: the kill lands mid-run
    path = tmp_path / "orders.toml"
    path.write_text(_pipeline(dsn, warehouse, strategy="append", batch=500, transform=transform))
    cmd = [sys.executable, "-m", "agent19", "etl", "run", str(path), "--mode", "execute", "--format", "json"]
    env = {**os.environ, "DATABASE_URL": dsn}
    proc = subprocess.Popen(cmd, cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    deadline = time.monotonic() + 120
    with psycopg.connect(warehouse, autocommit=True) as conn:
        while time.monotonic() < deadline:
            row = conn.execute("SELECT batches FROM agent19_etl.watermark WHERE pipeline = 'orders'").fetchone() \
                if conn.execute("SELECT to_regclass('agent19_etl.watermark')").fetchone()[0] else None
            if row and row[0] >= 5:
                break
            time.sleep(0.02)
    proc.send_signal(signal.SIGKILL)
    proc.wait(timeout=30)
    assert proc.returncode == -signal.SIGKILL
    partial = _checksum(warehouse, "analytics.orders")[0]
    assert 0 < partial < 60_000, "the kill did not land mid-run"
    run_sql(warehouse, "DROP TRIGGER slow ON analytics.orders")
    done = subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    with psycopg.connect(warehouse) as conn:
        dupes = conn.execute("SELECT count(*) FROM (SELECT id FROM analytics.orders GROUP BY id "
                             "HAVING count(*) > 1) d").fetchone()[0]
    assert dupes == 0
    assert _checksum(dsn, "orders") == _checksum(warehouse, "analytics.orders")


def test_a_late_commit_below_the_watermark_is_picked_up_within_the_lag(dsn, warehouse):
    _fill(dsn, 100)
    with psycopg.connect(warehouse, autocommit=True) as conn:
        conn.execute(DEST_DDL)
        conn.execute("CREATE TABLE analytics.strict (LIKE analytics.orders INCLUDING ALL)")
    lagged = parse_pipeline(_pipeline(dsn, warehouse, lag="1 hour", name="lagged"))
    strict = parse_pipeline(_pipeline(dsn, warehouse, name="strict", table="analytics.strict"))
    run_pipeline(lagged, _db(dsn))
    run_pipeline(strict, _db(dsn))
    late = psycopg.connect(dsn)
    try:  # updated_at = now(): the transaction's start time, earlier than rows that commit before it
        late.execute("UPDATE orders SET amount = 777, updated_at = now() WHERE id = 1")
        time.sleep(0.05)
        run_sql(dsn, "UPDATE orders SET amount = 888, updated_at = clock_timestamp() WHERE id = 2")
        assert run_pipeline(strict, _db(dsn)).updated == 1
        assert run_pipeline(lagged, _db(dsn)).updated == 1
        late.commit()
    finally:
        late.close()
    assert run_pipeline(strict, _db(dsn)).updated == 0  # outside a lag window, the late row is missed
    got = run_pipeline(lagged, _db(dsn))
    assert got.updated == 1 and got.unchanged >= 1
    with psycopg.connect(warehouse) as conn:
        assert conn.execute("SELECT amount FROM analytics.orders WHERE id = 1").fetchone()[0] == 777


def test_invalid_records_reach_the_dead_letter_table_with_reason_and_key(dsn, warehouse):
    _fill(dsn, 50)
    with psycopg.connect(dsn, autocommit=True) as conn:
        conn.execute("UPDATE orders SET email = 'not-an-email' WHERE id = 7")
        conn.execute("UPDATE orders SET amount = -5 WHERE id = 9")
        conn.execute("UPDATE orders SET status = 'lost' WHERE id = 11")
    run_sql(warehouse, DEST_DDL)
    result = run_pipeline(parse_pipeline(_pipeline(dsn, warehouse, batch=20)), _db(dsn))
    assert result.rejected == 3 and result.inserted == 47
    with psycopg.connect(warehouse) as conn:
        dead = conn.execute("SELECT source_key->>'id', reason FROM agent19_etl.dead_letter ORDER BY 1::int").fetchall()
        loaded = {r[0] for r in conn.execute("SELECT id FROM analytics.orders")}
    assert [d[0] for d in dead] == ["7", "9", "11"]
    assert "email" in dead[0][1] and "amount" in dead[1][1] and "status" in dead[2][1]
    assert "not-an-email" not in dead[0][1]  # reasons do not echo values
    assert not loaded & {7, 9, 11}


def test_dry_run_writes_nothing_and_loading_needs_execute(dsn, warehouse):
    _fill(dsn, 30)
    run_sql(warehouse, DEST_DDL)
    pipeline = parse_pipeline(_pipeline(dsn, warehouse))
    dry = run_pipeline(pipeline, _db(dsn, AccessMode.READ_ONLY), dry_run=True)
    assert dry.extracted == 30 and dry.valid == 30 and dry.inserted == 0
    with pytest.raises(ModeError):
        run_pipeline(pipeline, _db(dsn, AccessMode.DRY_RUN))
    with psycopg.connect(warehouse) as conn:
        assert conn.execute("SELECT to_regclass('agent19_etl.watermark')").fetchone()[0] is None
        assert conn.execute("SELECT count(*) FROM analytics.orders").fetchone()[0] == 0


def test_schema_drift_is_reported_before_loading(dsn, warehouse):
    _fill(dsn, 10)
    run_sql(warehouse, DEST_DDL)
    pipeline = parse_pipeline(_pipeline(dsn, warehouse))
    run_pipeline(pipeline, _db(dsn))
    with psycopg.connect(dsn, autocommit=True) as conn:
        conn.execute("ALTER TABLE orders ADD COLUMN note text, ALTER COLUMN amount TYPE float8, DROP COLUMN status")
        conn.execute("UPDATE orders SET updated_at = clock_timestamp() WHERE id = 3")
    result = run_pipeline(pipeline, _db(dsn))
    drift = {(d.column, d.change): d.action for d in result.drift}
    assert ("note", "added") in drift and "ignored" in drift[("note", "added")]
    assert ("amount", "retyped") in drift
    assert "rejected" in drift[("status", "removed")]
    assert result.rejected == 1


def test_query_source_goes_through_the_safety_gate(dsn, warehouse):
    _fill(dsn, 10)
    run_sql(warehouse, DEST_DDL)
    bad = parse_pipeline(_pipeline(dsn, warehouse, query="SELECT o.*, pg_advisory_lock(42) FROM orders o"))
    with pytest.raises(ReadOnlyViolation, match="pg_advisory_lock"):
        run_pipeline(bad, _db(dsn))
    good = parse_pipeline(_pipeline(dsn, warehouse, query="SELECT * FROM orders WHERE amount > 3 -- comment"))
    assert run_pipeline(good, _db(dsn)).inserted == 7  # ids 4..10
    copy_path = parse_pipeline(_pipeline(dsn, warehouse, query="SELECT * FROM orders WHERE amount > 3 -- comment",
                                         transform=False, name="copy_path", lag="1 day"))
    assert run_pipeline(copy_path, _db(dsn)).unchanged == 7
    again = run_pipeline(copy_path, _db(dsn))  # from the watermark minus the lag: the same 7 rows, unchanged
    assert again.lag_window and again.unchanged == 7


def test_upsert_without_a_unique_key_says_what_to_create(dsn, warehouse):
    _fill(dsn, 5)
    run_sql(warehouse, DEST_DDL.replace("id bigint PRIMARY KEY", "id bigint"))
    with pytest.raises(InputError, match="CREATE UNIQUE INDEX"):
        run_pipeline(parse_pipeline(_pipeline(dsn, warehouse)), _db(dsn))


@pytest.mark.parametrize("waits", ["WITH s AS MATERIALIZED", "COPY"], ids=["upsert", "first-load-copy"])
def test_a_key_inserted_concurrently_in_the_destination_falls_back_to_on_conflict(dsn, warehouse, waits):
    """The fast UPDATE + INSERT statement meets a key another session inserts meanwhile: a unique violation,
    observed on the server; the batch then upserts with ON CONFLICT and the run ends equal to the source.
    first-load-copy: a batch of only new keys goes by COPY straight into the table; the same key makes that COPY
    fail, the savepoint undoes it alone, and the batch takes the staging path."""
    _fill(dsn, 20)
    with psycopg.connect(warehouse, autocommit=True) as conn:
        conn.execute(DEST_DDL)
        if waits != "COPY":  # a key that exists: the batch skips the straight COPY
            conn.execute("INSERT INTO analytics.orders (id, email) VALUES (1, 'old@x.org')")
    other = psycopg.connect(warehouse)
    other.execute("INSERT INTO analytics.orders (id, email) VALUES (5, 'concurrent@x.org')")  # not committed yet
    box: dict[str, object] = {}
    runner = threading.Thread(target=lambda: box.update(
        result=run_pipeline(parse_pipeline(_pipeline(dsn, warehouse, transform=False)), _db(dsn))))
    runner.start()
    try:
        with psycopg.connect(warehouse, autocommit=True) as watch:  # the run's INSERT waits for our key
            deadline = time.monotonic() + 30
            while time.monotonic() < deadline and not watch.execute(
                    "SELECT count(*) FROM pg_stat_activity WHERE wait_event_type = 'Lock' "
                    "AND query LIKE %s", (waits + "%",)).fetchone()[0]:
                time.sleep(0.02)
            assert time.monotonic() < deadline, f"no {waits} statement waited for the key"
        other.commit()
    finally:
        other.close()
        runner.join(timeout=60)
    result = box["result"]
    assert result.inserted + result.updated == 20  # type: ignore[attr-defined]
    assert _checksum(dsn, "orders") == _checksum(warehouse, "analytics.orders")


def test_a_lost_destination_session_is_retried_with_backoff_exactly_once(dsn, warehouse):
    _fill(dsn, 20_000)
    run_sql(warehouse, DEST_DDL.replace("id bigint PRIMARY KEY", "id bigint"))  # append: a replayed batch would show
    pipeline = parse_pipeline(_pipeline(dsn, warehouse, strategy="append", batch=200))
    box: dict[str, object] = {}
    runner = threading.Thread(target=lambda: box.update(result=run_pipeline(pipeline, _db(dsn))))
    runner.start()
    killed = 0
    with psycopg.connect(warehouse, autocommit=True) as conn:
        deadline = time.monotonic() + 60
        while not killed and time.monotonic() < deadline:
            if conn.execute("SELECT to_regclass('agent19_etl.watermark')").fetchone()[0] and conn.execute(
                    "SELECT coalesce(max(batches), 0) FROM agent19_etl.watermark").fetchone()[0] >= 10:
                killed = conn.execute("SELECT count(*) FILTER (WHERE pg_terminate_backend(pid)) FROM pg_stat_activity "
                                      "WHERE datname = current_database() AND application_name = 'agent19' "
                                      "AND pid <> pg_backend_pid()").fetchone()[0]
            time.sleep(0.01)
    runner.join(timeout=120)
    assert killed >= 1
    result = box["result"]
    assert result.retries >= 1  # type: ignore[attr-defined]
    with psycopg.connect(warehouse) as conn:
        dupes = conn.execute("SELECT count(*) - count(DISTINCT id) FROM analytics.orders").fetchone()[0]
    assert dupes == 0
    assert _checksum(dsn, "orders") == _checksum(warehouse, "analytics.orders")


def test_a_numeric_cursor_takes_a_numeric_lag_and_a_duration_is_refused(dsn, warehouse):
    _fill(dsn, 30)
    run_sql(warehouse, DEST_DDL)
    text = _pipeline(dsn, warehouse, lag="5").replace('cursor = ["updated_at", "id"]', 'cursor = ["amount", "id"]')
    run_pipeline(parse_pipeline(text), _db(dsn))
    again = run_pipeline(parse_pipeline(text), _db(dsn))  # amounts 0..29: re-reads amount >= 24
    assert again.extracted == 6 and again.unchanged == 6
    wrong = parse_pipeline(text.replace('lag = "5"', 'lag = "5 minutes"'))
    with pytest.raises(InputError, match="does not fit the cursor column amount"):
        run_pipeline(wrong, _db(dsn))
