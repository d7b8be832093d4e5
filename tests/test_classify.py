"""classify() without a database: forms, state across a migration, versions, inverses and risk."""

from __future__ import annotations

from agent19.db.models import Column, Constraint, SchemaSnapshot, Table
from agent19.migrate.classification.classify import classify
from agent19.migrate.classification.knowledge import ColumnType, lookup, parse_format_type, rewrite_free_change
from agent19.migrate.model import Operation
from agent19.migrate.parse import parse_sql


def ops(sql: str, **kw: object) -> list[Operation]:
    return classify(parse_sql(sql), **kw)  # type: ignore[arg-type]


def test_empty_input_gives_nothing() -> None:
    assert ops("") == [] and ops("-- only a comment") == []


def test_every_field_is_filled_for_a_common_statement() -> None:
    (op,) = ops("ALTER TABLE shop.orders ADD COLUMN note text")
    assert op.category == "alter_table" and op.kind == "add_column" and op.form == "alter_table.add_column"
    assert op.tables == ["shop.orders"] and op.locks == {"shop.orders": "AccessExclusiveLock"}
    assert op.lock == "AccessExclusiveLock" and not op.rewrite and not op.scan and op.in_transaction
    assert op.reversible and op.inverse_sql == "ALTER TABLE shop.orders DROP COLUMN note"
    assert op.risk == "low" and not op.data_loss and op.notes


def test_multi_command_alter_is_split_and_rendered() -> None:
    result = ops("ALTER TABLE orders ADD COLUMN a int, ALTER COLUMN b SET NOT NULL, DROP COLUMN c")
    assert [o.sub_index for o in result] == [0, 1, 2]
    assert [o.kind for o in result] == ["add_column", "set_not_null", "drop_column"]
    assert result[1].sql == "ALTER TABLE orders ALTER COLUMN b SET NOT NULL"
    assert result[2].data_loss and not result[2].reversible and result[2].risk == "critical"


def test_foreign_key_locks_the_referenced_table_too() -> None:
    (op,) = ops("ALTER TABLE child ADD CONSTRAINT fk FOREIGN KEY (p) REFERENCES app.parent (id) NOT VALID")
    assert op.locks == {"public.child": "ShareRowExclusiveLock", "app.parent": "ShareRowExclusiveLock"}
    assert not op.scan and op.risk == "low"
    (inline,) = ops("ALTER TABLE child ADD COLUMN p bigint REFERENCES parent (id)")
    assert inline.locks == {"public.child": "AccessExclusiveLock", "public.parent": "ShareRowExclusiveLock"}
    assert not inline.scan and not inline.rewrite


def test_volatile_defaults_rewrite_and_stable_ones_do_not() -> None:
    for expr in ("random()", "clock_timestamp()", "gen_random_uuid()", "nextval('s')", "uuid_generate_v4()",
                 "timeofday()", "my_func()"):
        (op,) = ops(f"ALTER TABLE t ADD COLUMN c text DEFAULT {expr}")
        assert op.rewrite and op.form == "alter_table.add_column.volatile_default", expr
    for expr in ("now()", "'x'", "42", "CURRENT_TIMESTAMP", "lower('A')"):
        (op,) = ops(f"ALTER TABLE t ADD COLUMN c text DEFAULT {expr}")
        assert not op.rewrite, expr
    assert any("assumed volatile" in n for n in ops("ALTER TABLE t ADD COLUMN c int DEFAULT my_func()")[0].notes)


def test_type_change_without_catalog_uses_the_migration_or_assumes_a_rewrite() -> None:
    (unknown,) = ops("ALTER TABLE t ALTER COLUMN v TYPE varchar(50)")
    assert unknown.rewrite and unknown.form.endswith(".unknown") and any("unknown" in n for n in unknown.notes)
    known = ops("CREATE TABLE t (v varchar(20), n numeric(8,2));\n"
                "ALTER TABLE t ALTER COLUMN v TYPE varchar(50);\n"
                "ALTER TABLE t ALTER COLUMN n TYPE numeric(12,2);\n"
                "ALTER TABLE t ALTER COLUMN n TYPE numeric(12,4)")
    assert [o.rewrite for o in known[1:]] == [False, False, True]
    assert known[1].inverse_sql == "ALTER TABLE public.t ALTER COLUMN v TYPE varchar(20)"
    assert all(o.risk == "low" and o.new_table for o in known)


