"""A dry run of DROP TABLE / ALTER TABLE … RENAME / SET SCHEMA reports the lock the server took, on the table's name.

Found by a hostile review: every role (superuser included) got "lock public.dupk: observed -, predicted
AccessExclusiveLock [MISMATCH]" and the warning "the server took no lock — the prediction … disagrees with
the server" for `DROP TABLE dupk` and `ALTER TABLE dupk RENAME TO dupk2`: the lock was filed under
"public.dupk (dropped)" or the new name, so the prediction was compared with nothing.
"""

from __future__ import annotations

import json
import subprocess
import sys
import uuid
from pathlib import Path

import psycopg
import pytest
from psycopg.conninfo import make_conninfo

from tests.conftest import run_sql

ROOT = Path(__file__).parent.parent
CASES = ["DROP TABLE dupk;", "ALTER TABLE dupk RENAME TO dupk2;", "CREATE SCHEMA s2; ALTER TABLE dupk SET SCHEMA s2;",
         "DROP TABLE dupk; CREATE TABLE dupk (id int);"]


@pytest.mark.parametrize("as_owner", [False, True], ids=["superuser", "owner-without-createdb"])
def test_the_lock_on_a_dropped_or_renamed_table_is_observed(dsn: str, as_owner: bool) -> None:
    owner = f"dupk_owner_{uuid.uuid4().hex[:8]}"
    run_sql(dsn, f"CREATE ROLE {owner} LOGIN NOCREATEDB")
    with psycopg.connect(dsn, autocommit=True) as conn:
        conn.execute(f'GRANT CREATE ON DATABASE "{conn.info.dbname}" TO {owner}')
        conn.execute(f"GRANT CREATE ON SCHEMA public TO {owner}")
    run_sql(make_conninfo(dsn, user=owner), "CREATE TABLE dupk (id int); INSERT INTO dupk VALUES (1)")
    target = make_conninfo(dsn, user=owner) if as_owner else dsn
    for sql in CASES:
        done = subprocess.run([sys.executable, "-m", "agent19", "--dsn", target, "--mode", "dry-run", "dry-run",
                               "--sql", sql, "--format", "json"], capture_output=True, text=True, cwd=ROOT,
                              timeout=120)
        assert done.returncode == 0, done.stdout + done.stderr
        result = json.loads(done.stdout)
        assert not [f for f in result["findings"] if f["kind"] == "lock_mismatch"], (sql, result["findings"])
        compared = [c for s in result["statements"] for c in s["lock_comparison"] if c["relation"] == "public.dupk"]
        assert compared, (sql, result["statements"])
        assert all(c["observed"] == "AccessExclusiveLock" and c["agrees"] for c in compared), (sql, compared)
