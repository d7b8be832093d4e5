"""The catalog snapshot against real objects of every kind, on each available server version."""

import psycopg
import pytest

from agent19.db.catalog import snapshot

SCHEMA = """
CREATE TYPE mood AS ENUM ('sad', 'ok', 'happy');
CREATE TABLE customers (
    id bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    email varchar(200) NOT NULL UNIQUE,
    name text,
    created_at timestamptz NOT NULL DEFAULT now(),
    token uuid DEFAULT gen_random_uuid(),
    mood mood DEFAULT 'ok',
    score numeric(10,2) CHECK (score >= 0),
    email_lower text GENERATED ALWAYS AS (lower(email)) STORED
);
CREATE TABLE orders (
    id serial PRIMARY KEY,
    customer_id bigint NOT NULL,
    total numeric(12,2) NOT NULL DEFAULT 0,
    status text NOT NULL DEFAULT 'new',
    placed_at timestamp DEFAULT clock_timestamp()
);
ALTER TABLE orders ADD CONSTRAINT orders_customer_fk FOREIGN KEY (customer_id)
    REFERENCES customers (id) ON DELETE CASCADE NOT VALID;
CREATE INDEX orders_open_idx ON orders (customer_id, placed_at) WHERE status = 'new';
CREATE INDEX orders_status_lower ON orders (lower(status));
CREATE TABLE bookings (room int, during tsrange, EXCLUDE USING gist (during WITH &&));
CREATE UNLOGGED TABLE scratch (k int);
CREATE TABLE events (id bigint, at date NOT NULL) PARTITION BY RANGE (at);
CREATE TABLE events_2026 PARTITION OF events FOR VALUES FROM ('2026-01-01') TO ('2027-01-01');
CREATE VIEW open_orders AS SELECT o.id, c.email FROM orders o JOIN customers c ON c.id = o.customer_id
    WHERE o.status = 'new';
CREATE MATERIALIZED VIEW order_totals AS SELECT customer_id, sum(total) AS total FROM orders GROUP BY 1;
CREATE UNIQUE INDEX order_totals_pk ON order_totals (customer_id);
CREATE FUNCTION touch() RETURNS trigger LANGUAGE plpgsql AS $$ BEGIN RETURN NEW; END $$;
CREATE TRIGGER orders_touch BEFORE UPDATE ON orders FOR EACH ROW EXECUTE FUNCTION touch();
CREATE SEQUENCE invoice_no START 1000;
CREATE SCHEMA audit;
CREATE TABLE audit.log (id int, msg json);
INSERT INTO customers (email) SELECT 'c' || g || '@x' FROM generate_series(1, 500) g;
INSERT INTO orders (customer_id, total) SELECT 1 + g % 500, g FROM generate_series(1, 2000) g;
INSERT INTO scratch VALUES (1), (1);
ANALYZE;
"""


@pytest.fixture
def snap(dsn_any):
    with psycopg.connect(dsn_any, autocommit=True) as conn:
        conn.execute(SCHEMA)
        # a failed concurrent build leaves an INVALID index behind
        with pytest.raises(psycopg.errors.UniqueViolation):
            conn.execute("CREATE UNIQUE INDEX CONCURRENTLY scratch_k_uniq ON scratch (k)")
    with psycopg.connect(dsn_any, autocommit=True, row_factory=psycopg.rows.dict_row) as conn:
        return snapshot(conn)


def test_server_and_schemas(snap, pg_any):
    assert snap.server_version // 10000 == pg_any.major
    assert {"public", "audit"} <= set(snap.schemas)
    assert "plpgsql" in {e.name for e in snap.extensions}


def test_tables_kinds_sizes_and_rows(snap):
    kinds = {t.qualified_name: t.kind for t in snap.tables}
    assert kinds["public.events"] == "partitioned_table"
    assert kinds["public.orders"] == "table"
    assert snap.table("scratch").persistence == "unlogged"
    assert snap.table("events_2026").partition_of == "public.events"
    assert snap.table("events").partition_key == "RANGE (at)"
    orders = snap.table("orders")
    assert orders.row_estimate == 2000
    assert orders.heap_bytes > 0 and orders.index_bytes > 0
    assert orders.total_bytes >= orders.heap_bytes + orders.index_bytes
    assert snap.table("audit.log").schema_name == "audit"


