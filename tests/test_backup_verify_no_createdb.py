"""`backup verify --mode dry-run` as the application's login without CREATEDB (tests.conftest.owner_login): the
scratch database it asks for cannot be made. auto restores into a throwaway cluster instead, saying why; an
explicit scratch is "could not verify" (exit status 2, not 1 = verification failed) naming what is missing and
the options, and with --format json a JSON document on stdout, like its result."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

from psycopg.conninfo import conninfo_to_dict

from tests.conftest import owner_login, run_sql

ROOT = Path(__file__).resolve().parent.parent


def _verify(dsn: str, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "agent19", "backup", "verify", "--mode", "dry-run", *args],
                          capture_output=True, text=True, cwd=ROOT, timeout=300,
                          env={**os.environ, "DATABASE_URL": dsn})


def test_scratch_without_createdb_is_could_not_verify_with_the_options(dsn):
    app = owner_login(dsn, "nocreatedb")
    login = conninfo_to_dict(app)["user"]
    run_sql(app, "CREATE TABLE t (id int PRIMARY KEY); INSERT INTO t VALUES (1), (2)")
    done = _verify(app, "--restore-into", "scratch")
    assert done.returncode == 2, done.stdout + done.stderr  # could not verify, not "verification failed"
    assert f"login {login} lacks it" in done.stderr and "CREATEDB" in done.stderr, done.stderr
    assert f"ALTER ROLE {login} CREATEDB" in done.stderr and "--restore-into cluster" in done.stderr
    assert "permission denied" not in done.stderr
    as_json = _verify(app, "--restore-into", "scratch", "--format", "json")
    assert as_json.returncode == 2
    out = json.loads(as_json.stdout)
    assert out["verified"] is False and out["could_not_verify"] is True and out["exit_status"] == 2
    assert f"ALTER ROLE {login} CREATEDB" in out["error"]


def test_auto_without_createdb_restores_into_a_throwaway_cluster(dsn):
    app = owner_login(dsn, "nocreatedb")
    run_sql(app, "CREATE TABLE t (id int PRIMARY KEY); INSERT INTO t VALUES (1), (2)")
    done = _verify(app, "--format", "json")
    assert done.returncode == 0, done.stdout + done.stderr
    out = json.loads(done.stdout)
    assert out["verified"] and out["restored_into"].startswith("throwaway cluster"), out
    assert any("lacks CREATEDB" in n for n in out["notes"]), out["notes"]
