"""The measured-write limits hold per table, and a partitioned table is one table (r27-k12): a DELETE spread over its
partitions — each under the row limit — removed 121,500 rows of a 270,000-row table unconfirmed, where the same
DELETE on the same data unpartitioned was challenged. Real server, execute mode, small limits."""

from __future__ import annotations

import psycopg
import pytest

from agent19.safety.protocol import Protocol
from agent19.tools.confirm import ConfirmArgs, confirm_destructive
from agent19.tools.registry import ToolContext
from agent19.tools.sql import SqlArgs, run_sql
from tests.conftest import run_sql as sql_as_superuser
from tests.conftest import session_settings

SETUP = """
CREATE TABLE pt (id int, region int, v text) PARTITION BY LIST (region);
CREATE TABLE pt_1 PARTITION OF pt FOR VALUES IN (1);
CREATE TABLE pt_2 PARTITION OF pt FOR VALUES IN (2);
CREATE TABLE pt_3 PARTITION OF pt FOR VALUES IN (3);
INSERT INTO pt SELECT g, 1 + g % 3, 'x' FROM generate_series(1, 600) g;
CREATE TABLE flat AS TABLE pt;
"""


@pytest.fixture
def ctx(dsn):
    sql_as_superuser(dsn, SETUP)
    context = ToolContext(session_settings(dsn=dsn, mode="execute", mass_write_rows=200))
    yield context
    context.db.close()


def _rows(dsn: str, table: str) -> int:
    with psycopg.connect(dsn) as c:
        return c.execute(f"SELECT count(*) FROM {table}").fetchone()[0]


def test_a_delete_over_partitions_is_judged_on_the_whole_table(ctx, dsn):
    # 45 % of each partition (90 of 200 rows each: under the 200-row limit and the 50 % share per partition),
    # 270 of the table's 600 rows: over the limit, as the same DELETE on the unpartitioned copy
    flat = run_sql(ctx, SqlArgs(sql="DELETE FROM flat WHERE id % 100 < 45"))
    assert not flat.executed
    assert "more than the limit of 200 rows per table" in flat.confirmation.report.findings[0].reason
    out = run_sql(ctx, SqlArgs(sql="DELETE FROM pt WHERE id % 100 < 45"))
    assert not out.executed, out.result
    reasons = [f.reason for f in out.confirmation.report.findings]
    assert any("deleted 270 rows of public.pt, more than the limit of 200 rows per table" in r
               for r in reasons), reasons
    assert _rows(dsn, "pt") == 600
    target = next(t for t in out.confirmation.report.impact.targets if t.name == "public.pt")
    assert (target.rows, target.rows_touched) == (600, 270)
    # confirmed by a human, it runs: step 2 measures the whole table again, the same 270 of 600
    report = out.confirmation.report
    assert Protocol(ctx.settings, ctx.db).approve(report.token, report.phrase, "terminal").outcome == "approved"
    done = confirm_destructive(ctx, ConfirmArgs(sql="DELETE FROM pt WHERE id % 100 < 45", token=report.token))
    assert done.executed, done.reasons
    assert _rows(dsn, "pt") == 330
    # under the limit over the whole table: runs and is kept
    small = run_sql(ctx, SqlArgs(sql="DELETE FROM pt WHERE id % 100 >= 90"))
    assert small.executed and small.result.row_count == 60 and _rows(dsn, "pt") == 270
