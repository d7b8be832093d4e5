"""health_check on a real server: clean, then with every planted problem, as superuser, pg_monitor and a plain
role, with a lock that would make a naive check hang, and on the embedded server.

One server for the module (system binaries, max_prepared_transactions > 0). Tests run in file order: the
clean server first, then the planted database (a module fixture, set up once). Time thresholds (idle, long,
blocked, prepared) are lowered to 1 s for the planted run instead of waiting a minute: what is tested is that
the server's own timestamps put the right sessions over the line.
"""

from __future__ import annotations

import json
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import psycopg
import pytest
from psycopg.conninfo import make_conninfo

from agent19.config import Settings
from agent19.db.connection import Database
from agent19.ops.health.check import ALL_CHECKS, health_check
from agent19.ops.health.model import HealthReport
from agent19.ops.health.probe import Probe
from agent19.ops.health.thresholds import HealthThresholds
from agent19.ops.replication.model import ReplicationStatus
from agent19.ops.replication.status import replication_status
from tests.conftest import _fresh_database, _server, need, one
from tests.conftest import until as _until
from tests.mcp_client import stdio_session
from tools.throwaway import ThrowawayServer, start_system, system_versions

ROOT = Path(__file__).parent.parent
FAST = {"long_query_s": 1, "idle_in_transaction_s": 1, "blocked_s": 1, "prepared_xact_s": 1}
CONTRACT = {"check", "status", "value", "threshold", "evidence", "fix", "objects"}


def health(dsn: str, only: list[str] | None = None, **thresholds: Any) -> HealthReport:
    db = Database(Settings.load(dsn=dsn, env={}))
    try:
        return health_check(db, HealthThresholds(**thresholds), only=only)
    finally:
        db.close()


def status(dsn: str, **thresholds: Any) -> ReplicationStatus:
    db = Database(Settings.load(dsn=dsn, env={}))
    probe = Probe.open(db, HealthThresholds(**thresholds))
    try:
        return replication_status(probe)
    finally:
        probe.close()
        db.close()


def _alarms(report: HealthReport) -> list[str]:
    return [f"{c.check}: {c.status}: {c.message}" for c in report.checks if c.status != "ok"]


@pytest.fixture(scope="module")
def server() -> Iterator[ThrowawayServer]:
    need(bool(system_versions()), "no system PostgreSQL binaries")
    s = start_system(settings={"max_prepared_transactions": "5"})
    try:
        yield s
    finally:
        s.stop()


def test_a_clean_server_raises_nothing(server: ThrowawayServer) -> None:
    report = health(server.dsn)
    assert [c.check for c in report.checks] == [c for c in ALL_CHECKS if c != "standby_replay"]
    # the one warning a default server gets: no WAL archive (backup status says the same; test_archiving_verdict.py)
    assert _alarms(report) == [f"archiving: warning: {report.check('archiving').message}"], _alarms(report)
    assert report.check("archiving").message.startswith("archive_mode is off")
    for c in report.checks:
        dumped = c.model_dump()
        assert CONTRACT <= set(dumped) and dumped["evidence"], c.check
    assert report.summary.role == "primary" and report.summary.privileges == "superuser"
    assert not report.summary.failed and report.summary.cannot_see == []
    assert report.check("failover_readiness").message.startswith("no standby")
    assert report.check("cache_hit_tables").window.startswith("since")


@dataclass
class Planted:
    dsn: str
    clean_dsn: str
    idle_pid: int
    chain: list[int]  # head (holds the lock) … tail (waits longest behind others)
    gid: str = "planted_gid"
    conns: list[psycopg.Connection[Any]] = field(default_factory=list)


PLANT = """
CREATE SEQUENCE s96 AS integer;
SELECT setval('s96', 2061584302);                 -- 96 % of 2^31 - 1, named in no column default
CREATE TABLE tiny (id smallint GENERATED ALWAYS AS IDENTITY PRIMARY KEY, v int);
SELECT setval(pg_get_serial_sequence('tiny', 'id'), 30000);   -- an identity column at 91.6 %
CREATE SEQUENCE wide_seq;                         -- bigint by default
CREATE TABLE narrow (id int PRIMARY KEY DEFAULT nextval('wide_seq'));
INSERT INTO narrow DEFAULT VALUES;
CREATE TABLE dead (id int, pad text) WITH (autovacuum_enabled = false);
INSERT INTO dead SELECT g, 'x' FROM generate_series(1, 100000) g;
DELETE FROM dead WHERE id % 10 < 3;               -- 30 % dead
CREATE TABLE dupi (v int); INSERT INTO dupi VALUES (1), (1);
CREATE TABLE chain (id int PRIMARY KEY, v int); INSERT INTO chain VALUES (1, 0), (2, 0);
CREATE TABLE dup (id int PRIMARY KEY);
SELECT pg_stat_force_next_flush();
"""


