"""The measured-write limits hold over a window, not only per statement (review r27 k12): six DELETEs each removing
49 % of a table, sent one after the other, each passed the 50 % limit on its own and together all but emptied the
table. agent19 now keeps a tally of the rows it removed without confirmation (agent19.removals, written in the
statement's transaction) and judges each statement with it. Real server, execute mode, default limits."""

from __future__ import annotations

import uuid

import psycopg
import pytest
from psycopg.conninfo import make_conninfo

from agent19.errors import Agent19Error
from agent19.safety.ledger import LedgerUnavailable
from agent19.safety.protocol import Protocol
from agent19.tools.confirm import ConfirmArgs, confirm_destructive
from agent19.tools.registry import ToolContext
from agent19.tools.sql import SqlArgs, run_sql
from tests.conftest import run_sql as sql_as_superuser
from tests.conftest import session_settings

SETUP = """
CREATE TABLE t (id int PRIMARY KEY, v text);
INSERT INTO t SELECT g, 'x' FROM generate_series(1, 1000) g;
CREATE TABLE other (id int PRIMARY KEY);
INSERT INTO other SELECT generate_series(1, 100);
"""
HALF_LESS_ONE = "DELETE FROM t WHERE id IN (SELECT id FROM t ORDER BY id LIMIT (SELECT count(*) * 49 / 100 FROM t))"
"""Removes 49 % of what is left: under the limit on its own, every time."""


@pytest.fixture
def ctx(dsn):
    sql_as_superuser(dsn, SETUP)
    context = ToolContext(session_settings(dsn=dsn, mode="execute"))
    yield context
    context.db.close()


def _one(dsn: str, query: str):
    with psycopg.connect(dsn) as c:
        return c.execute(query).fetchone()[0]


def _tally(dsn: str) -> list[tuple[str, int]]:
    with psycopg.connect(dsn) as c:
        return c.execute("SELECT relid::regclass::text, removed FROM agent19.removals ORDER BY at, removed DESC"
                         ).fetchall()


def test_six_deletes_of_49_percent_are_refused_before_the_table_is_emptied(ctx, dsn):
    outs = [run_sql(ctx, SqlArgs(sql=HALF_LESS_ONE)) for _ in range(6)]
    assert [o.executed for o in outs] == [True, False, False, False, False, False]
    assert outs[0].result.row_count == 490
    # the statement that crosses the limit was not applied: the table holds what the first one left
    assert _one(dsn, "SELECT count(*) FROM t") == 510
    reasons = [f.reason for f in outs[1].confirmation.report.findings]
    assert any("deleted 249 of the 510 rows of public.t (49%); with the 490 rows (49%) agent19 removed from it in "
               "the last minute (1 statement run without confirmation), that is 739 of its 1000 rows (74%; the limit "
               "is 50% of a table" in r for r in reasons), reasons
    assert any("AGENT19_MASS_WRITE_WINDOW_MINUTES" in r for r in reasons), reasons
    assert _tally(dsn) == [("t", 490)]
    # another table has its own tally
    assert run_sql(ctx, SqlArgs(sql="DELETE FROM other WHERE id <= 40")).executed

    # the challenge is a confirmation like any other: a human confirms, it runs, and is not added to the tally
    report = outs[1].confirmation.report
    assert Protocol(ctx.settings, ctx.db).approve(report.token, report.phrase, "terminal").outcome == "approved"
    done = confirm_destructive(ctx, ConfirmArgs(sql=HALF_LESS_ONE, token=report.token))
    assert done.executed, done.reasons
    assert _one(dsn, "SELECT count(*) FROM t") == 261
    assert _tally(dsn) == [("t", 490), ("other", 40)]


def test_a_small_delete_runs_unconfirmed_and_counts(ctx, dsn):
    out = run_sql(ctx, SqlArgs(sql="DELETE FROM t WHERE id <= 10"))
    assert out.executed and out.result.row_count == 10
    single = run_sql(ctx, SqlArgs(sql="UPDATE t SET v = 'y' WHERE id = 500"))
    assert single.executed and single.result.row_count == 1
    assert _tally(dsn) == [("t", 10), ("t", 1)]
    assert _one(dsn, "SELECT count(*) FROM t") == 990