def test_columns(snap):
    c = snap.table("customers")
    assert c.column("id").identity == "always" and not c.column("id").nullable
    assert c.column("email").type == "character varying(200)"
    assert c.column("score").type == "numeric(10,2)"
    assert c.column("created_at").default == "now()" and c.column("created_at").default_volatile is False
    assert c.column("token").default_volatile is True
    assert c.column("email_lower").generated == "stored"
    assert c.column("mood").type == "mood"
    o = snap.table("orders")
    assert o.column("id").default.startswith("nextval(") and o.column("id").default_volatile is True
    assert o.column("placed_at").default_volatile is True
    assert o.column("status").default_volatile is False
    assert o.column("customer_id").default is None and o.column("customer_id").default_volatile is None


def test_constraints(snap):
    c = {con.name: con for con in snap.table("customers").constraints}
    assert c["customers_pkey"].type == "primary_key" and c["customers_pkey"].columns == ["id"]
    assert c["customers_pkey"].index == "customers_pkey"
    assert c["customers_email_key"].type == "unique"
    assert c["customers_score_check"].type == "check" and "score >=" in c["customers_score_check"].definition
    fk = next(con for con in snap.table("orders").constraints if con.type == "foreign_key")
    assert fk.name == "orders_customer_fk"
    assert fk.validated is False
    assert fk.references_table == "public.customers" and fk.references_columns == ["id"]
    assert fk.on_delete == "cascade" and fk.on_update == "no_action"
    assert fk.columns == ["customer_id"]
    excl = snap.table("bookings").constraints[0]
    assert excl.type == "exclusion"


def test_indexes(snap):
    ix = {i.name: i for i in snap.table("orders").indexes}
    partial = ix["orders_open_idx"]
    assert partial.partial and "status" in partial.predicate
    assert partial.columns == ["customer_id", "placed_at"] and partial.method == "btree"
    assert ix["orders_status_lower"].columns == ["lower(status)"]
    assert ix["orders_pkey"].primary and ix["orders_pkey"].unique
    assert all(i.valid for i in ix.values())
    invalid = {i.name: i for i in snap.table("scratch").indexes}["scratch_k_uniq"]
    assert invalid.valid is False
    assert snap.table("bookings").indexes[0].method == "gist"


def test_views_triggers_sequences_enums(snap):
    views = {v.name: v for v in snap.views}
    assert set(views["open_orders"].depends_on) == {"public.orders", "public.customers"}
    assert views["open_orders"].materialized is False
    mv = views["order_totals"]
    assert mv.materialized and mv.depends_on == ["public.orders"] and mv.populated
    assert [i.name for i in mv.indexes] == ["order_totals_pk"]
    trg = snap.table("orders").triggers[0]
    assert trg.name == "orders_touch" and trg.enabled and trg.function == "public.touch"
    seqs = {s.name: s for s in snap.sequences}
    assert seqs["orders_id_seq"].owned_by == "public.orders.id"
    assert seqs["customers_id_seq"].owned_by == "public.customers.id"
    assert seqs["invoice_no"].owned_by is None
    assert snap.enums[0].name == "mood" and snap.enums[0].values == ["sad", "ok", "happy"]


def test_filter_to_one_table(dsn):
    with psycopg.connect(dsn, autocommit=True, row_factory=psycopg.rows.dict_row) as conn:
        conn.execute(SCHEMA)
        one = snapshot(conn, table="orders")
        assert [t.name for t in one.tables] == ["orders"]
        assert one.filtered
        assert {v.name for v in one.views} == {"open_orders", "order_totals"}
        assert [s.name for s in one.sequences] == ["orders_id_seq"]
        audit = snapshot(conn, schema="audit")
        assert [t.qualified_name for t in audit.tables] == ["audit.log"]
