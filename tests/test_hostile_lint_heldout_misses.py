"""Regressions for misses found by the held-out lint corpus (tests/corpus/heldout_cases.py), each tied to what
the server does: a one-statement golang-migrate file runs CREATE INDEX CONCURRENTLY (one query string of one
statement is no transaction block); SET TABLESPACE copies the table under an AccessExclusiveLock; moving a table
to another schema, dropping a view and dropping NOT NULL break clients."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import psycopg

from agent19.db.child_env import child_connection
from agent19.migrate.lint.config import LintConfig
from agent19.migrate.lint.engine import LintReport, lint_paths, lint_sql

PSQL = "/usr/lib/postgresql/15/bin/psql"
PG15 = LintConfig(pg_version=15)


def _hits(report: LintReport) -> dict[str, str]:
    return {f.rule: f.severity for s in report.statements for f in s.findings}


def _psql_one_query(dsn: str, sql: str) -> subprocess.CompletedProcess[str]:
    """``psql -c`` sends its text as one simple Query message, as golang-migrate sends a file."""
    conn, env = child_connection(dsn)
    return subprocess.run([PSQL, "-X", "-v", "ON_ERROR_STOP=1", "-d", conn, "-c", sql], env=env,
                          capture_output=True, text=True, timeout=60)


def test_golang_migrate_one_statement_file_runs_concurrently(dsn: str, tmp_path: Path) -> None:
    with psycopg.connect(dsn, autocommit=True) as c:
        c.execute("CREATE TABLE users (id bigint PRIMARY KEY, x int)")
    alone = _psql_one_query(dsn, "CREATE INDEX CONCURRENTLY IF NOT EXISTS users_x_idx ON users (x);")
    assert alone.returncode == 0, alone.stderr
    two = _psql_one_query(dsn, "SET lock_timeout = '1s'; CREATE INDEX CONCURRENTLY users_x2_idx ON users (x);")
    assert two.returncode != 0 and "cannot run inside a transaction block" in two.stderr
    (tmp_path / "1_a.up.sql").write_text("CREATE TABLE a (id bigint PRIMARY KEY);\n")
    (tmp_path / "2_idx.up.sql").write_text("CREATE INDEX CONCURRENTLY IF NOT EXISTS users_x_idx ON users (x);\n")
    (tmp_path / "3_idx.up.sql").write_text(
        "SET lock_timeout = '1s';\nCREATE INDEX CONCURRENTLY IF NOT EXISTS users_x2_idx ON users (x);\n")
    report = lint_paths([tmp_path], config=PG15)
    by_file = {Path(s.file or "").name: {f.rule for f in s.findings} for s in report.statements}
    assert "A19010" not in by_file["2_idx.up.sql"], report
    assert "A19010" in by_file["3_idx.up.sql"], report


def test_set_tablespace_is_flagged_as_the_copy_under_access_exclusive_the_server_takes(dsn: str, public_tmp: Path
                                                                                      ) -> None:
    space = public_tmp / "space"
    space.mkdir()
    shutil.chown(space, "postgres", "postgres")  # the server (OS user postgres) must own a tablespace directory
    with psycopg.connect(dsn, autocommit=True) as c:
        c.execute("CREATE TABLE big (id int)")
        c.execute("INSERT INTO big SELECT generate_series(1, 1000)")
        c.execute(f"CREATE TABLESPACE heldout_space LOCATION '{space}'")
    try:
        with psycopg.connect(dsn) as mover, psycopg.connect(dsn, autocommit=True) as reader:
            before = reader.execute("SELECT pg_relation_filenode('big')").fetchone()
            mover.execute("ALTER TABLE big SET TABLESPACE heldout_space")
            mode = reader.execute("SELECT mode FROM pg_locks WHERE relation = 'big'::regclass AND granted "
                                  "AND pid <> pg_backend_pid()").fetchall()
            assert ("AccessExclusiveLock",) in mode
            mover.commit()
            after = reader.execute("SELECT pg_relation_filenode('big')").fetchone()
            assert before != after  # a new file: the table was copied
    finally:
        with psycopg.connect(dsn, autocommit=True) as c:
            c.execute("DROP TABLE big")
            c.execute("DROP TABLESPACE heldout_space")
    hits = _hits(lint_sql("SET lock_timeout = '2s';\nALTER TABLE big SET TABLESPACE fast;", config=PG15))
    assert hits.get("A19019") == "error"
    assert "A19019" not in _hits(lint_sql("CREATE TABLE n (i int);\nALTER TABLE n SET TABLESPACE fast;", config=PG15))


def test_set_schema_drop_view_drop_not_null_break_clients() -> None:
    lt = "SET lock_timeout = '2s';\n"
    assert _hits(lint_sql(lt + "ALTER TABLE users SET SCHEMA archive;", config=PG15)).get("A19013") == "error"
    assert _hits(lint_sql(lt + "DROP VIEW active_users;", config=PG15)).get("A19015") == "warning"
    assert _hits(lint_sql(lt + "ALTER TABLE users ALTER COLUMN email DROP NOT NULL;", config=PG15)).get(
        "A19047") == "warning"
    # objects created earlier in the set: nobody uses them yet
    fresh = ("CREATE TABLE t (i int NOT NULL);\nCREATE VIEW v AS SELECT i FROM t;\nDROP VIEW v;\n"
             "ALTER TABLE t ALTER COLUMN i DROP NOT NULL;\nALTER TABLE t SET SCHEMA archive;")
    assert not {"A19013", "A19015", "A19047"} & set(_hits(lint_sql(fresh, config=PG15)))
    # squawk's rule name silences it, for teams that switch with their config
    quiet = lint_sql(lt + "ALTER TABLE users ALTER COLUMN email DROP NOT NULL;",
                     config=LintConfig(pg_version=15, disable=["ban-drop-not-null"]))
    assert "A19047" not in _hits(quiet)
