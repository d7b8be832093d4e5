"""Row-level security and the confirmation protocol (r27-k11): TRUNCATE, DROP TABLE and DROP COLUMN remove every
row of a table, while a count or a copy made through a policy that applies to the login sees only some. The impact,
the phrase the human types and the archive must never present the visible rows as the whole table.

Real server; the login owns the database and schema public (tests.conftest.owner_login) but not the table, whose
tenant policy shows it 3 of 6 rows."""

from __future__ import annotations

import psycopg
import pytest

from agent19.db import rls
from agent19.errors import InputError
from agent19.safety import archive as archiving
from agent19.safety.protocol import Protocol
from agent19.tools.confirm import ConfirmArgs, confirm_destructive, render_confirmation
from agent19.tools.registry import ToolContext
from tests.conftest import owner_login, run_sql, session_settings

SETUP = """
CREATE TABLE accounts (id int PRIMARY KEY, tenant int NOT NULL, balance numeric);
INSERT INTO accounts SELECT g, g % 2, g FROM generate_series(1, 6) g;
CREATE TABLE entries (id int PRIMARY KEY, account_id int REFERENCES accounts ON DELETE CASCADE, tenant int);
INSERT INTO entries SELECT g, g, g % 2 FROM generate_series(1, 6) g;
CREATE TABLE plain (id int PRIMARY KEY);
INSERT INTO plain SELECT generate_series(1, 5);
ALTER TABLE accounts ENABLE ROW LEVEL SECURITY;
ALTER TABLE entries ENABLE ROW LEVEL SECURITY;
"""


def _login(dsn: str) -> tuple[str, str]:
    app = owner_login(dsn, "rlsc")
    role = psycopg.conninfo.conninfo_to_dict(app)["user"]
    run_sql(dsn, SETUP + f"""
        CREATE POLICY tenant0 ON accounts FOR ALL TO {role} USING (tenant = 0);
        CREATE POLICY tenant0 ON entries FOR ALL TO {role} USING (tenant = 0);
        GRANT SELECT, UPDATE, DELETE, TRUNCATE ON accounts, entries, plain TO {role};""")
    return app, role


def _count(dsn: str, table: str) -> int:
    with psycopg.connect(dsn) as c:  # the superuser: every row
        return c.execute(f"SELECT count(*) FROM {table}").fetchone()[0]


@pytest.fixture
def app(dsn):
    login, role = _login(dsn)
    ctx = ToolContext(session_settings(dsn=login, mode="execute", allow_model_confirmation=True))
    yield ctx, login, role
    ctx.db.close()


def test_truncate_impact_and_phrase_say_the_count_is_a_lower_bound(app, dsn):
    ctx, _, _ = app
    step1 = confirm_destructive(ctx, ConfirmArgs(sql="TRUNCATE accounts CASCADE"))
    assert step1.outcome == "challenge"
    target = step1.report.impact.targets[0]
    assert (target.rows, target.rows_text) == (3, "at least 3")  # 6 rows; the policy shows 3
    assert target.rows_hidden == ["public.accounts", "public.entries"]
    assert step1.report.phrase == ("Confirmed: accounts has at least 3 rows (and at least 3 rows in referencing "
                                   "tables), data is archived/not needed, proceed with truncate.")
    unknown = [c for c in step1.report.checklist if c.item == "every row counted"]
    assert [c.status for c in unknown] == ["unknown", "unknown"]
    assert "row-level security may hide rows of public.accounts from this login" in unknown[0].detail
    assert "lower bound" in unknown[0].detail and "BYPASSRLS" in unknown[0].detail
    text = render_confirmation(step1)
    assert "table public.accounts: at least 3 rows" in text and "[unknown] every row counted" in text
    assert not step1.report.archive  # no archive offered: it would be a partial copy
    # the human read "at least 3"; confirmed, it runs (TRUNCATE ignores the policy: all 6 rows go)
    done = confirm_destructive(ctx, ConfirmArgs(sql="TRUNCATE accounts CASCADE", token=step1.report.token,
                                                phrase=step1.report.phrase))
    assert done.executed, done.reasons
    assert (_count(dsn, "accounts"), _count(dsn, "entries")) == (0, 0)


def test_archive_of_a_table_a_policy_filters_is_refused_in_both_steps(app, dsn):
    ctx, _, _ = app
    for sql in ("TRUNCATE accounts CASCADE", "DROP TABLE accounts CASCADE", "ALTER TABLE accounts DROP COLUMN balance"):
        with pytest.raises(InputError, match="archive=true refused: row-level security may hide rows of "
                           "public.accounts from this login"):
            confirm_destructive(ctx, ConfirmArgs(sql=sql, archive=True))
    step1 = confirm_destructive(ctx, ConfirmArgs(sql="TRUNCATE accounts CASCADE")).report
    with pytest.raises(InputError, match="a copy would hold only the rows the policy shows"):
        confirm_destructive(ctx, ConfirmArgs(sql="TRUNCATE accounts CASCADE", archive=True, token=step1.token,
                                             phrase=step1.phrase))
    assert _count(dsn, "accounts") == 6
    with psycopg.connect(dsn) as c:
        assert c.execute("SELECT count(*) FROM pg_tables WHERE tablename LIKE '%archive%'").fetchone()[0] == 0


def test_an_archive_copy_through_a_policy_errors_instead_of_passing_as_verified(app, dsn):
    """The copy itself reads with row_security off: should a plan for a filtered table reach it, the server refuses
    instead of a 3-row copy "verified" against a 3-row count."""
    ctx, login, _ = app
    with psycopg.connect(login, row_factory=psycopg.rows.dict_row) as conn:
        plans = archiving.plan(conn, ["public.accounts"], "db")
        with pytest.raises(psycopg.Error) as caught, conn.transaction():
            archiving.run(conn, plans)
        assert rls.explains(caught.value)
        # a table no policy filters: archived and verified, the session's row_security put back afterwards
        with conn.transaction():
            done = archiving.run(conn, archiving.plan(conn, ["public.plain"], "db"))
            assert (done[0].source_rows, done[0].archive_rows, done[0].verified) == (5, 5, True)
            assert conn.execute("SELECT current_setting('row_security') AS v").fetchone()["v"] == "on"
            assert conn.execute("SELECT count(*) AS n FROM accounts").fetchone()["n"] == 3  # the policy still applies


def test_owner_and_bypassrls_count_every_row_exactly(app, dsn):
    ctx, _, role = app
    run_sql(dsn, f"ALTER ROLE {role} BYPASSRLS")
    report = Protocol(ctx.settings, ctx.db).challenge("TRUNCATE accounts CASCADE", archive=True).report
    target = report.impact.targets[0]
    assert (target.rows, target.rows_text, target.cascade_rows, target.rows_hidden) == (6, "6", 6, [])
    assert report.phrase == ("Confirmed: accounts has 6 rows (and 6 rows in referencing tables), data is archived/not "
                             "needed, proceed with truncate.")
    done = confirm_destructive(ctx, ConfirmArgs(sql="TRUNCATE accounts CASCADE", archive=True, token=report.token,
                                                phrase=report.phrase))
    assert done.executed and done.archived[0].archive_rows == 6 and done.archived[0].verified
    assert _count(dsn, "accounts") == 0
