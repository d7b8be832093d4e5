"""Tools that read pg_stat_statements as the application's login (no pg_read_all_stats): another role's statements
are there with their text hidden ('<insufficient privilege>', PostgreSQL 15). What those tools conclude from the
absence of a statement is then unknown, said with what is needed — never "none" (r25b H3)."""

from __future__ import annotations

import json
import uuid
from collections.abc import Iterator

import psycopg
import pytest
from psycopg.conninfo import make_conninfo

from agent19.migrate.planning.regression import top_queries
from tests.conftest import need_stat_statements, owner_login
from tests.test_runbook import agent19

INDEX = "CREATE INDEX CONCURRENTLY orders_status_idx ON orders (status)"


@pytest.fixture
def shop(dsn: str) -> Iterator[tuple[str, str, str]]:
    """(superuser DSN, the app's DSN, the other role's name): app owns orders; the other role may update it."""
    need_stat_statements(dsn)
    app = owner_login(dsn)
    other = f"reporter_{uuid.uuid4().hex[:8]}"
    with psycopg.connect(app, autocommit=True) as c:
        c.execute("CREATE TABLE orders (id bigint PRIMARY KEY, status text, note text)")
        c.execute("INSERT INTO orders SELECT g, 'new', '' FROM generate_series(1, 2000) g")
        c.execute("ANALYZE orders")
        c.execute("UPDATE orders SET note = 'seen' WHERE id = 2")  # the app's own UPDATE: not of status
    with psycopg.connect(dsn, autocommit=True) as c:
        c.execute(f"CREATE ROLE {other} LOGIN")
        c.execute(f"GRANT SELECT, UPDATE ON orders TO {other}")
    try:
        yield dsn, app, other
    finally:
        with psycopg.connect(dsn, autocommit=True) as c:
            c.execute(f"DROP OWNED BY {other}")
            c.execute(f"DROP ROLE {other}")


def _as(dsn: str, role: str, *sql: str) -> None:
    with psycopg.connect(make_conninfo(dsn, user=role), autocommit=True) as c:
        for s in sql:
            c.execute(s)


def test_plan_does_not_say_hot_updates_stay_hot_when_another_roles_update_is_hidden(shop) -> None:
    dsn, app, other = shop
    _as(dsn, other, *["UPDATE orders SET status = 'shipped' WHERE id = 1"] * 3)
    out = agent19("plan", "--sql", INDEX, "--dsn", app, "--format", "json")
    assert out.returncode == 0, out.stderr
    cost = json.loads(out.stdout)["index_costs"][0]
    assert cost["hot_lost"] is None and "stay HOT" not in cost["summary"]
    assert "HOT loss unknown" in cost["summary"] and other in cost["summary"]
    assert f"GRANT pg_read_all_stats TO {psycopg.conninfo.conninfo_to_dict(app)['user']}" in cost["summary"]
    with psycopg.connect(dsn, autocommit=True) as c:  # with the grant the UPDATE is read: the loss is known
        c.execute(f"GRANT pg_read_all_stats TO {psycopg.conninfo.conninfo_to_dict(app)['user']}")
    seen = json.loads(agent19("plan", "--sql", INDEX, "--dsn", app, "--format", "json").stdout)["index_costs"][0]
    assert seen["hot_lost"] is True and "UPDATEs set status" in seen["summary"]


def test_plan_says_hot_updates_stay_hot_when_nothing_is_hidden(shop) -> None:
    dsn, app, _ = shop
    with psycopg.connect(dsn, autocommit=True) as c:  # only the app's own statements in this database
        c.execute("SELECT pg_stat_statements_reset()")
    _as(dsn, psycopg.conninfo.conninfo_to_dict(app)["user"], "UPDATE orders SET note = 'x' WHERE id = 3")
    cost = json.loads(agent19("plan", "--sql", INDEX, "--dsn", app, "--format", "json").stdout)["index_costs"][0]
    assert cost["hot_lost"] is False and "HOT updates stay HOT" in cost["summary"]


def test_dry_run_top_queries_say_other_roles_selects_are_hidden(shop) -> None:
    dsn, app, other = shop
    _as(dsn, other, "SELECT count(*) FROM orders WHERE status = 'shipped'")
    with psycopg.connect(app, autocommit=True) as c:
        found, note = top_queries(c, {"public.orders"})
    assert found == [] and other in note and "pg_read_all_stats" in note, note


def test_advise_says_the_workload_leaves_out_other_roles_hidden_statements(shop) -> None:
    dsn, app, other = shop
    _as(dsn, other, *["SELECT count(*) FROM orders WHERE status = 'shipped'"] * 5)
    done = agent19("advise-workload", "--dsn", app, "--format", "json")
    assert "pg_read_all_stats" in done.stdout + done.stderr and other in done.stdout + done.stderr, done


def test_plan_does_not_say_hot_updates_stay_hot_when_a_function_the_app_calls_updated(shop) -> None:
    """r25c N1: `SELECT ship($1)` UPDATEs status in its body; pg_stat_statements shows only the call (with WAL)."""
    dsn, app, _ = shop
    me = psycopg.conninfo.conninfo_to_dict(app)["user"]
    _as(dsn, me, "CREATE FUNCTION ship(o bigint) RETURNS void LANGUAGE plpgsql AS "
        "$$ BEGIN UPDATE orders SET status = 'shipped' WHERE id = o; END $$")
    with psycopg.connect(dsn, autocommit=True) as c:  # only the app's own statements in this database
        c.execute("SELECT pg_stat_statements_reset()")
    with psycopg.connect(app, autocommit=True) as c:
        for i in (5, 6, 7):
            c.execute("SELECT ship(%s)", (i,))
        c.execute("SELECT count(*) FROM orders WHERE note = ''")  # reads: no doubt from them
        c.execute("INSERT INTO orders VALUES (9001, 'new', '') ON CONFLICT (id) DO UPDATE SET note = 'again'")
    cost = json.loads(agent19("plan", "--sql", INDEX, "--dsn", app, "--format", "json").stdout)["index_costs"][0]
    assert cost["hot_lost"] is None and "stay HOT" not in cost["summary"], cost["summary"]
    assert "ship" in cost["summary"] and "whose body may UPDATE" in cost["summary"], cost["summary"]
    assert "count(*)" not in cost["summary"] and "9001" not in cost["summary"]
    note = json.loads(agent19("plan", "--sql", "CREATE INDEX CONCURRENTLY orders_note_idx ON orders (note)",
                              "--dsn", app, "--format", "json").stdout)["index_costs"][0]
    assert note["hot_lost"] is True and "note" in note["summary"]  # the upsert's DO UPDATE SET list is read