def test_binary_coercible_rules() -> None:
    f = parse_format_type
    assert rewrite_free_change(f("character varying(20)"), f("character varying(40)"), 15, True)
    assert rewrite_free_change(f("character varying(20)"), f("text"), 15, True)
    assert rewrite_free_change(f("text"), f("character varying"), 15, True)
    assert not rewrite_free_change(f("text"), f("character varying(10)"), 15, True)
    assert not rewrite_free_change(f("character varying(40)"), f("character varying(20)"), 15, True)
    assert rewrite_free_change(f("numeric(10,2)"), f("numeric(12,2)"), 15, True)
    assert not rewrite_free_change(f("numeric(10,2)"), f("numeric(12,3)"), 15, True)
    assert rewrite_free_change(f("numeric(10,2)"), f("numeric"), 15, True)
    assert rewrite_free_change(f("bit varying(8)"), f("bit varying(16)"), 15, True)
    assert rewrite_free_change(f("cidr"), f("inet"), 15, True)
    assert not rewrite_free_change(f("integer"), f("bigint"), 15, True)
    ts, tstz = f("timestamp without time zone"), f("timestamp with time zone")
    assert rewrite_free_change(ts, tstz, 12, True) and not rewrite_free_change(ts, tstz, 11, True)
    assert not rewrite_free_change(tstz, ts, 15, False)
    assert f("timestamp(3) with time zone") == ColumnType("timestamptz", (3,))


def test_timestamptz_depends_on_the_session_time_zone_and_version() -> None:
    sql = "CREATE TABLE e (at timestamptz);\nALTER TABLE e ALTER COLUMN at TYPE timestamp"
    assert not ops(sql, pg_version=150000)[1].rewrite
    assert ops(sql, pg_version=150000, session_timezone_utc=False)[1].rewrite
    assert ops(sql, pg_version=110000)[1].rewrite


def test_set_not_null_after_a_validated_check_in_the_same_migration() -> None:
    migration = ("ALTER TABLE t ADD CONSTRAINT c CHECK (n IS NOT NULL) NOT VALID;\n"
                 "ALTER TABLE t VALIDATE CONSTRAINT c;\n"
                 "ALTER TABLE t ALTER COLUMN n SET NOT NULL")
    on15 = ops(migration, pg_version=150000)
    assert [o.scan for o in on15] == [False, True, False]
    assert on15[2].form == "alter_table.set_not_null.proven_by_check" and on15[2].risk != "high"
    assert on15[1].locks == {"public.t": "ShareUpdateExclusiveLock"}
    assert ops(migration, pg_version=110000)[2].scan  # PostgreSQL 11 scans anyway
    not_validated = ops("ALTER TABLE t ADD CONSTRAINT c CHECK (n IS NOT NULL) NOT VALID;\n"
                        "ALTER TABLE t ALTER COLUMN n SET NOT NULL", pg_version=150000)
    assert not_validated[1].scan


def test_transaction_restrictions_by_version() -> None:
    assert not ops("ALTER TYPE mood ADD VALUE 'x'", pg_version=110000)[0].in_transaction
    assert ops("ALTER TYPE mood ADD VALUE 'x'", pg_version=120000)[0].in_transaction
    for sql in ("CREATE INDEX CONCURRENTLY i ON t (a)", "DROP INDEX CONCURRENTLY i", "REINDEX INDEX CONCURRENTLY i",
                "VACUUM t", "VACUUM FULL t", "ALTER SYSTEM SET work_mem = '1MB'", "CREATE DATABASE x",
                "ALTER TABLE p DETACH PARTITION c CONCURRENTLY"):
        assert not ops(sql, pg_version=160000)[0].in_transaction, sql
    old = ops("REINDEX INDEX CONCURRENTLY i", pg_version=110000)[0]
    assert "not available on PostgreSQL 11" in old.notes[0]
    assert lookup("alter_index.rename", 11).lock == "AccessExclusiveLock"
    assert lookup("alter_index.rename", 160000).lock == "ShareUpdateExclusiveLock"


