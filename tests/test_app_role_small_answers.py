"""Small wrong answers to the application's role (r25b L3, L4).

* `agent19 info` ticked `[x] logical_decoding` for a login without REPLICATION (cdc then failed on
  replication_privilege): the feature is the server's wal_level *and* what the login may do.
* `health`'s `archiving` check said it needed "standbys' state … pg_stat_replication": each replication check
  names only the privilege hiding what it reads.
* `backup status` said `ok archive_gaps: 0 segment(s) in wal-archive, None … None, no gap` on an empty archive.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

from tests.conftest import owner_login

ROOT = Path(__file__).parent.parent


def _json(*args: str) -> dict:
    done = subprocess.run([sys.executable, "-m", "agent19", *args, "--format", "json"], capture_output=True,
                          text=True, cwd=ROOT, timeout=120)
    assert done.stdout, done.stderr
    return json.loads(done.stdout)


def _feature(dsn: str) -> dict:
    return next(f for f in _json("info", "--dsn", dsn)["features"] if f["name"] == "logical_decoding")


def test_info_logical_decoding_says_what_the_login_may_do(dsn: str) -> None:
    app = owner_login(dsn)
    mine = _feature(app)
    assert mine["available"] is False and "no REPLICATION attribute" in mine["reason"], mine
    assert "ALTER ROLE" in mine["reason"] and "REPLICATION" in mine["reason"]
    assert _feature(dsn)["available"] is True  # the superuser may (the test server runs wal_level=logical)
    text = subprocess.run([sys.executable, "-m", "agent19", "info", "--dsn", app], capture_output=True, text=True,
                          cwd=ROOT, timeout=120).stdout
    assert "[x] logical_decoding" not in text and "[ ] logical_decoding" in text, text


def test_health_archiving_names_only_the_privilege_it_needs(dsn: str) -> None:
    app = owner_login(dsn)
    checks = {c["check"]: c for c in _json("health", "--dsn", app)["checks"]}
    assert "pg_stat_replication" in str(checks["replication_lag"].get("needs")), checks["replication_lag"]
    assert "pg_stat_replication" not in str(checks["archiving"].get("needs")), checks["archiving"]


def test_backup_status_on_an_empty_archive_says_no_wal_archived_yet(dsn: str, tmp_path: Path) -> None:
    archive = tmp_path / "wal-archive"
    archive.mkdir()
    out = _json("backup", "status", "--dsn", owner_login(dsn), "--archive-dir", str(archive))
    gaps = next(c for c in out["checks"] if c["check"] == "archive_gaps")
    assert gaps["status"] == "warning" and "no WAL archived yet" in gaps["message"], gaps
    assert "None" not in gaps["message"]
