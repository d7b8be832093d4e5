"""Hostile review of `agent19 backup runbook`: paths and names are pasted into shell commands and a
recovery setting; pasted as written, they must run as written and nothing more. Real server, the CLI."""

from __future__ import annotations

import os
import re
import shlex
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

from agent19.db.binaries import pg_binary
from tests.conftest import need
from tools.throwaway import ThrowawayServer, start_system, system_versions

ROOT = Path(__file__).resolve().parent.parent


def _runbook(dsn: str, *args: str) -> str:
    done = subprocess.run([sys.executable, "-m", "agent19", "backup", "runbook", "--dsn", dsn, *args],
                          capture_output=True, text=True, cwd=ROOT, timeout=120, env={**os.environ, "DATABASE_URL": ""})
    assert done.returncode == 0, done.stderr
    return done.stdout


def test_a_hostile_backup_path_is_one_argument_in_the_pasted_commands(pg: ThrowawayServer, tmp_path):
    basebackup, verifybackup = pg_binary("pg_basebackup", pg.major), pg_binary("pg_verifybackup", pg.major)
    need(basebackup is not None and verifybackup is not None, "pg_basebackup/pg_verifybackup not installed")
    marker = tmp_path / "ran"
    # (not $(…): pg_verifybackup itself hands its path to a shell in double quotes, whatever the runbook does)
    backup = tmp_path / f"nightly; touch {marker}; it's"
    subprocess.run([basebackup, "-D", backup, "-c", "fast", "-d", pg.dsn], check=True, capture_output=True)
    md = _runbook(pg.dsn, "--backup-dir", str(backup), "--archive-dir", "/srv/wal $(touch /tmp/x)")
    line = next(ln.strip() for ln in md.splitlines() if "pg_verifybackup " in ln)
    done = subprocess.run(["bash", "-c", line], capture_output=True, text=True)
    assert not marker.exists(), f"pasting {line!r} ran a command hidden in the path"
    assert done.returncode == 0, done.stderr  # and it verified the backup at that path
    copy = next(ln.strip() for ln in md.splitlines() if ln.strip().startswith("sudo cp -a "))
    assert shlex.split(copy)[3] == str(backup), copy
    drill = next(ln.strip().rstrip("\\") for ln in md.splitlines() if ln.startswith("agent19 backup verify --kind"))
    assert shlex.split(drill)[5:9] == ["--from", str(backup), "--archive-dir", "/srv/wal $(touch /tmp/x)"], drill


def test_restore_command_keeps_an_odd_archive_path_whole(tmp_path):
    need(bool(system_versions()), "no system PostgreSQL")
    archive = Path(tempfile.mkdtemp(prefix="agent19-hostile-wal-"))
    os.chmod(archive, 0o777)
    server = start_system(settings={"archive_mode": "on", "archive_command": f"'cp %p {archive}/%f'"})
    try:
        odd = "/srv/wal archive/it's"
        md = _runbook(server.dsn, "--archive-dir", odd)
        setting = re.search(r"^\s*restore_command = '(.*)'$", md, re.M)
        assert setting, md
        command = setting[1].replace("''", "'")  # the configuration file's quoting, undone as the server does
        assert shlex.split(command) == ["cp", f"{odd}/%f", "%p"], command
    finally:
        server.stop()
        shutil.rmtree(archive, ignore_errors=True)
