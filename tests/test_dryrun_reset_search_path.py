"""Review r27b k11: a migration's ``RESET search_path`` (or ``SET search_path TO DEFAULT``, or ``SET search_path =
app, pg_catalog`` as old pg_dump output writes) on a database whose path is ``app, pg_catalog`` FAILED the dry run
("refused: it made the search_path (app, pg_catalog) search schema app before pg_catalog"), though psql applies it.

agent19's sessions search pg_catalog first (:mod:`agent19.db.catalog_first`); its reads between statements run under
``pg_catalog, pg_temp`` whatever the session's path. Such a path is now pinned again as at connect (the same schemas,
pg_catalog first) for the statements after it, in the target's transaction and in the scratch database's replay,
and said in the statement's note: the migration's own names resolve as under psql (``app.t`` is created, ``items``
is ``app.items``)."""

from __future__ import annotations

import psycopg
import pytest
from psycopg.conninfo import conninfo_to_dict

from agent19.db.connection import Database
from agent19.migrate.dryrun.run import dry_run
from agent19.migrate.dryrun.scratch import list_scratch
from agent19.migrate.parse import parse_sql
from tests.conftest import run_each, session_settings
from tests.scratch_dryruns import owner

SETUP = """
CREATE SCHEMA app;
CREATE TABLE app.items (id int PRIMARY KEY, a int NOT NULL);
INSERT INTO app.items SELECT g, g FROM generate_series(1, 100) g;
"""
MIGRATION = """{first};
CREATE TABLE t (id int PRIMARY KEY);
INSERT INTO t SELECT id FROM items;
CREATE FUNCTION t_count() RETURNS bigint LANGUAGE sql AS 'SELECT count(*) FROM t';
SELECT t_count();
"""
RETURNS = {"reset": "RESET search_path", "default": "SET search_path TO DEFAULT",
           "explicit": "SET search_path = app, pg_catalog"}


def _database_path(dsn: str, path: str) -> None:
    with psycopg.connect(dsn, autocommit=True) as c:
        c.execute(f'ALTER DATABASE "{conninfo_to_dict(dsn)["dbname"]}" SET search_path = {path}')


def _dry_run(login: str, sql: str, **settings: object):
    db = Database(session_settings(dsn=login, mode="dry-run", **settings))
    try:
        return dry_run(db, parse_sql(sql))
    finally:
        db.close()


@pytest.fixture
def app(dsn: str) -> str:
    login = owner(dsn, SETUP)
    _database_path(dsn, "app, pg_catalog")
    return login


@pytest.mark.parametrize("first", list(RETURNS.values()), ids=list(RETURNS))
def test_a_migration_back_on_the_databases_path_runs_as_under_psql(app, first):
    migration = MIGRATION.format(first=first)
    with psycopg.connect(app) as c:  # as psql applies it (in one transaction, rolled back here)
        for statement in parse_sql(migration):
            c.execute(statement.sql)
        assert c.execute("SELECT current_schema(), to_regclass('app.t') IS NOT NULL, t_count()").fetchone() == (
            "app", True, 100)
        c.rollback()
    r = _dry_run(app, migration)
    assert r.passed and r.summary.startswith("PASSED"), r.summary
    assert [s.ran_in for s in r.statements] == ["transaction"] * 5, r.statements
    assert not [s for s in r.statements if s.error or s.untested], r.statements
    said = r.statements[0].note or ""
    assert "lists pg_catalog after app" in said and 'set to "app"' in said, said
    create, insert = r.statements[1], r.statements[2]
    assert ("app.t", "AccessExclusiveLock") in {(lk.relation, lk.mode) for lk in create.locks}, create.locks
    assert insert.rows == 100 and "app.items" in {lk.relation for lk in insert.locks}, insert
    assert r.target_unchanged, r.target_differences


def test_the_scratch_databases_replay_resolves_as_the_target(app):
    """A statement that cannot run in a transaction block runs in a scratch database, after the earlier ones are
    replayed there (the RESET included): it finds the table they made in app."""
    r = _dry_run(app, MIGRATION.format(first="RESET search_path") + "CREATE INDEX CONCURRENTLY t_id ON t (id);\n")
    assert r.passed, r.summary
    index = r.statements[-1]
    assert index.ran_in == "scratch" and index.error is None, index
    assert "app.t" in {lk.relation for lk in index.locks}, index.locks
    assert r.scratch is not None and not [n for n in r.scratch.notes if "failed" in n], r.scratch.notes


def test_a_path_the_migration_sets_before_pg_catalog_is_pinned_and_agent19_reads_the_true_catalog(dsn):
    """A schema with a view named like a catalog one, put before pg_catalog by the migration: the statements after
    it run with pg_catalog first, and agent19's reads of the locks they take are not answered by the view."""
    login = owner(dsn, "CREATE SCHEMA shadow2; CREATE VIEW shadow2.pg_locks AS SELECT * FROM pg_catalog.pg_locks "
                       "WHERE false; CREATE TABLE victim (id int);")
    r = _dry_run(login, "SET search_path = shadow2, pg_catalog, public;\nLOCK TABLE victim IN SHARE MODE;\n"
                        "SELECT count(*) FROM pg_locks;\n")
    assert r.passed, r.summary
    pinned, locked, _ = r.statements
    assert "lists pg_catalog after shadow2" in (pinned.note or "") and pinned.error is None, pinned
    assert ("public.victim", "ShareLock") in {(lk.relation, lk.mode) for lk in locked.locks}, locked.locks


def test_a_replayed_reset_cannot_hide_a_cluster_write_in_the_scratch_database(dsn):
    """The replay ahead (a re-observation: the CREATE INDEX's ShareLock is hidden by the ALTER's) replays the RESET,
    then a DO block that creates a role (code the operator allowed), in the scratch database: it must see the write
    on pg_authid, and roll it back, though app.pg_locks (empty) is first on the path the RESET returned to."""
    role = f"k11_{conninfo_to_dict(dsn)['dbname']}"
    run_each(dsn, [SETUP, "CREATE VIEW app.pg_locks AS SELECT * FROM pg_catalog.pg_locks WHERE false"])
    _database_path(dsn, "app, pg_catalog")
    try:
        r = _dry_run(dsn, "ALTER TABLE items ADD COLUMN u int DEFAULT 0;\nRESET search_path;\n"
                          f"DO $$ BEGIN EXECUTE 'CREATE ROLE {role}'; END $$;\nCREATE INDEX items_a ON items (a);\n",
                     allow_unreadable_code=True)
        with psycopg.connect(dsn, autocommit=True) as c:
            made = c.execute("SELECT count(*) FROM pg_roles WHERE rolname = %s", (role,)).fetchone()[0]
    finally:
        with psycopg.connect(dsn, autocommit=True) as c:
            c.execute(f"DROP ROLE IF EXISTS {role}")
    assert made == 0, f"role {role} was created by the dry run's scratch replay"
    assert r.statements[2].ran_in == "skipped" and "wrote pg_authid" in (r.statements[2].note or ""), r.statements[2]
    assert list_scratch(dsn) == []
