"""The dry run's summary line (agent19.migrate.dryrun.compare.summary_text): what it says of locks it could not
observe is true of the statements it names."""

from __future__ import annotations

import psycopg

from tests.conftest import owner_login
from tests.scratch_dryruns import run


def test_a_failed_first_statement_is_not_said_to_hold_locks_since_an_earlier_one(dsn):
    login = owner_login(dsn)  # no CREATEDB: a lock hidden by an earlier statement cannot be re-observed
    with psycopg.connect(login, autocommit=True) as c:
        c.execute("CREATE TABLE t (id int)")
    failed = run(login, "ALTER TABLE nosuch ADD COLUMN c int;\n")
    assert failed.summary.startswith("FAILED at statement 1 "), failed.summary
    assert 'relation "nosuch" does not exist' in failed.summary, failed.summary
    assert "earlier statement" not in failed.summary and "not fully observed" not in failed.summary, failed.summary
    # a lock that is hidden is still said so
    hidden = run(login, "ALTER TABLE t ADD COLUMN a int;\nALTER TABLE t ADD COLUMN b int;\n")
    assert ("locks of 1 statement(s) not fully observed (2): already held since an earlier statement"
            in hidden.summary), hidden.summary
