"""The test session keeps agent19's state in a temporary data directory of its own (tests/conftest.py), never in
the user's: a test run must not fill a developer's dry-run ledger, audit log or embedded server with test
migrations, nor read what the developer's own runs left there (a ledger entry that lets a test's change run)."""

from __future__ import annotations

import os
import subprocess
import sys
import tempfile
import uuid
from pathlib import Path

from agent19.config import Settings, default_data_dir
from agent19.safety.dry_run_ledger import LEDGER, statement_hash


def test_settings_in_the_session_resolve_to_its_temporary_data_dir() -> None:
    data_dir = Settings.load().data_dir  # as every command the tests run resolves it
    assert data_dir.resolve().is_relative_to(Path(tempfile.gettempdir()).resolve())
    assert not default_data_dir().resolve().is_relative_to(data_dir.resolve())
    assert not data_dir.resolve().is_relative_to(default_data_dir().resolve())


def test_a_dry_run_a_test_starts_writes_its_ledger_in_the_session_dir_only(dsn: str) -> None:
    sql = f"CREATE TABLE t_{uuid.uuid4().hex[:12]} (id int)"  # its hash is in no ledger but the one this run writes
    env = {k: v for k, v in os.environ.items() if k != "DATABASE_URL"}  # the session's environment, as tests pass it
    done = subprocess.run([sys.executable, "-m", "agent19", "dry-run", "--sql", sql, "--dsn", dsn, "--mode", "dry-run",
                           "--format", "json"], capture_output=True, text=True, timeout=120, env=env)
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-2000:]
    ours = statement_hash(sql)
    assert ours in (Settings.load().data_dir / LEDGER).read_text()
    users = default_data_dir() / LEDGER
    assert not users.exists() or ours not in users.read_text()
