"""Before its transaction, a dry run reads the code its statements can reach (the closure of
:mod:`agent19.safety.closure`, for :func:`agent19.migrate.dryrun.cluster_guard.screen`) in one round trip,
whatever they name and however deep the code goes."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import psycopg

from agent19.db.connection import Database
from agent19.migrate.dryrun.run import dry_run
from agent19.migrate.parse import parse_sql
from tests.conftest import session_settings
from tests.test_dryrun_dump_cache import _round_trips, traced  # noqa: F401 — the fixture, used by name

MIGRATION = """ALTER TABLE t ADD COLUMN w int DEFAULT screen_one();
CREATE INDEX t_w ON t (w);
SELECT screen_two() FROM u;
"""
REMOTE = "ALTER TABLE t ADD COLUMN w int DEFAULT screen_remote();"


def _setup(dsn: str) -> None:
    with psycopg.connect(dsn, autocommit=True) as c:
        c.execute("CREATE TABLE t (id int PRIMARY KEY, a int NOT NULL); CREATE TABLE u (id int)")
        c.execute("CREATE FUNCTION screen_one() RETURNS int LANGUAGE sql AS 'SELECT 1'")
        c.execute("CREATE FUNCTION screen_two() RETURNS int LANGUAGE sql AS 'SELECT 2'")
        # a function that names another, whose body reaches another server: found by following the first
        c.execute("CREATE FUNCTION screen_hop() RETURNS int LANGUAGE plpgsql AS "
                  "$$BEGIN PERFORM dblink_exec('host=elsewhere', 'DELETE FROM x'); RETURN 1; END$$")
        c.execute("CREATE FUNCTION screen_remote() RETURNS int LANGUAGE plpgsql AS "
                  "$$BEGIN RETURN screen_hop(); END$$")


def _dry_run(dsn: str, sql: str) -> Any:
    db = Database(session_settings(dsn=dsn, mode="dry-run"))
    try:
        return dry_run(db, parse_sql(sql))
    finally:
        db.close()


def _before_begin(traces: list[Path]) -> list[list[str]]:
    """The dry run's own session's round trips between its catalog snapshot and BEGIN."""
    trips = next(t for t in map(_round_trips, traces) if any(m == 'Query\t "BEGIN"' for trip in t for m in trip))
    snap = next(i for i, t in enumerate(trips) if any("pg_available_extensions" in m for m in t))
    begin = next(i for i, t in enumerate(trips) if any(m == 'Query\t "BEGIN"' for m in t))
    return trips[snap + 1:begin]


def test_the_names_the_statements_use_are_read_in_one_round_trip(dsn, traced):  # noqa: F811
    _setup(dsn)
    result = _dry_run(dsn, MIGRATION)
    assert result.passed and result.target_unchanged, result.summary
    between = _before_begin(traced)
    assert len(between) == 1, between  # functions, operators and what depends on them, for all statements
    sent = " ".join(between[0])
    assert "pg_proc" in sent and "pg_depend" in sent and "pg_rewrite" in sent, sent


def test_a_name_found_on_the_way_is_still_followed(dsn, traced):  # noqa: F811
    """Names met in a function's body are followed in the same read: the escape two calls deep is refused."""
    _setup(dsn)
    result = _dry_run(dsn, REMOTE)
    assert not result.passed and result.statements[0].ran_in == "skipped", result.summary
    assert "screen_hop uses dblink" in (result.statements[0].note or ""), result.statements[0]
    assert len(_before_begin(traced)) == 1  # the whole closure at once
