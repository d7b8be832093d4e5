"""The catalog snapshot (describe, plan, lint with a database, dry runs) calls no overload on the login's path.

The login's own overloads of built-ins are trusted when a session starts (:mod:`agent19.db.captures`: it could call
them anyway), so agent19 reads such a database. The snapshot's statements then name every function, operator and type
``pg_catalog.``-qualified (``agent19.db.catalog`` declares ``QUALIFIED_SQL``): none of these overloads is what it
calls — each an exact match for an argument list the snapshot's unqualified text gave (``n.nspname || '.'``,
``replace(nspname, ...)``, ``d.classid = 'pg_rewrite'::regclass``, ``unnest(con.conkey)``, ``generate_series(1,
i.indnkeyatts)``, ``pg_relation_size(c.oid)``: it called each of them), or a known one (``format(d_text, VARIADIC
name[])``). Each advances a sequence when it runs (``nextval`` is not undone by a rollback, and fails in describe's
READ ONLY transaction), so "never ran" is observed; the description is the one read before they existed.
"""

from __future__ import annotations

import json

import psycopg

from agent19.config import AccessMode, Settings
from agent19.db.catalog import snapshot
from agent19.db.connection import Database
from tests.conftest import owner_login
from tests.test_captured_path import _ran
from tests.test_cli import agent19

# an object of every kind the snapshot reads, with names that take relation_key_sql's quoting branch; no index is
# scanned (no row references another: idx_scan stays as it is between the two reads)
SCHEMA = """
CREATE SEQUENCE public.ran;
CREATE DOMAIN public.d_text AS text;
CREATE TYPE mood AS ENUM ('sad', 'ok');
CREATE TABLE customers (id bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY, email varchar(200) NOT NULL UNIQUE,
                        mood mood DEFAULT 'ok', note text COLLATE "C", score numeric CHECK (score >= 0),
                        at timestamptz DEFAULT now());
COMMENT ON TABLE customers IS 'who buys';
CREATE TABLE orders (id serial PRIMARY KEY, customer_id bigint, status text DEFAULT 'new');
ALTER TABLE orders ADD CONSTRAINT orders_customer_fk FOREIGN KEY (customer_id) REFERENCES customers (id)
    ON DELETE CASCADE NOT VALID;
CREATE INDEX orders_open ON orders (customer_id, id) WHERE status = 'new';
CREATE INDEX orders_lower ON orders (lower(status));
CREATE TABLE events (id int, p int) PARTITION BY LIST (p);
CREATE TABLE events_1 PARTITION OF events FOR VALUES IN (1);
CREATE SCHEMA "we.ird";
CREATE TABLE "we.ird"."t""q" (id int PRIMARY KEY);
CREATE TABLE "we.ird"."part.1" PARTITION OF events FOR VALUES IN (2);
ALTER TABLE orders ADD CONSTRAINT orders_weird_fk FOREIGN KEY (id) REFERENCES "we.ird"."t""q" NOT VALID;
CREATE VIEW "we.ird"."v.w" AS SELECT o.id, o.status FROM orders o JOIN "we.ird"."t""q" t ON t.id = o.id;
CREATE MATERIALIZED VIEW totals AS SELECT customer_id, count(*) AS n FROM orders GROUP BY 1;
CREATE UNIQUE INDEX totals_pk ON totals (customer_id);
CREATE FUNCTION touch() RETURNS trigger LANGUAGE plpgsql AS $$ BEGIN RETURN NEW; END $$;
CREATE TRIGGER orders_touch BEFORE UPDATE ON orders FOR EACH ROW EXECUTE FUNCTION touch();
CREATE SEQUENCE invoice_no START 1000;
INSERT INTO customers (email) SELECT 'c' || g FROM generate_series(1, 200) g;
ANALYZE;
"""
# each counts its calls, and gives the built-in's answer
OVERLOADS = """
CREATE FUNCTION public.cat(a name, b public.d_text) RETURNS text LANGUAGE sql
    AS $$ SELECT a::pg_catalog.text OPERATOR(pg_catalog.||) b::pg_catalog.text
            FROM (SELECT pg_catalog.nextval('public.ran')) s $$;
CREATE OPERATOR public.|| (LEFTARG = name, RIGHTARG = public.d_text, FUNCTION = public.cat);
CREATE FUNCTION public.replace(a name, b text, c text) RETURNS text LANGUAGE sql
    AS $$ SELECT pg_catalog.replace(a::pg_catalog.text, b, c) FROM (SELECT pg_catalog.nextval('public.ran')) s $$;
CREATE FUNCTION public.format(f public.d_text, VARIADIC a name[]) RETURNS text LANGUAGE sql
    AS $$ SELECT pg_catalog.format(f::pg_catalog.text, VARIADIC a::pg_catalog.text[])
            FROM (SELECT pg_catalog.nextval('public.ran')) s $$;
CREATE FUNCTION public.eq(a oid, b pg_catalog.regclass) RETURNS boolean LANGUAGE sql
    AS $$ SELECT a OPERATOR(pg_catalog.=) b::pg_catalog.oid FROM (SELECT pg_catalog.nextval('public.ran')) s $$;
CREATE OPERATOR public.= (LEFTARG = oid, RIGHTARG = pg_catalog.regclass, FUNCTION = public.eq);
CREATE FUNCTION public.unnest(a smallint[]) RETURNS SETOF smallint LANGUAGE sql
    AS $$ SELECT u FROM pg_catalog.unnest(a) u, (SELECT pg_catalog.nextval('public.ran')) s $$;
CREATE FUNCTION public.generate_series(a integer, b smallint) RETURNS SETOF integer LANGUAGE sql
    AS $$ SELECT g FROM pg_catalog.generate_series(a, b::integer) g, (SELECT pg_catalog.nextval('public.ran')) s $$;
CREATE FUNCTION public.pg_relation_size(r oid) RETURNS bigint LANGUAGE sql
    AS $$ SELECT pg_catalog.pg_relation_size(r::pg_catalog.regclass)
            FROM (SELECT pg_catalog.nextval('public.ran')) s $$;
"""


