"""pg_stat_statements is read where its extension is, never found through the login's search_path (review r28 F10).

The extension's view lives in the schema it was created in; a schema on the login's path where another role may
create (``public``) could hold a view of the same name listing statements of that role's choosing — the workload the
index advisor plans and the dry run's plan comparison explains. Here the extension is in schema ``ext``, off the
path, and the database's owner (not a superuser) made ``public.pg_stat_statements`` with a forged statement."""

from __future__ import annotations

import psycopg

from agent19.config import Settings
from agent19.db.connection import Database
from tests.conftest import owner_login

FORGED = "SELECT * FROM orders WHERE note = 'forged by the owner'"
FORGED_LITERAL = "'" + FORGED.replace("'", "''") + "'"


def _setup(dsn: str) -> None:
    owner = owner_login(dsn, "pssview")
    with psycopg.connect(dsn, autocommit=True) as c:
        c.execute("CREATE SCHEMA ext; CREATE EXTENSION pg_stat_statements SCHEMA ext")
    with psycopg.connect(owner, autocommit=True) as c:
        c.execute("CREATE TABLE orders (id int PRIMARY KEY, note text)")
        c.execute("CREATE VIEW public.pg_stat_statements AS SELECT "
                  f"{FORGED_LITERAL}::text AS query, 1e9::float8 AS total_exec_time, 1e9::float8 AS mean_exec_time, "
                  "1000000::bigint AS calls, (SELECT oid FROM pg_database WHERE datname = current_database()) AS dbid, "
                  "true AS toplevel, 0::oid AS userid, 0::bigint AS wal_records, 0::bigint AS shared_blks_dirtied")
        for _ in range(3):
            c.execute("SELECT * FROM orders WHERE id = 1")  # a real statement, in the real view


def test_the_workload_comes_from_the_extensions_view(dsn):
    from agent19.optimize.workload import top_queries

    _setup(dsn)
    db = Database(Settings(dsn=dsn))
    try:
        found = [q.sql for q in top_queries(db, limit=50)]
    finally:
        db.close()
    assert FORGED not in found, found
    assert any("FROM orders WHERE id =" in q for q in found), found


def test_the_dry_runs_plan_comparison_reads_the_extensions_view(dsn):
    from agent19.migrate.planning.regression import top_queries

    _setup(dsn)
    with psycopg.connect(dsn, autocommit=True) as conn:
        queries, _ = top_queries(conn, {"public.orders"})
    texts = [q.query for q in queries]
    assert FORGED not in texts, texts
    assert any("FROM orders WHERE id =" in q for q in texts), texts
