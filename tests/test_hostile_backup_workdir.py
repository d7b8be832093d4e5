"""Hostile review of `agent19 backup verify --work-dir`: a relative work directory (as a user types it) works,
and the free-space refusal counts what a throwaway cluster needs before any data (an initdb, ~40 MB).
Real server, real initdb / pg_dump / pg_restore, the CLI run from the user's directory."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from tests.conftest import need, owner_login, run_sql
from tools.throwaway import ThrowawayServer

ROOT = Path(__file__).resolve().parent.parent


def _verify(dsn: str, cwd: Path, *args: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "DATABASE_URL": "", "PYTHONPATH": str(ROOT)}
    return subprocess.run([sys.executable, "-m", "agent19", "backup", "verify", "--dsn", dsn, *args],
                          capture_output=True, text=True, cwd=cwd, timeout=300, env=env)


def test_relative_work_dir_verifies_and_leaves_nothing(pg: ThrowawayServer, dsn: str, public_tmp: Path) -> None:
    app = owner_login(dsn)
    run_sql(app, "CREATE TABLE t (id int PRIMARY KEY, v text)")
    run_sql(app, "INSERT INTO t SELECT g, 'x' FROM generate_series(1, 50) g")
    work = public_tmp / "scratch"
    work.mkdir()
    os.chmod(work, 0o777)
    for kind in ("logical", "physical"):
        args = ["--restore-into", "cluster"] if kind == "logical" else []
        done = _verify(pg.dsn if kind == "physical" else app, public_tmp, "--kind", kind, "--work-dir", "scratch",
                       *args)
        assert "Traceback" not in done.stderr, done.stderr
        assert done.returncode == 0, done.stdout + done.stderr
        assert done.stdout.startswith(f"{kind} backup verified"), done.stdout
        assert list(work.iterdir()) == []  # everything it made under the relative directory is gone


def test_space_refusal_counts_the_throwaway_cluster_itself(dsn: str, public_tmp: Path) -> None:
    app = owner_login(dsn)
    run_sql(app, "CREATE TABLE t (id int PRIMARY KEY); INSERT INTO t VALUES (1)")
    small = public_tmp / "small"
    small.mkdir()
    mounted = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=12M", "tmpfs", str(small)], capture_output=True)
    need(mounted.returncode == 0, "cannot mount a small tmpfs here (needs root)")
    try:
        os.chmod(small, 0o777)
        done = _verify(app, public_tmp, "--restore-into", "cluster", "--work-dir", str(small))
        # refused up front with what it needs (an initdb alone is ~40 MB), not initdb's 'No space left on device'
        assert done.returncode != 0
        assert "not enough free space for the dump and the throwaway cluster" in done.stderr, done.stderr
        assert "No space left" not in done.stderr
        assert list(small.iterdir()) == []
    finally:
        subprocess.run(["umount", str(small)], check=True)
