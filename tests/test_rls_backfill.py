"""Row-level security and the batched backfill (r27-k10): through a policy that applies to the login the walk, the
UPDATE and the validation see only the rows it shows, so "validation: no row left matching the condition" was said
while half the rows were never updated (and the next step of an expand/contract migration drops the old column).

Real server; the login owns the database and schema public (tests.conftest.owner_login) but not the table, whose
tenant policy shows it half the rows."""

from __future__ import annotations

import os
import subprocess
import sys

import psycopg
import pytest

from agent19.errors import InputError
from agent19.migrate.backfill.executor import BackfillSpec, run_backfill
from agent19.migrate.backfill.scripts import procedure_parts, python_script, script_filename
from agent19.tools.backfill import BackfillArgs
from agent19.tools.backfill import run_backfill as backfill_tool
from agent19.tools.registry import ToolContext
from tests.conftest import owner_login, run_sql, session_settings

SETUP = """
CREATE TABLE accounts (id int PRIMARY KEY, tenant int NOT NULL, balance numeric, balance_new numeric);
INSERT INTO accounts SELECT g, g % 2, g, NULL FROM generate_series(1, 400) g;
ALTER TABLE accounts ENABLE ROW LEVEL SECURITY;
"""


@pytest.fixture
def app(dsn):
    login = owner_login(dsn, "rlsb")
    role = psycopg.conninfo.conninfo_to_dict(login)["user"]
    run_sql(dsn, SETUP + f"""
        CREATE POLICY tenant0 ON accounts FOR ALL TO {role} USING (tenant = 0);
        GRANT SELECT, UPDATE ON accounts TO {role};""")
    ctx = ToolContext(session_settings(dsn=login, mode="execute"))
    yield ctx, login, role
    ctx.db.close()


def _nulls(dsn: str, table: str = "accounts") -> int:
    with psycopg.connect(dsn) as c:  # the superuser: every row
        return c.execute(f"SELECT count(*) FROM {table} WHERE balance_new IS NULL").fetchone()[0]


def test_a_backfill_of_a_table_a_policy_filters_is_refused_before_anything_runs(app, dsn):
    ctx, login, _ = app
    args = BackfillArgs(table="accounts", set="balance_new = balance", where="balance_new IS NULL", batch_size=50)
    with pytest.raises(InputError, match="row-level security may hide rows of public.accounts from this login"
                       ".*would update only the rows it shows"):
        backfill_tool(ctx, args)
    assert _nulls(dsn) == 400
    # the executor itself (what a migration pattern's backfill phase calls) refuses too
    with psycopg.connect(login, autocommit=True) as conn, pytest.raises(InputError, match="BYPASSRLS"):
        run_backfill(conn, BackfillSpec(table="accounts", set="balance_new = balance", where="balance_new IS NULL"))
    assert _nulls(dsn) == 400


def test_a_condition_reading_a_filtered_table_is_never_validated_as_done(app, dsn):
    """The table itself is unfiltered, the condition reads one a policy filters: the batches update only the rows
    whose match the policy shows; the validation with row_security off errors instead of "no row left"."""
    ctx, login, role = app
    run_sql(dsn, f"""CREATE TABLE ledger (id int PRIMARY KEY, balance numeric, balance_new numeric);
                     INSERT INTO ledger SELECT g, g, NULL FROM generate_series(1, 400) g;
                     GRANT SELECT, UPDATE ON ledger TO {role};""")
    where = "balance_new IS NULL AND EXISTS (SELECT 1 FROM accounts a WHERE a.id = ledger.id)"
    spec = BackfillSpec(table="ledger", set="balance_new = balance", where=where, batch_size=100)
    with psycopg.connect(login, autocommit=True) as conn, pytest.raises(InputError, match="cannot count every row"
                                                                        ".*not validated"):
        run_backfill(conn, spec)
    assert _nulls(dsn, "ledger") == 200  # 200 rows match the condition for the owner and were not updated
    # through the tool: the count of what it would overwrite reads every row too, so it stops before any batch
    run_sql(dsn, "UPDATE ledger SET balance_new = NULL")
    with pytest.raises(InputError, match="cannot count every row.*nothing was updated"):
        backfill_tool(ctx, BackfillArgs(table="ledger", set="balance_new = balance", where=where, name="again"))
    assert _nulls(dsn, "ledger") == 400


def test_the_tables_owner_backfills_and_validates_every_row(app, dsn):
    ctx, _, role = app
    run_sql(dsn, f"ALTER TABLE accounts OWNER TO {role}")  # the owner: the policy does not apply (no FORCE)
    out = backfill_tool(ctx, BackfillArgs(table="accounts", set="balance_new = balance", where="balance_new IS NULL",
                                          batch_size=50))
    assert (out.rows_updated, out.remaining) == (400, 0)
    assert _nulls(dsn) == 0


def test_the_emitted_script_and_procedure_refuse_such_a_table_too(app, dsn, tmp_path):
    """`--emit python` and `--emit procedure` run the same backfill elsewhere, as the same login."""
    _, login, _ = app
    spec = BackfillSpec(table="accounts", set="balance_new = balance", where="balance_new IS NULL", batch_size=50)
    script = tmp_path / script_filename(spec)
    script.write_text(python_script(spec))
    env = {k: v for k, v in os.environ.items() if k != "DATABASE_URL"}
    done = subprocess.run([sys.executable, str(script), login], cwd=tmp_path, env=env, capture_output=True, text=True,
                          timeout=120)
    assert done.returncode != 0 and "validation" not in done.stdout, done.stdout
    assert "row-level security may hide rows of public.accounts from this login" in done.stderr, done.stderr
    assert "nothing was updated" in done.stderr
    assert _nulls(dsn) == 400
    create, call = procedure_parts(spec, "id", "integer")
    with psycopg.connect(login, autocommit=True) as conn:
        conn.execute(create)
        with pytest.raises(psycopg.errors.RaiseException, match="row-level security may hide rows of accounts "):
            conn.execute(call)
    assert _nulls(dsn) == 400
    # a condition reading a filtered table: the script's validation errors instead of printing 0
    run_sql(dsn, f"""CREATE TABLE ledger (id int PRIMARY KEY, balance numeric, balance_new numeric);
                     INSERT INTO ledger SELECT g, g, NULL FROM generate_series(1, 400) g;
                     GRANT SELECT, UPDATE ON ledger TO {psycopg.conninfo.conninfo_to_dict(login)['user']};""")
    where = "balance_new IS NULL AND EXISTS (SELECT 1 FROM accounts a WHERE a.id = ledger.id)"
    spec = BackfillSpec(table="ledger", set="balance_new = balance", where=where, batch_size=100)
    script.write_text(python_script(spec))
    done = subprocess.run([sys.executable, str(script), login], cwd=tmp_path, env=env, capture_output=True, text=True,
                          timeout=120)
    assert done.returncode != 0 and "remaining rows matching the condition: 0" not in done.stdout, done.stdout
    assert "not validated - row-level security hides rows its condition reads" in done.stderr, done.stderr
