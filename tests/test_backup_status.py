"""backup_status on real conditions: a failing archive_command, WAL piling up, old and fresh backups."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import psycopg
import pytest

from agent19.config import Settings
from agent19.db.binaries import as_postgres_user
from agent19.db.connection import Database
from agent19.errors import InputError
from agent19.ops.backup.status import backup_status
from tests.conftest import need
from tools.throwaway import ThrowawayServer, start_system, system_versions


@pytest.fixture(scope="module")
def failing() -> Iterator[ThrowawayServer]:
    """archive_mode on, archive_command that always fails (as a full or unmounted archive disk would)."""
    need(bool(system_versions()), "no system PostgreSQL")
    server = start_system(settings={"archive_mode": "on", "archive_command": "'exit 1'"})
    try:
        yield server
    finally:
        server.stop()


def _sql(dsn: str, sql: str) -> list[tuple]:
    with psycopg.connect(dsn, autocommit=True) as conn:
        cur = conn.execute(sql)
        return cur.fetchall() if cur.description else []


def _status(server: ThrowawayServer, **kw: str) -> dict[str, tuple[str, str]]:
    result = backup_status(Database(Settings.load(dsn=server.dsn)), **kw)
    return {c.check: (c.status, c.message) for c in result.checks}


def _pile_up(dsn: str, segments: int) -> None:
    _sql(dsn, "CREATE TABLE IF NOT EXISTS churn (x int)")
    for i in range(segments):
        _sql(dsn, f"INSERT INTO churn VALUES ({i}); SELECT pg_switch_wal()")


def test_failing_archiver_and_waiting_segments_trip_warning_then_critical(failing):
    _pile_up(failing.dsn, 1)
    deadline = time.monotonic() + 30
    while not _sql(failing.dsn, "SELECT failed_count FROM pg_stat_archiver")[0][0]:
        assert time.monotonic() < deadline, "the archiver never tried"
        time.sleep(0.2)
    checks = _status(failing, rpo="1s")
    assert checks["archive_configured"][0] == "ok"
    assert checks["archive_failures"][0] == "critical" and "failed" in checks["archive_failures"][1]
    assert checks["last_archived_age"][0] in ("warning", "critical")   # nothing archived, segments waiting

    ready = _sql(failing.dsn, "SELECT count(*) FROM pg_ls_archive_statusdir() WHERE name LIKE '%.ready'")[0][0]
    _pile_up(failing.dsn, max(0, 10 - ready))
    checks = _status(failing)
    assert checks["archive_ready"][0] == "warning", checks["archive_ready"]
    _pile_up(failing.dsn, 5)
    checks = _status(failing)
    assert checks["archive_ready"][0] == "critical", checks["archive_ready"]
    assert int(checks["archive_ready"][1].split()[0]) >= 15


def test_without_monitoring_privilege_waiting_segments_are_unknown_not_ok(failing):
    _sql(failing.dsn, "DROP ROLE IF EXISTS plain_user; CREATE ROLE plain_user LOGIN")
    try:
        dsn = failing.dsn.replace("postgres@", "plain_user@")
        result = backup_status(Database(Settings.load(dsn=dsn)))
        ready = next(c for c in result.checks if c.check == "archive_ready")
        assert ready.status == "unknown" and "pg_monitor" in ready.message
    finally:
        _sql(failing.dsn, "DROP ROLE plain_user")


def test_archiving_off_is_a_warning(pg):
    checks = _status(pg)   # the same verdict as health's `archiving` check (tests/test_archiving_verdict.py)
    assert checks["archive_configured"][0] == "warning"
    assert "point-in-time recovery is impossible" in checks["archive_configured"][1]
    assert checks["backup_age"][0] == "unknown"


def _iso(moment: datetime) -> str:
    return moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def test_backup_age_against_the_rpo_from_pgbackrest_walg_and_a_directory(pg, tmp_path):
    now = datetime.now(UTC)
    pgbackrest = [{"name": "main", "backup": [
        {"label": "20261128-010000F", "type": "full",
         "timestamp": {"start": int((now - timedelta(days=2, minutes=5)).timestamp()),
                       "stop": int((now - timedelta(days=2)).timestamp())}},
        {"label": "20261129-010000F_20261129-020000I", "type": "incr",
         "timestamp": {"start": int((now - timedelta(hours=30, minutes=5)).timestamp()),
                       "stop": int((now - timedelta(hours=30)).timestamp())}}]}]
    info = tmp_path / "info.json"
    info.write_text(json.dumps(pgbackrest))
    checks = _status(pg, rpo="24h", pgbackrest_info=str(info))
    assert checks["backup_age"][0] == "critical" and "20261129-010000F_20261129-020000I" in checks["backup_age"][1]
    assert _status(pg, rpo="2d", pgbackrest_info=json.dumps(pgbackrest))["backup_age"][0] == "ok"

    walg = [{"backup_name": "base_000000010000000000000004", "time": _iso(now - timedelta(hours=3)),
             "start_time": _iso(now - timedelta(hours=3, minutes=2)), "finish_time": _iso(now - timedelta(hours=3))}]
    listing = tmp_path / "walg.json"
    listing.write_text(json.dumps(walg))
    assert _status(pg, rpo="4h", walg_backup_list=str(listing))["backup_age"][0] == "ok"
    assert _status(pg, rpo="2h", walg_backup_list=str(listing))["backup_age"][0] == "critical"

    backups = Path(tempfile.mkdtemp(prefix="agent19-test-basebackups-"))
    try:
        os.chmod(backups, 0o777)
        subprocess.run([f"/usr/lib/postgresql/{pg.major}/bin/pg_basebackup", "-D", backups / "today", "-c", "fast",
                        "-d", pg.dsn], check=True, capture_output=True,
                       **as_postgres_user())  # type: ignore[arg-type]
        checks = _status(pg, rpo="1h", backup_dir=str(backups))
        assert checks["backup_age"][0] == "ok" and "today" in checks["backup_age"][1]
        empty = tmp_path / "none"
        empty.mkdir()
        assert _status(pg, rpo="1h", backup_dir=str(empty))["backup_age"][0] == "critical"
    finally:
        shutil.rmtree(backups, ignore_errors=True)


def test_rpo_needs_a_unit(pg):
    with pytest.raises(InputError, match="no unit"):
        backup_status(Database(Settings.load(dsn=pg.dsn)), rpo="3600")


def test_cli_exit_status_and_json(failing):
    env = {**os.environ, "DATABASE_URL": failing.dsn}
    done = subprocess.run([sys.executable, "-m", "agent19", "backup", "status", "--format", "json"],
                          capture_output=True, text=True, env=env)
    assert done.returncode == 1, done.stderr
    out = json.loads(done.stdout)
    assert out["status"] == "critical"
    assert {c["check"] for c in out["checks"]} >= {"archive_configured", "archive_failures", "archive_ready",
                                                  "last_archived_age", "backup_age"}


async def test_mcp_backup_status_structured_result(failing):
    from tests.mcp_client import stdio_session

    async with stdio_session("--dsn", failing.dsn) as session:
        result = await session.call_tool("backup_status", {"rpo": "15min"})
    assert not result.is_error, result.content
    data = result.structured_content
    assert data["status"] == "critical" and data["rpo_s"] == 900
    assert data["archiver"]["archive_mode"] == "on" and data["archiver"]["failed_count"] >= 1
