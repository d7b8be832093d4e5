"""advise reads an unqualified table name as the server does: the first schema of the session's search_path that
has it. With ``orders`` in two schemas it failed with sqlglot's "Ambiguous mapping" though the server resolves it."""

from __future__ import annotations

import json
import os
import subprocess
import sys

from psycopg.conninfo import conninfo_to_dict

from tests.conftest import owner_login, run_sql


def _advise(sql: str, dsn: str, tmp_path) -> dict:
    env = {**os.environ, "AGENT19_DATA_DIR": str(tmp_path), "DATABASE_URL": ""}
    r = subprocess.run([sys.executable, "-m", "agent19", "advise", sql, "--dsn", dsn, "--mode", "dry-run",
                        "--format", "json"], env=env, capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, (r.stdout, r.stderr)
    return json.loads(r.stdout)


def _tables(advice: dict) -> set[str]:
    named = [r["sql"] for r in advice["recommendations"]] + [c["definition"] for c in advice["candidates"]]
    named += advice["unverified"] + list(advice["already_served"])
    return {schema for text in named for schema in ("public.orders", "other.orders") if schema in text}


def test_an_unqualified_table_in_two_schemas_is_the_one_on_the_search_path(dsn, tmp_path):
    app = owner_login(dsn, "advpath")
    run_sql(app, "CREATE SCHEMA other; "
                 "CREATE TABLE public.orders (id int PRIMARY KEY, kind int, status int); "
                 "CREATE TABLE other.orders (id int PRIMARY KEY, kind int, status int); "
                 "INSERT INTO public.orders SELECT g, g % 100, g % 7 FROM generate_series(1, 20000) g; "
                 "INSERT INTO other.orders SELECT g, g % 100, g % 7 FROM generate_series(1, 20000) g; "
                 "ANALYZE public.orders; ANALYZE other.orders")
    query = "SELECT id FROM orders WHERE kind = 3 AND status = 2"
    assert _tables(_advise(query, app, tmp_path)) == {"public.orders"}
    run_sql(app, f"ALTER ROLE {conninfo_to_dict(app)['user']} SET search_path = other, public")
    assert _tables(_advise(query, app, tmp_path)) == {"other.orders"}
    # named with its schema, it is that table whatever the path says
    assert _tables(_advise(query.replace("FROM orders", "FROM public.orders"), app, tmp_path)) == {"public.orders"}
