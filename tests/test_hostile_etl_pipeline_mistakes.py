"""A hostile review of etl_run: the mistakes a careless user makes in a pipeline, as an application's role.

- The cursor changed between runs (a column swapped, reordered, dropped): the stored watermark is a position on
  the old cursor, and was read as one on the new cursor — values of another column cast to this one (a crash
  with a Python traceback when the count differed, a wrong position, so rows skipped, when it did not).
- A cursor column with NULLs: a keyset walk never reaches those rows (the row comparison is NULL), and every run
  skipped them without a word.
- A transform constraint the field's type cannot take (``ge`` on a str, ``lower`` on a bool) or a pattern that
  is not a regular expression: a TypeError in the middle of the run, or "an unexpected exception" over MCP.
Each must be a clear error before anything is read or written.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap

import psycopg
import pytest

from tests.conftest import owner_login
from tests.mcp_client import stdio_session

TABLE = '"Sales Dept"."Order Items"'


def _pipeline(cursor: str, table: str = "Sales Dept.Order Items", extra: str = "") -> str:
    return textwrap.dedent(f"""
        name = "mistakes"
        batch_size = 7
        [source]
        table = "{table}"
        cursor = {cursor}
        [destination]
        table = "public.dst"
        key = ["Id"]
        """) + extra


def _etl(dsn: str, path: str, *args: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "DATABASE_URL": dsn}
    return subprocess.run([sys.executable, "-m", "agent19", "etl", "run", path, *args], capture_output=True,
                          text=True, env=env, timeout=120)


def _setup(app: str, nullable: bool = False) -> None:
    with psycopg.connect(app, autocommit=True) as conn:
        conn.execute('CREATE SCHEMA "Sales Dept"')
        null = "" if nullable else "NOT NULL"
        conn.execute(f'CREATE TABLE {TABLE} ("Id" int PRIMARY KEY, "select" timestamptz {null}, "Seq" int NOT NULL, '
                     "v text)")
        conn.execute(f"INSERT INTO {TABLE} SELECT g, now() + g * interval '1 s', 100 - g, 'v' || g "
                     "FROM generate_series(1, 20) g")
        conn.execute('CREATE TABLE dst ("Id" int PRIMARY KEY, "select" timestamptz, "Seq" int, v text)')


def test_a_changed_cursor_is_refused_instead_of_reading_the_old_watermark_as_its_own(dsn, tmp_path):
    app = owner_login(dsn)
    _setup(app)
    path = tmp_path / "p.toml"
    path.write_text(_pipeline('["select", "Id"]'))
    first = _etl(app, str(path), "--mode", "execute")
    assert first.returncode == 0, first.stderr
    with psycopg.connect(app, autocommit=True) as conn:
        stored = conn.execute("SELECT cursor_values FROM agent19_etl.watermark").fetchone()
        conn.execute(f"INSERT INTO {TABLE} VALUES (21, now() + interval '1 day', 1000, 'new')")
    # one column fewer (was a traceback), reordered (a timestamp cast to int), another column of the same arity
    # and type as the old one (was silently read as a position on "Seq": rows skipped)
    for cursor in ('["Id"]', '["Id", "select"]', '["select", "Seq"]'):
        path.write_text(_pipeline(cursor))
        for args in (("--mode", "execute"), ("--dry-run",)):
            done = _etl(app, str(path), *args)
            assert done.returncode == 2, (cursor, args, done.stdout, done.stderr)
            assert "Traceback" not in done.stderr
            assert "is a position on (select, Id)" in done.stderr, done.stderr
            assert 'put the cursor back to ["select", "Id"]' in done.stderr
            assert "DELETE FROM agent19_etl.watermark WHERE pipeline = 'mistakes'" in done.stderr
    with psycopg.connect(app) as conn:
        assert conn.execute("SELECT count(*) FROM dst").fetchone() == (20,)  # nothing was loaded
        assert conn.execute("SELECT cursor_values FROM agent19_etl.watermark").fetchone() == stored
    # what the message says to do works: the pipeline starts again under its new cursor, exactly once
    with psycopg.connect(app, autocommit=True) as conn:
        conn.execute("DELETE FROM agent19_etl.watermark WHERE pipeline = 'mistakes'")
    path.write_text(_pipeline('["Id"]'))
    again = _etl(app, str(path), "--mode", "execute", "--format", "json")
    assert again.returncode == 0, again.stderr
    assert '"inserted": 1' in again.stdout and '"unchanged": 20' in again.stdout


def test_null_cursor_values_are_refused_not_skipped(dsn, tmp_path):
    app = owner_login(dsn)
    _setup(app, nullable=True)
    path = tmp_path / "p.toml"
    path.write_text(_pipeline('["select", "Id"]'))
    # a nullable cursor column without NULLs loads
    assert _etl(app, str(path), "--mode", "execute").returncode == 0
    with psycopg.connect(app, autocommit=True) as conn:
        conn.execute(f"INSERT INTO {TABLE} VALUES (30, NULL, 1, 'no time'), (31, NULL, 2, 'no time')")
    for args in (("--mode", "execute"), ("--dry-run",)):
        done = _etl(app, str(path), *args)
        assert done.returncode == 2, (args, done.stdout, done.stderr)
        assert "cursor column (select) is NULL" in done.stderr, done.stderr
        assert 'coalesce("select", ...)' in done.stderr
    # a source query with the same NULLs is refused too; the coalesce the message suggests loads every row
    query = textwrap.dedent("""
        name = "mistakes_q"
        batch_size = 7
        [source]
        query = '''SELECT "Id", "select", "Seq", v FROM "Sales Dept"."Order Items"'''
        cursor = ["select", "Id"]
        [destination]
        table = "public.dst"
        key = ["Id"]
        """)
    path.write_text(query)
    assert "is NULL" in _etl(app, str(path), "--mode", "execute").stderr
    path.write_text(query.replace('"select", "Seq"', """coalesce("select", '-infinity') AS "select", "Seq\""""))
    done = _etl(app, str(path), "--mode", "execute", "--format", "json")
    assert done.returncode == 0, done.stderr
    with psycopg.connect(app) as conn:
        assert conn.execute("SELECT count(*) FROM dst").fetchone() == (22,)


