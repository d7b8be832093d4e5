"""The backfill waits for a real streaming replica whose replay is paused, and finishes once it resumes.

A dedicated primary (system binaries) and a hot standby made with ``pg_basebackup -R -X stream``; the
standby's replay is paused with ``pg_wal_replay_pause()``.
"""

from __future__ import annotations

import os
import signal
import subprocess
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import psycopg
import pytest

from agent19.migrate.backfill.executor import Q_LAG, BackfillResult, BackfillSpec, run_backfill
from tests.conftest import need
from tests.conftest import until as _until
from tools.throwaway import ThrowawayServer, start_replica, start_system, system_versions

ROWS = 20_000
LIMIT_S = 0.5


@pytest.fixture
def cluster() -> Iterator[tuple[ThrowawayServer, ThrowawayServer]]:
    need(bool(system_versions()), "no system PostgreSQL binaries (pg_basebackup) to start a primary and a replica")
    primary = start_system()
    try:
        replica = start_replica(primary)
        try:
            yield primary, replica
        finally:
            replica.stop()
    finally:
        primary.stop()


def _one(dsn: str, query: str) -> Any:
    with psycopg.connect(dsn, autocommit=True) as c:
        row = c.execute(query).fetchone()
    assert row is not None
    return row[0] if len(row) == 1 else row


def _pause(replica: ThrowawayServer) -> None:
    _one(replica.dsn, "SELECT pg_wal_replay_pause()")
    _until("replay to pause", lambda: _one(replica.dsn, "SELECT pg_get_wal_replay_pause_state()") == "paused")


def _caught_up(primary: ThrowawayServer) -> bool:
    return bool(_one(primary.dsn, "SELECT coalesce(bool_and(replay_lsn >= pg_current_wal_lsn()), false) "
                                  "FROM pg_stat_replication"))


def _checkpoint(dsn: str) -> int:
    return int(_one(dsn, "SELECT coalesce(max(rows_scanned), 0) FROM agent19_backfill_checkpoint"))


Cluster = tuple[ThrowawayServer, ThrowawayServer]


def test_stale_replay_lag_of_a_caught_up_replica_counts_as_zero(cluster: Cluster) -> None:
    primary, replica = cluster
    _pause(replica)
    with psycopg.connect(primary.dsn, autocommit=True) as c:
        c.execute("CREATE TABLE w (id int PRIMARY KEY); INSERT INTO w SELECT generate_series(1, 1000)")
        for i in range(6):  # WAL the paused standby receives but does not replay
            c.execute("UPDATE w SET id = id + 1000 WHERE id %% 6 = %s", (i,))
            time.sleep(0.2)
        time.sleep(2.0)  # the primary idle: what the last WAL sent is stays about 2 s old
        paused = c.execute(Q_LAG).fetchone()
        assert paused is not None
        assert paused[0] == 1 and paused[1] > LIMIT_S and paused[2] > 0, f"a paused replica not seen behind: {paused}"
        _one(replica.dsn, "SELECT pg_wal_replay_resume()")
        _until("the replica to catch up", lambda: _caught_up(primary))
        replicas, lag, behind, raw = c.execute(
            f"SELECT q.*, (SELECT EXTRACT(epoch FROM replay_lag)::float8 FROM pg_stat_replication) "
            f"FROM ({Q_LAG}) q").fetchone() or (None, None, None, None)
    # replay_lag still shows the lag of the last WAL replayed — sent ~2 s before the catch-up — until the
    # standby's next status reply (wal_receiver_status_interval, 10 s)
    assert raw is not None and raw > LIMIT_S, f"replay_lag was expected to be stale after catch-up: {raw}"
    assert (replicas, lag, behind) == (1, 0.0, 0)


