"""Held-out lint cases for issue 14, written independently of the lint's authors' corpus.

Each case is SQL written for this file (never copied) after the behaviour a peer documents; ``source`` names the
page or file that documents it. ``unsafe`` cases block, rewrite, scan under a strong lock, lose data or break
clients and must draw an error or warning; ``safe`` cases are the forms the peers recommend and must draw neither.
``files`` holds a migration set (name -> SQL) when safety depends on an earlier file; ``pg`` is the version assumed.
"""

from __future__ import annotations

from dataclasses import dataclass, field

SQ = "https://squawkhq.com/docs/"
SM = "https://github.com/ankane/strong_migrations#"  # README, section anchors
EU = "https://kaaveland.github.io/eugene/lints/"  # eugene lint pages (github:kaaveland/eugene docs/src/lints)
AT = "https://atlasgo.io/lint/analyzers#"
LT = "SET lock_timeout = '2s';\n"


@dataclass(frozen=True)
class Case:
    id: str
    label: str  # "unsafe" | "safe"
    cls: str  # lock | rewrite | scan | data-loss | client | safe-form | multi
    source: str
    sql: str = ""
    files: dict[str, str] = field(default_factory=dict)
    pg: int = 15
    assume: tuple[str, ...] = ()  # what the team states (lint --assume) for a change the SQL cannot show


def U(id: str, cls: str, source: str, sql: str, pg: int = 15) -> Case:
    return Case(id, "unsafe", cls, source, sql=sql, pg=pg)


def S(id: str, source: str, sql: str, pg: int = 15, assume: tuple[str, ...] = ()) -> Case:
    return Case(id, "safe", "safe-form", source, sql=sql, pg=pg, assume=assume)


def UM(id: str, source: str, files: dict[str, str], pg: int = 15) -> Case:
    return Case(id, "unsafe", "multi", source, files=files, pg=pg)


def SM_(id: str, source: str, files: dict[str, str], pg: int = 15) -> Case:
    return Case(id, "safe", "multi", source, files=files, pg=pg)


