"""`agent19 health` as a careless user runs it: piped into `head`, and as a pg_monitor login that cannot read sequences.

Found by a hostile review: `agent19 health | head -1` ended in a Python traceback (BrokenPipeError), and a
pg_monitor login, which cannot read sequences, was told "5 sequences, none ≥ 85 % of its range" while two
of them stood at 96 and 98 %.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

from psycopg.conninfo import make_conninfo

from tests.conftest import run_sql

ROOT = Path(__file__).parent.parent


def test_a_reader_that_stops_early_gets_no_traceback(dsn: str) -> None:
    proc = subprocess.Popen([sys.executable, "-m", "agent19", "--dsn", dsn, "health"], cwd=ROOT,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    assert proc.stdout is not None
    proc.stdout.close()  # like `| head -0`: the reader is gone before agent19 prints
    _, err = proc.communicate(timeout=120)
    assert "Traceback" not in err and "BrokenPipeError" not in err, err
    assert proc.returncode == 141


def test_sequences_a_login_cannot_read_are_not_counted_as_fine(dsn: str) -> None:
    run_sql(dsn, "CREATE SEQUENCE nearly_out AS integer; SELECT setval('nearly_out', 2061584301)")
    run_sql(dsn, "DO $$BEGIN IF NOT EXISTS (SELECT FROM pg_roles WHERE rolname = 'seq_watcher') THEN "
                 "CREATE ROLE seq_watcher LOGIN IN ROLE pg_monitor; END IF; END$$")
    done = subprocess.run([sys.executable, "-m", "agent19", "--dsn", make_conninfo(dsn, user="seq_watcher"), "health",
                           "--checks", "sequences", "--format", "json"], capture_output=True, text=True, cwd=ROOT,
                          timeout=120)
    [check] = json.loads(done.stdout)["checks"]
    assert check["status"] == "unknown", check
    assert "public.nearly_out" in check["value"]["unreadable"]
    assert "0 sequence(s) read" in check["message"] and "none >=" in check["message"]  # a claim about 0, not 1
    superuser = subprocess.run([sys.executable, "-m", "agent19", "--dsn", dsn, "health", "--checks", "sequences",
                                "--format", "json"], capture_output=True, text=True, cwd=ROOT, timeout=120)
    [seen] = json.loads(superuser.stdout)["checks"]
    assert seen["status"] == "critical" and seen["objects"] == ["public.nearly_out"], seen
