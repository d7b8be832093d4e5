"""Hostile use of a change list's rename / type-change patterns and of lint's exemptions for them, on a real server
as a non-superuser role that owns the tables: what a careless user does next (roll back and run again, combine
changes of one column or one table) and what a migration can do to slip a breaking rename past A19013."""

from __future__ import annotations

import json
import subprocess
import sys

import psycopg
import psycopg.conninfo
import pytest

from agent19.errors import InputError
from agent19.migrate.lint.engine import lint_sql
from tests.conftest import one, owner_login, run_sql
from tests.conftest import plan_changes as _plan
from tests.conftest import run_each as _run


def test_expand_rolled_back_and_run_again_backfills_again(dsn: str) -> None:
    """Run the expand part, roll it back with the plan's reverse SQL, run it again: the backfill's checkpoint of the
    first run said "finished" and the second CALL updated nothing — every new column NULL, and the contract then
    dropped the only column holding the values."""
    app = owner_login(dsn)
    run_sql(app, 'CREATE TABLE "Items" (id bigint PRIMARY KEY, note text);'
                 "INSERT INTO \"Items\" SELECT g, 'n' || g FROM generate_series(1, 300) g")
    plan = _plan(app, [{"type": "rename", "table": "Items", "column": {"name": "note", "type": "text"},
                        "new_name": "order"}])
    [deploy] = [op.order for op in plan.operations if op.deploy_after]
    expand, contract = plan.operations[:deploy], plan.operations[deploy:]
    _run(app, [op.sql for op in expand])
    _run(app, [op.reverse_sql for op in reversed(expand) if op.reverse_sql])
    assert one(app, "SELECT count(*) FROM pg_attribute WHERE attrelid = '\"Items\"'::regclass AND attname = 'order'"
                    " AND NOT attisdropped") == 0
    _run(app, [op.sql for op in expand])
    assert one(app, 'SELECT count(*) FROM "Items" WHERE "order" IS NULL') == 0
    _run(app, [op.sql for op in contract])
    assert one(app, """SELECT count(*) FROM "Items" WHERE "order" = 'n' || id""") == 300


def test_a_rename_and_a_type_change_of_one_column_are_refused(dsn: str) -> None:
    """Both patterns on one column: the rename's contract dropped the column the type change had swapped in, so the
    plan ended with the old type (and said it lost nothing)."""
    app = owner_login(dsn)
    run_sql(app, "CREATE TABLE items (id bigint PRIMARY KEY, price integer NOT NULL DEFAULT 0, qty integer)")
    with pytest.raises(InputError, match="price"):
        _plan(app, [
            {"type": "rename", "table": "items", "column": {"name": "price", "type": "integer"}, "new_name": "amount"},
            {"type": "modify_column", "table": "items", "column": {"name": "price", "type": "integer"},
             "new_type": "bigint"}])
    with pytest.raises(InputError, match="amount"):  # the type change of the new name: the same column
        _plan(app, [
            {"type": "rename", "table": "items", "column": {"name": "price", "type": "integer"}, "new_name": "amount"},
            {"type": "modify_column", "table": "items", "column": {"name": "amount", "type": "integer"},
             "new_type": "bigint"}])
    # two columns of one table, each by one pattern, are fine
    plan = _plan(app, [
        {"type": "rename", "table": "items", "column": {"name": "price", "type": "integer"}, "new_name": "amount"},
        {"type": "modify_column", "table": "items", "column": {"name": "qty", "type": "integer"},
         "new_type": "bigint"}])
    assert sum(op.deploy_after for op in plan.operations) == 1


def test_a_table_rename_and_a_column_pattern_of_that_table_are_refused(dsn: str) -> None:
    """The table rename's view took the old name, and the column pattern's later statements (ALTER TABLE by the old
    name) failed on the view, in the middle of the expand part."""
    app = owner_login(dsn)
    run_sql(app, "CREATE TABLE items (id bigint PRIMARY KEY, price integer, note text)")
    for column_change in (
        {"type": "rename", "table": "items", "column": {"name": "note", "type": "text"}, "new_name": "remark"},
        {"type": "modify_column", "table": "items", "column": {"name": "price", "type": "integer"},
         "new_type": "bigint"},
        {"type": "rename", "table": "goods", "column": {"name": "note", "type": "text"}, "new_name": "remark"},
    ):
        with pytest.raises(InputError, match="items"):
            _plan(app, [{"type": "rename", "table": "items", "new_name": "goods"}, column_change])
    # a plain change of the renamed table still runs before the rename, by the old name
    plan = _plan(app, [{"type": "rename", "table": "items", "new_name": "goods"},
                       {"type": "add_column", "table": "items", "column": {"name": "x", "type": "integer"}}])
    _run(app, [op.sql for op in plan.operations])
    assert one(app, "SELECT count(x) FROM goods") == 0