BAD_FIELDS = {
    'type = "str"\nge = 3': "ge cannot apply to type str",
    'type = "bool"\nlower = true': "lower cannot apply to type bool",
    'type = "int"\nchoices = [1, "a"]': "choices must all be of the field's type",
    'type = "str"\npattern = "(("': "pattern '((' is not a regular expression",
    'type = "str"\npattern = "(?=a)b"': "is not a regular expression",
}


@pytest.mark.asyncio
async def test_a_transform_constraint_that_cannot_apply_is_a_clear_error_over_mcp(dsn):
    app = owner_login(dsn)
    _setup(app)
    async with stdio_session("--mode", "execute", env={"DATABASE_URL": app}) as session:
        for field, expected in BAD_FIELDS.items():
            text = _pipeline('["select", "Id"]', extra=f'[transform.Id]\ntype = "int"\n[transform.v]\n{field}\n')
            for dry in (True, False):
                r = await session.call_tool("etl_run", {"pipeline_toml": text, "dry_run": dry})
                said = " ".join(getattr(c, "text", "") for c in r.content)
                assert r.is_error and expected in said and "transform.v" in said, (field, said)
                assert "unexpected" not in said
        ok = await session.call_tool("etl_run", {"pipeline_toml": _pipeline(
            '["select", "Id"]', extra='[transform.Id]\ntype = "int"\n[transform.v]\ntype = "str"\npattern = "^v"\n'
        )})
        assert not ok.is_error, ok.content
    with psycopg.connect(app) as conn:
        assert conn.execute("SELECT count(*) FROM dst").fetchone() == (20,)


def test_tables_written_as_sql_with_double_quotes_mean_what_they_say(dsn, tmp_path):
    """Every agent19 tool reads a table name raw or as SQL with double quotes; etl run read `"Sales Dept"."Order
    Items"` as a table whose name has quotes in it (PostgreSQL said it does not exist, quoting it twice), and cdc
    check said it was not found."""
    app = owner_login(dsn)
    _setup(app)
    with psycopg.connect(app, autocommit=True) as conn:
        conn.execute('ALTER TABLE dst RENAME TO "Dst.v2"')
    path = tmp_path / "p.toml"
    path.write_text(_pipeline('["select", "Id"]', table='\\"Sales Dept\\".\\"Order Items\\"').replace(
        'table = "public.dst"', "table = 'public.\"Dst.v2\"'"))
    done = _etl(app, str(path), "--mode", "execute", "--format", "json")
    assert done.returncode == 0, done.stderr
    assert '"inserted": 20' in done.stdout
    path.write_text(_pipeline('["select", "Id"]', table='\\"Sales Dept\\".nosuch'))
    missing = _etl(app, str(path), "--dry-run")
    assert missing.returncode == 2 and "Traceback" not in missing.stderr
    assert 'the source table "Sales Dept".nosuch does not exist' in missing.stderr, missing.stderr
    env = {**os.environ, "DATABASE_URL": app}
    check = subprocess.run([sys.executable, "-m", "agent19", "cdc", "check", '"Sales Dept"."Order Items"',
                            '"Sales Dept".NoSuch', "--format", "json"], capture_output=True, text=True, env=env,
                           timeout=120)
    findings = [f for f in json.loads(check.stdout)["findings"] if f["check"] in ("table", "replica_identity")]
    assert [(f["status"], f["detail"].split(":")[0]) for f in findings] == [
        ("ok", "Sales Dept.Order Items"), ("error", "Sales Dept.nosuch not found (or not visible)")], findings


