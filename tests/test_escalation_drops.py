"""Breaking-change and data-loss escalations for drops, decided from the catalog of a real server (as the
application's non-superuser role) and, without a database, saying what could not be checked:
views, functions, primary keys and unique constraints referenced by foreign keys; DROP SCHEMA without a
database; and a column added then dropped in the same migration, which changes nothing for clients."""

from __future__ import annotations

import json

import pytest

from tests.conftest import owner_login, run_sql
from tests.test_runbook import agent19

SETUP = """
CREATE TABLE customers (id bigint PRIMARY KEY, email text CONSTRAINT customers_email_key UNIQUE, note text);
CREATE TABLE orders (id bigint PRIMARY KEY, customer_id bigint REFERENCES customers (id),
                     CONSTRAINT orders_positive CHECK (id > 0));
CREATE TABLE tags (id int CONSTRAINT tags_id_key UNIQUE);
INSERT INTO customers SELECT g, 'c' || g || '@x', 'n' FROM generate_series(1, 100) g;
CREATE VIEW active_customers AS SELECT id, email FROM customers;
CREATE VIEW vip AS SELECT id FROM active_customers WHERE id < 10;
CREATE VIEW lonely AS SELECT 1 AS one;
CREATE FUNCTION order_total(bigint) RETURNS numeric LANGUAGE sql STABLE RETURN 42;
CREATE VIEW totals AS SELECT id, order_total(id) FROM orders;
CREATE FUNCTION unused(int) RETURNS int LANGUAGE sql IMMUTABLE RETURN $1;
CREATE FUNCTION twice(int) RETURNS int LANGUAGE sql IMMUTABLE RETURN $1 * 2;
CREATE FUNCTION twice(text) RETURNS text LANGUAGE sql IMMUTABLE RETURN $1 || $1;
ANALYZE;
"""


def plan(sql: str, *args: str) -> dict:
    done = agent19("plan", "--sql", sql, "--format", "json", *args)
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout)


def kinds(p: dict) -> dict[str, dict]:
    return {e["kind"]: e for e in p["escalations"]}


@pytest.fixture
def app(dsn: str) -> str:
    app_dsn = owner_login(dsn)
    run_sql(app_dsn, SETUP)
    return app_dsn


@pytest.mark.parametrize(("sql", "evidence"), [
    ("DROP VIEW active_customers", ["drops view public.active_customers", "it exists (catalog)",
                                    "views that read it: public.vip"]),
    ("DROP VIEW lonely", ["drops view public.lonely", "no other view reads it"]),
    ("DROP FUNCTION order_total(bigint)", ["drops function order_total(int8)", "exists (live catalog)",
                                           "recorded dependents: view totals"]),
    ("DROP FUNCTION unused", ["drops function unused", "nothing in the catalog depends on it",
                              "PL/pgSQL bodies are never recorded"]),
    ("DROP FUNCTION twice", ["drops function twice", "twice names 2 functions (the DROP fails"]),
    ("ALTER TABLE customers DROP CONSTRAINT customers_pkey CASCADE",
     ["drops the primary key customers_pkey of public.customers (id)",
      "foreign keys that reference it: public.orders.orders_customer_id_fkey"]),
    ("ALTER TABLE tags DROP CONSTRAINT tags_id_key", ["drops the unique constraint tags_id_key",
                                                      "ON CONFLICT on these columns fails",
                                                      "no foreign key references it"]),
])
def test_drops_that_break_clients_escalate_with_catalog_evidence(app, sql, evidence):
    p = plan(sql, "--dsn", app, "--write-sample-seconds", "0")
    esc = kinds(p)
    assert set(esc) == {"breaking_change"}, p["escalation_summary"]
    assert esc["breaking_change"]["statements"] == [sql]
    assert "application engineers" in esc["breaking_change"]["reviewers"]
    text = " | ".join(esc["breaking_change"]["evidence"])
    for part in evidence:
        assert part in text, text
    assert "cannot check without a database" not in text


@pytest.mark.parametrize("sql", [
    "ALTER TABLE orders DROP CONSTRAINT orders_positive",  # a CHECK breaks no client
    "DROP FUNCTION IF EXISTS no_such_function(int)",       # nothing to drop
    "DROP VIEW IF EXISTS no_such_view",
])
def test_drops_that_break_nothing_raise_nothing(app, sql):
    p = plan(sql, "--dsn", app, "--write-sample-seconds", "0")
    assert "breaking_change" not in kinds(p), p["escalations"]


