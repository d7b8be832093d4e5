"""A change list's generated constraint and index names do not collide with names the live catalog has.

Found by a hostile review of issue 13: ``add_foreign_key`` named its constraint ``<table>_<columns>_fkey``
and its index ``<table>_<columns>_idx`` without looking at the catalog, so on a table whose column
already had a foreign key (``REFERENCES`` in its CREATE TABLE gets exactly that name) or an index of that
name, the plan's SQL stopped at "constraint … already exists". Names are now numbered as PostgreSQL
numbers the ones it chooses.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import psycopg

from agent19.migrate.parse import parse_sql
from tests.conftest import one, owner_login, run_sql

AGENT19 = (sys.executable, "-m", "agent19")  # the CLI of this checkout, whatever is on PATH

SCHEMA = """
CREATE TABLE "order" (id bigint PRIMARY KEY);
CREATE TABLE "Line Item" (id bigint PRIMARY KEY, order_id bigint REFERENCES "order", "Alt Order" bigint);
CREATE TABLE "Line Item_Alt Order_idx" (x int);  -- a table that has the index's name (same schema)
INSERT INTO "order" SELECT g FROM generate_series(1, 20) g;
INSERT INTO "Line Item" SELECT g, g, g FROM generate_series(1, 20) g;
"""


def test_plan_sql_and_its_rollback_run_where_the_generated_names_are_taken(dsn: str, tmp_path: Path) -> None:
    app = owner_login(dsn)
    run_sql(app, SCHEMA)
    run_sql(app, 'ALTER TABLE "Line Item" ADD CONSTRAINT "Line Item_Alt Order_fkey" CHECK ("Alt Order" > 0)')
    changes = tmp_path / "changes.json"
    changes.write_text(json.dumps([
        {"type": "add_foreign_key", "table": "Line Item", "index_columns": ["Alt Order"],
         "references_table": "order", "references_columns": ["id"]},
        {"type": "add_index", "table": "Line Item", "index_columns": ["Alt Order"], "unique": False},
    ]))
    r = subprocess.run([*AGENT19, "--dsn", app, "plan", str(changes), "--format", "json"], capture_output=True,
                       text=True, timeout=120)
    assert r.returncode in (0, 1), r.stderr
    plan = json.loads(r.stdout)
    with psycopg.connect(app, autocommit=True) as conn:
        for op in plan["operations"]:
            for st in parse_sql(op["sql"]):
                conn.execute(st.sql)
    assert one(app, """SELECT count(*) FROM pg_constraint WHERE conrelid = '"Line Item"'::regclass
                        AND contype = 'f' AND conname = 'Line Item_Alt Order_fkey1'""") == 1
    assert one(app, """SELECT count(*) FROM pg_indexes WHERE tablename = 'Line Item'
                        AND indexname LIKE 'Line Item_Alt Order_idx_'""") == 1
    with psycopg.connect(app, autocommit=True) as conn:
        for sql in plan["rollback"]["steps"]:
            for st in parse_sql(sql):
                conn.execute(st.sql)
    assert one(app, """SELECT count(*) FROM pg_constraint WHERE conrelid = '"Line Item"'::regclass
                        AND contype = 'f'""") == 1
