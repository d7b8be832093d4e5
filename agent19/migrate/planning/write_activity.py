"""How much each table is written: insert/update/delete rates from ``pg_stat_user_tables``.

Two ways to measure, and the result always says which one it used:

* a **sampling window** (``sample_seconds > 0``): the counters are read twice, ``sample_seconds``
  apart, and the rates are the deltas over that window — what the table is doing now;
* **since the statistics were reset** (``sample_seconds = 0``, no waiting): the counters divided by
  the time since ``pg_stat_database.stats_reset``, or since the server started when they were
  never reset (PostgreSQL 15 keeps counters across clean restarts, so that window may understate
  how long they have been counting; the result says so).

Escalations (a new index on a write-heavy table) and the index write cost read these figures. The columns
UPDATEs set come from pg_stat_statements; other roles' UPDATEs a login without ``pg_read_all_stats`` cannot
read are said in ``updates_hidden`` (:mod:`agent19.db.hidden_statements`), and so are visible statements that
wrote through a function, a DO or a CALL (:mod:`agent19.migrate.planning.opaque_writes`), so "no UPDATE sets it" is
not concluded from what cannot be read.
"""

from __future__ import annotations

import time
from typing import Any

import pglast
import psycopg
from psycopg import sql
from pydantic import BaseModel, Field

from agent19.db.hidden_statements import hidden_statements, statements_view
from agent19.migrate.planning.opaque_writes import opaque_writes

QUALIFIED_SQL = True  # its statements name functions, operators, types, catalog relations pg_catalog.-qualified

WRITE_HEAVY_PER_SECOND = 10.0
"""Rows written per second (inserts + updates + deletes) from which a table counts as write-heavy."""

EQ = "OPERATOR(pg_catalog.=)"  # the operators the unqualified text chose (same argument types): same rows
TABLE_NAME = "pg_catalog.format('%I.%I', {}, {})"
Q_COUNTERS = f"""
SELECT {TABLE_NAME.format('schemaname', 'relname')} AS table_name, n_tup_ins AS ins, n_tup_upd AS upd,
       n_tup_hot_upd AS hot, n_tup_del AS del, pg_catalog.clock_timestamp() AS at,
       (SELECT stats_reset FROM pg_catalog.pg_stat_database
         WHERE datname {EQ} pg_catalog.current_database()) AS reset,
       pg_catalog.pg_postmaster_start_time() AS started
  FROM pg_catalog.pg_stat_user_tables
"""
Q_CLEAR_SNAPSHOT = "SELECT pg_catalog.pg_stat_clear_snapshot()"
Q_UPDATES = (f"SELECT query, calls FROM {{}} WHERE dbid {EQ} (SELECT oid FROM pg_catalog.pg_database WHERE datname "
             f"{EQ} pg_catalog.current_database()) AND query OPERATOR(pg_catalog.~*) '^\\s*(with\\s.*)?update\\s'")
"""The visible UPDATE statements of ``{}`` (pg_stat_statements, schema-qualified and quoted)."""
Q_WIDTHS = (f"SELECT {TABLE_NAME.format('schemaname', 'tablename')} AS t, attname, avg_width FROM pg_catalog.pg_stats "
            "WHERE schemaname OPERATOR(pg_catalog.<>) ALL ('{pg_catalog,information_schema}'::pg_catalog.name[])")
Q_UNLOGGED = (f"SELECT {TABLE_NAME.format('n.nspname', 'c.relname')} AS t FROM pg_catalog.pg_class c "
              f"JOIN pg_catalog.pg_namespace n ON n.oid {EQ} c.relnamespace WHERE c.relpersistence {EQ} 'u' "
              f"AND c.relkind {EQ} ANY ('{{r,p}}'::pg_catalog.\"char\"[])")


class TableActivity(BaseModel):
    """Writes to one table over a stated window."""

    table: str = Field(description="schema.table")
    inserts: int
    updates: int
    hot_updates: int = Field(description="updates that changed no indexed column and stayed on the page (HOT)")
    deletes: int
    window_seconds: float
    window: str = Field(description="how the window was measured, in words")
    updated_columns: dict[str, int] | None = Field(
        default=None, description="column -> calls of the UPDATE statements that set it (pg_stat_statements); "
        "None when pg_stat_statements cannot be read")
    updates_hidden: str | None = Field(
        default=None, description="other roles' statements this login cannot read in pg_stat_statements, and what "
        "is needed, and statements that wrote through a function (DO, CALL, MERGE): which columns their UPDATEs set "
        "is unknown (None: nothing hidden)")
    column_widths: dict[str, int] = Field(default={}, description="column -> average width in bytes (pg_stats)")

    def _rate(self, count: int) -> float:
        return count / self.window_seconds if self.window_seconds else 0.0

    @property
    def writes_per_second(self) -> float:
        return self._rate(self.inserts + self.updates + self.deletes)

    @property
    def updates_per_second(self) -> float:
        return self._rate(self.updates)

    @property
    def hot_updates_per_second(self) -> float:
        return self._rate(self.hot_updates)

    @property
    def inserts_per_second(self) -> float:
        return self._rate(self.inserts)

    @property
    def write_heavy(self) -> bool:
        return self.writes_per_second >= WRITE_HEAVY_PER_SECOND

    def describe(self) -> str:
        hot = f", {self.hot_updates:,} of them HOT" if self.updates else ""
        return (f"{self.table}: {self.inserts_per_second:,.1f} inserts/s, {self.updates_per_second:,.1f} updates/s"
                f" ({self.inserts:,} inserts, {self.updates:,} updates{hot}, {self.deletes:,} deletes "
                f"{self.window})")


