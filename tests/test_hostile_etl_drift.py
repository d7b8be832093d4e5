"""A hostile review of etl_run's schema drift: a source column dropped between runs.

Without `[transform]`, every source column the destination has is loaded. When such a column disappears from
the source, the run used to report "nothing: it was not loaded" — while it had been loaded on every earlier
run, and from now on updated rows silently keep their old value. The drift must say so.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys

import psycopg

from tests.conftest import owner_login

PIPELINE = """
name = "drift"
[source]
table = "public.src"
cursor = ["updated_at", "id"]
[destination]
table = "public.dst"
key = ["id"]
strategy = "upsert"
"""


def _etl(dsn: str, path: str) -> dict:
    env = {**os.environ, "DATABASE_URL": dsn}
    done = subprocess.run([sys.executable, "-m", "agent19", "etl", "run", path, "--mode", "execute",
                           "--format", "json"], capture_output=True, text=True, env=env, timeout=120)
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout)


def test_a_dropped_source_column_the_destination_had_is_reported_as_no_longer_loaded(dsn, tmp_path):
    app = owner_login(dsn)
    with psycopg.connect(app, autocommit=True) as conn:
        conn.execute("CREATE TABLE src (id int PRIMARY KEY, updated_at timestamptz NOT NULL, note text, x int)")
        conn.execute("INSERT INTO src VALUES (1, now(), 'old', 1)")
        conn.execute("CREATE TABLE dst (id int PRIMARY KEY, updated_at timestamptz NOT NULL, note text)")
    path = tmp_path / "drift.toml"
    path.write_text(PIPELINE)
    assert _etl(app, str(path))["inserted"] == 1
    with psycopg.connect(app, autocommit=True) as conn:
        conn.execute("ALTER TABLE src DROP COLUMN note, DROP COLUMN x")
        conn.execute("UPDATE src SET updated_at = clock_timestamp()")
    result = _etl(app, str(path))
    drift = {d["column"]: d for d in result["drift"]}
    assert drift["note"]["change"] == "removed"
    assert "no longer loaded" in drift["note"]["action"] and "keep the old note" in drift["note"]["action"]
    assert drift["x"]["action"].startswith("nothing")  # x never reached the destination
    with psycopg.connect(app) as conn:  # what the drift warned about: the updated row kept its old note
        assert conn.execute("SELECT note FROM dst WHERE id = 1").fetchone() == ("old",)