def test_begin_commit_lock_timeout_and_concurrently_inside_a_block() -> None:
    result = ops("BEGIN;\nSET lock_timeout = '3s';\nCREATE INDEX CONCURRENTLY i ON t (a);\nCOMMIT;\n"
                 "ALTER TABLE t ADD COLUMN b int")
    assert result[0].category == "other" and result[0].kind == "transaction"
    assert result[2].explicit_transaction and result[2].lock_timeout == "3s"
    assert any("cannot run in a transaction block" in n for n in result[2].notes)
    assert not result[4].explicit_transaction and result[4].lock_timeout == "3s"
    (bare,) = ops("ALTER TABLE t ADD COLUMN b int")
    assert bare.lock_timeout is None and any("lock_timeout" in n for n in bare.notes)


def test_inverses() -> None:
    def inverse(sql: str) -> str | None:
        return ops(sql)[-1].inverse_sql

    assert inverse("CREATE INDEX CONCURRENTLY t_a ON t (a)") == "DROP INDEX CONCURRENTLY public.t_a"
    assert inverse("ALTER TABLE t RENAME COLUMN a TO b") == "ALTER TABLE public.t RENAME COLUMN b TO a"
    assert inverse("ALTER TABLE t RENAME TO u") == "ALTER TABLE public.u RENAME TO t"
    assert inverse("ALTER TABLE t ALTER COLUMN a SET NOT NULL") == "ALTER TABLE public.t ALTER COLUMN a DROP NOT NULL"
    assert inverse("CREATE TABLE x (id int)") == "DROP TABLE public.x"
    assert inverse("ALTER TABLE t ADD CONSTRAINT c CHECK (a > 0) NOT VALID") == (
        "ALTER TABLE public.t DROP CONSTRAINT IF EXISTS c")
    (drop,) = ops("DROP TABLE t")
    assert drop.data_loss and not drop.reversible and drop.inverse_sql is None and drop.risk == "critical"


def test_risk_seed_levels_and_refinement() -> None:
    def risk(sql: str) -> str:
        return ops(sql, pg_version=150000)[-1].risk

    assert risk("CREATE TABLE x (id int)") == "low"
    assert risk("ALTER TABLE t ADD COLUMN a int") == "low"
    assert risk("CREATE INDEX i ON t (a)") == "high"  # ShareLock for the build of a (presumed large) table
    assert risk("CREATE INDEX CONCURRENTLY i ON t (a)") == "low"
    assert risk("ALTER TABLE t RENAME COLUMN a TO b") == "high"
    assert risk("ALTER TABLE t ALTER COLUMN a SET NOT NULL") == "critical"  # AccessExclusive scan, large table
    assert risk("UPDATE t SET a = 1") == "critical"
    assert risk("DELETE FROM t") == "critical"
    assert risk("ALTER TABLE t ALTER COLUMN a TYPE bigint") == "critical"
    assert risk("CREATE TABLE x (a int);\nALTER TABLE x ALTER COLUMN a SET NOT NULL") == "low"
    assert any("assumed large" in n for n in ops("ALTER TABLE t ALTER COLUMN a SET NOT NULL")[0].notes)


