"""A dry run does not create a foreign table it could then read (review r33 F4).

A foreign table reads through its server's wrapper: file_fdw's `program` option runs a program on the server's host
when the table is read, and postgres_fdw connects to another server. A migration that created one and read it
(in its own statements, a DO block, or a function it created and called) ran the program during its dry run — the
rollback undoes none of that. Now the statement that creates or changes a foreign table, server, user mapping or
wrapper is not run (and nothing after it), and code that does so is refused.
"""

from __future__ import annotations

from pathlib import Path

import psycopg
import pytest

from tests.conftest import need
from tests.trial_victims import dry_run_as, not_run

CREATE = ("CREATE SERVER s_prog FOREIGN DATA WRAPPER file_fdw;\n"
          "CREATE FOREIGN TABLE ft_prog (x text) SERVER s_prog OPTIONS (program 'touch {mark}');\n")


@pytest.fixture
def fdw(dsn: str) -> str:
    with psycopg.connect(dsn, autocommit=True) as c:
        available = c.execute("SELECT EXISTS (SELECT FROM pg_available_extensions WHERE name = 'file_fdw')").fetchone()
        need(bool(available and available[0]), "file_fdw is not installed on the test server")
        c.execute("CREATE EXTENSION file_fdw")
    return dsn


def _mark(tmp_path: Path) -> Path:
    tmp_path.chmod(0o777)  # the server's OS user would write it
    return tmp_path / "ran"


def test_the_migrations_own_foreign_table(fdw: str, tmp_path: Path) -> None:
    mark = _mark(tmp_path)
    r = dry_run_as(fdw, CREATE.format(mark=mark) + "SELECT * FROM ft_prog;")
    not_run(r.statements[0], "creates or changes a foreign server", "test it on a staging copy")
    for res in r.statements[1:]:
        not_run(res, "statement 1 creates or changes a foreign server")
    assert all(res.untested for res in r.statements), r.statements
    assert not mark.exists(), "the dry run ran the foreign table's program"


@pytest.mark.parametrize("shape", ["do", "function"])
def test_code_that_makes_one(fdw: str, tmp_path: Path, shape: str) -> None:
    mark = _mark(tmp_path)
    body = CREATE.format(mark=mark) + "PERFORM * FROM ft_prog;"
    sql = (f"DO $$ BEGIN {body} END $$;" if shape == "do" else
           f"CREATE FUNCTION f_prog() RETURNS void LANGUAGE plpgsql AS $$ BEGIN {body} END $$;\nSELECT f_prog();")
    r = dry_run_as(fdw, sql)
    last = r.statements[-1]
    assert last.error is not None and "creates or changes a foreign server" in last.error.message, last
    assert not mark.exists(), "the dry run ran the foreign table's program"


@pytest.mark.parametrize(("sql", "words"), [
    ("DO $$ BEGIN COPY (SELECT 'x') TO U&'{mark}'; END $$;", "COPY to or from a program or a server file"),
    ("CREATE FUNCTION f() RETURNS void LANGUAGE sql AS $f$ COPY (SELECT 'x') TO U&'{mark}' $f$;\nSELECT f();",
     "COPY to or from a program or a server file"),
    ("DO $$ BEGIN CREATE SUBSCRIPTION s CONNECTION 'host=127.0.0.1 port=1 dbname=x connect_timeout=1' "
     "PUBLICATION p WITH (create_slot = false, enabled = false); EXCEPTION WHEN others THEN NULL; END $$;",
     "creates or changes a subscription"),
], ids=["do-ucopy", "function-ucopy", "do-subscription"])
def test_code_that_reaches_outside_in_other_spellings(dsn: str, tmp_path: Path, sql: str, words: str) -> None:
    """A U&'...' file name, a subscription made in code (review r34 F4, F5): refused, nothing written."""
    mark = _mark(tmp_path)
    r = dry_run_as(dsn, sql.format(mark=mark))
    last = r.statements[-1]
    assert last.error is not None and words in last.error.message, last
    assert not mark.exists(), "the dry run wrote the server file"


def test_load_is_not_run(dsn: str) -> None:
    r = dry_run_as(dsn, "LOAD 'auto_explain';")
    not_run(r.statements[0], "loads a shared library into the server (LOAD)")


def test_a_foreign_table_elsewhere_stops_nothing(fdw: str) -> None:
    """Its row type is no code the server runs (review r34 FR1: every statement was 'not run')."""
    with psycopg.connect(fdw, autocommit=True) as c:
        c.execute("CREATE SERVER files FOREIGN DATA WRAPPER file_fdw;"
                  "CREATE FOREIGN TABLE ft (x text) SERVER files OPTIONS (filename '/dev/null');"
                  "CREATE TABLE plain (id int)")
    r = dry_run_as(fdw, "INSERT INTO plain VALUES (1);\nALTER TABLE plain ADD COLUMN y int;")
    assert [s.ran_in != "skipped" and not s.error for s in r.statements] == [True, True], r.statements
