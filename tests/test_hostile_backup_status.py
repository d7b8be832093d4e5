"""Hostile review of `agent19 backup status`: an interrupted base backup or a backup dated in the future
must not satisfy the RPO. Real server, real pg_basebackup (killed mid-copy), the CLI."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

import psycopg

from agent19.db.binaries import pg_binary
from tests.conftest import need
from tools.throwaway import ThrowawayServer, start_system, system_versions

ROOT = Path(__file__).resolve().parent.parent


def _status(dsn: str, *args: str) -> tuple[int, dict]:
    done = subprocess.run([sys.executable, "-m", "agent19", "backup", "status", "--dsn", dsn, "--format", "json",
                           *args], capture_output=True, text=True, cwd=ROOT, timeout=120,
                          env={**os.environ, "DATABASE_URL": ""})
    assert done.returncode in (0, 1), done.stderr
    return done.returncode, json.loads(done.stdout)


def _age_check(out: dict) -> dict:
    return next(c for c in out["checks"] if c["check"] == "backup_age")


def test_a_killed_pg_basebackup_is_not_the_newest_backup(pg: ThrowawayServer, tmp_path):
    basebackup = pg_binary("pg_basebackup", pg.major)
    need(basebackup is not None, "pg_basebackup is not installed")
    backups = tmp_path / "backups"
    subprocess.run([basebackup, "-D", backups / "complete", "-c", "fast", "-d", pg.dsn], check=True,
                   capture_output=True)
    label = backups / "complete" / "backup_label"
    three_days_ago = (datetime.now(UTC) - timedelta(days=3)).strftime("%Y-%m-%d %H:%M:%S UTC")
    label.write_text("".join(f"START TIME: {three_days_ago}\n" if ln.startswith("START TIME:") else ln
                             for ln in label.read_text().splitlines(keepends=True)))

    # the slowest rate pg_basebackup allows: killed as soon as its backup_label has landed. The whole process
    # group goes (as `kill -9 -PGID` or the OOM killer of a job would): pg_basebackup's WAL-streaming child
    # keeps the base backup's socket open, and a walsender nobody reads would block DROP DATABASE … (FORCE)
    copying = subprocess.Popen([basebackup, "-D", backups / "interrupted", "-c", "fast", "-r", "32k", "-d", pg.dsn],
                               stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
    try:
        deadline = time.monotonic() + 60
        while not (backups / "interrupted" / "backup_label").exists():
            assert copying.poll() is None and time.monotonic() < deadline, "pg_basebackup ended before the kill"
            time.sleep(0.05)
    finally:
        os.killpg(copying.pid, signal.SIGKILL)
        copying.wait()

    code, out = _status(pg.dsn, "--rpo", "24h", "--backup-dir", str(backups))
    age = _age_check(out)
    assert code == 1 and age["status"] == "critical", age
    assert "complete" in age["message"] and "interrupted" not in age["message"], age
    listed = {Path(b["label"]).name: b for b in out["backups"]}
    assert listed["interrupted"]["finished"] is None and "incomplete" in listed["interrupted"]["kind"]


def test_a_backup_dated_in_the_future_is_a_wrong_clock_not_a_fresh_backup(pg: ThrowawayServer, tmp_path):
    future = int((datetime.now(UTC) + timedelta(days=30)).timestamp())
    info = tmp_path / "info.json"
    info.write_text(json.dumps([{"name": "main", "backup": [
        {"label": "20261230-010000F", "type": "full", "timestamp": {"start": future - 60, "stop": future}}]}]))
    code, out = _status(pg.dsn, "--rpo", "24h", "--pgbackrest-info", str(info))
    age = _age_check(out)
    assert code == 1 and age["status"] == "warning" and "future" in age["message"], age


def test_a_truncated_or_partial_segment_in_the_archive_is_not_a_whole_archive(tmp_path):
    need(bool(system_versions()), "no system PostgreSQL")
    archive = Path(tempfile.mkdtemp(prefix="agent19-hostile-archive-"))
    os.chmod(archive, 0o777)  # the server's OS user copies into it
    server = start_system(settings={"archive_mode": "on", "archive_command": f"'cp %p {archive}/%f'"})
    try:
        with psycopg.connect(server.dsn, autocommit=True) as conn:
            conn.execute("CREATE TABLE churn (x int)")
            for i in range(4):
                conn.execute(f"INSERT INTO churn VALUES ({i})")
                conn.execute("SELECT pg_switch_wal()")
        deadline = time.monotonic() + 60
        while len(segments := sorted(p for p in archive.iterdir() if len(p.name) == 24)) < 4:
            assert time.monotonic() < deadline, "the archiver did not archive 4 segments"
            time.sleep(0.2)
        code, out = _status(server.dsn, "--archive-dir", str(archive))
        gaps = next(c for c in out["checks"] if c["check"] == "archive_gaps")
        assert gaps["status"] == "ok", gaps

        truncated = segments[1]
        with open(truncated, "r+b") as f:  # what `cp` leaves on a full archive disk
            f.truncate(1024 * 1024)
        code, out = _status(server.dsn, "--archive-dir", str(archive))
        gaps = next(c for c in out["checks"] if c["check"] == "archive_gaps")
        assert code == 1 and gaps["status"] == "critical" and truncated.name in gaps["message"], gaps

        truncated.unlink()
        segments[2].rename(segments[2].with_name(segments[2].name + ".partial"))
        code, out = _status(server.dsn, "--archive-dir", str(archive))
        gaps = next(c for c in out["checks"] if c["check"] == "archive_gaps")
        assert gaps["status"] == "critical" and gaps["value"] == 1 and truncated.name in gaps["message"], gaps
        assert "2 segment(s) missing" in gaps["message"], gaps  # the .partial one is no whole segment either
    finally:
        server.stop()
        shutil.rmtree(archive, ignore_errors=True)
