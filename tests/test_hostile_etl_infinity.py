"""A hostile review of etl_run: PostgreSQL values Python has no type for.

A date or timestamp of 'infinity' / '-infinity' made every run that parses rows in Python (`--dry-run`, a
pipeline with `[transform]`) and every run whose cursor reached such a row fail with "timestamp too large",
naming no row — while the same pipeline loaded it without a transform. They are now read as the text
'infinity' / '-infinity': loaded as is, rejected into the dead-letter table by a datetime field, and a
cursor that reaches them resumes after them.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap

import psycopg

from tests.conftest import owner_login

SETUP = """
CREATE TABLE src (id int PRIMARY KEY, updated_at timestamptz NOT NULL, ts timestamp, d date, n numeric);
INSERT INTO src VALUES (1, '2026-01-01', 'infinity', '-infinity', 'NaN'),
                       (2, 'infinity', '-infinity', 'infinity', 2),
                       (3, '2026-01-02', NULL, NULL, 3);
CREATE TABLE dst (LIKE src INCLUDING ALL);
CREATE TABLE typed (LIKE src INCLUDING ALL);
"""


def _pipeline(path, name: str, table: str, transform: str = "") -> str:
    path.write_text(textwrap.dedent(f"""
        name = "{name}"
        batch_size = 2
        [source]
        table = "public.src"
        cursor = ["updated_at", "id"]
        [destination]
        table = "public.{table}"
        key = ["id"]
        strategy = "upsert"
        """) + textwrap.dedent(transform))
    return str(path)


def _etl(dsn: str, *args: str) -> dict:
    env = {**os.environ, "DATABASE_URL": dsn}
    done = subprocess.run([sys.executable, "-m", "agent19", "etl", "run", *args, "--format", "json"],
                          capture_output=True, text=True, env=env, timeout=120)
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout)


def test_infinite_dates_load_reject_and_resume(dsn, tmp_path):
    app = owner_login(dsn)
    with psycopg.connect(app, autocommit=True) as conn:
        conn.execute(SETUP)
    plain = _pipeline(tmp_path / "plain.toml", "plain", "dst")
    dry = _etl(app, plain, "--dry-run")
    assert (dry["extracted"], dry["valid"], dry["rejected"]) == (3, 3, 0)
    first = _etl(app, plain, "--mode", "execute")
    assert first["inserted"] == 3 and first["watermark"][0] == "infinity"
    again = _etl(app, plain, "--mode", "execute")  # resumes after the row at infinity: nothing twice
    assert again["extracted"] == 0 and again["inserted"] == 0
    with psycopg.connect(app) as conn:
        same = conn.execute("SELECT count(*) FROM src s JOIN dst d ON (s.*)::text = (d.*)::text").fetchone()
    assert same == (3,)

    typed = _pipeline(tmp_path / "typed.toml", "typed", "typed", """
        [transform.id]
        type = "int"
        [transform.updated_at]
        type = "datetime"
        [transform.ts]
        type = "datetime"
        required = false
        """)
    result = _etl(app, typed, "--mode", "execute")
    assert (result["inserted"], result["rejected"]) == (1, 2)
    assert all("datetime" in r["reason"] for r in result["rejections"]), result["rejections"]
    with psycopg.connect(app) as conn:
        keys = conn.execute("SELECT source_key FROM agent19_etl.dead_letter ORDER BY 1::text").fetchall()
        loaded = conn.execute("SELECT id FROM typed").fetchall()
    assert sorted(k[0]["id"] for k in keys) == [1, 2] and loaded == [(3,)]
