"""replication_status and the replication health checks on a real primary with a streaming standby.

One cluster for the module: a primary (system binaries, archive_mode on) with a hot standby made by
``pg_basebackup`` and a logical slot (wal2json) that ``pg_recvlogical`` consumes, so it is active. Tests
run in file order: first the clean cluster (no alarm anywhere), then each planted condition, each put
back afterwards (the failing archiver last).
"""

from __future__ import annotations

import json
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import psycopg
import pytest
from psycopg.conninfo import make_conninfo

from agent19.ops.replication.model import ReplicationStatus
from tests.conftest import need
from tests.conftest import until as _until
from tests.mcp_client import stdio_session
from tests.test_ops_health import _alarms, health, status
from tools.throwaway import SYSTEM_ROOT, ThrowawayServer, start_replica, start_system, system_versions

REPLICATION_CHECKS = ["replication_lag", "failover_readiness", "replication_slots", "archiving", "standby_replay"]


@dataclass
class Cluster:
    primary: ThrowawayServer
    standby: ThrowawayServer
    standby_name: str


def _run(dsn: str, sql: str) -> Any:
    with psycopg.connect(dsn, autocommit=True) as c:
        cur = c.execute(sql)
        return cur.fetchone() if cur.description else None


@pytest.fixture(scope="module")
def cluster() -> Iterator[Cluster]:
    need(bool(system_versions()), "no system PostgreSQL binaries to start a primary and a standby")
    primary = start_system(settings={"archive_mode": "on", "archive_command": "'/bin/true'"})
    recv: subprocess.Popen[bytes] | None = None
    try:
        standby = start_replica(primary)
        try:
            name = _run(primary.dsn, "SELECT application_name FROM pg_stat_replication")[0]
            _run(primary.dsn, "SELECT pg_create_logical_replication_slot('cdc', 'wal2json')")
            recv = subprocess.Popen(
                [SYSTEM_ROOT / str(primary.major) / "bin" / "pg_recvlogical", "-d", primary.dsn, "--slot", "cdc",
                 "--start", "-f", "/dev/null"], stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
            _until("pg_recvlogical to consume the slot",
                   lambda: _run(primary.dsn, "SELECT active FROM pg_replication_slots WHERE slot_name = 'cdc'")[0])
            yield Cluster(primary, standby, name)
        finally:
            if recv is not None:
                recv.terminate()
                recv.wait(timeout=10)
            standby.stop()
    finally:
        primary.stop()


def _caught_up(primary: ThrowawayServer) -> bool:
    return bool(_run(primary.dsn, "SELECT coalesce(bool_and(replay_lsn >= pg_current_wal_lsn()), false) "
                                  "FROM pg_stat_replication WHERE application_name <> 'pg_recvlogical'")[0])


def _status_caught_up(primary: ThrowawayServer) -> ReplicationStatus | None:
    """A status read while the standby had replayed everything (the primary also writes on its own: running-xacts
    records, autovacuum — so poll for such a moment rather than assume it lasts)."""
    got = status(primary.dsn)
    return got if got.standbys and got.standbys[0].replay_lag_bytes == 0 else None


def test_clean_cluster_primary_and_standby_raise_nothing(cluster: Cluster) -> None:
    s = _until("a status with the standby caught up", lambda: _status_caught_up(cluster.primary))
    assert s.role == "primary" and s.standby is None
    [sb] = s.standbys
    assert sb.name == cluster.standby_name and sb.state == "streaming" and sb.sync_state == "async"
    assert sb.failover.ready and sb.failover.reasons == [] and sb.failover.would_lose_bytes == 0
    assert sb.replay_lag_bytes == 0 and sb.replay_lag_s == 0
    [slot] = s.slots
    assert (slot.name, slot.type, slot.plugin, slot.active, slot.wal_status) == \
        ("cdc", "logical", "wal2json", True, "reserved")
    [consumer] = s.logical_consumers  # pg_recvlogical's walsender is in pg_stat_replication, not a standby
    assert consumer.slot == "cdc" and consumer.name == "pg_recvlogical"
    assert s.archiver is not None and s.archiver.mode == "on" and not s.archiver.failing
    assert s.archiver.ready_segments is not None and s.cannot_see == []
    assert any("inactive_since" in n for n in s.notes)  # PostgreSQL 15 cannot tell how long a slot was inactive

    on_standby = status(cluster.standby.dsn)
    assert on_standby.role == "standby" and on_standby.standby is not None
    st = on_standby.standby
    assert st.receiver is not None and st.receiver.status == "streaming" and not st.replay_paused
    assert st.failover is not None and st.failover.ready

    for server in (cluster.primary, cluster.standby):
        report = health(server.dsn)
        assert _alarms(report) == [], _alarms(report)
    assert health(cluster.standby.dsn).summary.role == "standby"


def test_paused_replay_makes_the_standby_not_ready_until_it_catches_up(cluster: Cluster) -> None:
    p, s = cluster.primary, cluster.standby
    _run(s.dsn, "SELECT pg_wal_replay_pause()")
    try:
        _until("replay to pause", lambda: _run(s.dsn, "SELECT pg_get_wal_replay_pause_state()")[0] == "paused")
        _run(p.dsn, "CREATE TABLE IF NOT EXISTS w (id int, pad text)")
        _run(p.dsn, "INSERT INTO w SELECT g, repeat('x', 100) FROM generate_series(1, 50000) g")  # ~8 MB of WAL

        def behind() -> ReplicationStatus | None:  # all WAL received and flushed there, > 1 MB not replayed
            got = status(p.dsn)
            sb = got.standbys[0]
            return got if (sb.replay_lag_bytes or 0) > (1 << 20) and sb.flush_lag_bytes == 0 else None

        paused = _until("the standby to receive everything and fall 1 MB behind in replay", behind)
        [sb] = paused.standbys
        assert sb.state == "streaming" and not sb.failover.ready
        assert any("behind the primary" in r for r in sb.failover.reasons), sb.failover.reasons
        # WAL is received and flushed, only not replayed: nothing would be lost, but it must replay first
        assert sb.failover.replay_backlog_bytes is not None and sb.failover.replay_backlog_bytes > (1 << 20)
        # replay_lag is recomputed only when the standby replies (on new WAL, or every
        # wal_receiver_status_interval): after one burst it can stay low for 10 s; the bytes behind show it now
        report = health(p.dsn, REPLICATION_CHECKS, replica_lag_warning_bytes=1 << 20)
        lag, ready = report.check("replication_lag"), report.check("failover_readiness")
        assert lag.status == "warning" and lag.objects == [cluster.standby_name], lag
        assert ready.status == "critical" and ready.objects == [cluster.standby_name], ready  # the only standby
        assert report.check("replication_slots").status == "ok"

        on_standby = health(s.dsn, REPLICATION_CHECKS)
        replay = on_standby.check("standby_replay")
        assert replay.status == "warning" and "PAUSED" in replay.message
        assert on_standby.check("failover_readiness").status == "warning"
        assert "replay is paused" in on_standby.check("failover_readiness").message
    finally:
        _run(s.dsn, "SELECT pg_wal_replay_resume()")
    [sb] = _until("a status with the standby caught up", lambda: _status_caught_up(p)).standbys
    assert sb.failover.ready and sb.replay_lag_bytes == 0 and sb.replay_lag_s == 0
    assert _alarms(health(p.dsn, REPLICATION_CHECKS)) == []
    assert _alarms(health(s.dsn, REPLICATION_CHECKS)) == []


def test_an_inactive_slot_retaining_wal_is_found_by_name(cluster: Cluster) -> None:
    p = cluster.primary
    _run(p.dsn, "SELECT pg_create_logical_replication_slot('stale', 'pgoutput')")
    try:
        _run(p.dsn, "CREATE TABLE IF NOT EXISTS w (id int, pad text)")
        _run(p.dsn, "INSERT INTO w SELECT g, repeat('y', 100) FROM generate_series(1, 5000) g")
        s = status(p.dsn)
        stale = next(sl for sl in s.slots if sl.name == "stale")
        assert not stale.active and stale.retained_bytes is not None and stale.retained_bytes > 100_000
        assert stale.catalog_xmin_age is not None and stale.inactive_s is None  # 15 cannot tell since when
        check = health(p.dsn, ["replication_slots"]).check("replication_slots")
        assert check.status == "warning" and check.objects == ["stale"], check
        assert "pg_drop_replication_slot('stale')" in (check.fix or "")
        tight = health(p.dsn, ["replication_slots"], slot_retained_critical_bytes=100_000)
        assert tight.check("replication_slots").status == "critical"
    finally:
        _run(p.dsn, "SELECT pg_drop_replication_slot('stale')")
    assert health(p.dsn, ["replication_slots"]).check("replication_slots").status == "ok"


def test_a_pg_monitor_role_sees_everything_and_a_plain_role_is_told_what_it_misses(cluster: Cluster) -> None:
    p = cluster.primary
    _run(p.dsn, "CREATE ROLE watcher LOGIN IN ROLE pg_monitor; CREATE ROLE nobody LOGIN")
    watcher = make_conninfo(p.dsn, user="watcher")
    s = status(watcher)
    [sb] = s.standbys
    assert sb.state == "streaming" and sb.failover.ready and s.cannot_see == []
    assert s.archiver is not None and s.archiver.ready_segments is not None
    assert _alarms(health(watcher, REPLICATION_CHECKS)) == []

    nobody = make_conninfo(p.dsn, user="nobody")
    s = status(nobody)
    [sb] = s.standbys
    assert sb.replay_lag_bytes is None and not sb.failover.ready
    assert any("hidden" in r for r in sb.failover.reasons)
    assert any("pg_stat_replication" in c and "pg_monitor" in c for c in s.cannot_see)
    assert s.archiver is not None and s.archiver.ready_segments is None
    report = health(nobody, REPLICATION_CHECKS)
    assert report.summary.privileges == "limited"
    assert report.check("failover_readiness").needs and "pg_monitor" in (report.check("failover_readiness").needs or "")

    _until("the roles to reach the standby", lambda: _caught_up(p))
    on_standby = status(make_conninfo(cluster.standby.dsn, user="watcher")).standby
    assert on_standby is not None and on_standby.receiver is not None
    assert on_standby.receiver.status == "streaming" and not on_standby.receiver.hidden
    assert on_standby.failover is not None and on_standby.failover.ready
    hidden = status(make_conninfo(cluster.standby.dsn, user="nobody"))
    assert hidden.standby is not None and hidden.standby.receiver is not None and hidden.standby.receiver.hidden
    assert hidden.standby.failover is not None and not hidden.standby.failover.ready
    assert any("hidden (needs pg_monitor" in r for r in hidden.standby.failover.reasons)  # not "not running"
    replay = health(make_conninfo(cluster.standby.dsn, user="nobody"), ["standby_replay"]).check("standby_replay")
    assert replay.status == "unknown" and "state hidden" in replay.message and "pg_monitor" in (replay.needs or "")


def test_cli_and_mcp_report_the_replication_status(cluster: Cluster) -> None:
    done = subprocess.run([sys.executable, "-m", "agent19", "replication", "--dsn", cluster.primary.dsn, "--format",
                           "json"], capture_output=True, text=True, cwd=Path(__file__).parent.parent, timeout=60)
    assert done.returncode == 0, done.stderr
    out = json.loads(done.stdout)
    assert out["role"] == "primary" and out["standbys"][0]["failover"]["ready"] is True
    text = subprocess.run([sys.executable, "-m", "agent19", "replication", "--dsn", cluster.standby.dsn],
                          capture_output=True, text=True, cwd=Path(__file__).parent.parent, timeout=60)
    assert text.returncode == 0 and "role: standby" in text.stdout and "receiver streaming" in text.stdout


async def test_mcp_replication_status(cluster: Cluster) -> None:
    async with stdio_session("--dsn", cluster.primary.dsn) as session:
        result = await session.call_tool("replication_status", {"max_lag_mb": 4})
        assert not result.is_error, result.content
        out = result.structured_content
        assert out is not None and out["role"] == "primary" and out["max_lag_bytes"] == 4 << 20
        assert [sl["name"] for sl in out["slots"]] == ["cdc"]


def test_where_zero_data_loss_is_promised_only_a_synchronous_standby_is_ready(cluster: Cluster) -> None:
    p = cluster.primary

    def sync_names(value: str) -> None:
        _run(p.dsn, f"ALTER SYSTEM SET synchronous_standby_names = '{value}'")
        _run(p.dsn, "SELECT pg_reload_conf()")
        _until("the setting", lambda: _run(p.dsn, "SELECT current_setting('synchronous_standby_names')")[0] == value)

    assert not status(p.dsn).zero_data_loss_promised  # start_system runs with synchronous_commit = off
    _run(p.dsn, "ALTER SYSTEM SET synchronous_commit = on")
    try:
        sync_names("elsewhere")  # promised, but our standby is not the one named: it stays async (no writes now)
        s = status(p.dsn)
        [sb] = s.standbys
        assert s.zero_data_loss_promised and sb.sync_state == "async" and not sb.failover.ready
        assert any("zero data loss" in r for r in sb.failover.reasons), sb.failover.reasons
        sync_names(cluster.standby_name)
        _until("the standby to become synchronous", lambda: status(p.dsn).standbys[0].sync_state == "sync")
        [sb] = status(p.dsn).standbys
        assert sb.failover.ready, sb.failover.reasons
    finally:
        _run(p.dsn, "ALTER SYSTEM RESET synchronous_commit")
        sync_names("")


def test_a_failing_archive_command_is_critical(cluster: Cluster, tmp_path: Path) -> None:
    p = cluster.primary
    _run(p.dsn, "ALTER SYSTEM SET archive_command = '/bin/false'")
    _run(p.dsn, "SELECT pg_reload_conf()")
    time.sleep(0.5)
    _run(p.dsn, "CREATE TABLE IF NOT EXISTS w (id int, pad text); INSERT INTO w VALUES (1, 'z')")
    _run(p.dsn, "SELECT pg_switch_wal()")
    _until("the archiver to fail", lambda: _run(p.dsn, "SELECT failed_count > 0 FROM pg_stat_archiver")[0])
    s = status(p.dsn)
    assert s.archiver is not None and s.archiver.failing and s.archiver.failed_count > 0
    check = health(p.dsn, ["archiving"]).check("archiving")
    assert check.status == "critical" and "archiving fails" in check.message, check
    assert check.objects == [s.archiver.last_failed_wal]
    done = subprocess.run([sys.executable, "-m", "agent19", "health", "--dsn", p.dsn, "--checks", "archiving"],
                          capture_output=True, text=True, cwd=Path(__file__).parent.parent, timeout=60)
    assert done.returncode == 1 and "CRITICAL" in done.stdout, done.stdout + done.stderr
    never = subprocess.run([sys.executable, "-m", "agent19", "health", "--dsn", p.dsn, "--checks", "archiving",
                            "--fail-on", "never"], capture_output=True, text=True, timeout=60,
                           cwd=Path(__file__).parent.parent)
    assert never.returncode == 0
    # their text in an ASCII encoding (tests/test_ascii_output_ops.py): the same report, the same exit code
    from tests.test_ascii_output_ops import same_in_ascii

    text = same_in_ascii(tmp_path, "replication", code=0, DATABASE_URL=p.dsn)
    assert " failed - FAILING now" in text and "failover: READY" in text, text
    assert "role: standby" in same_in_ascii(tmp_path, "replication", code=0, DATABASE_URL=cluster.standby.dsn)
    assert "CRITICAL" in same_in_ascii(tmp_path, "health", code=1, DATABASE_URL=p.dsn)
    _run(p.dsn, "ALTER SYSTEM SET archive_command = ''")
    _run(p.dsn, "SELECT pg_reload_conf()")
    _until("archive_command to be empty", lambda: _run(p.dsn, "SELECT current_setting('archive_command')")[0] == "")
    assert status(p.dsn).archiver.configured is False  # type: ignore[union-attr]
    unset = health(p.dsn, ["archiving"]).check("archiving")
    assert unset.status == "critical" and "no archive_command or archive_library is set" in unset.message