@pytest.fixture(scope="module")
def planted(server: ThrowawayServer) -> Iterator[Planted]:
    gen = _fresh_database(server)
    dsn = next(gen)
    clean_gen = _fresh_database(server)
    clean_dsn = next(clean_gen)
    conns: list[psycopg.Connection[Any]] = []
    threads: list[threading.Thread] = []

    def connect(autocommit: bool = False) -> psycopg.Connection[Any]:
        c = psycopg.connect(dsn, autocommit=autocommit)
        conns.append(c)
        return c

    try:
        with psycopg.connect(dsn, autocommit=True) as c:
            c.execute(PLANT)
            with pytest.raises(psycopg.errors.UniqueViolation):
                c.execute("CREATE UNIQUE INDEX CONCURRENTLY dupi_v ON dupi (v)")  # leaves dupi_v INVALID
            c.execute("SELECT pg_stat_force_next_flush()")
        _until("the dead tuples in the statistics",
               lambda: one(dsn, "SELECT n_dead_tup FROM pg_stat_user_tables WHERE relname = 'dead'") == 30000)
        idle = connect()
        idle.execute("SELECT count(*) FROM narrow")  # then idle in transaction
        idle_pid = idle.info.backend_pid
        prep = connect()
        prep.execute("INSERT INTO narrow DEFAULT VALUES")
        prep.execute("PREPARE TRANSACTION 'planted_gid'")
        head, middle, tail = connect(), connect(), connect()
        head.execute("UPDATE chain SET v = v + 1 WHERE id = 1")  # holds row 1
        middle.execute("UPDATE chain SET v = v + 1 WHERE id = 2")  # holds row 2 …
        for conn, row in ((middle, 1), (tail, 2)):  # … then waits for row 1; tail waits for row 2
            t = threading.Thread(target=conn.execute, args=(f"UPDATE chain SET v = v + 1 WHERE id = {row}",),
                                 daemon=True)
            t.start()
            threads.append(t)
            pid = conn.info.backend_pid
            _until(f"pid {pid} to wait", lambda pid=pid: one(
                dsn, f"SELECT cardinality(pg_blocking_pids({pid})) > 0"))
        time.sleep(1.5)  # every planted session past the 1 s thresholds
        yield Planted(dsn=dsn, clean_dsn=clean_dsn, idle_pid=idle_pid,
                      chain=[head.info.backend_pid, middle.info.backend_pid, tail.info.backend_pid], conns=conns)
    finally:
        for c in conns:
            try:
                c.rollback()
            except psycopg.Error:
                pass
        for t in threads:
            t.join(timeout=10)
        for c in conns:
            c.close()
        with psycopg.connect(dsn, autocommit=True) as c:
            if c.execute("SELECT count(*) FROM pg_prepared_xacts WHERE gid = 'planted_gid'").fetchone() == (1,):
                c.execute("ROLLBACK PREPARED 'planted_gid'")
        for g in (gen, clean_gen):
            next(g, None)


