"""Dropping a view names the functions whose SQL-standard bodies read it (recorded only in pg_depend; a hostile
review found the evidence listed dependent views alone, though CASCADE drops those functions too)."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import psycopg

from tests.conftest import owner_login


def test_a_dropped_view_names_the_functions_that_read_it(dsn):
    app = owner_login(dsn)
    with psycopg.connect(app, autocommit=True) as c:
        c.execute("CREATE TABLE orders (id int PRIMARY KEY, total numeric);"
                  "CREATE VIEW big_orders AS SELECT id FROM orders WHERE total > 100;"
                  "CREATE FUNCTION big_count() RETURNS bigint LANGUAGE sql BEGIN ATOMIC "
                  "SELECT count(*) FROM big_orders; END")
    done = subprocess.run([sys.executable, "-m", "agent19", "plan", "--dsn", app, "--sql",
                           "DROP VIEW big_orders CASCADE", "--format", "json"], capture_output=True, text=True,
                          timeout=120, env={**os.environ, "DATABASE_URL": ""})
    assert done.returncode in (0, 1), done.stderr
    plan = json.loads(done.stdout)
    [breaking] = [e for e in plan["escalations"] if e["kind"] == "breaking_change"]
    assert any("big_count()" in x and "SQL-standard bodies" in x for x in breaking["evidence"]), breaking["evidence"]