CASES: list[Case] = [
    # ---- blocking locks: index builds, constraints, triggers -------------------------------------------------------
    U("idx-plain", "lock", SQ + "require-concurrent-index-creation",
      LT + "CREATE INDEX invoices_customer_idx ON invoices (customer_id);"),
    U("idx-unique-plain", "lock", SQ + "require-concurrent-index-creation",
      LT + "CREATE UNIQUE INDEX accounts_email_key ON accounts (lower(email));"),
    U("idx-partial-plain", "lock", SM + "adding-an-index-non-concurrently",
      LT + "CREATE INDEX orders_open_idx ON orders (created_at) WHERE shipped_at IS NULL;"),
    U("idx-gin-plain", "lock", EU + "E6", LT + "CREATE INDEX docs_body_gin ON docs USING gin (body jsonb_path_ops);"),
    U("idx-drop-plain", "lock", SQ + "require-concurrent-index-deletion", LT + "DROP INDEX invoices_customer_idx;"),
    U("idx-drop-plain-ifexists", "lock", AT + "PG102", LT + "DROP INDEX IF EXISTS public.old_lookup_idx;"),
    U("idx-concurrent-in-tx", "lock", SQ + "ban-concurrent-index-creation-in-transaction",
      "BEGIN;\nCREATE INDEX CONCURRENTLY IF NOT EXISTS t_a_idx ON t (a);\nCOMMIT;"),
    U("reindex-plain", "lock", SQ + "require-concurrent-index-creation", LT + "REINDEX INDEX invoices_pkey;"),
    U("reindex-table", "lock", EU + "E6", LT + "REINDEX TABLE invoices;"),
    U("fk-validating", "scan", SQ + "adding-foreign-key-constraint",
      LT + "ALTER TABLE payments ADD CONSTRAINT payments_invoice_fk FOREIGN KEY (invoice_id) "
      "REFERENCES invoices (id);"),
    U("fk-add-column-references", "lock", SM + "adding-a-reference",
      LT + "ALTER TABLE line_items ADD COLUMN product_id bigint REFERENCES products (id);"),
    U("check-validating", "scan", SQ + "constraint-missing-not-valid",
      LT + "ALTER TABLE users ADD CONSTRAINT users_age_check CHECK (age >= 0);"),
    U("unique-constraint", "lock", SQ + "disallowed-unique-constraint",
      LT + "ALTER TABLE users ADD CONSTRAINT users_handle_key UNIQUE (handle);"),
    U("pk-constraint", "lock", AT + "PG304", LT + "ALTER TABLE events ADD PRIMARY KEY (id);"),
    U("exclusion-constraint", "lock", SM + "adding-an-exclusion-constraint",
      LT + "ALTER TABLE bookings ADD CONSTRAINT no_overlap EXCLUDE USING gist (room_id WITH =, during WITH &&);"),
    U("set-not-null-pg11", "scan", SQ + "adding-not-nullable-field",
      LT + "ALTER TABLE users ALTER COLUMN email SET NOT NULL;", pg=11),
    U("set-not-null-pg15-nocheck", "scan", SM + "setting-not-null-on-an-existing-column",
      LT + "ALTER TABLE users ALTER COLUMN email SET NOT NULL;"),
    U("validate-with-strong-lock", "lock", EU + "E1",
      "BEGIN;\n" + LT + "ALTER TABLE users ADD CONSTRAINT c CHECK (a > 0) NOT VALID;\n"
      "ALTER TABLE users VALIDATE CONSTRAINT c;\nCOMMIT;"),  # the VALIDATE scans under the ADD's lock
    U("no-lock-timeout-add-column", "lock", SQ + "require-timeout-settings",
      "ALTER TABLE users ADD COLUMN nickname text;"),
    U("no-lock-timeout-drop-default", "lock", EU + "E9", "ALTER TABLE users ALTER COLUMN status DROP DEFAULT;"),
    U("no-lock-timeout-rename-constraint", "lock", EU + "E9",
      "ALTER TABLE users RENAME CONSTRAINT users_a_check TO users_age_check;"),
    U("lock-table-explicit", "lock", EU + "E4",
      "BEGIN;\nLOCK TABLE accounts IN ACCESS EXCLUSIVE MODE;\nUPDATE accounts SET flag = true;\nCOMMIT;"),
    U("trigger-create-no-timeout", "lock", EU + "E9",
      "CREATE TRIGGER audit_t AFTER UPDATE ON accounts FOR EACH ROW EXECUTE FUNCTION audit();"),
    U("add-column-inline-check", "scan", "issue 14 / " + EU + "E5",
      LT + "ALTER TABLE users ADD COLUMN score int CHECK (score >= 0);"),
    U("add-column-inline-unique", "lock", SQ + "disallowed-unique-constraint",
      LT + "ALTER TABLE users ADD COLUMN slug text UNIQUE;"),
    U("add-column-inline-pk", "lock", SQ + "adding-serial-primary-key-field",
      LT + "ALTER TABLE legacy ADD COLUMN id bigint PRIMARY KEY;"),
    U("pk-using-index-nullable", "scan", EU + "W14",
      LT + "ALTER TABLE events ADD CONSTRAINT events_pkey PRIMARY KEY USING INDEX events_id_idx;"),
    U("domain-add-constraint", "scan", SQ + "ban-alter-domain-with-add-constraint",
      LT + "ALTER DOMAIN positive_int ADD CONSTRAINT positive CHECK (VALUE > 0);"),
    U("refresh-matview-plain", "lock", SM + "executing-sql-directly",
      LT + "REFRESH MATERIALIZED VIEW sales_summary;"),
    U("vacuum-full", "rewrite", EU + "E10", LT + "VACUUM FULL invoices;"),
    U("cluster", "rewrite", EU + "E10", LT + "CLUSTER invoices USING invoices_pkey;"),
    U("enum-add-value-pg11-in-tx", "lock", EU + "W13",
      "BEGIN;\nALTER TYPE mood ADD VALUE 'meh';\nCOMMIT;", pg=11),
    U("enum-add-value-then-use", "client", "issue 14 / " + EU + "W13",
      "BEGIN;\nALTER TYPE mood ADD VALUE 'meh';\nUPDATE people SET mood = 'meh' WHERE id = 1;\nCOMMIT;"),
    U("tx-nesting", "lock", SQ + "transaction-nesting", "BEGIN;\nBEGIN;\nSELECT 1;\nCOMMIT;\nCOMMIT;"),
    U("tx-begin-no-commit", "lock", SQ + "transaction-nesting",
      "BEGIN;\nSET LOCAL lock_timeout = '1s';\nALTER TABLE t ADD COLUMN b int;"),
    U("cic-no-if-not-exists", "lock", SQ + "prefer-robust-stmts",
      "CREATE INDEX CONCURRENTLY t_b_idx ON t (b);"),
    # ---- rewrites -------------------------------------------------------------------------------------------------
    U("add-column-volatile-default", "rewrite", SQ + "adding-field-with-default",
      LT + "ALTER TABLE users ADD COLUMN token uuid DEFAULT gen_random_uuid();"),
    U("add-column-clock-default", "rewrite", SM + "adding-a-column-with-a-volatile-default-value",
      LT + "ALTER TABLE users ADD COLUMN seen_at timestamptz DEFAULT clock_timestamp();"),
    U("add-column-random-default", "rewrite", AT + "PG302", LT + "ALTER TABLE t ADD COLUMN r float8 DEFAULT random();"),
    U("add-serial", "rewrite", SQ + "adding-serial-primary-key-field", LT + "ALTER TABLE legacy ADD COLUMN n serial;"),
    U("add-bigserial", "rewrite", SM + "adding-an-auto-incrementing-column",
      LT + "ALTER TABLE legacy ADD COLUMN n bigserial;"),
    U("add-identity", "rewrite", EU + "E11",
      LT + "ALTER TABLE legacy ADD COLUMN n bigint GENERATED ALWAYS AS IDENTITY;"),
    U("add-stored-generated", "rewrite", SM + "adding-a-stored-generated-column",
      LT + "ALTER TABLE people ADD COLUMN full_name text GENERATED ALWAYS AS (first || ' ' || last) STORED;"),
    U("type-int-to-bigint", "rewrite", SQ + "changing-column-type",
      LT + "ALTER TABLE orders ALTER COLUMN id TYPE bigint;"),
    U("type-text-to-int", "rewrite", SM + "changing-the-type-of-a-column",
      LT + "ALTER TABLE orders ALTER COLUMN ref TYPE integer USING ref::integer;"),
    U("type-narrow-varchar", "rewrite", SM + "changing-the-type-of-a-column",
      LT + "ALTER TABLE users ALTER COLUMN name TYPE varchar(20);"),
    U("type-timestamptz-using", "rewrite", EU + "E5",
      LT + "ALTER TABLE logs ALTER COLUMN at TYPE timestamptz USING at AT TIME ZONE 'Europe/Oslo';"),
    U("type-json-to-jsonb", "rewrite", EU + "E5", LT + "ALTER TABLE docs ALTER COLUMN body TYPE jsonb;"),
    U("type-numeric-scale", "rewrite", AT + "PG301", LT + "ALTER TABLE prices ALTER COLUMN amount TYPE numeric(10,4);"),
    U("set-data-type-synonym", "rewrite", SQ + "changing-column-type",
      LT + "ALTER TABLE orders ALTER COLUMN total SET DATA TYPE double precision;"),
    U("set-tablespace", "rewrite", EU + "E10", LT + "ALTER TABLE invoices SET TABLESPACE fast_ssd;"),
    U("set-logged", "rewrite", EU + "E10", LT + "ALTER TABLE staging SET LOGGED;"),
    U("set-unlogged", "rewrite", EU + "E10", LT + "ALTER TABLE staging SET UNLOGGED;"),
    U("multi-alter-rewrite", "rewrite", EU + "W12",
      LT + "ALTER TABLE t ADD COLUMN a int, ALTER COLUMN b TYPE bigint;"),
    # ---- full scans / data writes under locks ------------------------------------------------------------------
    U("add-required-field", "scan", SQ + "adding-required-field",
      LT + "ALTER TABLE users ADD COLUMN tenant_id bigint NOT NULL;"),
    U("backfill-in-migration", "lock", SM + "backfilling-data",
      "BEGIN;\n" + LT + "ALTER TABLE users ADD COLUMN plan text;\nUPDATE users SET plan = 'free';\nCOMMIT;"),
    U("delete-all", "data-loss", AT + "DS102", "DELETE FROM sessions;"),
    U("update-all-with-lock", "lock", EU + "E4",
      "BEGIN;\n" + LT + "ALTER TABLE users ADD COLUMN v int;\nUPDATE users SET v = 1;\nCOMMIT;"),
    # ---- data loss ------------------------------------------------------------------------------------------------
    U("drop-table", "data-loss", SQ + "ban-drop-table", LT + "DROP TABLE audit_log;"),
    U("drop-table-cascade", "data-loss", AT + "DS102", LT + "DROP TABLE IF EXISTS audit_log CASCADE;"),
    U("drop-column", "data-loss", SQ + "ban-drop-column", LT + "ALTER TABLE users DROP COLUMN legacy_flag;"),
    U("drop-column-ifexists", "data-loss", AT + "DS103", LT + "ALTER TABLE users DROP COLUMN IF EXISTS legacy_flag;"),
    U("drop-database", "data-loss", SQ + "ban-drop-database", "DROP DATABASE analytics;"),
    U("drop-schema", "data-loss", AT + "DS101", LT + "DROP SCHEMA reporting CASCADE;"),
    U("truncate", "data-loss", SQ + "ban-truncate-cascade", LT + "TRUNCATE TABLE events;"),
    U("truncate-cascade", "data-loss", SQ + "ban-truncate-cascade", LT + "TRUNCATE orders CASCADE;"),
    U("drop-matview", "data-loss", AT + "DS102", LT + "DROP MATERIALIZED VIEW sales_summary;"),
    U("drop-sequence", "data-loss", AT + "DS102", LT + "DROP SEQUENCE invoice_numbers;"),
    U("drop-type", "client", AT + "DS102", LT + "DROP TYPE mood;"),
    # ---- client-breaking ------------------------------------------------------------------------------------------
    U("rename-column", "client", SQ + "renaming-column", LT + "ALTER TABLE users RENAME COLUMN name TO full_name;"),
    U("rename-table", "client", SQ + "renaming-table", LT + "ALTER TABLE users RENAME TO accounts;"),
    U("rename-schema", "client", "issue 14", "ALTER SCHEMA app RENAME TO core;"),
    U("rename-view", "client", SM + "renaming-a-table", LT + "ALTER VIEW active_users RENAME TO live_users;"),
    U("rename-column-in-view", "client", AT + "BC102", LT + "ALTER TABLE users RENAME COLUMN id TO user_id;"),
    U("drop-view", "client", AT + "DS102", LT + "DROP VIEW active_users;"),
    U("drop-function", "client", AT + "DS102", "DROP FUNCTION compute_total(bigint);"),
    U("set-schema", "client", AT + "BC101", LT + "ALTER TABLE users SET SCHEMA archive;"),
    U("drop-not-null", "client", SQ + "ban-drop-not-null", LT + "ALTER TABLE users ALTER COLUMN email DROP NOT NULL;"),
    U("add-json-column", "client", SM + "adding-a-json-column", LT + "ALTER TABLE events ADD COLUMN payload json;",
      pg=15),
    U("rename-enum-value", "client", AT + "BC101", "ALTER TYPE mood RENAME VALUE 'sad' TO 'unhappy';"),
    # ---- recommended safe forms ------------------------------------------------------------------------------------
    S("safe-cic", SQ + "require-concurrent-index-creation",
      "CREATE INDEX CONCURRENTLY IF NOT EXISTS invoices_customer_idx ON invoices (customer_id);"),
    S("safe-cic-unique", SM + "adding-an-index-non-concurrently",
      "CREATE UNIQUE INDEX CONCURRENTLY IF NOT EXISTS accounts_email_key ON accounts (lower(email));"),
    S("safe-dic", SQ + "require-concurrent-index-deletion",
      "DROP INDEX CONCURRENTLY IF EXISTS invoices_customer_idx;"),
    S("safe-reindex-concurrently", SQ + "require-concurrent-index-creation",
      "REINDEX INDEX CONCURRENTLY invoices_pkey;"),
    S("safe-fk-not-valid", SQ + "adding-foreign-key-constraint",
      LT + "ALTER TABLE payments ADD CONSTRAINT payments_invoice_fk FOREIGN KEY (invoice_id) "
      "REFERENCES invoices (id) NOT VALID;"),
    S("safe-validate-own-tx", SM + "adding-a-foreign-key",
      "ALTER TABLE payments VALIDATE CONSTRAINT payments_invoice_fk;"),
    S("safe-check-not-valid", SQ + "constraint-missing-not-valid",
      LT + "ALTER TABLE users ADD CONSTRAINT users_age_check CHECK (age >= 0) NOT VALID;"),
    S("safe-not-null-via-check", SM + "setting-not-null-on-an-existing-column",
      LT + "ALTER TABLE users ADD CONSTRAINT users_email_nn CHECK (email IS NOT NULL) NOT VALID;"),
    S("safe-unique-using-index", SQ + "disallowed-unique-constraint",
      LT + "ALTER TABLE users ADD CONSTRAINT users_handle_key UNIQUE USING INDEX users_handle_idx;"),
    S("safe-add-nullable-column", SQ + "adding-required-field", LT + "ALTER TABLE users ADD COLUMN nickname text;"),
    S("safe-add-constant-default-pg11", SQ + "adding-field-with-default",
      LT + "ALTER TABLE users ADD COLUMN active boolean DEFAULT true;", pg=11),
    S("safe-add-not-null-with-default-pg11", SQ + "adding-required-field",
      LT + "ALTER TABLE users ADD COLUMN status text NOT NULL DEFAULT 'new';", pg=12),
    S("safe-add-jsonb", SM + "adding-a-json-column", LT + "ALTER TABLE events ADD COLUMN payload jsonb;"),
    S("safe-set-default", SQ + "adding-field-with-default",
      LT + "ALTER TABLE users ALTER COLUMN status SET DEFAULT 'new';"),
    S("safe-create-table", SQ + "prefer-robust-stmts",
      "CREATE TABLE IF NOT EXISTS widgets (id bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY, name text NOT NULL);"),
    S("safe-create-table-fk", SM + "adding-a-reference",  # the REFERENCES locks widgets: lock_timeout first
      LT + "CREATE TABLE widget_parts (id bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY, "
      "widget_id bigint NOT NULL REFERENCES widgets (id));"),
    S("safe-create-view-new", "issue 14", "CREATE VIEW recent_orders AS SELECT * FROM orders WHERE placed > now() - "
      "interval '7 days';"),
    S("safe-create-function", SM + "executing-sql-directly",
      "CREATE OR REPLACE FUNCTION add1(i int) RETURNS int LANGUAGE sql IMMUTABLE AS $$ SELECT i + 1 $$;"),
    S("safe-enum-add-value-pg12", EU + "W13", "ALTER TYPE mood ADD VALUE IF NOT EXISTS 'meh';", pg=12),
    S("safe-enum-add-value-after", "issue 14", "ALTER TYPE mood ADD VALUE IF NOT EXISTS 'meh' AFTER 'ok';"),
    S("safe-create-type", EU + "W13", "CREATE TYPE mood AS ENUM ('sad', 'ok', 'happy');"),
    S("safe-varchar-widen-assumed", SQ + "changing-column-type",
      LT + "ALTER TABLE users ALTER COLUMN name TYPE text;", assume=("type-changes-widen",)),
    S("safe-refresh-concurrently", SM + "executing-sql-directly",
      "REFRESH MATERIALIZED VIEW CONCURRENTLY sales_summary;"),
    S("safe-comment", SQ + "prefer-robust-stmts", LT + "COMMENT ON TABLE users IS 'people who log in';"),
    S("safe-lock-timeout-local", SQ + "require-timeout-settings",
      "BEGIN;\nSET LOCAL lock_timeout = '3s';\nALTER TABLE users ADD COLUMN note text;\nCOMMIT;"),
    S("safe-lock-timeout-set-config", EU + "E9",
      "SELECT set_config('lock_timeout', '2s', false);\nALTER TABLE users ADD COLUMN note2 text;"),
    S("safe-drop-default", SQ + "require-timeout-settings", LT + "ALTER TABLE users ALTER COLUMN status DROP DEFAULT;"),
    S("safe-create-schema", AT + "DS101", "CREATE SCHEMA IF NOT EXISTS reporting;"),
    S("safe-grant", SM + "executing-sql-directly", "GRANT SELECT ON users TO reporting_reader;"),
    S("safe-create-sequence", SQ + "prefer-robust-stmts", "CREATE SEQUENCE IF NOT EXISTS invoice_numbers;"),
    S("safe-create-extension", SQ + "prefer-robust-stmts", "CREATE EXTENSION IF NOT EXISTS pg_trgm;"),
    S("safe-create-index-new-table-same-file", SQ + "require-concurrent-index-creation",
      "CREATE TABLE tags (id bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY, label text NOT NULL);\n"
      "CREATE INDEX tags_label_idx ON tags (label);"),
    S("safe-fk-to-new-table-same-file", SQ + "adding-foreign-key-constraint",
      "CREATE TABLE owners (id bigint PRIMARY KEY);\nCREATE TABLE pets (id bigint PRIMARY KEY, owner_id bigint);\n"
      "ALTER TABLE pets ADD CONSTRAINT pets_owner_fk FOREIGN KEY (owner_id) REFERENCES owners (id);"),
    S("safe-not-null-new-table", SQ + "adding-not-nullable-field",
      "CREATE TABLE notes (id bigint PRIMARY KEY, body text);\nALTER TABLE notes ALTER COLUMN body SET NOT NULL;"),
    S("safe-rename-new-table", SQ + "renaming-table",
      "CREATE TABLE draft_things (id bigint PRIMARY KEY);\nALTER TABLE draft_things RENAME TO things;"),
    S("safe-drop-new-table", SQ + "ban-drop-table",
      "CREATE TABLE scratch_import (id bigint);\nDROP TABLE scratch_import;"),
    S("safe-statement-timeout-and-lock", SQ + "require-timeout-settings",
      "SET lock_timeout = '1s';\nSET statement_timeout = '5s';\nALTER TABLE users ADD COLUMN note3 text;"),
    S("safe-analyze", SM + "executing-sql-directly", "ANALYZE users;"),
    S("safe-insert-rows", SM + "backfilling-data", "INSERT INTO settings (key, value) VALUES ('theme', 'dark');"),
    S("safe-numeric-widen-assumed", AT + "PG301",
      LT + "ALTER TABLE prices ALTER COLUMN amount TYPE numeric;", assume=("type-changes-widen",)),
    S("safe-create-matview-new", "issue 14",
      "CREATE MATERIALIZED VIEW daily_totals AS SELECT 1 AS one WITH NO DATA;"),
    S("safe-detach-partition-concurrently", EU + "E9",
      "ALTER TABLE measurements DETACH PARTITION measurements_2019 CONCURRENTLY;"),
    # ---- multi-file sets ----------------------------------------------------------------------------------------
    SM_("flyway-check-validate-notnull", SM + "setting-not-null-on-an-existing-column", {
        "V1__check.sql": LT + "ALTER TABLE users ADD CONSTRAINT users_email_nn CHECK (email IS NOT NULL) NOT VALID;",
        "V2__validate.sql": "ALTER TABLE users VALIDATE CONSTRAINT users_email_nn;",
        "V3__not_null.sql": LT + "ALTER TABLE users ALTER COLUMN email SET NOT NULL;\n"
                            "ALTER TABLE users DROP CONSTRAINT users_email_nn;",
    }),
    UM("flyway-check-not-validated-notnull", SM + "setting-not-null-on-an-existing-column", {
        "V1__check.sql": LT + "ALTER TABLE users ADD CONSTRAINT users_email_nn CHECK (email IS NOT NULL) NOT VALID;",
        "V2__not_null.sql": LT + "ALTER TABLE users ALTER COLUMN email SET NOT NULL;",
    }),
    UM("flyway-check-validate-notnull-pg11", SQ + "adding-not-nullable-field", {
        "V1__check.sql": LT + "ALTER TABLE users ADD CONSTRAINT users_email_nn CHECK (email IS NOT NULL) NOT VALID;",
        "V2__validate.sql": "ALTER TABLE users VALIDATE CONSTRAINT users_email_nn;",
        "V3__not_null.sql": LT + "ALTER TABLE users ALTER COLUMN email SET NOT NULL;",
    }, pg=11),
    SM_("flyway-new-table-index", SQ + "require-concurrent-index-creation", {
        "V1__create.sql": "CREATE TABLE sessions (id bigint PRIMARY KEY, user_id bigint NOT NULL);",
        "V2__index.sql": "CREATE INDEX sessions_user_idx ON sessions (user_id);",
    }),
    UM("flyway-index-on-old-table", SQ + "require-concurrent-index-creation", {
        "V1__create.sql": "CREATE TABLE sessions (id bigint PRIMARY KEY, user_id bigint NOT NULL);",
        "V2__index.sql": LT + "CREATE INDEX users_created_idx ON users (created_at);",
    }),
    SM_("flyway-versions-ordered-numerically", SQ + "adding-foreign-key-constraint", {
        "V1_9__a.sql": "CREATE TABLE parents (id bigint PRIMARY KEY);",
        "V1_10__b.sql": "CREATE TABLE kids (id bigint PRIMARY KEY, parent_id bigint);",
        "V1_11__fk.sql": "ALTER TABLE kids ADD CONSTRAINT kids_parent_fk FOREIGN KEY (parent_id) "
                         "REFERENCES parents (id);",
    }),
    UM("flyway-fk-from-old-table", SQ + "adding-foreign-key-constraint", {
        "V1__parents.sql": "CREATE TABLE parents (id bigint PRIMARY KEY);",
        "V2__fk.sql": LT + "ALTER TABLE orders ADD CONSTRAINT orders_parent_fk FOREIGN KEY (parent_id) "
                      "REFERENCES parents (id);",
    }),
    SM_("golang-new-table-not-null", SQ + "adding-required-field", {
        "1_create.up.sql": "CREATE TABLE carts (id bigint PRIMARY KEY);",
        "1_create.down.sql": "DROP TABLE carts;",
        "2_col.up.sql": "ALTER TABLE carts ADD COLUMN owner bigint NOT NULL;",
        "2_col.down.sql": "ALTER TABLE carts DROP COLUMN owner;",
    }),
    UM("golang-required-on-old-table", SQ + "adding-required-field", {
        "1_create.up.sql": "CREATE TABLE carts (id bigint PRIMARY KEY);",
        "2_col.up.sql": LT + "ALTER TABLE users ADD COLUMN cart_id bigint NOT NULL;",
    }),
    UM("golang-cic-in-implicit-tx", SQ + "ban-concurrent-index-creation-in-transaction", {
        "1_a.up.sql": "CREATE TABLE a (id bigint PRIMARY KEY);",
        "2_b.up.sql": "SET lock_timeout = '1s';\nCREATE INDEX CONCURRENTLY IF NOT EXISTS users_x_idx ON users (x);",
    }),
    SM_("golang-cic-alone", SQ + "require-concurrent-index-creation", {
        "1_a.up.sql": "CREATE TABLE a (id bigint PRIMARY KEY);",
        "2_b.up.sql": "CREATE INDEX CONCURRENTLY IF NOT EXISTS users_x_idx ON users (x);",
    }),
    UM("golang-drop-column-later", SQ + "ban-drop-column", {
        "1_a.up.sql": LT + "ALTER TABLE users ADD COLUMN legacy text;",
        "2_b.up.sql": LT + "ALTER TABLE users DROP COLUMN name;",
    }),
    SM_("flyway-expand-contract-new-column", SM + "renaming-a-column", {
        "V1__add.sql": LT + "ALTER TABLE users ADD COLUMN full_name text;",
        "V2__idx.sql": "CREATE INDEX CONCURRENTLY IF NOT EXISTS users_full_name_idx ON users (full_name);",
    }),
    SM_("numbered-new-table-rename-column", SQ + "renaming-column", {
        "001_create.sql": "CREATE TABLE drafts (id bigint PRIMARY KEY, ttl text);",
        "002_rename.sql": "ALTER TABLE drafts RENAME COLUMN ttl TO title;",
    }),
    UM("numbered-rename-old", SQ + "renaming-column", {
        "001_create.sql": "CREATE TABLE drafts (id bigint PRIMARY KEY);",
        "002_rename.sql": LT + "ALTER TABLE users RENAME COLUMN ttl TO title;",
    }),
    SM_("flyway-new-view-then-replace", "issue 14", {
        "V1__v.sql": "CREATE VIEW active_people AS SELECT 1 AS id;",
        "V2__v.sql": "CREATE OR REPLACE VIEW active_people AS SELECT 1 AS id, 2 AS extra;",
    }),
    UM("flyway-new-table-then-volatile-old", SQ + "adding-field-with-default", {
        "V1__t.sql": "CREATE TABLE t1 (id bigint PRIMARY KEY);",
        "V2__c.sql": LT + "ALTER TABLE users ADD COLUMN token uuid DEFAULT gen_random_uuid();",
    }),
    SM_("flyway-new-table-volatile-default", SQ + "adding-field-with-default", {
        "V1__t.sql": "CREATE TABLE t1 (id bigint PRIMARY KEY);",
        "V2__c.sql": "ALTER TABLE t1 ADD COLUMN token uuid DEFAULT gen_random_uuid();",
    }),
    SM_("flyway-new-table-type-change", SQ + "changing-column-type", {
        "V1__t.sql": "CREATE TABLE t2 (id integer PRIMARY KEY);",
        "V2__c.sql": "ALTER TABLE t2 ALTER COLUMN id TYPE bigint;",
    }),
]
