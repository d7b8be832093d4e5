"""A hostile caller cannot turn agent19's generated SQL into other statements.

Found by a careless/hostile review of issue 13: names were quoted, but the SQL text pieces a pattern
or change list pastes in (a type, a default, a CHECK, ON DELETE, a SET list) went in verbatim, and a
line break in a name or a catalog default ended a ``--`` comment line of the script, so the rest ran.
Also: a change-list table whose schema holds a dot aborted the plan's catalog transaction.
"""

from __future__ import annotations

import json
import secrets
import subprocess
import sys
from pathlib import Path
from typing import Any

import psycopg
import pytest
from pglast import parse_sql
from psycopg.conninfo import make_conninfo

from tests.conftest import run_sql

VICTIM = "DROP TABLE victim"


def agent19(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "agent19", *args], capture_output=True, text=True, timeout=120)


@pytest.mark.parametrize("extra", [
    ["change_column_type", "t", "--column", "c", "--type", "bigint; DROP TABLE victim; --"],
    ["rename_column", "t", "--column", "c", "--new-name", "d", "--type", "int; DROP TABLE victim"],
    ["add_foreign_key", "t", "--columns", "a", "--references", "r", "--ref-columns", "id",
     "--on-delete", "CASCADE; DROP TABLE victim; --"],
    ["add_check", "t", "--name", "c", "--expression", "true) NOT VALID; DROP TABLE victim; --"],
    ["add_check", "t", "--name", "c", "--expression", "a > 0 --"],
    ["set_not_null", "t", "--column", "c", "--default", "1; DROP TABLE victim"],
    ["set_not_null", "t", "--column", "c", "--backfill", "1 WHERE false; DROP TABLE victim; --"],
    ["set_not_null", "t", "--column", "c", "--default", "'a\nDROP TABLE victim; --'"],
    ["create_index", "t", "--columns", "c", "--where", "true; DROP TABLE victim"],
    ["change_column_type", "t", "--column", "c", "--type", "int", "--using", "c::int) FROM x; DROP TABLE victim; --"],
    ["reindex", "t", "--index", "i", "--definition", "USING btree (c); DROP TABLE victim; --", "--pg-version", "11"],
    ["add_column_volatile_default", "t", "--column", "c", "--type", "uuid", "--default",
     "gen_random_uuid(); DROP TABLE victim"],
    ["set_not_null", "t\nDROP TABLE victim; --", "--column", "c"],
    ["change_column_type", "t", "--column", "c\nDROP TABLE victim; --", "--type", "bigint"],
])
def test_pattern_refuses_a_piece_that_is_not_one_type_or_expression(extra: list[str]) -> None:
    r = agent19("pattern", *extra)
    assert r.returncode == 2, r.stdout
    assert VICTIM not in r.stdout
    assert "error:" in r.stderr and " - " in r.stderr  # says what is wrong and what to give instead


def test_legitimate_pieces_still_make_a_pattern() -> None:
    r = agent19("pattern", "add_check", "t", "--name", "c", "--expression", "\"Group\" > 0 AND note <> $$--$$")
    assert r.returncode == 0, r.stderr
    assert 'CHECK ("Group" > 0 AND note <> $$--$$) NOT VALID' in r.stdout
    r = agent19("pattern", "add_foreign_key", "t", "--columns", "a", "--references", "r", "--ref-columns", "id",
                "--on-delete", "set null")
    assert r.returncode == 0, r.stderr
    assert "ON DELETE SET NULL NOT VALID" in r.stdout
    r = agent19("pattern", "change_column_type", "t", "--column", "c", "--type", "numeric(12,2)",
                "--using", "round(c::numeric, 2)")
    assert r.returncode == 0, r.stderr


def _plan(tmp_path: Path, changes: list[dict[str, Any]], *extra: str) -> subprocess.CompletedProcess[str]:
    f = tmp_path / "changes.json"
    f.write_text(json.dumps({"changes": changes}))
    return agent19("plan", str(f), "--format", "json", *extra)


@pytest.mark.parametrize("change", [
    {"type": "add_column", "table": "order",
     "column": {"name": "note", "type": "text", "default": "'x'; DROP TABLE victim"}},
    {"type": "add_column", "table": "order", "column": {"name": "note", "type": "text); DROP TABLE victim; --"}},
    {"type": "create_table", "table": "t", "columns": [
        {"name": "o", "type": "int", "references": "r(id)); DROP TABLE victim; CREATE TABLE x (y int"}]},
    {"type": "modify_column", "table": "order", "column": {"name": "c", "type": "int"},
     "new_type": "bigint; DROP TABLE victim"},
    {"type": "data_migration", "table": "order", "set": "c = 1 WHERE false; DROP TABLE victim; --"},
    {"type": "add_index", "table": "order", "index_columns": ["c"], "where": "true; DROP TABLE victim"},
])
def test_change_list_refuses_pieces_that_add_statements(tmp_path: Path, change: dict[str, Any]) -> None:
    r = _plan(tmp_path, [change])
    assert r.returncode == 2, r.stdout
    assert VICTIM not in r.stdout and "victim" in r.stderr


