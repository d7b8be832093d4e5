"""require_lock_ack holds for confirm_destructive too: a human's consent to losing data is not an acknowledgement
of the locks the statement takes (a hostile review confirmed a DO block building an index with no acknowledgement).
Through the CLI, as the database's non-superuser owner, with a forged token: the policy refuses before the token is
even read; once the warning is acknowledged, what stops the call is the token."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import psycopg

from tests.conftest import owner_login


def _confirm(data_dir: Path, *args: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "AGENT19_DATA_DIR": str(data_dir), "AGENT19_REQUIRE_LOCK_ACK": "1"}
    return subprocess.run([sys.executable, "-m", "agent19", "confirm", "--mode", "execute", *args], env=env,
                          capture_output=True, text=True, timeout=120)


def test_confirming_without_acknowledging_the_lock_warnings_is_refused(dsn, tmp_path):
    app = owner_login(dsn)
    with psycopg.connect(app, autocommit=True) as c:
        c.execute("CREATE TABLE t (id int PRIMARY KEY, x int)")
        c.execute("INSERT INTO t SELECT g, 0 FROM generate_series(1, 20) g")
    sql = "ALTER TABLE t DROP COLUMN x"
    refused = _confirm(tmp_path, "--dsn", app, "--token", "a19.forged", sql)
    out = refused.stdout + refused.stderr
    assert refused.returncode != 0 and "acknowledge" in out and "require_lock_ack" in out, out
    named = re.search(r"acknowledge=\[([^\]]*)\]", out)
    assert named is not None, out
    codes = [c.strip(" '\"") for c in named.group(1).split(",")]
    acked = _confirm(tmp_path, "--dsn", app, "--token", "a19.forged", sql, "--acknowledge", *codes)
    assert acked.returncode != 0 and "require_lock_ack" not in acked.stdout + acked.stderr, acked.stderr
    with psycopg.connect(app) as c:
        assert c.execute("SELECT count(*) FROM information_schema.columns WHERE table_name = 't' "
                         "AND column_name = 'x'").fetchone()[0] == 1