def test_rows_of_a_refused_or_failed_statement_do_not_count(ctx, dsn):
    refused = run_sql(ctx, SqlArgs(sql="DELETE FROM t WHERE id <= 600"))  # 60 %: refused on its own
    assert not refused.executed
    with pytest.raises(psycopg.errors.DivisionByZero):  # fails after deleting: rolled back
        run_sql(ctx, SqlArgs(sql="DELETE FROM t WHERE id <= 300 RETURNING 1 / (id - 300)"))
    assert _one(dsn, "SELECT to_regclass('agent19.removals') IS NULL")  # nothing kept, nothing recorded
    assert run_sql(ctx, SqlArgs(sql="DELETE FROM t WHERE id <= 400")).executed  # 40 %
    # 90 more: 490 of 1000 with the 400 (the refused 600 and the failed 300 would make it over)
    assert run_sql(ctx, SqlArgs(sql="DELETE FROM t WHERE id <= 490")).executed
    assert _tally(dsn) == [("t", 400), ("t", 90)]
    # 9 more are still under (499 of 1000); then a single row crosses the limit: counted, then judged
    assert run_sql(ctx, SqlArgs(sql="DELETE FROM t WHERE id BETWEEN 491 AND 499")).executed
    single = run_sql(ctx, SqlArgs(sql="DELETE FROM t WHERE id = 500"))
    assert not single.executed, single.result
    assert ("deleted 1 of the 501 rows of public.t (0%); with the 499 rows (50%) agent19 removed from it in the last "
            "minute (3 statements run without confirmation), that is 500 of its 1000 rows (50%"
            in single.confirmation.report.findings[0].reason), single.confirmation.report.findings
    assert _one(dsn, "SELECT count(*) FROM t") == 501


def test_a_window_of_zero_judges_each_statement_on_its_own(dsn):
    sql_as_superuser(dsn, SETUP)
    assert session_settings().mass_write_window_minutes == 60  # the default: an hour
    context = ToolContext(session_settings(dsn=dsn, mode="execute", mass_write_window_minutes=0))
    try:
        assert [run_sql(context, SqlArgs(sql=HALF_LESS_ONE)).executed for _ in range(2)] == [True, True]
    finally:
        context.db.close()
    assert _one(dsn, "SELECT to_regclass('agent19.removals') IS NULL")


def test_the_tally_cannot_be_emptied_renamed_or_outweighed_unconfirmed(ctx, dsn):
    assert run_sql(ctx, SqlArgs(sql=HALF_LESS_ONE)).executed
    for sql in ("DELETE FROM agent19.removals WHERE removed = 490",
                "UPDATE agent19.removals SET at = at - interval '1 day' WHERE removed = 490",
                "INSERT INTO agent19.removals VALUES ('t'::regclass, 't', -1000000, now())",
                "ALTER TABLE agent19.removals RENAME TO old_removals",
                "ALTER TABLE agent19.removals ADD COLUMN note text DEFAULT 'ok'",
                "ALTER SCHEMA agent19 RENAME TO old_agent19"):
        out = run_sql(ctx, SqlArgs(sql=sql))
        assert not out.executed, (sql, out.result)
        assert any("agent19.removals, agent19's tally of the rows it removed" in f.reason
                   for f in out.confirmation.report.findings), (sql, out.confirmation.report.findings)
    assert _tally(dsn) == [("t", 490)]
    # written by other means (another login), a row can only make agent19 stricter: a negative count is not taken
    sql_as_superuser(dsn, "INSERT INTO agent19.removals VALUES ('t'::regclass, 't', -1000000, now())")
    assert not run_sql(ctx, SqlArgs(sql=HALF_LESS_ONE)).executed
    # a rule (or trigger, default, policy...) on the table is refused loudly, never silently obeyed
    sql_as_superuser(dsn, "CREATE RULE forget AS ON INSERT TO agent19.removals DO INSTEAD NOTHING")
    with pytest.raises(Agent19Error, match="agent19.removals is not the table agent19 makes"):
        run_sql(ctx, SqlArgs(sql="DELETE FROM other WHERE id <= 10"))
    sql_as_superuser(dsn, "DROP RULE forget ON agent19.removals; ALTER TABLE agent19.removals SET UNLOGGED")
    with pytest.raises(Agent19Error, match="agent19.removals is not the table agent19 makes"):  # a crash empties it
        run_sql(ctx, SqlArgs(sql="DELETE FROM other WHERE id <= 10"))
    assert _one(dsn, "SELECT count(*) FROM other") == 100


