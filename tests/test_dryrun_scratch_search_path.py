"""Hostile review r27b-k13: statements the dry run runs in a scratch database (CREATE INDEX CONCURRENTLY, VACUUM…)
lost the target database's ``ALTER DATABASE … SET search_path`` (a row of pg_db_role_setting for the target's
database only): an unqualified name resolved on ``"$user", public`` there, and a correct migration FAILED with
"relation does not exist"."""

from __future__ import annotations

import psycopg
import pytest
from psycopg.conninfo import conninfo_to_dict

from agent19.db.connection import Database
from agent19.migrate.dryrun.run import dry_run
from agent19.migrate.parse import parse_sql
from tests.conftest import session_settings
from tests.scratch_dryruns import owner

SETUP = """
CREATE SCHEMA app;
CREATE TABLE app.items (id int PRIMARY KEY, name text);
INSERT INTO app.items SELECT g, 'n' || g FROM generate_series(1, 100) g;
"""


@pytest.mark.parametrize("path", ["app, pg_catalog", "app"])
def test_a_scratch_database_resolves_names_on_the_targets_path(dsn, path):
    login = owner(dsn, SETUP)
    with psycopg.connect(dsn, autocommit=True) as c:
        c.execute(f'ALTER DATABASE "{conninfo_to_dict(dsn)["dbname"]}" SET search_path = {path}')
    migration = "CREATE INDEX CONCURRENTLY items_name ON items (name);\nVACUUM items;\n"
    with psycopg.connect(login, autocommit=True) as c:  # the target resolves them so
        for statement in parse_sql(migration):
            c.execute(statement.sql)
        c.execute("DROP INDEX items_name")
    for copy in ("schema", "template"):
        db = Database(session_settings(dsn=login, mode="dry-run"))
        try:
            r = dry_run(db, parse_sql(migration), scratch_copy=copy)
        finally:
            db.close()
        assert r.passed and r.summary.startswith("PASSED"), (copy, r.summary)
        assert [s.ran_in for s in r.statements] == ["scratch", "scratch"], r.statements
        assert any(lock.relation == "app.items" for lock in r.statements[0].locks), r.statements[0].locks
