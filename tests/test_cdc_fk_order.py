"""`cdc run public.orders public.customers` (the README's order) into a destination whose tables carry their
foreign keys (a `pg_dump -s` of the source): the first copy fills parents first whatever order the tables are
named in; a cycle of foreign keys is copied when they are DEFERRABLE and refused before any slot otherwise."""

from __future__ import annotations

import uuid
from collections.abc import Iterator

import psycopg
import pytest
from psycopg.conninfo import make_conninfo

from agent19.config import AccessMode
from agent19.db.connection import Database
from agent19.errors import InputError
from agent19.etl.cdc import run_cdc
from tests.conftest import _fresh_database, session_settings

DDL = """
CREATE TABLE customers (id int PRIMARY KEY, name text);
CREATE TABLE orders (id int PRIMARY KEY, customer_id int NOT NULL REFERENCES customers, amount int);
CREATE TABLE order_notes (id int PRIMARY KEY, order_id int REFERENCES orders, body text);
"""
CYCLE = """
CREATE TABLE a (id int PRIMARY KEY, b_id int);
CREATE TABLE b (id int PRIMARY KEY, a_id int REFERENCES a);
ALTER TABLE a ADD CONSTRAINT a_b_fkey FOREIGN KEY (b_id) REFERENCES b;
"""


@pytest.fixture
def warehouse(pg) -> Iterator[str]:
    yield from _fresh_database(pg)


@pytest.fixture
def source(dsn) -> Iterator[str]:
    yield dsn
    with psycopg.connect(dsn, autocommit=True) as conn:  # never leave a slot behind
        for (slot,) in conn.execute("SELECT slot_name FROM pg_replication_slots WHERE database = current_database()"
                                    ).fetchall():
            conn.execute("SELECT pg_drop_replication_slot(%s)", (slot,))


def _sql(dsn: str, *statements: str) -> None:
    with psycopg.connect(dsn, autocommit=True) as conn:
        conn.execute("SET synchronous_commit = on")  # decoding reads flushed WAL
        for st in statements:
            conn.execute(st)


def _run(src: str, dst: str, tables: list[str], **kw) -> object:
    with psycopg.connect(dst, autocommit=True, row_factory=psycopg.rows.dict_row) as conn:
        return run_cdc(Database(session_settings(dsn=src, mode=AccessMode.EXECUTE)), conn, slot="agent19_fk",
                       tables=tables, **kw)


def test_children_named_first_are_copied_after_their_parents(source, warehouse):
    _sql(source, DDL, "INSERT INTO customers SELECT g, 'c' || g FROM generate_series(1, 20) g",
         "INSERT INTO orders SELECT g, 1 + g % 20, g FROM generate_series(1, 100) g",
         "INSERT INTO order_notes SELECT g, g, 'n' FROM generate_series(1, 30) g")
    _sql(warehouse, DDL)
    named = ["public.order_notes", "public.orders", "public.customers"]  # every child before its parent
    first = _run(source, warehouse, named)
    assert first.initial_copy == {"public.customers": 20, "public.orders": 100, "public.order_notes": 30}
    _sql(source, "BEGIN; INSERT INTO customers VALUES (21, 'new'); INSERT INTO orders VALUES (101, 21, 5); COMMIT")
    second = _run(source, warehouse, named)
    assert second.inserts == 2 and second.transactions == 1
    with psycopg.connect(warehouse) as conn:
        assert conn.execute("SELECT count(*) FROM orders").fetchone() == (101,)
    assert _run(source, warehouse, named, teardown=True).dropped


def test_a_cycle_of_foreign_keys_is_refused_unless_deferrable(source, warehouse):
    _sql(source, CYCLE, "INSERT INTO a VALUES (1, NULL)", "INSERT INTO b VALUES (1, 1)", "UPDATE a SET b_id = 1")
    _sql(warehouse, CYCLE)
    with pytest.raises(InputError) as refused:
        _run(source, warehouse, ["public.a", "public.b"])
    assert "cycle" in refused.value.message and "a_b_fkey" in refused.value.message, refused.value
    assert "DEFERRABLE" in (refused.value.hint or "") and "No slot was created" in refused.value.message
    with psycopg.connect(source) as conn:
        assert conn.execute("SELECT count(*) FROM pg_replication_slots WHERE slot_name = 'agent19_fk'"
                            ).fetchone() == (0,)
    _sql(warehouse, "ALTER TABLE a ALTER CONSTRAINT a_b_fkey DEFERRABLE")
    done = _run(source, warehouse, ["public.a", "public.b"])
    assert done.initial_copy == {"public.a": 1, "public.b": 1}
    assert _run(source, warehouse, ["public.a", "public.b"], teardown=True).dropped


def test_a_table_a_policy_filters_is_refused_before_any_slot(source, warehouse):
    """A REPLICATION login (no superuser) whose policy shows it some rows: the copy would hold those, the stream
    (logical decoding ignores policies) every change; refused, no slot."""
    role = f"cdc_{uuid.uuid4().hex[:8]}"
    _sql(source, DDL, f"CREATE ROLE {role} LOGIN REPLICATION", f"GRANT SELECT ON customers TO {role}",
         "INSERT INTO customers VALUES (1, 'a'), (2, 'b')", "ALTER TABLE customers ENABLE ROW LEVEL SECURITY",
         f"CREATE POLICY only_a ON customers TO {role} USING (name = 'a')")
    _sql(warehouse, DDL)
    try:
        with pytest.raises(InputError) as refused:
            _run(make_conninfo(source, user=role), warehouse, ["public.customers"])
        assert "row-level security may hide rows of public.customers from this login" in refused.value.message
        assert "No slot was created" in refused.value.message and "BYPASSRLS" in (refused.value.hint or "")
        with psycopg.connect(source) as conn:
            assert conn.execute("SELECT count(*) FROM pg_replication_slots").fetchone() == (0,)
        _sql(source, f"ALTER ROLE {role} BYPASSRLS")
        assert _run(make_conninfo(source, user=role), warehouse, ["public.customers"]).initial_copy == {
            "public.customers": 2}
        assert _run(make_conninfo(source, user=role), warehouse, ["public.customers"], teardown=True).dropped
    finally:
        _sql(source, "DROP TABLE order_notes, orders, customers", f"DROP ROLE {role}")
