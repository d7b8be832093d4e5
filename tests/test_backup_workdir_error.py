"""``backup verify --work-dir`` naming a place no directory can be made (a file, /proc): a clear error that says
what to do, exit status 2, and with ``--format json`` the JSON error document, never a traceback."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def _verify(dsn: str, work: str, *extra: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "agent19", "backup", "verify", "--work-dir", work, "--mode",
                           "dry-run", *extra], capture_output=True, text=True, cwd=ROOT, timeout=300,
                          env={**os.environ, "DATABASE_URL": dsn})


def test_a_work_dir_that_is_a_file_or_under_proc_is_a_clear_error(dsn, tmp_path):
    a_file = tmp_path / "not-a-dir"
    a_file.write_text("x")
    for work in (str(a_file), "/proc/nope"):
        done = _verify(dsn, work)
        assert done.returncode == 2, done.stdout + done.stderr
        assert "Traceback" not in done.stderr and "please report" not in done.stderr, done.stderr
        assert f"cannot create a work directory under {work!r}" in done.stderr, done.stderr
        assert "--work-dir" in done.stderr
        as_json = _verify(dsn, work, "--format", "json")
        assert as_json.returncode == 2
        doc = json.loads(as_json.stdout)  # it was empty
        assert "cannot create a work directory" in doc["error"], doc