def _renames(sql: str) -> list[str]:
    return [f.rule for s in lint_sql(sql).statements for f in s.findings if f.rule == "A19013"]


def test_lint_an_add_column_if_not_exists_does_not_make_an_existing_column_new(dsn: str) -> None:
    """ADD COLUMN IF NOT EXISTS of a column that exists adds nothing: its rename breaks every client using it."""
    app = owner_login(dsn)
    run_sql(app, "CREATE TABLE t (id bigint PRIMARY KEY, email text)")
    sql = "ALTER TABLE t ADD COLUMN IF NOT EXISTS email text; ALTER TABLE t RENAME COLUMN email TO mail;"
    run_sql(app, sql)  # it runs: the column was not added, it was renamed
    assert one(app, "SELECT count(*) FROM pg_attribute WHERE attrelid = 't'::regclass AND attname = 'email'") == 0
    assert _renames(sql) == ["A19013"]
    assert _renames("ALTER TABLE t ADD COLUMN mail2 text; ALTER TABLE t RENAME COLUMN mail2 TO mail3;") == []


def test_lint_a_view_that_does_not_keep_the_old_name_working_is_no_excuse(dsn: str) -> None:
    """The exemption is for the compatibility view of the rename_table pattern: a permanent view of the renamed
    table, still there at COMMIT. A temporary view (only the migration's session sees it), a view of something
    else, or one dropped again in the same transaction leaves every running client broken."""
    app = owner_login(dsn)
    run_sql(app, "CREATE SCHEMA other; CREATE TABLE other.t2 (id int); CREATE TABLE t (id int, v text)")
    temp = "BEGIN; ALTER TABLE t RENAME TO t2; CREATE TEMP VIEW t AS SELECT * FROM t2; COMMIT;"
    run_sql(app, temp)
    assert one(app, "SELECT to_regclass('t')") is None  # another session: the old name is gone
    hostile = [
        temp,
        "BEGIN; ALTER TABLE t RENAME TO t2; CREATE VIEW t AS SELECT 1 AS id; COMMIT;",
        "BEGIN; ALTER TABLE public.t RENAME TO t2; CREATE VIEW public.t AS SELECT * FROM other.t2; COMMIT;",
        "BEGIN; ALTER TABLE t RENAME TO t2; CREATE VIEW t AS SELECT * FROM t2; DROP VIEW t; COMMIT;",
        "BEGIN; ALTER TABLE t SET SCHEMA other; CREATE VIEW t AS SELECT * FROM public.t; COMMIT;",
    ]
    for sql in hostile:
        assert _renames(sql) == ["A19013"], sql
    for sql in ("BEGIN; ALTER TABLE t RENAME TO t2; CREATE VIEW t AS SELECT * FROM t2; COMMIT;",
                'BEGIN; ALTER TABLE "My S"."T" RENAME TO "U"; CREATE VIEW "My S"."T" AS SELECT * FROM "My S"."U"; '
                "COMMIT;",
                "BEGIN; ALTER TABLE t SET SCHEMA other; CREATE VIEW t AS SELECT * FROM other.t; COMMIT;"):
        assert _renames(sql) == [], sql


def test_a_generated_column_is_refused_not_copied_by_a_trigger(dsn: str) -> None:
    """A generated column's rename or type change as the pattern: its expression was carried over as the new
    column's default (the contract's SET DEFAULT failed: a column reference), and rows inserted during the
    transition got NULL in the new column (a BEFORE trigger reads a generated column as NULL)."""
    app = owner_login(dsn)
    run_sql(app, "CREATE TABLE g (id bigint PRIMARY KEY, a integer, dbl integer GENERATED ALWAYS AS (a * 2) STORED,"
                 " note text); INSERT INTO g (id, a, note) SELECT x, x, 'n' FROM generate_series(1, 50) x")
    for change in ({"type": "rename", "table": "g", "column": {"name": "dbl", "type": "integer"}, "new_name": "twice"},
                   {"type": "modify_column", "table": "g", "column": {"name": "dbl", "type": "integer"},
                    "new_type": "bigint"}):
        with pytest.raises(InputError, match="generated column"):
            _plan(app, [change])
    # the column it is computed from: the contract's DROP COLUMN failed (the generated column depends on it)
    with pytest.raises(InputError, match="dbl"):
        _plan(app, [{"type": "rename", "table": "g", "column": {"name": "a", "type": "integer"}, "new_name": "b"}])
    plan = _plan(app, [{"type": "rename", "table": "g", "column": {"name": "note", "type": "text"},
                        "new_name": "remark"}])
    _run(app, [op.sql for op in plan.operations])  # a column no generated column reads: it runs
    assert one(app, "SELECT sum(dbl) FROM g WHERE remark = 'n'") == 2 * sum(range(1, 51))


