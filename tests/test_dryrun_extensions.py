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

from tests.conftest import need
from tests.scratch_dryruns import owner
from tests.trial_victims import application_session, dry_run_as

SETUP = "CREATE TABLE customers (id serial PRIMARY KEY, email text); INSERT INTO customers (email) VALUES ('a');"


@pytest.fixture
def app(dsn: str) -> str:
    with psycopg.connect(dsn, autocommit=True) as c:  # the DBA installs it (untrusted: superuser only)
        c.execute("CREATE EXTENSION IF NOT EXISTS xml2")
    return owner(dsn, SETUP)


@pytest.fixture
def peer(app: str) -> Iterator[psycopg.Connection[Any]]:
    yield from application_session(app, "the-app")


def test_sql_hidden_in_xpath_table_arguments_is_not_run(app, peer):
    r = dry_run_as(app, "SELECT * FROM xpath_table('id', $s$(SELECT count(pg_terminate_backend(pid)) FROM "
                  "pg_stat_activity WHERE application_name = 'the-app')::text$s$, 'customers', '/a', 'true') "
                  "AS t(id int, a text)")
    st = r.statements[0]
    assert st.ran_in == "skipped", st
    assert "xpath_table()" in (st.untested or ""), st
    assert peer.execute("SELECT 1").fetchone() == (1,)  # the application's session is alive


@pytest.fixture
def unknown_extension(dsn: str) -> Iterator[str]:
    """An extension agent19 does not know, installed by the DBA: its control file in the server's share
    directory (the test runs on the machine of its throwaway server), one C function (pgcrypto's digest)."""
    import os
    import uuid

    name = f"a19_unknown_{uuid.uuid4().hex[:6]}"
    with psycopg.connect(dsn, autocommit=True) as c:
        share = c.execute("SELECT setting FROM pg_config WHERE name = 'SHAREDIR'").fetchone()[0]
    directory = os.path.join(share, "extension")
    need(os.access(directory, os.W_OK), f"the server's extension directory {directory} is not writable")
    files = [os.path.join(directory, f"{name}.control"), os.path.join(directory, f"{name}--1.0.sql")]
    with open(files[0], "w") as f:
        f.write("default_version = '1.0'\nrelocatable = true\nsuperuser = true\n")
    with open(files[1], "w") as f:
        f.write("CREATE FUNCTION opaque_digest(bytea, text) RETURNS bytea LANGUAGE c IMMUTABLE STRICT "
                "AS '$libdir/pgcrypto', 'pg_digest';\n")
    try:
        with psycopg.connect(dsn, autocommit=True) as c:
            c.execute(f"CREATE EXTENSION {name}")
        yield name
    finally:
        for path in files:
            os.remove(path)


def test_c_code_of_an_extension_agent19_does_not_know_is_not_run(dsn, unknown_extension):
    with psycopg.connect(dsn, autocommit=True) as c:
        c.execute("CREATE EXTENSION IF NOT EXISTS pgcrypto")
    app = owner(dsn, SETUP)
    r = dry_run_as(app, "SELECT opaque_digest('x', 'md5');\nSELECT digest('x', 'md5');\n")
    unknown, known = r.statements
    assert unknown.ran_in == "skipped", unknown
    assert (f"function public.opaque_digest is C code of extension {unknown_extension}, which agent19 does not "
            "know") in (unknown.untested or ""), unknown
    assert known.ran_in == "transaction" and not known.untested, known  # pgcrypto's C code is known
    r = dry_run_as(app, "CREATE TABLE t (h bytea DEFAULT opaque_digest('x', 'md5'));\nINSERT INTO customers (email) "
                  "VALUES ('b');\n")
    _, insert = r.statements  # code the server runs on its own now leads to it: nothing after it is run
    assert insert.ran_in == "skipped" and "opaque_digest" in (insert.untested or ""), insert
