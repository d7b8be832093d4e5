"""Detection of destructive statements on the parse tree, with and without catalog facts."""

import psycopg
import pytest

from agent19.config import Settings
from agent19.db.connection import Database
from agent19.migrate.parse import parse_sql
from agent19.safety import types as sqltypes
from agent19.safety.detect import Risk, detect
from agent19.safety.facts import load_facts

CASES = [
    ("DROP TABLE old_users", "drop_table", Risk.CRITICAL, True),
    ("DROP TABLE IF EXISTS a.b, c CASCADE", "drop_table", Risk.CRITICAL, True),
    ("DROP DATABASE shop", "drop_database", Risk.CRITICAL, True),
    ("DROP SCHEMA sales", "drop_schema", Risk.HIGH, True),
    ("DROP SCHEMA sales CASCADE", "drop_schema", Risk.CRITICAL, True),
    ("ALTER TABLE t DROP COLUMN email", "drop_column", Risk.CRITICAL, True),
    ("DROP INDEX orders_created_idx", "drop_index", Risk.MEDIUM, False),
    ("DROP INDEX CONCURRENTLY orders_created_idx", "drop_index", Risk.MEDIUM, False),
    ("DROP VIEW v", "drop_view", Risk.MEDIUM, False),
    ("DROP MATERIALIZED VIEW mv", "drop_materialized_view", Risk.MEDIUM, True),
    ("DROP TYPE mood", "drop_type", Risk.HIGH, False),
    ("DROP TYPE mood CASCADE", "drop_type", Risk.HIGH, True),
    ("DROP SEQUENCE s", "drop_sequence", Risk.HIGH, True),
    ("DROP FUNCTION f(int)", "drop_function", Risk.MEDIUM, False),
    ("TRUNCATE orders", "truncate", Risk.CRITICAL, True),
    ("TRUNCATE orders, items CASCADE", "truncate", Risk.CRITICAL, True),
    ("DELETE FROM orders", "delete_all", Risk.CRITICAL, True),
    ("DELETE FROM orders WHERE true", "delete_all", Risk.CRITICAL, True),
    ("DELETE FROM orders WHERE 1 = 1", "delete_all", Risk.CRITICAL, True),
    ("delete from orders where 'yes'::boolean", "delete_all", Risk.CRITICAL, True),
    ("DELETE FROM orders WHERE status = 'x' OR 2 > 1", "delete_all", Risk.CRITICAL, True),
    ("DELETE FROM orders WHERE NOT false", "delete_all", Risk.CRITICAL, True),
    ("DELETE FROM orders WHERE 5 IS NOT NULL", "delete_all", Risk.CRITICAL, True),
    ("WITH gone AS (DELETE FROM orders RETURNING id) SELECT count(*) FROM gone", "delete_all", Risk.CRITICAL, True),
    ("UPDATE orders SET status = 'x'", "update_all", Risk.HIGH, True),
    ("UPDATE orders SET status = 'x' WHERE true AND 1 <> 2", "update_all", Risk.HIGH, True),
    ("DELETE FROM orders WHERE now() > '2000-01-01'", "delete_all", Risk.CRITICAL, True),
    ("UPDATE orders SET status = 'x' WHERE current_date IS NOT NULL", "update_all", Risk.HIGH, True),
    ("ALTER TABLE t ALTER COLUMN c TYPE varchar(3)", "alter_column_type", Risk.HIGH, True),
    ("ALTER TABLE t ALTER COLUMN c TYPE int USING c::int", "alter_column_type", Risk.HIGH, True),
    ("DO $$ BEGIN EXECUTE format('DROP TABLE %I', 'orders'); END $$", "unverifiable", Risk.HIGH, True),
    ("CALL purge_everything()", "unverifiable", Risk.HIGH, True),
    ("EXECUTE prepared_purge", "unverifiable", Risk.HIGH, True),
    ("SELECT pg_terminate_backend(42)", "unverifiable", Risk.HIGH, True),
]


@pytest.mark.parametrize(("sql", "kind", "risk", "data_loss"), CASES)
def test_destructive_kinds_and_risks(sql, kind, risk, data_loss):
    findings = detect(sql)
    assert [f.kind for f in findings] == [kind], findings
    assert findings[0].risk is risk
    assert findings[0].data_loss is data_loss


@pytest.mark.parametrize("sql", [
    "SELECT * FROM orders",
    "DELETE FROM orders WHERE id = 7",
    "DELETE FROM orders WHERE false",
    "DELETE FROM orders WHERE 1 = 2",
    "DELETE FROM orders WHERE created_at < now() - interval '1 year'",
    "DELETE FROM orders WHERE random() < 0.01",
    "UPDATE orders SET status = 'x' WHERE id IN (1, 2)",
    "ALTER TABLE t ALTER COLUMN c DROP NOT NULL",
    "ALTER TABLE t ALTER COLUMN c DROP DEFAULT",
    "ALTER TABLE t ALTER COLUMN c TYPE text",
    "ALTER TABLE t ADD COLUMN d int",
    "CREATE INDEX ON orders (created_at)",
    "INSERT INTO orders (id) VALUES (1)",
    "SELECT 'DROP TABLE orders', $$TRUNCATE x$$ -- DELETE FROM orders",
    "/* DROP TABLE orders; */ SELECT 1",
])
def test_not_destructive(sql):
    assert detect(sql) == []


def test_multi_statement_input_is_split_and_each_judged():
    findings = detect("SELECT 1; DROP TABLE a; UPDATE b SET x = 1 WHERE id = 2; TRUNCATE c")
    assert [(f.statement, f.kind) for f in findings] == [(1, "drop_table"), (3, "truncate")]
    assert findings[0].line == 1


