"""The generated shop database the optimize tests share: built once per test session.

Not a test module by itself (it has no tests): ``shop_dsn(pg)`` builds the database on the first
call and returns the same DSN afterwards; it is dropped when the test process exits.

* ``customers`` 50,000 rows — indexed on ``email``.
* ``orders`` 300,000 rows (~50 MB, larger than a quarter of shared_buffers, so sequential scans use
  a ring buffer and read from outside shared buffers) — indexed on ``customer_id`` and
  ``created_at``; ``region`` and ``zone`` are perfectly correlated; ``status`` is 0.1 % 'refunded'.
* ``ledger`` autovacuum off, 100,000 rows analyzed then 100,000 more inserted: stale statistics
  and a visibility map that was never set.
* ``archive`` ~40 MB written by CREATE TABLE AS (through a 16 MB ring) and never read, so that
  its first scan reads most pages from outside shared buffers.
* ``regions`` 200 rows and ``items`` 20,000 rows, joined on an unindexed column.
"""

from __future__ import annotations

import atexit
import time
import uuid

import psycopg

from tools.throwaway import ThrowawayServer

SCHEMA = """
CREATE TABLE customers AS
SELECT g::bigint AS id, 'c' || g || '@example.com' AS email, (ARRAY['fr','de','us','jp'])[1 + g % 4] AS country,
       timestamptz '2024-01-01' + g * interval '1 minute' AS created_at
  FROM generate_series(1, 50000) g;
ALTER TABLE customers ADD PRIMARY KEY (id);
CREATE INDEX customers_email_idx ON customers (email);

CREATE TABLE orders AS
SELECT g::bigint AS id, 1 + (g::bigint * 7919) % 50000 AS customer_id,
       CASE WHEN g % 1000 = 0 THEN 'refunded' ELSE (ARRAY['new','paid','shipped'])[1 + g % 3] END AS status,
       ((g::bigint * 37) % 100000) / 100.0 AS amount,
       timestamptz '2024-01-01' + g * interval '10 seconds' AS created_at,
       g % 100 AS region, g % 100 AS zone,
       repeat(md5(g::text), 3) AS note
  FROM generate_series(1, 300000) g;
ALTER TABLE orders ADD PRIMARY KEY (id);
CREATE INDEX orders_customer_idx ON orders (customer_id);
CREATE INDEX orders_created_idx ON orders (created_at);

CREATE TABLE ledger (id bigint, account_id int, amount numeric) WITH (autovacuum_enabled = off);
INSERT INTO ledger SELECT g, g % 1000, g FROM generate_series(1, 100000) g;
CREATE INDEX ledger_account_idx ON ledger (account_id);
ANALYZE ledger;
INSERT INTO ledger SELECT g, g % 1000, g FROM generate_series(100001, 200000) g;

CREATE TABLE archive WITH (autovacuum_enabled = off) AS
SELECT g AS id, repeat(md5(g::text), 4) AS note FROM generate_series(1, 220000) g;

CREATE TABLE regions AS SELECT g AS code, 'region ' || g AS name FROM generate_series(1, 200) g;
CREATE TABLE items AS SELECT g AS id, 1 + g % 200 AS region_code, g AS qty FROM generate_series(1, 20000) g;
"""

_built: dict[str, str] = {}


def shop_dsn(server: ThrowawayServer) -> str:
    if server.dsn in _built:
        return _built[server.dsn]
    name = f"shop_{uuid.uuid4().hex[:10]}"
    with psycopg.connect(server.dsn, autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{name}"')
    dsn = server.dsn_for(name)
    with psycopg.connect(dsn, autocommit=True) as conn:
        conn.execute(SCHEMA)
    # A backend reports its row counts when it exits: wait for them, so that ANALYZE comes after
    # (otherwise the late report counts every row as modified since the last ANALYZE).
    with psycopg.connect(dsn, autocommit=True) as conn:
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            row = conn.execute("SELECT n_tup_ins FROM pg_stat_user_tables WHERE relname = 'orders'").fetchone()
            if row and row[0] >= 300_000:
                break
            time.sleep(0.1)
        for table in ("customers", "orders", "regions", "items"):
            conn.execute(f"VACUUM ANALYZE {table}")
    _built[server.dsn] = dsn

    def drop() -> None:
        try:
            with psycopg.connect(server.dsn, autocommit=True) as conn:
                conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        except psycopg.Error:
            pass  # the throwaway server is already gone

    atexit.register(drop)
    return dsn
