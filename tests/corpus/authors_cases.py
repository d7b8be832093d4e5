"""Cases after other tools' own documentation, each labelled the way its author labels it.

Written for this project (the SQL is ours, shaped after the example each source gives; no text copied):
``unsafe`` — the author says it blocks, rewrites, scans, loses data or breaks clients; ``safe`` — the
form the author recommends instead. The label is about the *last* statement; earlier ones set the
stage. Sources: strong_migrations' README (https://github.com/ankane/strong_migrations, "sm"), squawk's
rule pages (https://squawkhq.com/docs/rules, "squawk"), eugene's lint rules (https://kaveland.no/eugene,
"eugene"). tests/test_lint_authors.py measures lint on them without a database.

Where the author's safe process sets a lock_timeout (strong_migrations sets one for every migration,
squawk's require-timeout-settings, eugene's E9), the safe case starts with it.
"""

from __future__ import annotations

LT = "SET lock_timeout = '2s';\n"

# (source, label, sql)
CASES: list[tuple[str, str, str]] = [
    # -- columns -------------------------------------------------------------------------------------------
    ("sm: removing a column", "unsafe", "ALTER TABLE users DROP COLUMN some_column;"),
    ("squawk: ban-drop-column", "unsafe", "ALTER TABLE accounts DROP COLUMN legacy_flag;"),
    ("sm: adding a column with a volatile default", "unsafe",
     "ALTER TABLE users ADD COLUMN token uuid DEFAULT gen_random_uuid();"),
    ("squawk: adding-field-with-default (volatile)", "unsafe",
     "ALTER TABLE core_recipe ADD COLUMN created timestamptz DEFAULT clock_timestamp();"),
    ("squawk: adding-field-with-default (constant, 11+)", "safe",
     LT + "ALTER TABLE core_recipe ADD COLUMN foo integer DEFAULT 10;"),
    ("sm: adding a column with a default (safe on 11+)", "safe",
     LT + "ALTER TABLE users ADD COLUMN plan text DEFAULT 'free';"),
    ("eugene E11: adding an identity column", "unsafe",
     "ALTER TABLE books ADD COLUMN seq bigint GENERATED ALWAYS AS IDENTITY;"),
    ("squawk: adding-serial-primary-key-field", "unsafe", "ALTER TABLE items ADD COLUMN id serial PRIMARY KEY;"),
    ("squawk: adding-required-field", "unsafe", "ALTER TABLE core_recipe ADD COLUMN foo integer NOT NULL;"),
    ("squawk: adding-required-field (with default)", "safe",
     LT + "ALTER TABLE core_recipe ADD COLUMN foo integer NOT NULL DEFAULT 0;"),
    ("sm: adding a stored generated column", "unsafe",
     "ALTER TABLE users ADD COLUMN name_lower text GENERATED ALWAYS AS (lower(name)) STORED;"),
    ("sm: renaming a column", "unsafe", "ALTER TABLE users RENAME COLUMN some_column TO new_name;"),
    ("squawk: renaming-column", "unsafe", "ALTER TABLE core_recipe RENAME COLUMN foo TO bar;"),
    ("sm: renaming a table", "unsafe", "ALTER TABLE users RENAME TO customers;"),
    ("squawk: renaming-table", "unsafe", "ALTER TABLE core_recipe RENAME TO core_dish;"),
    ("eugene E3 / sm: adding a json column (no equality operator: DISTINCT queries fail)", "unsafe",
     LT + "ALTER TABLE users ADD COLUMN properties json;"),
    ("sm: adding a jsonb column", "safe", LT + "ALTER TABLE users ADD COLUMN properties jsonb;"),
    ("squawk: adding-field-with-default (now())", "safe",
     LT + "ALTER TABLE core_recipe ADD COLUMN created timestamptz DEFAULT now();"),
    # -- types ---------------------------------------------------------------------------------------------
    ("sm: changing the type of a column", "unsafe", "ALTER TABLE users ALTER COLUMN some_column TYPE bigint;"),
    ("squawk: changing-column-type", "unsafe", "ALTER TABLE core_recipe ALTER COLUMN edits TYPE text USING "
     "edits::text;"),
    ("eugene E5: type change requiring a rewrite", "unsafe", "ALTER TABLE authors ALTER COLUMN id TYPE bigint;"),
    ("sm: increasing varchar length (safe)", "safe",
     LT + "CREATE TABLE notes (body varchar(100));\nALTER TABLE notes ALTER COLUMN body TYPE varchar(200);"),
    ("sm: varchar to text (safe)", "safe",
     LT + "CREATE TABLE notes (body varchar(100));\nALTER TABLE notes ALTER COLUMN body TYPE text;"),
    ("sm: numeric precision increase (safe)", "safe",
     LT + "CREATE TABLE prices (amount numeric(10,2));\nALTER TABLE prices ALTER COLUMN amount TYPE numeric(12,2);"),
    # -- NOT NULL ------------------------------------------------------------------------------------------
    ("sm: setting NOT NULL on an existing column", "unsafe",
     "ALTER TABLE users ALTER COLUMN some_column SET NOT NULL;"),
    ("eugene E2: validating table with a new NOT NULL column", "unsafe",
     "ALTER TABLE authors ALTER COLUMN name SET NOT NULL;"),
    ("squawk: adding-not-nullable-field", "unsafe", "ALTER TABLE core_recipe ALTER COLUMN foo SET NOT NULL;"),
    ("sm: NOT NULL via a validated check (safe, 12+)", "safe",
     LT + "ALTER TABLE users ADD CONSTRAINT users_some_column_null CHECK (some_column IS NOT NULL) NOT VALID;\n"
     "ALTER TABLE users VALIDATE CONSTRAINT users_some_column_null;\n"
     "ALTER TABLE users ALTER COLUMN some_column SET NOT NULL;"),
    ("sm: the NOT VALID check step (safe)", "safe",
     LT + "ALTER TABLE users ADD CONSTRAINT users_some_column_null CHECK (some_column IS NOT NULL) NOT VALID;"),
    ("sm: the VALIDATE step (safe)", "safe", "ALTER TABLE users VALIDATE CONSTRAINT users_some_column_null;"),
    # -- constraints ---------------------------------------------------------------------------------------
    ("sm: adding a check constraint", "unsafe",
     "ALTER TABLE users ADD CONSTRAINT price_check CHECK (price > 0);"),
    ("squawk: constraint-missing-not-valid", "unsafe",
     "ALTER TABLE distributors ADD CONSTRAINT zipchk CHECK (char_length(zipcode) = 5);"),
    ("eugene E1: validating table with a new constraint", "unsafe",
     "ALTER TABLE books ADD CONSTRAINT positive_pages CHECK (pages > 0);"),
    ("squawk: constraint-missing-not-valid (safe form)", "safe",
     LT + "ALTER TABLE distributors ADD CONSTRAINT zipchk CHECK (char_length(zipcode) = 5) NOT VALID;"),
    ("sm: adding a foreign key", "unsafe",
     "ALTER TABLE users ADD CONSTRAINT fk_orders FOREIGN KEY (order_id) REFERENCES orders (id);"),
    ("squawk: adding-foreign-key-constraint", "unsafe",
     "ALTER TABLE email ADD CONSTRAINT fk_user FOREIGN KEY (user_id) REFERENCES app_user (id);"),
    ("sm: foreign key NOT VALID (safe)", "safe",
     LT + "ALTER TABLE users ADD CONSTRAINT fk_orders FOREIGN KEY (order_id) REFERENCES orders (id) NOT VALID;\n"
     "CREATE INDEX CONCURRENTLY IF NOT EXISTS users_order_id_idx ON users (order_id);"),
    ("sm: validating the foreign key (safe)", "safe", "ALTER TABLE users VALIDATE CONSTRAINT fk_orders;"),
    ("sm: adding a unique constraint", "unsafe",
     "ALTER TABLE users ADD CONSTRAINT users_email_key UNIQUE (email);"),
    ("squawk: disallowed-unique-constraint", "unsafe",
     "ALTER TABLE table_name ADD CONSTRAINT field_name_constraint UNIQUE (field_name);"),
    ("eugene E7: creating a new unique constraint", "unsafe",
     "ALTER TABLE authors ADD CONSTRAINT unique_name UNIQUE (name);"),
    ("squawk: disallowed-unique-constraint (safe form)", "safe",
     LT + "ALTER TABLE table_name ADD CONSTRAINT field_name_constraint UNIQUE USING INDEX field_name_idx;"),
    ("sm: adding an exclusion constraint", "unsafe",
     "ALTER TABLE bookings ADD CONSTRAINT no_overlap EXCLUDE USING gist (room WITH =, during WITH &&);"),
    ("eugene W14: primary key using an index on a nullable column", "unsafe",
     "CREATE UNIQUE INDEX CONCURRENTLY books_id_idx ON books (id);\n"
     "ALTER TABLE books ADD CONSTRAINT books_pkey PRIMARY KEY USING INDEX books_id_idx;"),
    ("squawk: adding-serial-primary-key-field (safe form)", "safe",
     LT + "CREATE TABLE items (id bigint NOT NULL);\nCREATE UNIQUE INDEX items_id_idx ON items (id);\n"
     "ALTER TABLE items ADD CONSTRAINT items_pkey PRIMARY KEY USING INDEX items_id_idx;"),
    ("squawk: ban-alter-domain-with-add-constraint", "unsafe",
     "ALTER DOMAIN domain_name ADD CONSTRAINT constraint_name CHECK (value > 0);"),
    ("squawk: ban-alter-domain-with-add-constraint (ok forms)", "safe",
     "ALTER DOMAIN domain_name_3 DROP CONSTRAINT other_domain_name;"),
    # -- indexes -------------------------------------------------------------------------------------------
    ("sm: adding an index non-concurrently", "unsafe",
     "CREATE INDEX index_users_on_some_column ON users (some_column);"),
    ("squawk: require-concurrent-index-creation", "unsafe", "CREATE INDEX field_name_idx ON table_name (field_name);"),
    ("eugene E6: creating an index non-concurrently", "unsafe", "CREATE UNIQUE INDEX books_isbn ON books (isbn);"),
    ("sm: adding an index concurrently (safe)", "safe",
     "CREATE INDEX CONCURRENTLY IF NOT EXISTS index_users_on_some_column ON users (some_column);"),
    ("squawk: prefer-robust-stmts", "unsafe", "CREATE INDEX CONCURRENTLY field_name_idx ON table_name (field_name);"),
    ("squawk: require-concurrent-index-deletion", "unsafe", "DROP INDEX field_name_idx;"),
    ("squawk: require-concurrent-index-deletion (safe)", "safe", "DROP INDEX CONCURRENTLY IF EXISTS field_name_idx;"),
    ("squawk: ban-concurrent-index-creation-in-transaction", "unsafe",
     "BEGIN;\nCREATE INDEX CONCURRENTLY IF NOT EXISTS field_name_idx ON table_name (field_name);\nCOMMIT;"),
    ("sm: index on a table created in the same migration (safe)", "safe",
     "CREATE TABLE events (id bigint PRIMARY KEY, kind text);\nCREATE INDEX events_kind_idx ON events (kind);"),
    # -- tables, schemas, databases, data ----------------------------------------------------------------
    ("squawk: ban-drop-table", "unsafe", "DROP TABLE IF EXISTS some_table;"),
    ("squawk: ban-drop-database", "unsafe", "DROP DATABASE IF EXISTS db_name;"),
    ("squawk: ban-truncate-cascade", "unsafe", "TRUNCATE a, b, c CASCADE;"),
    ("sm: backfilling in one statement", "unsafe", "UPDATE users SET some_column = 'default_value';"),
    ("sm: creating a table (safe)", "safe", "CREATE TABLE users_settings (id bigint PRIMARY KEY, user_id bigint);"),
    ("squawk: ban-drop-not-null", "unsafe", "ALTER TABLE users ALTER COLUMN email DROP NOT NULL;"),
    ("squawk: renaming a schema breaks clients (renaming-table, schema-wide)", "unsafe",
     "ALTER SCHEMA billing RENAME TO invoicing;"),
    # -- locks and transactions ----------------------------------------------------------------------------
    ("eugene E9: taking a dangerous lock without a timeout", "unsafe", "ALTER TABLE authors ADD COLUMN email text;"),
    ("eugene E9 (safe form)", "safe", LT + "ALTER TABLE authors ADD COLUMN email text;"),
    ("eugene E4: more statements after an AccessExclusiveLock", "unsafe",
     "BEGIN;\nSET LOCAL lock_timeout = '2s';\nALTER TABLE authors ADD COLUMN email text;\n"
     "UPDATE authors SET email = lower(name) WHERE id < 1000;\nCOMMIT;"),
    ("squawk: require-timeout-settings (safe form)", "safe",
     "SET lock_timeout = '1s';\nSET statement_timeout = '5s';\nALTER TABLE t ADD COLUMN c boolean;"),
    ("squawk: transaction-nesting", "unsafe", "BEGIN;\nBEGIN;\nSELECT 1;\nCOMMIT;"),
    ("squawk: ban-uncommitted-transaction", "unsafe", "BEGIN;\nCREATE TABLE users (id bigint);"),
    ("eugene W13: adding an enum value (safe in its own transaction)", "safe",
     "ALTER TYPE mood ADD VALUE 'meh' BEFORE 'happy';"),
    ("sm: using a new enum value in the adding transaction", "unsafe",
     "BEGIN;\nALTER TYPE mood ADD VALUE 'meh';\nUPDATE people SET m = 'meh' WHERE m = 'sad';\nCOMMIT;"),
    ("sm: creating a view (safe)", "safe", "CREATE VIEW active_users AS SELECT * FROM users WHERE active;"),
]
