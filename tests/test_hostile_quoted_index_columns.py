"""An index on a column whose name needs quotes counts as an index on that column.

Found by a hostile review of issue 13: the catalog gave an index's key columns as SQL (``"user"``,
``"Parent Id"``) and lint, plan and the patterns compared them with raw names (``user``). So a foreign
key on such a column was reported as unindexed (A19025) and a change list added a second index; the
A19036 fix for ADD PRIMARY KEY USING INDEX quoted the quoted name again (three quotes each side of select: a column that
does not exist); and a lint fix's notes did not name the index its DROP COLUMN would drop.
"""

from __future__ import annotations

import json
import subprocess
import sys

import psycopg

from tests.conftest import owner_login, run_sql

AGENT19 = (sys.executable, "-m", "agent19")  # the CLI of this checkout, whatever is on PATH

SCHEMA = """
CREATE TABLE "Parent" (id int PRIMARY KEY);
CREATE TABLE kid (id int PRIMARY KEY, "Parent Id" int, "user" int, "select" int);
CREATE INDEX kid_parent ON kid ("Parent Id");
CREATE INDEX kid_user ON kid ("user");
CREATE UNIQUE INDEX kid_select ON kid ("select");
INSERT INTO kid SELECT g, NULL, NULL, g FROM generate_series(1, 100) g;
"""


def agent19(dsn: str, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([*AGENT19, "--dsn", dsn, *args], capture_output=True, text=True, timeout=120)


def _findings(out: str) -> list[dict[str, str]]:
    return [f for s in json.loads(out)["statements"] for f in s["findings"]]


def test_lint_sees_the_index_on_a_quoted_foreign_key_column(dsn: str) -> None:
    app = owner_login(dsn)
    run_sql(app, SCHEMA)
    r = agent19(app, "lint", "--format", "json", "--sql",
                'ALTER TABLE kid ADD CONSTRAINT f FOREIGN KEY ("Parent Id") REFERENCES "Parent" (id) NOT VALID;\n'
                'ALTER TABLE kid ADD CONSTRAINT g FOREIGN KEY ("user") REFERENCES "Parent" (id) NOT VALID;')
    assert r.returncode in (0, 1), r.stderr
    assert [f for f in _findings(r.stdout) if f["rule"] == "A19025"] == []


def test_change_list_does_not_add_a_second_index(dsn: str, tmp_path) -> None:
    app = owner_login(dsn)
    run_sql(app, SCHEMA)
    changes = tmp_path / "changes.json"
    changes.write_text(json.dumps([{"type": "add_foreign_key", "table": "kid", "index_columns": ["Parent Id"],
                                    "references_table": "Parent", "references_columns": ["id"]}]))
    r = agent19(app, "plan", str(changes), "--format", "json")
    assert r.returncode in (0, 1), r.stderr
    sqls = [op["sql"] for op in json.loads(r.stdout)["operations"]]
    assert not any("CREATE INDEX" in s for s in sqls), sqls


def test_primary_key_using_index_fix_names_the_column_once_quoted_and_runs(dsn: str) -> None:
    app = owner_login(dsn)
    run_sql(app, SCHEMA.replace('CREATE TABLE kid (id int PRIMARY KEY,', 'CREATE TABLE kid (id int,'))
    r = agent19(app, "lint", "--format", "json", "--sql", "ALTER TABLE kid ADD PRIMARY KEY USING INDEX kid_select;")
    fixes = [f["fix"] for f in _findings(r.stdout) if f["rule"] == "A19036"]
    assert len(fixes) == 1, r.stdout
    assert 'CHECK ("select" IS NOT NULL)' in fixes[0] and '"""' not in fixes[0], fixes[0]
    with psycopg.connect(app, autocommit=True) as conn:
        conn.execute(fixes[0])
        row = conn.execute("SELECT conname FROM pg_constraint WHERE conrelid = 'kid'::regclass AND contype = 'p'"
                           ).fetchone()
    assert row == ("kid_select",)


def test_rename_fix_carries_the_index_the_contract_drops(dsn: str) -> None:
    """The fix rebuilds the quoted column's index on the new column before the contract drops the old one (it
    named the index as not carried before patterns/carry.py)."""
    app = owner_login(dsn)
    run_sql(app, SCHEMA)
    r = agent19(app, "lint", "--format", "json", "--sql", 'ALTER TABLE kid RENAME COLUMN "user" TO "User";')
    fixes = [f["fix"] for f in _findings(r.stdout) if f["rule"] == "A19013"]
    assert len(fixes) == 1 and "carried: index kid_user" in fixes[0], fixes
    assert '("User")' in fixes[0] and "CREATE INDEX CONCURRENTLY" in fixes[0], fixes[0]
    assert "RENAME TO kid_user" in fixes[0], fixes[0]