def test_every_planted_problem_is_found_with_its_object(planted: Planted) -> None:
    report = health(planted.dsn, **FAST)
    check = report.check
    head, middle, tail = planted.chain

    idle = check("idle_in_transaction")
    assert idle.status == "warning" and f"pid {planted.idle_pid}" in idle.objects, idle
    assert set(idle.objects) == {f"pid {planted.idle_pid}", f"pid {head}"}  # the chain's head is idle too
    assert "pg_terminate_backend" in (idle.fix or "") and idle.untrusted_data

    blocked = check("blocked_sessions")
    assert blocked.status == "warning" and blocked.objects == [f"pid {p}" for p in sorted(planted.chain)]
    [chain] = blocked.value["chains"]
    assert chain["chain"] == [tail, middle, head], chain
    assert blocked.message.startswith(f"pid {tail} (active") and f"<- blocked by pid {head} (idle in transaction" \
        in blocked.message
    assert f"pg_terminate_backend({head})" in (blocked.fix or "")

    long_running = check("long_running_queries")  # the two waiting UPDATEs have been running > 1 s
    assert long_running.status == "warning" and set(long_running.objects) == {f"pid {middle}", f"pid {tail}"}

    prepared = check("prepared_transactions")
    assert prepared.status == "warning" and len(prepared.objects) == 1 and prepared.objects[0].endswith(planted.gid)
    assert "ROLLBACK PREPARED" in (prepared.fix or "")

    seq = check("sequences")
    assert seq.status == "critical" and seq.objects == ["public.s96", "public.tiny_id_seq"], seq
    nearest = {n["sequence"]: n for n in seq.value["nearest"]}
    assert nearest["public.s96"]["pct"] == 96.0 and nearest["public.tiny_id_seq"]["columns"] == ["public.tiny.id"]

    mismatch = check("sequence_column_type")
    assert mismatch.status == "warning" and mismatch.objects == ["public.narrow.id"], mismatch
    assert "public.wide_seq" in mismatch.message and "2,147,483,647" in mismatch.message

    dead = check("dead_tuples")
    assert dead.status == "warning" and dead.objects == ["public.dead"], dead
    [row] = dead.value
    assert row["dead"] == 30000 and row["dead_pct"] == 30.0 and row["autovacuum_off"] is True
    assert "VACUUM (VERBOSE, ANALYZE) public.dead;" in (dead.fix or "") and "RESET (autovacuum_enabled)" in dead.fix

    invalid = check("invalid_indexes")
    assert invalid.status == "warning" and invalid.objects == ["public.dupi_v"]
    assert "DROP INDEX CONCURRENTLY public.dupi_v" in (invalid.fix or "")

    for name in ("connections", "xid_wraparound", "multixact_wraparound", "cache_hit_tables", "cache_hit_indexes",
                 "checkpoints", "temp_files", "deadlocks", "index_health", "replication_lag", "failover_readiness",
                 "replication_slots"):
        assert check(name).status == "ok", check(name)  # no other false alarm
    assert check("archiving").status == "warning"  # archive_mode off: no point-in-time recovery (as backup status)
    assert report.summary.worst == "critical" and report.summary.failed


def test_the_same_checks_on_a_clean_database_of_the_same_server_find_nothing_there(planted: Planted) -> None:
    report = health(planted.clean_dsn, ["dead_tuples", "sequences", "sequence_column_type", "invalid_indexes",
                                        "stale_statistics", "index_health"])
    assert _alarms(report) == []


def test_wraparound_thresholds_overridden_trip_on_a_fresh_cluster(planted: Planted) -> None:
    report = health(planted.clean_dsn, ["xid_wraparound", "multixact_wraparound"], wraparound_warning_pct=1e-7)
    xid = report.check("xid_wraparound")
    assert xid.status == "warning" and {"postgres", "template1"} <= set(xid.objects), xid
    assert xid.value["tables_nearest_freeze_max_age"] and "--freeze" in (xid.fix or "")
    assert report.check("multixact_wraparound").status == "ok"  # no multixact used yet: age 0
    crit = health(planted.clean_dsn, ["xid_wraparound"], wraparound_warning_pct=1e-8, wraparound_critical_pct=1e-7)
    assert crit.check("xid_wraparound").status == "critical"


def test_a_check_blocked_by_an_access_exclusive_lock_is_unknown_and_names_the_holder(planted: Planted) -> None:
    holder = psycopg.connect(planted.dsn)
    pid = holder.info.backend_pid
    try:
        holder.execute("LOCK TABLE dup IN ACCESS EXCLUSIVE MODE")
        result: dict[str, Any] = {}
        t = threading.Thread(target=lambda: result.update(report=health(planted.dsn)), daemon=True)
        t.start()
        t.join(timeout=60)  # Postgres MCP Pro's health check hung for 200 s here; this one must return
        assert not t.is_alive(), "health_check waited on the lock"
    finally:
        holder.rollback()
        holder.close()
    report: HealthReport = result["report"]
    for name in ("invalid_indexes", "index_health"):  # pg_relation_size needs AccessShareLock on every table
        c = report.check(name)
        assert c.status == "unknown", c
        assert "lock_timeout (500 ms)" in c.message and f"pid {pid} holding AccessExclusiveLock on public.dup" \
            in c.message, c.message
    others = [c for c in report.checks if c.check not in ("invalid_indexes", "index_health")]
    assert [c.check for c in others if c.status == "unknown"] == []
    assert report.check("dead_tuples").objects == ["public.dead"]  # the others still report


