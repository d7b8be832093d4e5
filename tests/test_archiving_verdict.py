"""`agent19 health` (its `archiving` check) and `agent19 backup status` judge WAL archiving the same way.

Both surfaces are run through the CLI, as a user would, on real servers in each state: archiving off,
an archive_command failing now, the same archiver recovered within the hour, a non-superuser role that
cannot list the waiting segments, a healthy archiver. Each time both must give the same level.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import psycopg
import pytest

from tests.conftest import need, until
from tools.throwaway import ThrowawayServer, start_system, system_versions

ROOT = Path(__file__).resolve().parent.parent
ARCHIVING = ("archive_configured", "archive_failures", "archive_ready", "last_archived_age")


def _cli(dsn: str, *args: str) -> dict:
    done = subprocess.run([sys.executable, "-m", "agent19", *args, "--dsn", dsn, "--format", "json"],
                          capture_output=True, text=True, cwd=ROOT, timeout=120, env={**os.environ, "DATABASE_URL": ""})
    assert done.returncode in (0, 1), done.stdout + done.stderr
    return json.loads(done.stdout)


def _both(dsn: str) -> tuple[str, str, dict]:
    """(health's archiving level, backup status's archiving level, backup status's checks by name)."""
    [check] = _cli(dsn, "health", "--checks", "archiving", "--fail-on", "never")["checks"]
    status = _cli(dsn, "backup", "status")
    checks = {c["check"]: c for c in status["checks"]}
    rank = {"ok": 0, "unknown": 1, "warning": 2, "critical": 3}
    level = max((checks[name]["status"] for name in ARCHIVING), key=rank.__getitem__)
    return check["status"], level, checks


def _sql(dsn: str, sql: str) -> list[tuple]:
    with psycopg.connect(dsn, autocommit=True) as conn:
        cur = conn.execute(sql)
        return cur.fetchall() if cur.description else []


@pytest.fixture
def archiving() -> Iterator[tuple[ThrowawayServer, Path]]:
    need(bool(system_versions()), "no system PostgreSQL")
    archive = Path(tempfile.mkdtemp(prefix="agent19-test-verdict-"))
    os.chmod(archive, 0o777)
    server = start_system(settings={"archive_mode": "on", "archive_command": "'exit 1'"})
    try:
        yield server, archive
    finally:
        server.stop()
        shutil.rmtree(archive, ignore_errors=True)


def test_archiving_off_is_the_same_warning_on_both_surfaces(pg):
    health, backup, checks = _both(pg.dsn)
    assert health == backup == "warning", (health, checks)
    assert "point-in-time recovery is impossible" in checks["archive_configured"]["message"]


def test_failing_then_recovered_archiver_is_judged_alike(archiving):
    server, archive = archiving
    _sql(server.dsn, "CREATE TABLE churn (x int); INSERT INTO churn VALUES (1); SELECT pg_switch_wal()")
    until("the archiver to fail", lambda: _sql(server.dsn, "SELECT failed_count > 0 FROM pg_stat_archiver")[0][0])
    health, backup, checks = _both(server.dsn)
    assert health == backup == "critical", (health, checks)
    assert "no success since" in checks["archive_failures"]["message"]

    # fixed: the same segments archive now; the failure a minute ago is still worth a look, not a page
    _sql(server.dsn, f"ALTER SYSTEM SET archive_command = 'cp %p {archive}/%f'")
    _sql(server.dsn, "SELECT pg_reload_conf()")
    until("the archiver to succeed after its failure", lambda: _sql(
        server.dsn, "SELECT last_archived_time > last_failed_time FROM pg_stat_archiver")[0][0], timeout=90)
    health, backup, checks = _both(server.dsn)
    assert health == backup == "warning", (health, checks)
    assert "succeeded since" in checks["archive_failures"]["message"]

    # a role that cannot list the waiting segments: the same level, the segments said unknown
    _sql(server.dsn, "CREATE ROLE plain_reader LOGIN")
    plain = server.dsn.replace("postgres@", "plain_reader@")
    health, backup, checks = _both(plain)
    assert health == backup == "warning", (health, checks)
    assert checks["archive_ready"]["status"] == "unknown"


def test_a_healthy_archiver_is_ok_on_both_and_a_hidden_queue_unknown_on_both(archiving):
    server, archive = archiving
    _sql(server.dsn, f"ALTER SYSTEM SET archive_command = 'cp %p {archive}/%f'")
    _sql(server.dsn, "SELECT pg_reload_conf()")
    time.sleep(0.5)
    _sql(server.dsn, "SELECT pg_stat_reset_shared('archiver')")
    _sql(server.dsn, "CREATE TABLE churn (x int); INSERT INTO churn VALUES (1); SELECT pg_switch_wal()")
    until("a segment to be archived", lambda: _sql(server.dsn, "SELECT archived_count > 0 FROM pg_stat_archiver"
                                                   )[0][0])
    health, backup, checks = _both(server.dsn)
    assert health == backup == "ok", (health, checks)
    _sql(server.dsn, "CREATE ROLE plain_reader LOGIN")
    health, backup, _ = _both(server.dsn.replace("postgres@", "plain_reader@"))
    assert health == backup == "unknown"
