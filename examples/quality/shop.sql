-- A small shop to try the checks on: psql -d shop -f examples/quality/shop.sql
-- Planted problems: order 4 belongs to no user (there is no foreign key to stop it), and
-- users 2 and 3 share an email.
CREATE TABLE users (
    id bigint PRIMARY KEY,
    email text NOT NULL,
    created_at timestamptz NOT NULL DEFAULT now()
);
CREATE TABLE orders (
    id bigint PRIMARY KEY,
    user_id bigint,
    amount numeric(12, 2) NOT NULL,
    created_at timestamptz NOT NULL DEFAULT now()
);
INSERT INTO users (id, email) VALUES (1, 'ada@example.com'), (2, 'bob@example.com'), (3, 'bob@example.com');
INSERT INTO orders (id, user_id, amount) VALUES (1, 1, 120.00), (2, 2, 35.50), (3, 1, 9.99), (4, 42, 70.00);
ANALYZE users, orders;