def test_backfill_waits_while_replay_is_paused_and_finishes_after_resume(cluster: Cluster) -> None:
    primary, replica = cluster
    dsn = primary.dsn
    with psycopg.connect(dsn, autocommit=True) as c:
        c.execute(f"""
            CREATE TABLE big (id bigint PRIMARY KEY, v bigint NOT NULL, updates int NOT NULL DEFAULT 0);
            INSERT INTO big (id, v) SELECT g, g FROM generate_series(1, {ROWS}) g;
            CREATE FUNCTION count_updates() RETURNS trigger LANGUAGE plpgsql AS $$
            BEGIN NEW.updates := OLD.updates + 1; RETURN NEW; END $$;
            CREATE TRIGGER count_updates BEFORE UPDATE ON big FOR EACH ROW EXECUTE FUNCTION count_updates();
        """)
    _until("the replica to catch up", lambda: _caught_up(primary))
    assert _one(replica.dsn, "SELECT count(*) FROM big") == ROWS
    _pause(replica)

    messages: list[tuple[float, str]] = []  # (rows visited, message)
    outcome: dict[str, Any] = {}
    spec = BackfillSpec(table="big", set="v = v * 2", name="double_v", batch_size=200, max_batch_size=200,
                        pause_ms=30, max_replication_lag_s=LIMIT_S, validate_end=False)

    def run() -> None:
        try:
            with psycopg.connect(dsn, autocommit=True) as conn:
                outcome["result"] = run_backfill(conn, spec, lambda d, t, m: messages.append((d, m or "")))
        except BaseException as exc:  # reported by the assertions below
            outcome["error"] = exc

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    try:
        _until("the backfill to wait for the paused replica",
               lambda: any(m.startswith("waiting: replica replay lag") for _, m in messages) or "error" in outcome)
        assert "error" not in outcome, outcome.get("error")
        held = _checkpoint(dsn)
        time.sleep(2.0)
        assert thread.is_alive() and "result" not in outcome, "the backfill did not wait for the paused replica"
        assert _checkpoint(dsn) == held, "the checkpoint moved while the replica's replay was paused"
        assert 0 < held < ROWS, f"waited after {held} of {ROWS} rows"
        assert messages[-1][1].startswith("waiting: replica replay lag"), messages[-1]
    finally:
        _one(replica.dsn, "SELECT pg_wal_replay_resume()")
        thread.join(timeout=40)
    assert not thread.is_alive(), "the backfill did not finish after replay resumed"
    assert "error" not in outcome, outcome.get("error")
    result: BackfillResult = outcome["result"]
    assert result.rows_updated == ROWS and result.rows_scanned == ROWS
    assert result.replication_wait_s >= 2.0, result

    query = "SELECT updates, count(*) FROM big GROUP BY 1 ORDER BY 1"
    with psycopg.connect(dsn) as c:
        on_primary = c.execute(query).fetchall()
        assert c.execute("SELECT count(*) FROM big WHERE v <> id * 2").fetchone() == (0,)
    assert on_primary == [(1, ROWS)], f"rows by number of updates: {on_primary}"
    _until("the replica to catch up", lambda: _caught_up(primary))
    with psycopg.connect(replica.dsn) as c:
        assert c.execute(query).fetchall() == on_primary
        assert c.execute("SELECT count(*) FROM big WHERE v = id * 2").fetchone() == (ROWS,)


def test_a_stalled_logical_consumer_does_not_hold_the_backfill() -> None:
    """pg_stat_replication also lists logical decoding consumers (CDC, subscriptions); one that stopped reading
    falls behind forever, but it serves no reads: only physical replicas hold a backfill."""
    need(bool(system_versions()), "no system PostgreSQL binaries (pg_recvlogical)")
    primary = start_system()
    recv: subprocess.Popen[bytes] | None = None
    try:
        dsn = primary.dsn
        with psycopg.connect(dsn, autocommit=True) as c:
            c.execute("SELECT pg_create_logical_replication_slot('cdc', 'test_decoding')")
            c.execute("CREATE TABLE big (id bigint PRIMARY KEY, v bigint NOT NULL);"
                      "INSERT INTO big SELECT g, g FROM generate_series(1, 5000) g")
        recv = subprocess.Popen([str(Path(f"/usr/lib/postgresql/{primary.major}/bin/pg_recvlogical")), "-d", dsn,
                                 "--slot", "cdc", "--start", "-f", "/dev/null"],
                                stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        _until("pg_recvlogical to consume the slot",
               lambda: _one(dsn, "SELECT count(*) FROM pg_stat_replication") == 1)
        os.kill(recv.pid, signal.SIGSTOP)  # the consumer stops reading: its replay position stays behind
        with psycopg.connect(dsn, autocommit=True) as c:
            c.execute("INSERT INTO big SELECT g, g FROM generate_series(5001, 60000) g")
        with psycopg.connect(dsn, autocommit=True) as c:
            row = c.execute(Q_LAG).fetchone()
        assert row is not None and row[0] == 0, f"the logical consumer was counted as a replica: {row}"
        spec = BackfillSpec(table="big", set="v = v * 2", name="double_v", batch_size=5000,
                            max_replication_lag_s=LIMIT_S, validate_end=False)
        messages: list[str] = []
        with psycopg.connect(dsn, autocommit=True) as conn:
            result = run_backfill(conn, spec, lambda d, t, m: messages.append(m or ""))
        assert result.rows_updated == 60_000
        assert not any(m.startswith("waiting: replica") for m in messages), messages
        assert _one(dsn, "SELECT count(*) FROM big WHERE v <> id * 2") == 0
    finally:
        if recv is not None:
            os.kill(recv.pid, signal.SIGCONT)
            recv.terminate()
            recv.wait(timeout=10)
        primary.stop()
