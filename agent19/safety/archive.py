"""Archive-before-drop: copy a table's rows aside, check the copy, only then destroy.

The archive is ``<table>_archive_<yyyymmdd>`` in the same schema (``_2``, ``_3``… when taken),
made with ``CREATE TABLE … AS TABLE …`` in the same transaction as the destructive statement,
after the table is locked, so no row can slip in between; the row counts of the table and the copy
must be equal or the whole transaction is rolled back. ``pg_dump -t`` is offered as the
off-server alternative.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from psycopg import sql
from pydantic import BaseModel, Field

from agent19.db import rls
from agent19.errors import Agent19Error

MAX_IDENT = 63
QUALIFIED_SQL = True
"""Every statement here names its functions, operators, types and catalog relations ``pg_catalog.``-qualified: an
overload the login owns is not what it calls (tests/test_qualified_sql.py)."""
Q_TAKEN = """SELECT c.relname FROM pg_catalog.pg_class c
  JOIN pg_catalog.pg_namespace n ON n.oid OPERATOR(pg_catalog.=) c.relnamespace
 WHERE n.nspname OPERATOR(pg_catalog.=) %s AND c.relname OPERATOR(pg_catalog.~~) %s"""
# psycopg.sql templates: {} a table's quoted name
Q_COPY = "CREATE TABLE {} AS TABLE {}"
Q_COUNT = "SELECT pg_catalog.count(*) AS n FROM {}"


class ArchivePlan(BaseModel):
    source: str = Field(description="schema.table to archive")
    archive: str = Field(description="schema.table of the copy")
    sql: str
    pg_dump: str = Field(description="the off-server alternative: a dump of the table to a file")


class ArchiveResult(BaseModel):
    source: str
    archive: str
    source_rows: int
    archive_rows: int
    verified: bool


class ArchiveMismatch(Agent19Error):
    """The copy does not have the table's row count: nothing was dropped."""


def _split(qualified: str) -> tuple[str, str]:
    schema, _, name = qualified.partition(".")
    return schema, name


def archive_name(table: str, taken: set[str], today: datetime | None = None) -> str:
    day = (today or datetime.now(UTC)).strftime("%Y%m%d")
    suffix = f"_archive_{day}"
    base = table.encode()[: MAX_IDENT - len(suffix) - 3].decode(errors="ignore") + suffix
    name, n = base, 2
    while name in taken:
        name, n = f"{base}_{n}", n + 1
    return name


def plan(conn: Any, tables: list[str], database: str) -> list[ArchivePlan]:
    """An archive plan per schema-qualified table, with names free at this moment."""
    plans = []
    for qualified in tables:
        schema, table = _split(qualified)
        taken = {r["relname"] for r in conn.execute(Q_TAKEN, (schema, table[:40] + "%")).fetchall()}
        name = archive_name(table, taken)
        statement = sql.SQL(Q_COPY).format(
            sql.Identifier(schema, name), sql.Identifier(schema, table)).as_string(None)
        dump = f"pg_dump --table='{schema}.{table}' --format=custom --file='{table}_{name[-8:]}.dump' '{database}'"
        plans.append(ArchivePlan(source=qualified, archive=f"{schema}.{name}", sql=statement, pg_dump=dump))
    return plans


def _count(conn: Any, qualified: str) -> int:
    return conn.execute(sql.SQL(Q_COUNT).format(sql.Identifier(*_split(qualified)))).fetchone()[
        "n"]


def run(conn: Any, plans: list[ArchivePlan]) -> list[ArchiveResult]:
    """Make each archive and verify its row count (inside the caller's transaction). The copy and the counts read
    with ``row_security = off``: a table a policy filters for this login errors instead of a partial copy passing
    as "verified" (:func:`agent19.safety.assess.assess` refuses such a table before)."""
    results = []
    for p in plans:
        with rls.every_row(conn):
            conn.execute(sql.SQL(Q_COPY).format(
                sql.Identifier(*_split(p.archive)), sql.Identifier(*_split(p.source))))
            source, copy = _count(conn, p.source), _count(conn, p.archive)
        if source != copy:
            raise ArchiveMismatch(f"archive {p.archive} has {copy} rows but {p.source} has {source}",
                                  "nothing was changed; look for concurrent writes and retry")
        results.append(ArchiveResult(source=p.source, archive=p.archive, source_rows=source, archive_rows=copy,
                                     verified=True))
    return results
