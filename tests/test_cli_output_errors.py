"""When the output cannot be written — an encoding that cannot spell a name, a full disk — the command says so and
exits 2 (unusable configuration), never with a traceback nor with 1, which for lint means "problems found"."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest


def _lint(tmp_path: Path, stdout: object, **env: str) -> subprocess.CompletedProcess[str]:
    migration = tmp_path / "m.sql"
    migration.write_text('ALTER TABLE "tablé" ADD COLUMN c integer;\n', encoding="utf-8")
    environ = {k: v for k, v in os.environ.items() if k not in ("DATABASE_URL", "AGENT19_READ_DSN")}
    environ.update(AGENT19_DATA_DIR=str(tmp_path / "data"), **env)
    return subprocess.run([sys.executable, "-m", "agent19", "lint", str(migration), "--format", "json",
                           "--pg-version", "15"], stdout=stdout, stderr=subprocess.PIPE, text=True, cwd=tmp_path,
                          env=environ, encoding="utf-8")


def test_an_output_encoding_that_cannot_write_a_name_is_a_clear_error(tmp_path: Path) -> None:
    proc = _lint(tmp_path, subprocess.DEVNULL, PYTHONIOENCODING="ascii")
    assert proc.returncode == 2, proc.stderr
    assert "Traceback" not in proc.stderr
    assert "cannot write" in proc.stderr and "PYTHONIOENCODING=utf-8" in proc.stderr and "'\\xe9'" in proc.stderr


@pytest.mark.skipif(not os.path.exists("/dev/full"), reason="needs /dev/full")
def test_a_full_disk_is_a_clear_error(tmp_path: Path) -> None:
    with open("/dev/full", "w") as full:
        proc = _lint(tmp_path, full)
    assert proc.returncode == 2, proc.stderr
    assert "Traceback" not in proc.stderr
    assert "could not write the output: No space left on device" in proc.stderr


def test_the_same_lint_written_where_it_can_be_is_read_whole(tmp_path: Path) -> None:
    proc = _lint(tmp_path, subprocess.PIPE, PYTHONIOENCODING="utf-8")
    assert proc.returncode == 0, proc.stderr
    assert 'tablé' in proc.stdout and proc.stdout.rstrip().endswith("}")
