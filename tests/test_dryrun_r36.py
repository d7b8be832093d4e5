"""Review r36: a migration's own DDL judged by its raw text, and a catalog read once, let a dry run escape.

- F1: `FUNCTION = E'lo\\x5fexport'` (or `U&'…'`, or two adjacent literals) in CREATE OPERATOR: the string was not
  decoded, and the operator wrote a server file. The options are read from the parse tree now.
- F2: a column default `U&"pg\\005fterminate\\005fbackend"(pid)` killed a session: a statement whose names agent19
  cannot decode is not run.
- F3: `UPDATE pg_catalog.pg_proc SET prolang = 12, prosrc = 'be_lo_export'` turned a harmless function into
  lo_export: writing a system catalog is refused (statements and bodies).
- F4: adminpack 1.0's pg_file_read read /etc/passwd into the report: refused.
- F5/F6: VACUUM FULL of a shared catalog's TOAST table; LOCK of pg_authid held every login of the server.
"""

from __future__ import annotations

from pathlib import Path

import psycopg
import pytest

from tests.conftest import need
from tests.test_dryrun_r35 import _refused_or_not_run
from tests.trial_victims import dry_run_as


@pytest.fixture
def marked(dsn: str, tmp_path: Path) -> tuple[str, Path]:
    tmp_path.chmod(0o777)
    with psycopg.connect(dsn, autocommit=True) as c:
        c.execute("SELECT lo_from_bytea(424243, 'pwned'::bytea)")
    return dsn, tmp_path / "written"


@pytest.mark.parametrize("spelled", ["E'lo\\x5fexport'", "U&'lo\\005fexport'", "'lo_'\n'export'"])
def test_a_function_option_spelled_with_escapes(marked: tuple[str, Path], spelled: str) -> None:
    dsn, mark = marked
    r = dry_run_as(dsn, f"CREATE OPERATOR === (LEFTARG = oid, RIGHTARG = text, FUNCTION = {spelled});\n"
                        f"SELECT 424243::oid === '{mark}';")
    assert all(s.ran_in == "skipped" for s in r.statements), r.statements
    assert not mark.exists(), "the operator wrote a server file"


def test_a_default_named_with_unicode_escapes(dsn: str) -> None:
    with psycopg.connect(dsn, autocommit=True, application_name="victim") as victim:
        pid = victim.info.backend_pid
        r = dry_run_as(dsn, f'CREATE TABLE zz (a int, b bool DEFAULT U&"pg\\005fterminate\\005fbackend"({pid}));\n'
                            "INSERT INTO zz (a) VALUES (1);")
        assert all(s.ran_in == "skipped" for s in r.statements), r.statements
        _refused_or_not_run(r.statements[0], "U&")
        assert victim.execute("SELECT 1").fetchone() == (1,)  # still alive


@pytest.mark.parametrize("body", [
    "UPDATE pg_catalog.pg_proc SET prosrc = 'be_lo_export' WHERE proname = 'harmless';",
    "DO $$ BEGIN UPDATE pg_proc SET prosrc = 'be_lo_export' WHERE proname = 'harmless'; END $$;",
])
def test_writing_a_system_catalog(marked: tuple[str, Path], body: str) -> None:
    dsn, mark = marked
    r = dry_run_as(dsn, "CREATE FUNCTION harmless(o oid, p text) RETURNS int LANGUAGE sql AS 'SELECT 1';\n"
                        f"{body}\nSELECT harmless(424243, '{mark}');")
    _refused_or_not_run(r.statements[1], "writes the system catalog pg_proc directly")
    assert not mark.exists()


def test_adminpacks_old_names(dsn: str) -> None:
    with psycopg.connect(dsn, autocommit=True) as c:
        available = c.execute("SELECT EXISTS (SELECT FROM pg_available_extension_versions "
                              "WHERE name = 'adminpack' AND version = '1.0')").fetchone()
    need(bool(available and available[0]), "adminpack 1.0 is not installed on the test server")
    r = dry_run_as(dsn, "CREATE EXTENSION adminpack VERSION '1.0';\n"
                        "SELECT pg_catalog.pg_file_read('/etc/hostname', 0, 200);")
    _refused_or_not_run(r.statements[1], "pg_file_read")


@pytest.mark.parametrize("sql", ["VACUUM FULL pg_toast.pg_toast_1260;",
                                 "DO $$ BEGIN LOCK TABLE pg_catalog.pg_authid IN ACCESS EXCLUSIVE MODE; END $$;",
                                 "LOCK TABLE pg_authid;"])
def test_shared_catalogs_are_not_rewritten_or_locked(dsn: str, sql: str) -> None:
    r = dry_run_as(dsn, sql)
    _refused_or_not_run(r.statements[0], "every database")


def test_a_users_table_named_pg_something_is_written(dsn: str) -> None:
    """No false refusal (review r37): pg_jobs in public is no system catalog."""
    r = dry_run_as(dsn, "CREATE TABLE pg_jobs (id int);\nINSERT INTO pg_jobs VALUES (1);\nUPDATE pg_jobs SET id = 2;")
    assert [s.ran_in != "skipped" and not s.error for s in r.statements] == [True] * 3, r.statements
