-- The populated schema that tests/test_knowledge_observed.py and tests/test_classify_corpus.py
-- run every knowledge-table example and corpus statement against (each in a rolled-back
-- transaction). A few thousand rows: enough for scans and rewrites to be real.
CREATE TYPE mood AS ENUM ('sad', 'ok');
CREATE TABLE parent (id bigint PRIMARY KEY, name text);
INSERT INTO parent SELECT g, 'p' || g FROM generate_series(1, 100) g;
CREATE TABLE t (
    id int PRIMARY KEY,
    parent_id bigint,
    v varchar(20),
    n int,
    nn int,
    num numeric(10, 2),
    ts timestamptz DEFAULT now(),
    tsn timestamp,
    note text,
    bits varbit(8),
    net cidr,
    m mood,
    j json,
    CONSTRAINT t_nn_not_null CHECK (nn IS NOT NULL),
    CONSTRAINT t_parent_fk FOREIGN KEY (parent_id) REFERENCES parent (id)
);
INSERT INTO t
SELECT g, 1 + g % 100, 'v' || g, g, g, g / 7.0, now(), now(), repeat('x', 20), B'1010', '10.0.0.0/8', 'ok', '{}'
  FROM generate_series(1, 5000) g;
CREATE INDEX t_n_idx ON t (n);
-- a column read by a CHECK: a type change that rewrites nothing still re-checks it against every row
ALTER TABLE t ADD COLUMN code varchar(10) DEFAULT 'c' CONSTRAINT t_code_check CHECK (code <> '');
CREATE UNIQUE INDEX t_v_uidx ON t (v);
CREATE UNIQUE INDEX t_id_nn_uidx ON t (id, nn);
CREATE FUNCTION t_touch() RETURNS trigger LANGUAGE plpgsql AS $$ BEGIN RETURN NEW; END $$;
CREATE TRIGGER t_trg BEFORE UPDATE ON t FOR EACH ROW EXECUTE FUNCTION t_touch();
CREATE TABLE child (id int PRIMARY KEY, t_id int);
INSERT INTO child SELECT g, g FROM generate_series(1, 1000) g;
CREATE TABLE nopk (id int NOT NULL, v int);
INSERT INTO nopk SELECT g, g FROM generate_series(1, 2000) g;
CREATE TABLE pt (id int, k int) PARTITION BY RANGE (k);
CREATE TABLE pt_1 PARTITION OF pt FOR VALUES FROM (0) TO (1000);
INSERT INTO pt SELECT g, g % 1000 FROM generate_series(1, 2000) g;
CREATE TABLE pt_2 (id int, k int);
INSERT INTO pt_2 SELECT g, 1000 + g % 1000 FROM generate_series(1, 2000) g;
CREATE TABLE pt_3 (id int, k int, CONSTRAINT pt_3_k CHECK (k IS NOT NULL AND k >= 2000 AND k < 3000));
INSERT INTO pt_3 SELECT g, 2000 + g % 1000 FROM generate_series(1, 2000) g;
CREATE MATERIALIZED VIEW mv AS SELECT parent_id, count(*) AS c FROM t GROUP BY parent_id;
CREATE UNIQUE INDEX mv_parent_uidx ON mv (parent_id);
CREATE VIEW tv AS SELECT id FROM t;
CREATE SEQUENCE s;
CREATE FUNCTION f_unused() RETURNS int LANGUAGE sql AS 'SELECT 1';
-- objects nothing uses: DROP SCHEMA / TYPE / DOMAIN examples succeed without CASCADE
CREATE SCHEMA spare;
CREATE TYPE spare_e AS ENUM ('a');
CREATE DOMAIN spare_d AS int;
ANALYZE;
