"""A19004's fix (a column whose value makes PostgreSQL rewrite the table) keeps the whole statement and
backfills with the keyset procedure.

Found by a hostile review of issue 13: the fix kept only the flagged column — the statement's other
sub-commands (an ADD CONSTRAINT beside it) and the column's NOT NULL were silently lost — and its backfill
was a hand-written ``UPDATE … WHERE ctid IN (SELECT ctid … LIMIT 10000)`` to repeat by hand, which rescans
the table for every batch, instead of the add_column_volatile_default pattern and the keyset backfill.
A serial column's sequence was created in the search path's schema, not the table's.
"""

from __future__ import annotations

from agent19.migrate.patterns.sqlnames import qname
from tests.conftest import one
from tests.test_lint_fix_sql import catalog_of, database, fix_of, run_script
from tools.throwaway import ThrowawayServer

SETUP = """
CREATE SCHEMA "My S";
CREATE TABLE "My S"."Order" (id bigint PRIMARY KEY, "Total" numeric NOT NULL);
INSERT INTO "My S"."Order" SELECT g, g FROM generate_series(1, 3000) g;
"""


def test_fix_keeps_the_other_sub_commands_and_not_null_and_runs(pg: ThrowawayServer) -> None:
    sql = ('ALTER TABLE "My S"."Order" ADD COLUMN "select" uuid NOT NULL DEFAULT gen_random_uuid(), '
           'ADD CONSTRAINT "Total ok" CHECK ("Total" >= 0) NOT VALID;')
    offline = fix_of("A19004", sql)
    assert "ctid" not in offline and "agent19 backfill" in offline
    with database(pg, SETUP) as app:
        fix = fix_of("A19004", sql, catalog=catalog_of(app))
        assert "ctid" not in fix and "CREATE OR REPLACE PROCEDURE" in fix and "CALL " in fix
        run_script(app, fix)
        assert one(app, """SELECT attnotnull FROM pg_attribute WHERE attrelid = '"My S"."Order"'::regclass
                            AND attname = 'select'""") is True
        assert one(app, 'SELECT count(DISTINCT "select") FROM "My S"."Order"') == 3000
        assert one(app, """SELECT count(*) FROM pg_constraint WHERE conrelid = '"My S"."Order"'::regclass
                            AND conname = 'Total ok'""") == 1


def test_a_serial_column_gets_its_sequence_in_the_tables_schema(pg: ThrowawayServer) -> None:
    sql = 'ALTER TABLE "My S"."Order" ADD COLUMN "Seq No" bigserial, ADD COLUMN note text DEFAULT \'n\';'
    with database(pg, SETUP) as app:
        fix = fix_of("A19004", sql, catalog=catalog_of(app))
        assert "not carried" not in fix and "ADD COLUMN note text DEFAULT 'n'" in fix
        run_script(app, fix)
        seq = one(app, """SELECT pg_get_serial_sequence('"My S"."Order"', 'Seq No')""")
        assert seq == qname('My S.Order_Seq No_seq'), seq
        assert one(app, 'SELECT count(DISTINCT "Seq No") FROM "My S"."Order"') == 3000
        assert one(app, """SELECT attnotnull FROM pg_attribute WHERE attrelid = '"My S"."Order"'::regclass
                            AND attname = 'Seq No'""") is True


def test_a_constraint_of_the_column_it_cannot_carry_is_named() -> None:
    fix = fix_of("A19004", "ALTER TABLE t ADD COLUMN u uuid DEFAULT gen_random_uuid() UNIQUE;")
    assert "not carried: the column's unique constraint" in fix