def _owner_with_schema(dsn: str) -> str:
    """The database's owner (not a superuser), with :data:`SCHEMA` made by it; its DSN."""
    owner = owner_login(dsn, "owner")
    with psycopg.connect(owner, autocommit=True) as c:
        c.execute(SCHEMA)
    return owner


def _plant(owner: str) -> None:
    with psycopg.connect(owner, autocommit=True) as c:
        c.execute(OVERLOADS)


def _describe(dsn: str) -> dict:
    out = agent19("describe", "--dsn", dsn, "--format", "json")
    assert out.returncode == 0, out.stdout + out.stderr
    return json.loads(out.stdout)


def test_describe_calls_none_of_the_logins_overloads(dsn):
    owner = _owner_with_schema(dsn)
    before = _describe(owner)
    assert {t["name"] for t in before["tables"]} >= {"customers", "orders", "events", 't"q', "part.1"}
    _plant(owner)
    assert _describe(owner) == before
    assert _ran(owner) == 0


def test_a_snapshot_in_a_read_write_transaction_calls_none_of_them(dsn):
    """As a dry run reads the catalog around the migration it runs, in a read-write transaction rolled back (its
    path then ``pg_catalog``, the login's path, ``pg_temp``): the same snapshot, by schema and by table too, and
    nothing ran (a ``nextval`` there is kept)."""
    owner = _owner_with_schema(dsn)
    db = Database(Settings(dsn=owner, mode=AccessMode.DRY_RUN))
    filters = [{}, {"schema": "we.ird"}, {"table": "orders"}, {"table": "public.events"}]

    def snapshots() -> list[dict]:
        with db.rolled_back() as conn:
            return [snapshot(conn, **f).model_dump() for f in filters]

    try:
        before = snapshots()
        _plant(owner)
        after = snapshots()
    finally:
        db.close()
    assert _ran(owner) == 0
    assert after == before
