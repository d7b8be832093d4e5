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
from tests.conftest import DEFAULT_DATA_HOME, SESSION_DATA_DIR, session_settings


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


def test_a_settings_made_without_the_session_s_data_dir_never_reaches_the_user_s() -> None:
    """Settings(...) or Settings.load(env={...}) without AGENT19_DATA_DIR fall back to the per-user default: in the
    session that is an empty directory of the session's (checked empty after every test), never under HOME; the
    tests' own helper gives the session's data directory."""
    assert default_data_dir().resolve().is_relative_to(DEFAULT_DATA_HOME.resolve())
    assert not default_data_dir().resolve().is_relative_to(Path.home().resolve())
    assert session_settings().data_dir == SESSION_DATA_DIR
    assert Settings.load().data_dir == SESSION_DATA_DIR


def test_a_test_that_writes_state_leaves_an_empty_home_empty(tmp_path: Path) -> None:
    """The whole chain, as a developer runs the tests: a test whose ETL run writes the dry-run ledger, run with HOME
    an empty directory and no XDG_DATA_HOME or AGENT19_DATA_DIR of the developer's, leaves HOME empty and passes (its
    Settings came from session_settings, not from an env={} that fell back to ~/.local/share/agent19)."""
    home = tmp_path / "home"
    home.mkdir()
    env = {k: v for k, v in os.environ.items() if k not in ("XDG_DATA_HOME", "AGENT19_DATA_DIR", "DATABASE_URL")}
    env["HOME"] = str(home)
    test = "tests/test_etl_batch.py::test_dry_run_writes_nothing_and_loading_needs_execute"
    done = subprocess.run([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", test],
                          capture_output=True, text=True, timeout=300, env=env,
                          cwd=Path(__file__).resolve().parent.parent)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-2000:]
    assert sorted(p.relative_to(home) for p in home.rglob("*")) == []
