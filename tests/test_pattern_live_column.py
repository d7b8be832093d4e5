"""change_column_type reads the live column when connected: it keeps NOT NULL, the default and the owned
sequence, and names (from the catalog) what stays on the old column instead of dropping it silently."""

from __future__ import annotations

import psycopg

from agent19.migrate.patterns import change_column_type
from agent19.migrate.patterns.live import read_column
from agent19.migrate.patterns.runner import run_pattern
from tests.conftest import one, run_sql
from tests.mcp_client import stdio_session

SCHEMA = """
CREATE TABLE "Order" (id bigint PRIMARY KEY, "user" serial NOT NULL, amount integer NOT NULL DEFAULT 7
                      CONSTRAINT amount_positive CHECK (amount >= 0), note text);
CREATE INDEX order_amount_idx ON "Order" (amount);
CREATE VIEW big_orders AS SELECT id, amount FROM "Order" WHERE amount > 100;
CREATE TABLE refund (id bigint PRIMARY KEY, order_amount integer);
ALTER TABLE "Order" ADD CONSTRAINT order_amount_key UNIQUE (amount, id);
INSERT INTO "Order" (id, amount) SELECT g, g FROM generate_series(1, 50) g;
"""


async def test_mcp_pattern_names_what_stays_on_the_old_column(dsn: str) -> None:
    run_sql(dsn, SCHEMA)
    async with stdio_session("--dsn", dsn) as session:
        r = await session.call_tool("zero_downtime_pattern", {"kind": "change_column_type", "table": "Order",
                                                               "column": "amount", "type": "bigint", "detail": "full"})
    assert not r.is_error, r.content
    pattern = r.structured_content["pattern"]
    sql = r.structured_content["sql"]
    # NOT NULL carried: the shadow column is proved NOT NULL before the swap, and the default moves over
    assert 'CHECK (amount_new IS NOT NULL) NOT VALID' in sql
    assert 'ALTER TABLE "Order" ALTER COLUMN amount_new SET NOT NULL' in sql
    assert 'ALTER TABLE "Order" ALTER COLUMN amount SET DEFAULT 7' in sql
    # the old type, read from the database, keeps the old column in sync after the swap (rollback-safe)
    assert "CAST(NEW.amount AS integer)" in sql
    notes = "\n".join(pattern["notes"])
    assert "carried over from the live column (integer): NOT NULL" in notes and "the default 7" in notes
    for named in ("check amount_positive", "view big_orders"):
        assert f"not carried: {named}" in notes, notes
    # the index and the UNIQUE constraint are built on the shadow column first and get their names back
    for named in ("index order_amount_idx", "unique order_amount_key"):
        assert f"carried: {named}" in notes, notes
    assert "CREATE INDEX CONCURRENTLY order_amount_idx_a19new ON public.\"Order\" (amount_new)" in sql
    assert "CREATE UNIQUE INDEX CONCURRENTLY order_amount_key_a19new ON \"Order\" (amount_new, id)" \
        in sql
    assert 'ADD CONSTRAINT order_amount_key UNIQUE USING INDEX order_amount_key_a19new' in sql


def test_change_column_type_on_a_live_serial_column_keeps_not_null_default_and_sequence(dsn: str) -> None:
    run_sql(dsn, SCHEMA)
    with psycopg.connect(dsn, autocommit=True) as conn:
        live = read_column(conn, "public.Order", "user")
        assert live.not_null and live.default and "nextval" in live.default and live.sequence
        assert live.dependents == []
        pattern = change_column_type("public.Order", "user", "bigint", pg_version=15, live=live)
        run_pattern(conn, pattern, dsn=dsn)
    assert one(dsn, """SELECT format_type(atttypid, atttypmod) || ' ' || attnotnull FROM pg_attribute
                       WHERE attrelid = '"Order"'::regclass AND attname = 'user'""") == "bigint true"
    assert one(dsn, """SELECT pg_get_serial_sequence('"Order"', 'user')""") == live.sequence
    # inserts that leave the column out still get the next number; NULL is still refused
    run_sql(dsn, """INSERT INTO "Order" (id, amount) VALUES (1000, 1)""")
    assert one(dsn, """SELECT "user" FROM "Order" WHERE id = 1000""") == 51
    try:
        run_sql(dsn, """INSERT INTO "Order" (id, "user", amount) VALUES (1001, NULL, 1)""")
        raise AssertionError("NULL accepted")
    except psycopg.errors.NotNullViolation:
        pass


def test_without_the_live_column_nothing_is_invented() -> None:
    p = change_column_type("orders", "amount", "bigint", pg_version=15)
    sql = p.to_sql()
    assert "SET NOT NULL" not in sql and "SET DEFAULT" not in sql
    # …and it says what it does not know, rather than silently dropping a NOT NULL it cannot see
    assert len(p.notes) == 1 and "not known here" in p.notes[0] and "NOT NULL" in p.notes[0], p.notes
    given = change_column_type("orders", "amount", "bigint", not_null=False, pg_version=15)
    assert given.notes == []  # the caller said it: nothing to flag
