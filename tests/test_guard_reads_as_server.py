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