def test_live_default_with_a_line_break_stays_inside_its_comment(dsn: str) -> None:
    """A default read from the catalog (untrusted) is shown in a note: the script still runs only the pattern."""
    run_sql(dsn, "DROP TABLE IF EXISTS evil; CREATE TABLE evil (id int PRIMARY KEY, "
                 "v text NOT NULL DEFAULT E'a\\nDROP TABLE victim; --')")
    r = agent19("pattern", "change_column_type", "evil", "--column", "v", "--type", "varchar(50)", "--dsn", dsn)
    assert r.returncode == 0, r.stderr
    assert "the default 'a DROP TABLE victim; --'::text" in r.stdout  # the note names it, on one line
    # parsed as PostgreSQL (and psql) read the script: no statement drops anything but the pattern's own objects
    drops = [s.stmt for s in parse_sql(r.stdout) if s.stmt.__class__.__name__ == "DropStmt"]
    assert all("victim" not in str(d) for d in drops)


def test_change_list_plan_on_a_schema_with_a_dot_runs(tmp_path: Path, dsn: str) -> None:
    """A change list naming a table in schema "we.ird" is planned against the live database (as a non-superuser
    owner), and its SQL runs there, forwards and back."""
    role = f"app_{secrets.token_hex(4)}"
    run_sql(dsn, f"CREATE ROLE {role} LOGIN PASSWORD 'pw'; ALTER SCHEMA public OWNER TO {role}; "
                 f'CREATE SCHEMA "we.ird" AUTHORIZATION {role}')
    dsn = make_conninfo(dsn, user=role, password="pw")
    run_sql(dsn, 'CREATE TABLE "order" (id bigint PRIMARY KEY, "Group" int)')
    r = _plan(tmp_path, [
        {"type": "create_table", "table": 'we.ird.Ne"w', "columns": [
            {"name": "id", "type": "bigint", "primary_key": True},
            {"name": "user", "type": "text", "nullable": False, "default": "'it''s \\ x'"},
            {"name": "o", "type": "bigint", "references": '"order"(id)'}]},
        {"type": "add_column", "table": "order",
         "column": {"name": "select", "type": "numeric(12,2)", "nullable": False, "default": "0"}},
    ], "--dsn", dsn)
    assert r.returncode == 0, r.stderr
    ops = json.loads(r.stdout)["operations"]
    with psycopg.connect(dsn, autocommit=True) as conn:
        for op in ops:
            conn.execute(op["sql"])
        row = conn.execute('INSERT INTO "we.ird"."Ne""w" (id) VALUES (1) RETURNING "user"').fetchone()
        assert row == ("it's \\ x",)
        for op in reversed(ops):
            if op["reverse_sql"]:
                conn.execute(op["reverse_sql"])
        assert conn.execute("""SELECT to_regclass('"we.ird"."Ne""w"')""").fetchone() == (None,)


def test_self_review_does_not_call_unanalyzed_table_sizes_known(tmp_path: Path, dsn: str) -> None:
    """Connected, but the table was never analyzed: its size is unknown, so the item is not satisfied."""
    run_sql(dsn, 'CREATE TABLE "order" (id bigint PRIMARY KEY, "Group" int); '
                 'INSERT INTO "order" SELECT g, g FROM generate_series(1, 500) g')
    mig = tmp_path / "m.sql"
    mig.write_text('ALTER TABLE "order" ALTER COLUMN "Group" SET NOT NULL;\n')

    def item() -> str:
        r = agent19("runbook", str(mig), "--dsn", dsn, "--handoff-dir", str(tmp_path / "h"))
        assert r.returncode == 0, r.stderr
        (book,) = (tmp_path / "h").glob("*/runbook.md")
        (line,) = [ln for ln in book.read_text().splitlines() if ln.startswith("| Table sizes are known")]
        return line

    line = item()
    assert "unknown" in line.split("|")[2] and "never analyzed" in line
    run_sql(dsn, 'ANALYZE "order"')
    line = item()
    assert "satisfied" in line.split("|")[2] and "~500" in line


EVIL_DEFAULT = ("CREATE TABLE evil (id int PRIMARY KEY, "
                "v text NOT NULL DEFAULT E'a\\nDROP TABLE victim; --')")


def drops_victim(script: str) -> bool:
    """Whether PostgreSQL (or psql) reading ``script`` would run a DROP of table victim."""
    return any(s.stmt.__class__.__name__ == "DropStmt" and "victim" in str(s.stmt) for s in parse_sql(script))


def test_runbook_alternative_and_migration_files_keep_a_catalog_default_in_its_comment(
        tmp_path: Path, dsn: str) -> None:
    run_sql(dsn, EVIL_DEFAULT)
    mig = tmp_path / "m.sql"
    mig.write_text("ALTER TABLE evil ALTER COLUMN v TYPE varchar(50);\n")
    r = agent19("runbook", str(mig), "--dsn", dsn, "--handoff-dir", str(tmp_path / "h"))
    assert r.returncode == 0, r.stderr
    (book,) = (tmp_path / "h").glob("*/runbook.md")
    text = book.read_text()
    alternative = text.split("Safer alternative suggested by the plan:", 1)[1].split("```sql", 1)[1].split("```")[0]
    assert "SET DEFAULT 'a\nDROP TABLE victim; --'::text" in alternative  # the default itself is carried, in a string
    assert not drops_victim(alternative)
    for layout in ("prisma", "plain", "golang", "flyway"):
        out = tmp_path / layout
        r = agent19("pattern", "change_column_type", "evil", "--column", "v", "--type", "varchar(50)", "--dsn", dsn,
                    "--write-to", str(out), "--layout", layout)
        assert r.returncode == 0, r.stderr
        files = list(out.rglob("*.sql"))
        assert files
        for f in files:
            assert not drops_victim(f.read_text()), f
