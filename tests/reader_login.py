"""A least-privilege reader login made the way a user makes one: `agent19 setup-role`, then psql."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import psycopg
from psycopg.conninfo import make_conninfo

ROOT = Path(__file__).parent.parent


def psql() -> str:
    found = shutil.which("psql") or "/usr/lib/postgresql/15/bin/psql"
    return found


@contextmanager
def reader_login(dsn: str, tmp_path: Path) -> Iterator[str]:
    """Create a reader login with the SQL `agent19 setup-role` prints, applied with psql as the README says;
    yield its DSN; drop it afterwards."""
    name = f"reader_{uuid.uuid4().hex[:8]}"
    out = subprocess.run([sys.executable, "-m", "agent19", "setup-role", "--name", name, "--dsn", dsn,
                          "--statement-timeout", "5s"],
                         cwd=ROOT, capture_output=True, text=True, timeout=120, env={**os.environ})
    assert out.returncode == 0, out.stderr
    script = tmp_path / f"{name}.sql"
    script.write_text(out.stdout)
    password = uuid.uuid4().hex
    applied = subprocess.run([psql(), "-X", "-v", "ON_ERROR_STOP=1", "-d", dsn, "-f", str(script)],
                             capture_output=True, text=True, timeout=60,
                             env={**os.environ, "AGENT19_READER_PASSWORD": password})
    assert applied.returncode == 0, applied.stderr + applied.stdout
    try:
        yield make_conninfo(dsn, user=name, password=password)
    finally:
        with psycopg.connect(dsn, autocommit=True) as conn:
            conn.execute("SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE usename = %s", (name,))
            conn.execute(f'DROP OWNED BY "{name}"')
            conn.execute(f'DROP ROLE "{name}"')
