"""A hostile review of require_verified_backup: confirm_destructive ran an UPDATE of every row with no verified
backup and no archive, although the policy's refusal says "or go through confirm_destructive with an archive".

Step 2 (execute mode, with a token) without ``archive`` is now refused by the policy before any token is
checked or any row changes; with ``archive`` the policy leaves it to the protocol (which copies the rows).
Through the CLI, as the database's non-superuser owner.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import psycopg

from tests.conftest import owner_login


def _confirm(data_dir: Path, policy: bool, *args: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "AGENT19_DATA_DIR": str(data_dir)}
    env.pop("AGENT19_REQUIRE_VERIFIED_BACKUP", None)
    if policy:
        env["AGENT19_REQUIRE_VERIFIED_BACKUP"] = "24"
    return subprocess.run([sys.executable, "-m", "agent19", "confirm", "--mode", "execute", *args], env=env,
                          capture_output=True, text=True, timeout=120)


def test_confirming_a_data_change_without_archive_is_refused_under_the_backup_policy(dsn, tmp_path):
    app = owner_login(dsn)
    with psycopg.connect(app, autocommit=True) as c:
        c.execute("CREATE TABLE t (id int PRIMARY KEY, x int)")
        c.execute("INSERT INTO t SELECT g, 0 FROM generate_series(1, 20) g")
    sql = "UPDATE t SET x = 8"
    refused = _confirm(tmp_path, True, "--dsn", app, "--token", "a19.forged", "--no-archive", sql)
    out = refused.stdout + refused.stderr
    assert refused.returncode != 0 and "policy require_verified_backup" in out and "--archive" in out, out
    with psycopg.connect(app) as c:
        assert c.execute("SELECT count(*) FROM t WHERE x = 8").fetchone()[0] == 0
    # with an archive the policy steps aside: what stops this call is the forged token, not the policy
    archived = _confirm(tmp_path, True, "--dsn", app, "--token", "a19.forged", "--archive", sql)
    assert archived.returncode != 0 and "require_verified_backup" not in archived.stdout + archived.stderr
    # and without the policy nothing changes for confirm
    plain = _confirm(tmp_path, False, "--dsn", app, "--token", "a19.forged", "--no-archive", sql)
    assert plain.returncode != 0 and "require_verified_backup" not in plain.stdout + plain.stderr
    with psycopg.connect(app) as c:
        assert c.execute("SELECT count(*) FROM t WHERE x = 8").fetchone()[0] == 0