def test_statement_kinds_and_categories() -> None:
    cases = {
        "CREATE TABLE x (id int)": ("create_table", "create_table"),
        "DROP TABLE x": ("drop_table", "drop_table"),
        "CREATE INDEX i ON t (a)": ("create_index", "create_index"),
        "DROP INDEX i": ("drop_index", "drop_index"),
        "UPDATE t SET a = 1": ("data_migration", "update"),
        "INSERT INTO t SELECT * FROM u": ("data_migration", "insert_select"),
        "TRUNCATE t": ("data_migration", "truncate"),
        "COMMIT": ("other", "transaction"),
        "DO $$ BEGIN END $$": ("other", "do_block"),
        "SELECT 1": ("other", "unknown"),
        "LOCK TABLE t IN SHARE ROW EXCLUSIVE MODE": ("other", "lock_table"),
    }
    for sql, (category, kind) in cases.items():
        (op,) = ops(sql)
        assert (op.category, op.kind) == (category, kind), sql
    assert ops("LOCK TABLE t IN SHARE ROW EXCLUSIVE MODE")[0].lock == "ShareRowExclusiveLock"
    assert ops("LOCK TABLE t")[0].lock == "AccessExclusiveLock"


def _catalog(total_bytes: int, rows: int) -> SchemaSnapshot:
    table = Table(schema="public", name="t", kind="table", persistence="permanent", row_estimate=rows,
                  heap_bytes=total_bytes, index_bytes=0, total_bytes=total_bytes,
                  columns=[Column(name="a", position=1, type="character varying(20)", nullable=True),
                           Column(name="n", position=2, type="integer", nullable=True)],
                  constraints=[Constraint(name="n_nn", type="check", columns=["n"],
                                          definition="CHECK ((n IS NOT NULL))")])
    return SchemaSnapshot(server_version=160002, server_version_text="16.2", database="d", schemas=["public"],
                          tables=[table])


def test_risk_from_the_catalog_size() -> None:
    big, small = _catalog(50 << 30, 400_000_000), _catalog(8 << 20, 20_000)
    sql = "ALTER TABLE t ALTER COLUMN a TYPE integer USING a::integer"
    assert ops(sql, catalog=big)[0].risk == "critical"
    assert ops(sql, catalog=small)[0].risk == "high"
    assert any("MB" in n for n in ops(sql, catalog=small)[0].notes)
    widen = ops("ALTER TABLE t ALTER COLUMN a TYPE varchar(80)", catalog=big)[0]
    assert not widen.rewrite and widen.risk == "medium"
    proven = ops("ALTER TABLE t ALTER COLUMN n SET NOT NULL", catalog=big)[0]
    assert not proven.scan and proven.risk == "medium"
    assert ops("CREATE INDEX i ON t (a)", catalog=small)[0].risk == "medium"
    assert ops("CREATE INDEX i ON t (a)", catalog=big)[0].risk == "high"


def test_a_coercible_type_change_scans_when_a_validated_check_reads_the_column() -> None:
    """Observed in tests/corpus/classify_corpus.py (rows read under the lock): no rewrite, but a full scan."""
    sql = ("CREATE TABLE orders (id int, code varchar(10));\n"  # a new table, so the state decides, not a catalog
           "ALTER TABLE orders ADD CONSTRAINT orders_code_check CHECK (code <> '') NOT VALID;\n"
           "ALTER TABLE orders ALTER COLUMN code TYPE varchar(20);\n"
           "ALTER TABLE orders VALIDATE CONSTRAINT orders_code_check;\n"
           "ALTER TABLE orders ALTER COLUMN code TYPE text;\n"
           "ALTER TABLE orders DROP CONSTRAINT orders_code_check, ALTER COLUMN code TYPE varchar;")
    result = ops(sql)
    assert result[2].form == "alter_table.alter_column_type.coercible" and not result[2].scan  # NOT VALID: no re-check
    assert result[4].form == "alter_table.alter_column_type.coercible_with_check"
    assert result[4].scan and not result[4].rewrite and any("orders_code_check" in n for n in result[4].notes)
    assert result[6].form == "alter_table.alter_column_type.coercible" and not result[6].scan  # dropped first
    catalog = _catalog(8 << 20, 20_000)
    catalog.tables[0].constraints.append(Constraint(name="a_check", type="check", columns=["a"],
                                                    definition="CHECK (((a)::text <> ''::text))"))
    (op,) = ops("ALTER TABLE t ALTER COLUMN a TYPE varchar(40)", catalog=catalog)
    assert op.scan and not op.rewrite and op.risk == "high" and any("a_check" in n for n in op.notes)
