"""Review r35: what a migration's own SQL did during a dry run that a rollback does not undo.

- F1: a function named as a string (`CREATE OPERATOR ### (FUNCTION = 'lo_export', …)`, an aggregate's
  `FINALFUNC = 'pg_read_file'`) was no call to the guard: the operator then wrote a server file, read /etc/passwd
  into the report, killed another session. Such a string is a call now.
- F2/F3: `CREATE FUNCTION … LANGUAGE c AS '<path>'` loads the library as the function is created (its constructor
  ran a program); `LANGUAGE internal` aliases the server's own code under a new name. Not run, nor what follows.
- F5: `VACUUM FULL pg_authid` (sent to the scratch database) gave a catalog every database shares a new file.
- F6: listing the server's directories and resetting statistics a rollback does not bring back: refused.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import psycopg
import pytest

from tests.trial_victims import dry_run_as, not_run


def _refused_or_not_run(res: Any, *words: str) -> None:
    said = (res.untested or "") + (res.error.message if res.error else "") + (res.note or "")
    assert res.ran_in == "skipped" and all(w in said for w in words), res


@pytest.fixture
def items(dsn: str, tmp_path: Path) -> str:
    tmp_path.chmod(0o777)
    with psycopg.connect(dsn, autocommit=True) as c:
        c.execute("CREATE TABLE items (id int PRIMARY KEY, note text); INSERT INTO items VALUES (1, 'x')")
    return dsn


def test_an_operator_over_a_function_named_as_a_string(items: str, tmp_path: Path) -> None:
    mark = tmp_path / "written"
    sql = ("CREATE OPERATOR ### (FUNCTION = 'lo_export', LEFTARG = oid, RIGHTARG = text);\n"
           "UPDATE items SET note = lo_from_bytea(424242, 'written by a dry run')::text WHERE id = 1;\n"
           f"UPDATE items SET note = (424242::oid ### '{mark}')::text WHERE id = 1;")
    r = dry_run_as(items, sql)
    _refused_or_not_run(r.statements[0], "lo_export")
    assert all(s.ran_in == "skipped" for s in r.statements[1:]), r.statements
    assert not mark.exists(), "the operator wrote a server file"


def test_an_aggregate_whose_final_function_is_a_string(items: str) -> None:
    sql = ("CREATE AGGREGATE rd(text) (SFUNC = 'textcat', STYPE = text, FINALFUNC = 'PG_READ_FILE', INITCOND = '');\n"
           "UPDATE items SET note = (SELECT rd('/etc/hostname')) WHERE id = 1;")
    r = dry_run_as(items, sql)
    _refused_or_not_run(r.statements[0], "pg_read_file")
    assert r.statements[1].ran_in == "skipped", r.statements[1]


@pytest.mark.parametrize("language", ["c", "internal"])
def test_a_function_of_c_or_internal_code(items: str, language: str) -> None:
    body = "'/tmp/nowhere.so', 'f'" if language == "c" else "'pg_read_file_all'"
    r = dry_run_as(items, f"CREATE FUNCTION rf(text) RETURNS text LANGUAGE {language} STRICT AS {body};\n"
                          "UPDATE items SET note = rf('/etc/hostname') WHERE id = 1;", allow_unreadable_code=True)
    not_run(r.statements[0], "creates a function of C or internal code")
    not_run(r.statements[1], "statement 1 creates a function of C or internal code")


@pytest.mark.parametrize("sql", ["VACUUM FULL pg_catalog.pg_authid;", "REINDEX TABLE pg_authid;", "REINDEX SYSTEM;"])
def test_a_shared_catalog_is_not_rewritten(dsn: str, sql: str) -> None:
    with psycopg.connect(dsn) as c:
        before = c.execute("SELECT pg_relation_filenode('pg_authid')").fetchone()
    r = dry_run_as(dsn, sql)
    _refused_or_not_run(r.statements[0], "a catalog shared by every database")
    with psycopg.connect(dsn) as c:
        assert c.execute("SELECT pg_relation_filenode('pg_authid')").fetchone() == before


@pytest.mark.parametrize("call", ["SELECT count(*) FROM pg_ls_waldir()", "SELECT pg_current_logfile()",
                                  "SELECT pg_stat_reset_replication_slot(NULL)"])
def test_more_built_ins_that_escape(dsn: str, call: str) -> None:
    r = dry_run_as(dsn, call + ";")
    _refused_or_not_run(r.statements[0])