def test_the_rows_limit_holds_over_the_window_too_and_confirm_destructive_says_so(dsn):
    sql_as_superuser(dsn, SETUP)
    context = ToolContext(session_settings(dsn=dsn, mode="execute", mass_write_rows=100))
    try:
        assert run_sql(context, SqlArgs(sql="DELETE FROM t WHERE id <= 60")).executed
        second = "DELETE FROM t WHERE id BETWEEN 61 AND 120"
        # confirm_destructive's own first step measures it the way run_sql judges it
        first = confirm_destructive(context, ConfirmArgs(sql=second))
        assert first.outcome == "challenge", first
        reason = first.report.findings[0].reason
        assert ("deleted 60 rows of public.t; with the 60 rows agent19 removed from it in the last minute (1 statement "
                "run without confirmation), that is 120 rows, more than the limit of 100 rows per table") in reason
        assert not run_sql(context, SqlArgs(sql=second)).executed
    finally:
        context.db.close()
    assert _one(dsn, "SELECT count(*) FROM t") == 940


def test_a_login_that_cannot_keep_the_tally_keeps_no_removal(dsn):
    """Without the tally, nothing would stop the six DELETEs: a login that may not create schema agent19 keeps no
    UPDATE or DELETE, and is told what an administrator runs once (as for the confirmation ledger)."""
    role = f"tally_{uuid.uuid4().hex[:8]}"
    sql_as_superuser(dsn, SETUP + f"CREATE ROLE {role} LOGIN; GRANT SELECT, INSERT, UPDATE, DELETE ON t TO {role};")
    context = ToolContext(session_settings(dsn=make_conninfo(dsn, user=role), mode="execute"))
    try:
        with pytest.raises(LedgerUnavailable, match=f"CREATE SCHEMA agent19 AUTHORIZATION {role}"):
            run_sql(context, SqlArgs(sql="DELETE FROM t WHERE id <= 10"))
        assert _one(dsn, "SELECT count(*) FROM t") == 1000
        assert run_sql(context, SqlArgs(sql="INSERT INTO t VALUES (1001, 'new')")).executed  # loses nothing
        sql_as_superuser(dsn, f"CREATE SCHEMA agent19 AUTHORIZATION {role}")
        assert run_sql(context, SqlArgs(sql="DELETE FROM t WHERE id <= 10")).executed
    finally:
        context.db.close()
    assert _tally(dsn) == [("t", 10)]


def test_the_tally_is_read_with_the_built_in_operators(ctx, dsn):
    """agent19's reads of the tally, after the statement, run under pg_catalog, pg_temp (agent19.db.catalog_first)
    with its oids typed: an operator of the path that matches their arguments exactly (oid = smallint: a list of small
    oids is sent as smallint[]) is not what they call - it made the tally read nothing."""
    sql_as_superuser(dsn, "CREATE FUNCTION public.never(oid, smallint) RETURNS boolean LANGUAGE sql IMMUTABLE "
                          "AS 'SELECT false'; CREATE OPERATOR public.= (LEFTARG = oid, RIGHTARG = smallint, "
                          "FUNCTION = public.never)")
    assert [run_sql(ctx, SqlArgs(sql=HALF_LESS_ONE)).executed for _ in range(2)] == [True, False]
