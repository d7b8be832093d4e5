"""The workload: the top statements of pg_stat_statements, weighted for the advisor."""

from __future__ import annotations

from typing import Any, Literal

import psycopg
from pydantic import BaseModel

from agent19.db.connection import Database
from agent19.db.hidden_statements import hidden_statements, statements_view
from agent19.db.redact import redact_value
from agent19.errors import InputError

OrderBy = Literal["total_time", "mean_time", "calls"]


class WorkloadQuery(BaseModel):
    sql: str
    calls: int
    mean_ms: float
    total_ms: float

    @property
    def weight(self) -> float:
        """calls × mean time: the time the statement costs the server in total."""
        return max(self.calls * self.mean_ms, 1e-3)


Q_CHECK = """
SELECT (SELECT installed_version FROM pg_available_extensions WHERE name = 'pg_stat_statements') AS installed,
       EXISTS (SELECT FROM pg_available_extensions WHERE name = 'pg_stat_statements') AS available,
       (SELECT 'pg_stat_statements' = ANY(string_to_array(replace(setting, ' ', ''), ',')) FROM pg_settings
         WHERE name = 'shared_preload_libraries') AS preloaded
"""  # preloaded is NULL for a login without pg_read_all_settings: then reading the view tells
_COLUMNS = {"total_time": "total_exec_time", "mean_time": "mean_exec_time", "calls": "calls"}


def top_queries(db: Database, order_by: OrderBy = "total_time", limit: int = 20) -> list[WorkloadQuery]:
    with db.read() as conn:
        row = conn.execute(Q_CHECK).fetchone()
        assert row is not None
        if not row["available"]:
            raise InputError("pg_stat_statements is not installed on this server",
                             "install PostgreSQL's contrib package (the embedded server has none)")
        if row["preloaded"] is False:
            raise _not_preloaded()
        if not row["installed"]:
            raise InputError("the pg_stat_statements extension is not created in this database",
                             "run CREATE EXTENSION pg_stat_statements (a DBA, once per database)")
        try:
            rows = _top(conn, order_by, limit)
        except psycopg.errors.ObjectNotInPrerequisiteState:  # "must be loaded via shared_preload_libraries"
            raise _not_preloaded() from None
    return [WorkloadQuery(sql=redact_value(r["query"]), calls=r["calls"], mean_ms=r["mean_ms"], total_ms=r["total_ms"])
            for r in rows]


def hidden_workload(db: Database) -> str | None:
    """Other roles' statements this login cannot read (their text hidden): left out of the workload."""
    with db.read() as conn:
        rows = lambda q: conn.execute(q).fetchall()  # noqa: E731
        view = statements_view(rows)
        return None if view is None else hidden_statements(
            rows, view, "other roles' statements are not in the workload advised on")


def _not_preloaded() -> InputError:
    return InputError("pg_stat_statements is not in shared_preload_libraries",
                      "add it to shared_preload_libraries, restart, then CREATE EXTENSION pg_stat_statements")


def _top(conn: Any, order_by: OrderBy, limit: int) -> list[dict[str, Any]]:
    view = statements_view(lambda q: conn.execute(q).fetchall())
    if view is None:  # dropped since Q_CHECK read it installed
        raise InputError("the pg_stat_statements extension is not created in this database",
                         "run CREATE EXTENSION pg_stat_statements (a DBA, once per database)")
    rows: list[dict[str, Any]] = conn.execute(
        f"""SELECT query, calls, mean_exec_time AS mean_ms, total_exec_time AS total_ms
              FROM {view}
             WHERE dbid = (SELECT oid FROM pg_database WHERE datname = current_database())
               AND toplevel AND query ~* '^\\s*(select|with|update|delete)\\s'
               AND query !~* '\\mpg_[a-z_]+|hypopg|information_schema'  -- catalog reads: agent19's own, monitoring
             ORDER BY {_COLUMNS[order_by]} DESC LIMIT %s""",
        (limit,),
    ).fetchall()
    return rows
