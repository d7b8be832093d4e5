-- A source table and its copy in an analytics schema, for examples/etl/orders.toml.
-- Two planted problems: order 13 has no valid email, order 21 a negative amount.
CREATE TABLE orders (
    id          bigint PRIMARY KEY,
    email       text,
    amount      numeric(12,2) NOT NULL,
    status      text NOT NULL DEFAULT 'new',
    updated_at  timestamptz NOT NULL DEFAULT clock_timestamp()
);
CREATE INDEX orders_updated_at_id ON orders (updated_at, id);   -- the cursor's keyset index
INSERT INTO orders (id, email, amount, status)
SELECT g, 'Customer' || g || '@Example.org', g * 1.5, (ARRAY['new', 'paid', 'shipped'])[1 + g % 3]
  FROM generate_series(1, 1000) g;
UPDATE orders SET email = 'nobody' WHERE id = 13;
UPDATE orders SET amount = -4 WHERE id = 21;

CREATE SCHEMA analytics;
CREATE TABLE analytics.orders (
    id          bigint PRIMARY KEY,
    email       text NOT NULL,
    amount      numeric(12,2) NOT NULL,
    status      text NOT NULL,
    updated_at  timestamptz NOT NULL
);
