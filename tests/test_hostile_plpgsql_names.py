"""Generated PL/pgSQL (sync triggers, backfill procedures) works on columns named like its own variables.

Found by a hostile review of issue 13: change_column_type's sync trigger read the column in a query inside
PL/pgSQL, where a column named ``new``, ``found`` or ``tg_op`` is ambiguous with the variable of that
name — phase 1 committed a trigger that failed every INSERT and UPDATE of the table (an outage). The keyset
backfill procedure's parameters ``batch_size`` and ``pause_s`` collided the same way with columns of those
names in the SET list, so the procedure (A19018's fix, change-list data migrations) failed.
"""

from __future__ import annotations

import dataclasses

import psycopg
import pytest

from agent19.migrate.lint.engine import lint_sql
from agent19.migrate.patterns import change_column_type
from agent19.migrate.patterns.live import read_column
from agent19.migrate.patterns.runner import run_pattern
from tests.conftest import one, owner_login, run_sql
from tests.test_lint_fix_sql import catalog_of, run_script


@pytest.mark.parametrize("column", ["new", "found", "tg_op", "old"])
def test_type_change_of_a_column_named_like_a_plpgsql_variable(dsn: str, column: str) -> None:
    app = owner_login(dsn)
    run_sql(app, f"""CREATE TABLE t (id int PRIMARY KEY, "{column}" int);
                     INSERT INTO t SELECT g, g FROM generate_series(1, 100) g""")
    with psycopg.connect(app, autocommit=True) as conn:
        pattern = change_column_type("t", column, "bigint", pg_version=15, live=read_column(conn, "t", column))
        run_phase_one = sorted(pattern.phases, key=lambda p: p.order)[:1]
        run_pattern(conn, dataclasses.replace(pattern, phases=run_phase_one), dsn=app)
        # the application keeps writing while the trigger is in place
        conn.execute(f'INSERT INTO t (id, "{column}") VALUES (1000, 7)')
        conn.execute(f'UPDATE t SET "{column}" = 8 WHERE id = 1')
        run_pattern(conn, dataclasses.replace(pattern, phases=sorted(pattern.phases, key=lambda p: p.order)[1:]),
                    dsn=app)
    assert one(app, f"""SELECT format_type(atttypid, atttypmod) FROM pg_attribute WHERE attrelid = 't'::regclass
                         AND attname = '{column}'""") == "bigint"
    assert one(app, f'SELECT count(*) FROM t WHERE "{column}" = CASE id WHEN 1000 THEN 7 WHEN 1 THEN 8 ELSE id END'
               ) == 101


def test_backfill_procedure_on_columns_named_batch_size_and_pause_s(dsn: str) -> None:
    app = owner_login(dsn)
    run_sql(app, """CREATE TABLE t (id int PRIMARY KEY, batch_size int, pause_s int);
                    INSERT INTO t SELECT g, g, 0 FROM generate_series(1, 2500) g""")
    report = lint_sql("UPDATE t SET pause_s = batch_size + 1;", pg_version=150000, catalog=catalog_of(app))
    fix = next(f.fix for f in report.statements[0].findings if f.rule == "A19018")
    assert fix and "CALL " in fix
    run_script(app, fix)
    assert one(app, "SELECT count(*) FROM t WHERE pause_s = batch_size + 1") == 2500