def test_keywords_in_strings_and_comments_do_not_count_but_nested_statements_do():
    assert detect("SELECT 'DELETE FROM orders'") == []
    assert [f.kind for f in detect("EXPLAIN ANALYZE DELETE FROM orders")] == ["delete_all"]


@pytest.mark.parametrize(("old", "new", "lossy"), [
    (("int8", -1), "int", True), (("int4", -1), "bigint", False), (("int4", -1), "smallint", True),
    (("varchar", 24), "varchar(10)", True), (("varchar", 14), "varchar(20)", False), (("text", -1), "varchar(5)", True),
    (("varchar", 14), "text", False), (("numeric", ((10 << 16) | 2) + 4), "numeric(8,2)", True),
    (("numeric", ((10 << 16) | 2) + 4), "numeric(12,2)", False), (("float8", -1), "real", True),
    (("timestamptz", -1), "date", True), (("date", -1), "timestamptz", False), (("int4", -1), "numeric(5,0)", True),
    (("text", -1), "int", True), (("int2", -1), "numeric", False),
    # a type outside pg_catalog is unknown without a database, whatever its last name (r27-k04)
    (("numeric", ((12 << 16) | 2) + 4), "app.text", True), (("int4", -1), '"Shop".int8', True),
    # the one-byte "char", interval fields, a zero precision (pglast leaves the 0 out), the offset (r27-k17)
    (("text", -1), '"char"', True), (("char", -1), "text", False), (("text", -1), "char(1)", True),
    (("interval", -1), "interval DAY", True), (("interval", -1), "interval MINUTE TO SECOND", False),
    (("interval", (8 << 16) | 0xFFFF), "interval YEAR TO MONTH", True),
    (("interval", (1024 << 16) | 0xFFFF), "interval DAY TO HOUR", False), (("interval", -1), "interval(0)", True),
    (("time", -1), "time(0)", True), (("timestamptz", -1), "timestamptz(0)", True),
    (("timestamp", -1), "timestamptz(3)", True), (("timestamp", 3), "timestamptz(3)", False),
    (("timestamptz", -1), "timestamp", True), (("date", -1), "timestamp(0)", False),
])
def test_type_narrowing_table(old, new, lossy):
    node = parse_sql(f"ALTER TABLE t ALTER c TYPE {new}")[0].fields["cmds"][0]["AlterTableCmd"]["def"]["ColumnDef"]
    assert sqltypes.loses_data(sqltypes.from_catalog(*old), sqltypes.from_type_name(node["typeName"])) is lossy


CATALOG = """
CREATE TABLE accounts (id int NOT NULL, nick text, name varchar(40) NOT NULL, balance numeric(12,2), n bigint);
CREATE FUNCTION wipe() RETURNS int LANGUAGE sql VOLATILE AS 'DELETE FROM accounts RETURNING 1';
CREATE FUNCTION pure(int) RETURNS int LANGUAGE sql IMMUTABLE AS 'SELECT $1';
"""


def _facts(dsn, sql):
    with psycopg.connect(dsn, autocommit=True) as conn:
        conn.execute(CATALOG)
    return findings_with_facts(dsn, sql)


def findings_with_facts(dsn, sql):
    """The findings of ``sql`` with the live facts of the database ``dsn`` (as execute mode reads them)."""
    db = Database(Settings.load(dsn=dsn, env={}))
    try:
        statements = parse_sql(sql)
        with db.read() as conn:
            return detect(statements, load_facts(conn, statements))
    finally:
        db.close()


def test_names_of_missing_schemas_and_tables_leave_the_facts_of_the_others_whole(dsn):
    """A statement naming a schema or table that does not exist (a migration creating it, a typo) comes before the
    table whose facts decide: its lookup answers "none" and the read goes on, whatever the name's form (the
    lookups of plain names run without a savepoint: one that failed would abort every later read)."""
    sql = """
    DELETE FROM nosuch_schema.accounts WHERE id = 1;
    DELETE FROM "No Such".t WHERE id = 1;
    DELETE FROM missing_table WHERE id = 1;
    DELETE FROM "we.ird".x WHERE id = 1;
    DELETE FROM a.b.c WHERE id = 1;
    ALTER TABLE public.accounts ALTER name TYPE varchar(20);
    DELETE FROM accounts WHERE id IS NOT NULL;
    """
    found = [(f.statement, f.kind, f.data_loss) for f in _facts(dsn, sql) if f.statement >= 5]
    assert found == [(5, "alter_column_type", True), (6, "delete_all", True)]


def test_catalog_facts_make_detection_exact(dsn):
    sql = """
    DELETE FROM accounts WHERE id IS NOT NULL;
    DELETE FROM accounts WHERE nick IS NOT NULL;
    UPDATE accounts SET nick = 'x' WHERE name = name;
    ALTER TABLE accounts ALTER name TYPE varchar(20);
    ALTER TABLE accounts ALTER name TYPE varchar(80), ALTER balance TYPE numeric(14,2), ALTER n TYPE numeric;
    ALTER TABLE accounts ALTER balance TYPE numeric(8,2);
    SELECT wipe();
    SELECT pure(1);
    """
    found = [(f.statement, f.kind) for f in _facts(dsn, sql)]
    assert found == [(0, "delete_all"), (2, "update_all"), (3, "alter_column_type"), (5, "alter_column_type"),
                     (6, "unverifiable")]