def test_a_pg_monitor_role_sees_the_sessions_and_is_told_which_sequences_it_cannot_read(
        server: ThrowawayServer, planted: Planted) -> None:
    with psycopg.connect(server.dsn, autocommit=True) as c:
        c.execute("CREATE ROLE mon LOGIN IN ROLE pg_monitor; CREATE ROLE plain LOGIN")
    mon = health(make_conninfo(planted.dsn, user="mon"), **FAST)
    assert mon.summary.privileges == "pg_monitor"
    assert f"pid {planted.idle_pid}" in mon.check("idle_in_transaction").objects
    assert mon.check("blocked_sessions").objects == [f"pid {p}" for p in sorted(planted.chain)]
    assert mon.check("dead_tuples").objects == ["public.dead"]
    assert mon.check("invalid_indexes").objects == ["public.dupi_v"]
    seq = mon.check("sequences")
    assert seq.status == "unknown" and "public.s96" in seq.value["unreadable"], seq
    assert seq.needs and "USAGE or SELECT" in seq.needs
    assert any(x.startswith("sequences:") for x in mon.summary.cannot_see)

    plain = health(make_conninfo(planted.dsn, user="plain"), **FAST)
    assert plain.summary.privileges == "limited"
    idle = plain.check("idle_in_transaction")
    assert idle.status == "unknown" and idle.objects == [] and "pg_monitor" in (idle.needs or ""), idle
    assert any("pg_stat_activity" in x for x in plain.summary.cannot_see)


def test_cli_exit_status_config_file_and_set(planted: Planted, tmp_path: Path) -> None:
    def cli(*args: str, cwd: Path = ROOT) -> subprocess.CompletedProcess[str]:
        return subprocess.run([sys.executable, "-m", "agent19", "health", "--dsn", planted.dsn, *args],
                              capture_output=True, text=True, cwd=cwd, timeout=120)

    done = cli("--format", "json")
    assert done.returncode == 1, done.stderr  # s96 at 96 % is critical
    out = json.loads(done.stdout)
    assert out["summary"]["critical"] >= 1 and all(CONTRACT <= set(c) for c in out["checks"])
    assert cli("--checks", "dead_tuples").returncode == 0  # a warning does not fail by default …
    assert cli("--checks", "dead_tuples", "--fail-on", "warning").returncode == 1  # … unless asked
    (tmp_path / "agent19.toml").write_text('[health]\nfail_on = "warning"\ndead_tuples_pct = 50\n')
    assert cli("--checks", "dead_tuples", cwd=tmp_path).returncode == 0  # 30 % < 50 % from the config
    assert cli("--checks", "dead_tuples", "--set", "dead_tuples_pct=20", cwd=tmp_path).returncode == 1
    text = cli("--checks", "idle_in_transaction", "--set", "idle_in_transaction_s=1")
    assert f"pid {planted.idle_pid}" in text.stdout and "WARNING" in text.stdout
    bad = cli("--set", "no_such_threshold=1")
    assert bad.returncode == 2 and "no_such_threshold" in bad.stderr
    unknown = cli("--checks", "nonsense")
    assert unknown.returncode == 2 and "choose from" in unknown.stderr


async def test_mcp_health_check_structured_result(planted: Planted) -> None:
    async with stdio_session("--dsn", planted.dsn) as session:
        result = await session.call_tool("health_check", {"checks": ["sequences", "dead_tuples"],
                                                          "set": ["dead_tuples_pct=25"]})
        assert not result.is_error, result.content
        out = result.structured_content
        assert out is not None
        got = {c["check"]: c for c in out["checks"]}
        assert set(got) == {"sequences", "dead_tuples"}
        assert got["sequences"]["status"] == "critical" and got["dead_tuples"]["objects"] == ["public.dead"]
        assert out["summary"]["thresholds"]["dead_tuples_pct"] == 25


def test_the_embedded_server_has_no_standby_and_says_so() -> None:
    server = _server("pgserver")
    gen = _fresh_database(server)
    dsn = next(gen)
    try:
        report = health(dsn)
        assert report.summary.server_version and report.summary.server_version.startswith("16")
        assert report.check("failover_readiness").status == "ok"
        assert "no standby" in report.check("failover_readiness").message
        assert "archive_mode is off" in report.check("archiving").message
        assert [c.check for c in report.checks if c.status in ("critical", "unknown")] == []
        replication = status(dsn)
        assert replication.role == "primary" and replication.standbys == [] and replication.slots == []
        assert any("no standby" in n for n in replication.notes)
    finally:
        next(gen, None)