def _read(conn: Any) -> dict[str, dict[str, Any]]:
    return {r["table_name"]: r for r in conn.execute(Q_COUNTERS).fetchall()}


def _updated_columns(conn: Any) -> tuple[dict[str, dict[str, int]] | None, str | None, str | None]:
    """table → column → UPDATE calls setting it, from pg_stat_statements (None when it cannot be read), and what
    this login cannot see there (other roles' statements, :mod:`agent19.db.hidden_statements`): those that wrote,
    and all of them (for unlogged tables, whose UPDATEs write no WAL); both also name the visible statements that
    wrote through a function (:mod:`agent19.migrate.planning.opaque_writes`).

    The statement texts are data from the server: they are only parsed, never run."""
    found = statements_view(lambda q: conn.execute(q).fetchall())
    if found is None:
        return None, None, None
    view = sql.SQL(found)  # type: ignore[arg-type]  # quoted by statements_view
    try:
        with conn.transaction():
            rows = conn.execute(sql.SQL(Q_UPDATES).format(view)).fetchall()  # type: ignore[arg-type]
            hidden = [hidden_statements(lambda q: conn.execute(q).fetchall(), view.as_string(conn),
                                        "which columns other roles' UPDATEs set", writes_only=w) for w in (True, False)]
            upserts, opaque = opaque_writes(conn, view.as_string(conn))
    except psycopg.Error:
        return None, None, None
    out: dict[str, dict[str, int]] = {}
    for r in rows:
        try:
            stmts = pglast.parse_sql(r["query"])
        except pglast.parser.ParseError:
            continue
        for raw in stmts:
            stmt = raw.stmt
            if type(stmt).__name__ != "UpdateStmt":
                continue
            rel = stmt.relation
            name = f"{rel.schemaname or 'public'}.{rel.relname}"
            cols = out.setdefault(name, {})
            for target in stmt.targetList or ():
                cols[target.name] = cols.get(target.name, 0) + int(r["calls"])
    for name, cols in upserts.items():
        for c, n in cols.items():
            out.setdefault(name, {})[c] = out.get(name, {}).get(c, 0) + n
    if opaque:  # a function's UPDATE may set any table's columns, logged or not
        hidden = ["; ".join(h for h in (x, opaque) if h) for x in hidden]
    return out, *hidden


def _widths(conn: Any) -> dict[str, dict[str, int]]:
    out: dict[str, dict[str, int]] = {}
    for r in conn.execute(Q_WIDTHS).fetchall():
        out.setdefault(r["t"], {})[r["attname"]] = int(r["avg_width"])
    return out


def table_activity(conn: Any, sample_seconds: float = 0.0) -> dict[str, TableActivity]:
    """Write activity of every user table, keyed by ``schema.table``, with the columns UPDATEs set."""
    found = _counters(conn, sample_seconds)
    (updated, hidden_writes, hidden_any), widths = _updated_columns(conn), _widths(conn)
    unlogged = {r["t"] for r in conn.execute(Q_UNLOGGED).fetchall()} if hidden_any else set()
    for name, act in found.items():
        act.updated_columns = None if updated is None else updated.get(name, {})
        act.updates_hidden = hidden_any if name in unlogged else hidden_writes
        act.column_widths = widths.get(name, {})
    return found


def _counters(conn: Any, sample_seconds: float) -> dict[str, TableActivity]:
    """Write activity of every user table, keyed by ``schema.table``.

    ``conn`` must not hold a snapshot of the statistics across the window: it is used in autocommit
    or with a statement per transaction (``stats_fetch_consistency`` is cleared between reads).
    """
    first = _read(conn)
    if sample_seconds > 0:
        time.sleep(sample_seconds)
        conn.execute(Q_CLEAR_SNAPSHOT)
        second = _read(conn)
        out = {}
        for name, b in second.items():
            a = first.get(name)
            if a is None:
                continue
            secs = (b["at"] - a["at"]).total_seconds()
            out[name] = TableActivity(
                table=name, inserts=b["ins"] - a["ins"], updates=b["upd"] - a["upd"], hot_updates=b["hot"] - a["hot"],
                deletes=b["del"] - a["del"], window_seconds=secs, window=f"over a {secs:.1f} s sampling window")
        return out
    out = {}
    for name, r in first.items():
        since, what = (r["reset"], "the statistics reset") if r["reset"] else (
            r["started"], "the server started (statistics never reset; counters may be older)")
        secs = max((r["at"] - since).total_seconds(), 0.001)
        out[name] = TableActivity(
            table=name, inserts=r["ins"], updates=r["upd"], hot_updates=r["hot"], deletes=r["del"],
            window_seconds=secs, window=f"in the {secs:,.0f} s since {what} at {since.isoformat(timespec='seconds')}")
    return out
