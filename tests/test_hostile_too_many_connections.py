"""A server (or a role) out of connection slots is reported as that, not as "check that the server is running".

Found by a hostile review: with every non-reserved slot taken, a pg_monitor login running `agent19 health`
read "cannot reach PostgreSQL: … remaining connection slots are reserved … — check that the server is
running and the DSN is right", although the server was up and the DSN right.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import psycopg
from psycopg.conninfo import make_conninfo

from tests.conftest import run_sql

ROOT = Path(__file__).parent.parent


def test_a_login_out_of_connection_slots_is_told_so_with_exit_3(dsn: str) -> None:
    run_sql(dsn, "DROP ROLE IF EXISTS capped; CREATE ROLE capped LOGIN CONNECTION LIMIT 1 IN ROLE pg_monitor")
    capped = make_conninfo(dsn, user="capped")
    with psycopg.connect(capped):  # the one slot the role may use is taken
        for command in ("health", "info", "describe"):
            done = subprocess.run([sys.executable, "-m", "agent19", "--dsn", capped, command],
                                  capture_output=True, text=True, cwd=ROOT, timeout=120)
            out = done.stdout + done.stderr
            assert done.returncode == 3, out
            assert "too many connections" in out and "pooler" in out, out
            assert "check that the server is running" not in out