def _columns(dsn: str, table: str) -> str:
    return one(dsn, "SELECT string_agg(attname || ' ' || format_type(atttypid, atttypmod) || ' ' || attnotnull || ' ' "
                    "|| coalesce(pg_get_expr(adbin, adrelid), '-'), ', ' ORDER BY attnum) FROM pg_attribute "
                    "LEFT JOIN pg_attrdef ON adrelid = attrelid AND adnum = attnum "
                    f"WHERE attrelid = '{table}'::regclass AND attnum > 0 AND NOT attisdropped")


def test_the_expand_part_rolled_back_gives_the_schema_back(dsn: str) -> None:
    """The reverse SQL of the operations that ran, last first: each statement's inverse was read from the catalog by
    name, so after the swap's renames the old default went onto the shadow column, the restored column stayed
    without its NOT NULL and default, and the rollback stopped on a trigger the swap had already dropped."""
    app = owner_login(dsn)
    run_sql(app, "CREATE TABLE items (id bigint PRIMARY KEY GENERATED BY DEFAULT AS IDENTITY, n serial, "
                 "price integer NOT NULL DEFAULT 5, note text);"
                 "INSERT INTO items (price, note) SELECT g, 'n' FROM generate_series(1, 200) g")
    before = _columns(app, "items")
    plan = _plan(app, [
        {"type": "modify_column", "table": "items", "column": {"name": "price", "type": "integer"},
         "new_type": "bigint"},
        {"type": "modify_column", "table": "items", "column": {"name": "n", "type": "integer"}, "new_type": "bigint"},
        {"type": "rename", "table": "items", "column": {"name": "note", "type": "text"}, "new_name": "remark"}])
    [deploy] = [op.order for op in plan.operations if op.deploy_after]
    expand = plan.operations[:deploy]
    _run(app, [op.sql for op in expand])
    run_sql(app, "INSERT INTO items (note) VALUES ('old client')")  # by the old names, defaults from the table
    _run(app, [op.reverse_sql for op in reversed(expand) if op.reverse_sql])
    assert _columns(app, "items") == before
    assert one(app, "SELECT count(*) FROM pg_trigger WHERE tgrelid = 'items'::regclass AND NOT tgisinternal") == 0
    run_sql(app, "INSERT INTO items (note) VALUES ('after the rollback')")  # the sequence is still the default's
    assert one(app, "SELECT count(*) FROM items WHERE price = 5 AND note <> 'n'") == 2
    assert one(app, "SELECT sum(price) FROM items WHERE price <> 5 OR id = 5") == sum(range(1, 201))
    assert one(app, "SELECT max(n) FROM items") == 202


def test_a_primary_key_column_is_refused(dsn: str) -> None:
    """integer to bigint of a serial primary key, the commonest type change: the swap's DROP NOT NULL of the old
    column failed (it is in the key); a rename's contract DROP COLUMN dropped the primary key with the column."""
    app = owner_login(dsn)
    run_sql(app, "CREATE TABLE k (id serial PRIMARY KEY, v text);"
                 "INSERT INTO k (v) SELECT 'x' FROM generate_series(1, 9)")
    for change in ({"type": "modify_column", "table": "k", "column": {"name": "id", "type": "integer"},
                    "new_type": "bigint"},
                   {"type": "rename", "table": "k", "column": {"name": "id", "type": "integer"}, "new_name": "k_id"}):
        with pytest.raises(InputError, match="primary key"):
            _plan(app, [change])


