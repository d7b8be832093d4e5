"""A hostile review of require_dry_run: a dry run must not count for a statement that does something else.

The ledger hashed a statement with all whitespace collapsed, so a newline that ends a ``--`` comment and
the spaces inside a string literal did not count: a dry run of a partial index let the full index run,
and a dry run of ``'a  b'`` let ``'a b'`` be written. Through the CLI, as the database's non-superuser owner.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import psycopg
import psycopg.conninfo

from tests.conftest import owner_login


def _agent19(data_dir: Path, *args: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "AGENT19_DATA_DIR": str(data_dir), "AGENT19_REQUIRE_DRY_RUN": "1"}
    return subprocess.run([sys.executable, "-m", "agent19", *args], env=env, capture_output=True, text=True,
                          timeout=120)


def _setup(dsn: str) -> str:
    app = owner_login(dsn)
    with psycopg.connect(app, autocommit=True) as c:
        c.execute("CREATE TABLE t (id int PRIMARY KEY, x int, s text)")
        c.execute("INSERT INTO t SELECT g, g, 'old' FROM generate_series(1, 50) g")
    return app


def test_a_comment_that_swallows_the_where_clause_is_another_statement(dsn, tmp_path):
    app = _setup(dsn)
    tested = _agent19(tmp_path, "dry-run", "--dsn", app, "--mode", "dry-run", "--sql",
                      "CREATE INDEX t_x ON t (x) --\nWHERE x > 10")
    assert tested.returncode == 0, tested.stdout + tested.stderr
    ran = _agent19(tmp_path, "sql", "--dsn", app, "--mode", "execute", "CREATE INDEX t_x ON t (x) -- WHERE x > 10")
    assert ran.returncode == 1 and "policy require_dry_run" in ran.stdout, ran.stdout + ran.stderr
    with psycopg.connect(app) as c:
        assert c.execute("SELECT to_regclass('t_x')").fetchone()[0] is None
    # the tested text itself, re-spaced and with a comment of its own, still counts
    ran = _agent19(tmp_path, "sql", "--dsn", app, "--mode", "execute",
                   "/* reviewed */ CREATE INDEX t_x\n  ON t(x) --\n WHERE x>10;")
    assert ran.returncode == 0, ran.stdout + ran.stderr
    with psycopg.connect(app) as c:
        assert "WHERE (x > 10)" in c.execute("SELECT pg_get_indexdef('t_x'::regclass)").fetchone()[0]


def test_spaces_inside_a_string_are_part_of_the_statement(dsn, tmp_path):
    app = _setup(dsn)
    tested = _agent19(tmp_path, "dry-run", "--dsn", app, "--mode", "dry-run", "--sql",
                      "UPDATE t SET s = 'a  b' WHERE id = 1")
    assert tested.returncode == 0, tested.stdout + tested.stderr
    ran = _agent19(tmp_path, "sql", "--dsn", app, "--mode", "execute", "UPDATE t SET s = 'a b' WHERE id = 1")
    assert ran.returncode == 1 and "policy require_dry_run" in ran.stdout, ran.stdout + ran.stderr
    with psycopg.connect(app) as c:
        assert c.execute("SELECT s FROM t WHERE id = 1").fetchone()[0] == "old"


def test_a_dry_run_on_one_search_path_does_not_count_on_another(dsn, tmp_path):
    """The same text names other tables on another search_path (a DSN option, or ``$user`` for another role)."""
    app = _setup(dsn)
    with psycopg.connect(app, autocommit=True) as c:
        c.execute("CREATE SCHEMA other")
        c.execute("CREATE TABLE other.t (id int PRIMARY KEY)")
    tested = _agent19(tmp_path, "dry-run", "--dsn", app, "--mode", "dry-run", "--sql",
                      "ALTER TABLE t ADD COLUMN flag int")
    assert tested.returncode == 0, tested.stdout + tested.stderr
    other = psycopg.conninfo.make_conninfo(app, options="-c search_path=other")
    ran = _agent19(tmp_path, "sql", "--dsn", other, "--mode", "execute", "ALTER TABLE t ADD COLUMN flag int")
    assert ran.returncode == 1 and "search_path" in ran.stdout, ran.stdout + ran.stderr
    with psycopg.connect(app) as c:
        assert c.execute("SELECT count(*) FROM pg_attribute WHERE attname = 'flag'").fetchone()[0] == 0
    ran = _agent19(tmp_path, "sql", "--dsn", app, "--mode", "execute", "ALTER TABLE t ADD COLUMN flag int")
    assert ran.returncode == 0, ran.stdout + ran.stderr