def test_without_a_database_each_drop_escalates_and_says_what_could_not_be_checked():
    sqls = ["DROP VIEW active_customers", "DROP FUNCTION order_total(bigint)",
            "ALTER TABLE customers DROP CONSTRAINT customers_pkey"]
    for sql in sqls:
        esc = kinds(plan(sql))
        assert set(esc) == {"breaking_change"}, sql
        assert "cannot check without a database (pass --dsn)" in esc["breaking_change"]["evidence"][0]


@pytest.mark.parametrize("sql", ["DROP SCHEMA reporting", "DROP SCHEMA reporting CASCADE"])
def test_drop_schema_without_a_database_is_data_loss(sql):
    p = plan(sql)
    assert not p["escalation_summary"].startswith("no escalation")
    loss = kinds(p)["data_loss"]
    assert loss["statements"] == [sql] and "DBA" in loss["reviewers"]
    assert "DROP SCHEMA removes the schema, and with CASCADE every table in it" in loss["evidence"][0]


def test_a_column_added_and_dropped_in_one_migration_escalates_nothing(app):
    sql = "ALTER TABLE customers ADD COLUMN scratch text;\nALTER TABLE customers DROP COLUMN scratch;"
    for extra in ((), ("--dsn", app, "--write-sample-seconds", "0")):
        p = plan(sql, *extra)
        assert p["escalations"] == [], p["escalations"]
        assert p["escalation_summary"].startswith("no escalation needed")
        assert not [f for f in p["findings"] if f["rule"] == "A19014"]
    # a column that existed before the migration still does
    p = plan("ALTER TABLE customers ADD COLUMN scratch text;\nALTER TABLE customers DROP COLUMN note;",
             "--dsn", app, "--write-sample-seconds", "0")
    assert set(kinds(p)) == {"data_loss", "breaking_change"}
    assert kinds(p)["data_loss"]["operations"] == [2] and "~100 rows" in kinds(p)["data_loss"]["evidence"][0]


def test_a_drop_replaced_later_in_the_migration_is_no_breaking_change(app):
    """DROP then CREATE of the same view or function (same arguments) is how their columns or return type change;
    a function re-created with other arguments is still gone for the old callers."""
    sql = ("DROP VIEW vip;\nDROP VIEW active_customers;\n"
           "CREATE VIEW active_customers AS SELECT id, email, note FROM customers;\n"
           "CREATE VIEW vip AS SELECT id FROM active_customers WHERE id < 10;\n"
           "DROP FUNCTION unused(int);\nCREATE FUNCTION unused(x int) RETURNS bigint LANGUAGE sql RETURN x;\n"
           "DROP FUNCTION order_total(bigint) CASCADE;\n"
           "CREATE FUNCTION order_total(text) RETURNS numeric LANGUAGE sql RETURN 1;\n")
    for extra in ((), ("--dsn", app, "--write-sample-seconds", "0")):
        esc = kinds(plan(sql, *extra))
        assert set(esc) == {"breaking_change"}, esc
        assert esc["breaking_change"]["statements"] == ["DROP FUNCTION order_total(bigint) CASCADE"]


def test_a_replacement_is_recognised_however_its_create_is_written():
    """The create that replaces a drop is found in lower case, mixed case and every form that creates a view, a
    materialized view, a function, a procedure, a primary key or a unique constraint: the planner reads only the
    statements that can hold one (a keyword test), and must read every one that does."""
    sql = ("drop view vip;\ncreate or replace view vip as select 1 as id;\n"
           "DROP MATERIALIZED VIEW mv;\nCreate Materialized View mv AS SELECT 1 AS id;\n"
           "drop function f(int);\ncreate function f(x int) returns int language sql return x;\n"
           "drop procedure p();\ncReAtE pRoCeDuRe p() language sql begin atomic select 1; end;\n"
           "alter table customers drop constraint customers_pkey;\n"
           "alter table customers add constraint customers_pkey primary key (id);\n"
           "alter table tags drop constraint tags_id_key;\nalter table tags add constraint tags_id_key unique (id);\n")
    p = plan(sql)
    assert "breaking_change" not in kinds(p), kinds(p)["breaking_change"]["evidence"]
    lone = plan("alter table tags drop constraint tags_id_key;\n")  # not replaced: escalates (no database to ask)
    assert kinds(lone)["breaking_change"]["statements"] == ["alter table tags drop constraint tags_id_key"]
