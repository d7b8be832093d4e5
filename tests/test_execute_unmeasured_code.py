"""Execute mode, statements agent19 cannot try in a savepoint and measure (review r27 k13): CREATE INDEX
CONCURRENTLY, REINDEX … CONCURRENTLY, VACUUM [FULL], CLUSTER without a table, REFRESH MATERIALIZED VIEW
CONCURRENTLY. They still run user code — an index's expressions and predicate, a materialized view's query — and
an IMMUTABLE PL/pgSQL function may call a VOLATILE one that deletes a table. Such a statement goes through the
confirmation protocol without running; ANALYZE, which can run in a transaction, is measured like a write. Harmless
ones still run. Through the CLI, as the database's non-superuser owner (as the reviewer ran it)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import psycopg

from tests.conftest import owner_login

SETUP = """
CREATE TABLE cust (id int PRIMARY KEY, name text);
CREATE TABLE tiny (id int);
INSERT INTO tiny VALUES (1);
CREATE TABLE plain (id int PRIMARY KEY, v text);
INSERT INTO plain SELECT g, 'v' || g FROM generate_series(1, 20) g;
CREATE FUNCTION purge() RETURNS int VOLATILE LANGUAGE sql AS $$ DELETE FROM cust; SELECT 1 $$;
CREATE FUNCTION idx(n int) RETURNS int IMMUTABLE LANGUAGE plpgsql AS $$BEGIN PERFORM purge(); RETURN n; END$$;
CREATE FUNCTION pure(n int) RETURNS int IMMUTABLE LANGUAGE plpgsql AS $$BEGIN RETURN n + 1; END$$;
"""
REFILL = "INSERT INTO cust SELECT g, 'c' || g FROM generate_series(1, 50) g ON CONFLICT DO NOTHING"


def _agent19(data_dir: Path, *args: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "AGENT19_DATA_DIR": str(data_dir)}
    return subprocess.run([sys.executable, "-m", "agent19", *args], env=env, capture_output=True, text=True,
                          timeout=120)


def _count(app: str) -> int:
    with psycopg.connect(app, autocommit=True) as c:
        return c.execute("SELECT count(*) FROM cust").fetchone()[0]


def _held(app: str, tmp_path: Path, sql: str, *said: str) -> None:
    """``sql`` in execute mode is refused for confirmation, saying ``said``, and cust keeps its 50 rows."""
    ran = _agent19(tmp_path, "sql", "--dsn", app, "--mode", "execute", sql)
    out = ran.stdout + ran.stderr
    assert ran.returncode != 0 and "confirm" in out, (sql, out)
    for words in said:
        assert words in out, (sql, words, out)
    assert _count(app) == 50, (sql, out)


def test_unmeasured_statements_that_run_writing_code_need_confirmation(dsn, tmp_path):
    app = owner_login(dsn)
    with psycopg.connect(app, autocommit=True) as c:
        c.execute(SETUP)
        c.execute(REFILL)
    # the new index's expression reaches purge(): held before anything runs, and the index is not built
    _held(app, tmp_path, "CREATE INDEX CONCURRENTLY tiny_idx ON tiny (idx(id))",
          "cannot run inside a transaction", "public.purge() is a volatile function")
    _held(app, tmp_path, "CREATE INDEX CONCURRENTLY tiny_part ON tiny (id) WHERE idx(id) > 0", "public.purge()")
    with psycopg.connect(app, autocommit=True) as c:
        assert c.execute("SELECT to_regclass('tiny_idx') IS NULL AND to_regclass('tiny_part') IS NULL").fetchone()[0]
        # the expression index is in place (built here directly: it empties cust, which is refilled)
        c.execute("CREATE INDEX tiny_idx ON tiny (idx(id))")
        c.execute("CREATE MATERIALIZED VIEW mv AS SELECT id, idx(id) AS x FROM tiny")
        c.execute("CREATE UNIQUE INDEX mv_id ON mv (id)")
        c.execute(REFILL)
    for sql in ("VACUUM FULL tiny", "VACUUM tiny", "VACUUM (ANALYZE) tiny", "VACUUM",
                "REINDEX TABLE CONCURRENTLY tiny", "REINDEX INDEX CONCURRENTLY tiny_idx", "REINDEX SCHEMA public",
                "REFRESH MATERIALIZED VIEW CONCURRENTLY mv"):
        _held(app, tmp_path, sql, "public.purge() is a volatile function")
    # ANALYZE runs in a transaction: measured, rolled back, refused with what it did
    _held(app, tmp_path, "ANALYZE tiny", "measured: it deleted 50 of the 50 rows of public.cust")
    _held(app, tmp_path, "ANALYZE", "measured: it deleted 50 of the 50 rows of public.cust")


def test_unmeasured_statements_with_harmless_code_still_run(dsn, tmp_path):
    app = owner_login(dsn)
    with psycopg.connect(app, autocommit=True) as c:
        c.execute(SETUP)
        c.execute(REFILL)
        c.execute("CREATE INDEX plain_pure ON plain (pure(id)) WHERE lower(v) <> ''")
    for sql in ("CREATE INDEX CONCURRENTLY plain_lower ON plain (lower(v)) WHERE pure(id) > 0",
                "VACUUM FULL plain", "VACUUM (ANALYZE) plain", "VACUUM", "REINDEX TABLE CONCURRENTLY plain",
                "ANALYZE plain", "ANALYZE"):
        ran = _agent19(tmp_path, "sql", "--dsn", app, "--mode", "execute", sql)
        assert ran.returncode == 0, (sql, ran.stdout + ran.stderr)
    with psycopg.connect(app, autocommit=True) as c:
        assert c.execute("SELECT to_regclass('plain_lower') IS NOT NULL").fetchone()[0]
        assert c.execute("SELECT count(*) FROM plain").fetchone()[0] == 20
    assert _count(app) == 50


def test_a_confirmed_unmeasured_statement_runs_outside_a_transaction_block(dsn, tmp_path):
    """The challenge states why; with the operator's opt-in for a program approver, the confirmed token runs it."""
    import json

    app = owner_login(dsn)
    with psycopg.connect(app, autocommit=True) as c:
        c.execute(SETUP)
        c.execute(REFILL)
    sql = "CREATE INDEX CONCURRENTLY tiny_idx ON tiny (idx(id))"
    base = [sql, "--dsn", app, "--mode", "execute", "--allow-model-confirmation"]
    first = _agent19(tmp_path, "confirm", *base, "--format", "json")
    assert first.returncode == 0, first.stdout + first.stderr
    report = json.loads(first.stdout)["report"]
    (found,) = report["findings"]
    assert found["kind"] == "unverifiable" and "public.purge() is a volatile function" in found["reason"], found
    assert "the expressions and predicate of the index it builds" in found["reason"], found
    assert _count(app) == 50
    done = _agent19(tmp_path, "confirm", *base, "--token", report["token"], "--phrase", report["phrase"])
    assert done.returncode == 0 and "outcome: executed" in done.stdout, done.stdout + done.stderr
    assert _count(app) == 0  # what the human confirmed: the index was built, and its code ran
    with psycopg.connect(app, autocommit=True) as c:
        assert c.execute("SELECT indisvalid FROM pg_index WHERE indexrelid = 'tiny_idx'::regclass").fetchone()[0]
