"""The guards read names as the server reads them (hostile review r25: q03, q04, q18).

As the application role (not a superuser) with a live session of it: the server folds an unquoted name's
A-Z only (``downcase_identifier``: in a UTF8 database ``Ökill`` stays ``Ökill``), while the guards folded it
with Python's ``str.lower`` (``ökill``, another name), so ``SELECT Ökill()`` of ``"Ökill"`` ran the killer in a
dry run and in read-only mode.
"""

from __future__ import annotations

import pytest

from tests import test_dryrun_closure as base
from tests.test_cli import agent19
from tests.test_dryrun_closure import KILL, _intact, _not_run, _run

app, peer = base.app, base.peer  # the same fixtures: the application's role, its live session

UPPER = (f'CREATE FUNCTION "Ökill"() RETURNS bigint LANGUAGE sql STABLE AS $$ {KILL} $$; '
         "CREATE FUNCTION w() RETURNS bigint LANGUAGE plpgsql STABLE AS $$ BEGIN PERFORM Ökill(); RETURN 1; END $$; "
         """CREATE FUNCTION "Übump"() RETURNS bigint LANGUAGE sql AS $$ SELECT setval('customers_id_seq', 1) $$;""")


@pytest.mark.parametrize(("sql", "words"), [
    ("SELECT Ökill()", "pg_terminate_backend()"),
    ("SELECT w()", "pg_terminate_backend()"),
    ("SELECT public.Übump()", "setval()"),
], ids=["call", "call-in-a-body", "setval"])
def test_a_non_ascii_upper_case_name_is_the_one_the_server_calls(app, peer, sql, words):
    r = _run(app, sql, UPPER)
    _not_run(r.statements[0], words)
    _intact(app, peer)


def test_read_only_mode_follows_a_non_ascii_upper_case_call_in_a_body(app, peer):
    _run(app, "SELECT 1", UPPER)
    out = agent19("sql", "SELECT w()", "--mode", "read-only", "--dsn", app)
    assert out.returncode == 1 and "refused in read-only" in out.stderr, (out.stdout, out.stderr)
    _intact(app, peer)


ZAP = f"CREATE SCHEMA app; CREATE FUNCTION app.zap(c customers) RETURNS bigint LANGUAGE sql AS $$ {KILL} $$;"


@pytest.mark.parametrize("sql", [
    "SELECT public.zap FROM customers public LIMIT 1",  # an alias named like a schema: zap is in app
    "CREATE TABLE snap AS SELECT c.zap FROM customers c LIMIT 1",
    "CREATE VIEW vz AS SELECT c.zap FROM customers c LIMIT 1;\nSELECT * FROM vz;",
    "ALTER TABLE customers ALTER COLUMN email TYPE text USING (email || customers.zap::text)",
], ids=["alias-named-like-a-schema", "create-table-as", "view", "alter-column-using"])
def test_attribute_notation_runs_the_function_it_names(app, peer, sql):
    """``c.zap`` is ``zap(c)``: a qualified name without a parenthesis may be a call, in any schema, in any
    statement kind (DDL that names columns too)."""
    r = _run(app, sql, ZAP)
    assert all(s.ran_in == "skipped" for s in r.statements), r.statements
    _not_run(r.statements[0], "pg_terminate_backend()")
    _intact(app, peer)