def test_a_copied_pipeline_that_kept_the_name_does_not_start_where_the_other_stopped(dsn, tmp_path):
    """A pipeline's name is its watermark: a copy of a pipeline file pointed at other tables but not renamed
    started where the first had stopped, and loaded none of the rows below that point, saying nothing."""
    app = owner_login(dsn)
    with psycopg.connect(app, autocommit=True) as conn:
        conn.execute('CREATE TABLE t1 (id int PRIMARY KEY, v text); CREATE TABLE "T 2" (id int PRIMARY KEY, v text)')
        conn.execute("INSERT INTO t1 SELECT g, 'a' FROM generate_series(1, 100) g")
        conn.execute("""INSERT INTO "T 2" SELECT g, 'b' FROM generate_series(1, 50) g""")
        conn.execute("CREATE TABLE d1 (id int PRIMARY KEY, v text); CREATE TABLE d2 (id int PRIMARY KEY, v text)")
    first, copy = tmp_path / "first.toml", tmp_path / "copy.toml"
    text = 'name = "shared"\n[source]\ntable = "{}"\ncursor = ["id"]\n[destination]\ntable = "{}"\nkey = ["id"]\n'
    first.write_text(text.format("public.t1", "public.d1"))
    assert _etl(app, str(first), "--mode", "execute").returncode == 0
    with psycopg.connect(app, autocommit=True) as conn:  # state tables made before the target column existed
        conn.execute("ALTER TABLE agent19_etl.watermark DROP COLUMN target")
        conn.execute("INSERT INTO t1 VALUES (101, 'a')")
    assert _etl(app, str(first), "--mode", "execute").returncode == 0  # the column comes back, filled
    for source, destination in (("public.T 2", "public.d2"), ("public.T 2", "public.d1"), ("public.t1", "public.d2")):
        copy.write_text(text.format(source, destination))
        for args in (("--mode", "execute"), ("--dry-run",)):
            done = _etl(app, str(copy), *args)
            assert done.returncode == 2, (source, destination, args, done.stdout, done.stderr)
            assert "where loading " in done.stderr and ':public.t1 -> public.d1 stopped' in done.stderr, done.stderr
            assert "give this pipeline a name of its own" in done.stderr
    with psycopg.connect(app) as conn:
        assert conn.execute("SELECT count(*) FROM d2").fetchone() == (0,)
        assert conn.execute("SELECT count(*) FROM d1").fetchone() == (101,)
    copy.write_text(text.format("public.T 2", "public.d2").replace('"shared"', '"shared_2"'))
    renamed = _etl(app, str(copy), "--mode", "execute", "--format", "json")
    assert renamed.returncode == 0 and '"inserted": 50' in renamed.stdout, renamed.stderr
    # a table renamed under a running pipeline: the message's UPDATE lets the watermark follow it
    with psycopg.connect(app, autocommit=True) as conn:
        conn.execute("ALTER TABLE d1 RENAME TO d1_new")
        conn.execute("INSERT INTO t1 VALUES (102, 'a')")
    first.write_text(text.format("public.t1", "public.d1_new"))
    assert "where loading" in _etl(app, str(first), "--mode", "execute").stderr
    with psycopg.connect(app, autocommit=True) as conn:
        conn.execute("UPDATE agent19_etl.watermark SET target = NULL WHERE pipeline = 'shared'")
    moved = _etl(app, str(first), "--mode", "execute", "--format", "json")
    assert moved.returncode == 0 and '"inserted": 1' in moved.stdout and '"unchanged": 0' in moved.stdout


def test_a_lag_that_cannot_fit_the_cursor_is_refused_on_the_first_run(dsn, tmp_path):
    """A duration lag on an integer cursor used to load the whole source on the first run and fail from the
    second on, with a Python repr of the lag."""
    app = owner_login(dsn)
    _setup(app)
    path = tmp_path / "p.toml"
    text = _pipeline('["Seq", "Id"]')
    path.write_text(text.replace('cursor = ["Seq", "Id"]', 'cursor = ["Seq", "Id"]\nlag = "5 minutes"'))
    for args in (("--mode", "execute"), ("--dry-run",)):
        done = _etl(app, str(path), *args)
        assert done.returncode == 2, (args, done.stdout, done.stderr)
        assert "lag '5 minutes' does not fit the cursor column Seq (integer)" in done.stderr, done.stderr
    with psycopg.connect(app) as conn:
        assert conn.execute("SELECT count(*) FROM dst").fetchone() == (0,)