def test_the_dry_run_fails_a_backfill_that_fails_on_the_targets_rows(dsn: str, tmp_path) -> None:
    """bigint to integer with a value out of range. Another session connected to the target (as on any live
    database) makes the scratch copy schema-only: the backfill's CALL passed there on no rows, its stand-in in the
    target's transaction failed on the real row — and the failure was swallowed: the dry run PASSED a plan whose
    backfill stops on that row."""
    app = owner_login(dsn)
    run_sql(dsn, f"ALTER ROLE {psycopg.conninfo.conninfo_to_dict(app)['user']} CREATEDB")  # it may make scratch copies
    run_sql(app, "CREATE TABLE m (id bigint PRIMARY KEY, v bigint);"
                 "INSERT INTO m SELECT g, g FROM generate_series(1, 100) g; INSERT INTO m VALUES (101, 3000000000)")
    plan = _plan(app, [{"type": "modify_column", "table": "m", "column": {"name": "v", "type": "bigint"},
                        "new_type": "integer"}])
    migration = tmp_path / "plan.sql"
    migration.write_text(plan.sql)
    with psycopg.connect(app):  # another client of the target
        out = subprocess.run([sys.executable, "-m", "agent19", "--mode", "dry-run", "dry-run", str(migration),
                              "--dsn", app, "--format", "json"], capture_output=True, text=True, timeout=300)
    result = json.loads(out.stdout)
    assert not result["passed"] and out.returncode != 0, result["summary"]
    [call] = [st for st in result["statements"] if st["sql"].startswith("CALL agent19_backfill_")]
    assert call["error"] and "out of range" in call["error"]["message"], call


def test_the_runbooks_rollback_of_the_expand_part_gives_the_schema_back(dsn: str, tmp_path) -> None:
    """The runbook's steps up to the deploy point run, then its rollback plan's undo steps for them, last first: the
    schema is what it was, and no step of the expand part says "restore from backup" (a step of a pattern's phase
    has no SQL of its own: the phase is undone at its last step)."""
    app = owner_login(dsn)
    run_sql(app, "CREATE TABLE items (id bigint PRIMARY KEY, price integer NOT NULL DEFAULT 5, note text);"
                 "INSERT INTO items SELECT g, g FROM generate_series(1, 100) g")
    before = _columns(app, "items")
    changes = tmp_path / "changes.json"
    changes.write_text(json.dumps([
        {"type": "modify_column", "table": "items", "column": {"name": "price", "type": "integer"},
         "new_type": "bigint"},
        {"type": "rename", "table": "items", "column": {"name": "note", "type": "text"}, "new_name": "remark"}]))
    out = subprocess.run([sys.executable, "-m", "agent19", "runbook", str(changes), "--dsn", app, "--format", "json",
                          "--write", str(tmp_path / "docs"), "--no-handoff", "--handoff-dir", str(tmp_path / "h")],
                         capture_output=True, text=True, timeout=300)
    assert out.returncode in (0, 1), out.stderr[-2000:]
    steps = json.loads((tmp_path / "docs" / "runbook.json").read_text())["steps"]
    [deploy] = [s["order"] for s in steps if s["deploy_after"]]
    undo = {s["order"]: s for s in json.loads((tmp_path / "docs" / "rollback-plan.json").read_text())["steps"]}
    assert not [o for o in range(1, deploy + 1) if "restore from backup" in (undo[o]["manual"] or "")]
    _run(app, [s["sql"] for s in steps if s["order"] <= deploy])
    _run(app, [undo[o]["sql"] for o in range(deploy, 0, -1) if undo[o]["sql"]])
    assert _columns(app, "items") == before
    assert one(app, "SELECT sum(price) FROM items") == sum(range(1, 101))


def test_an_index_or_foreign_key_on_a_column_the_list_renames_is_refused(dsn: str) -> None:
    """add_index runs before the rename (on the old name); the rename's contract DROP COLUMN then dropped the index
    the same list had asked for, silently. By the new name it ran before the column existed."""
    app = owner_login(dsn)
    run_sql(app, "CREATE TABLE items (id bigint PRIMARY KEY, note text, code integer);"
                 "CREATE TABLE refs (id bigint PRIMARY KEY, item_code integer)")
    rename = {"type": "rename", "table": "items", "column": {"name": "code", "type": "integer"}, "new_name": "sku"}
    for other in ({"type": "add_index", "table": "items", "index_columns": ["code"], "unique": True},
                  {"type": "add_index", "table": "items", "index_columns": ["sku"]},
                  {"type": "add_foreign_key", "table": "refs", "index_columns": ["item_code"],
                   "references_table": "items", "references_columns": ["code"]}):
        with pytest.raises(InputError, match="renames"):
            _plan(app, [rename, other])
    # an index on another column of the table: it runs, and stays
    plan = _plan(app, [rename, {"type": "add_index", "table": "items", "index_columns": ["note"]}])
    _run(app, [op.sql for op in plan.operations])
    assert one(app, "SELECT count(*) FROM pg_index WHERE indrelid = 'items'::regclass AND NOT indisprimary") == 1
