"""Shared by the tests of what a trial may run: the application's live session (same role as the login, must
survive), a dry run as that login, and the check that a statement was not run."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import psycopg

from agent19.db.connection import Database
from agent19.migrate.dryrun.run import dry_run
from agent19.migrate.parse import parse_sql
from tests.conftest import session_settings


def application_session(login: str, name: str) -> Iterator[psycopg.Connection[Any]]:
    """For a fixture: a session of ``login``'s role named ``name`` in pg_stat_activity, closed after."""
    conn = psycopg.connect(login, application_name=name, autocommit=True)
    yield conn
    conn.close()


def dry_run_as(login: str, sql: str, setup: str = "", **settings: Any) -> Any:
    """``setup`` run as ``login`` (committed), then a dry run of ``sql`` as ``login`` (``settings`` on top)."""
    if setup:
        with psycopg.connect(login, autocommit=True) as c:
            c.execute(setup)
    db = Database(session_settings(dsn=login, mode="dry-run", **settings))
    try:
        return dry_run(db, parse_sql(sql))
    finally:
        db.close()


def not_run(res: Any, *words: str) -> None:
    """Statement result ``res`` was not run, and what it says (untested reason or error) has every one of ``words``."""
    assert res.ran_in == "skipped", res
    said = (res.untested or "") + (res.error.message if res.error else "")
    assert all(w in said for w in words), said
