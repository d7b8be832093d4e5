"""C code in extensions: a dry run trusts what it knows, and not what it cannot read (hostile review r24d n39).

An extension's C functions cannot be read. Those of the extensions agent19 knows are judged by name (the
ones that act outside the transaction or run SQL given as a string are listed); ``xml2``'s ``xpath_table``
builds ``SELECT <key>, <field> FROM <relation> WHERE <condition>`` from its arguments, so a "condition" can
terminate the application's sessions. As an application role with a live session of the same role.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import psycopg
import pytest

from agent19.db.connection import Database
from agent19.migrate.dryrun.run import dry_run
from agent19.migrate.parse import parse_sql
from tests.conftest import session_settings
from tests.scratch_dryruns import owner

SETUP = "CREATE TABLE customers (id serial PRIMARY KEY, email text); INSERT INTO customers (email) VALUES ('a');"


@pytest.fixture
def app(dsn: str) -> str:
    with psycopg.connect(dsn, autocommit=True) as c:  # the DBA installs it (untrusted: superuser only)
        c.execute("CREATE EXTENSION IF NOT EXISTS xml2")
    return owner(dsn, SETUP)


@pytest.fixture
def peer(app: str) -> Iterator[psycopg.Connection[Any]]:
    conn = psycopg.connect(app, application_name="the-app", autocommit=True)
    yield conn
    conn.close()


def _run(login: str, sql: str) -> Any:
    db = Database(session_settings(dsn=login, mode="dry-run"))
    try:
        return dry_run(db, parse_sql(sql))
    finally:
        db.close()


def test_sql_hidden_in_xpath_table_arguments_is_not_run(app, peer):
    r = _run(app, "SELECT * FROM xpath_table('id', $s$(SELECT count(pg_terminate_backend(pid)) FROM "
                  "pg_stat_activity WHERE application_name = 'the-app')::text$s$, 'customers', '/a', 'true') "
                  "AS t(id int, a text)")
    st = r.statements[0]
    assert st.ran_in == "skipped", st
    assert "xpath_table()" in (st.untested or ""), st
    assert peer.execute("SELECT 1").fetchone() == (1,)  # the application's session is alive
