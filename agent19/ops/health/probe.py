"""How health checks query the server: never waiting, and saying why when they get no answer.

Every query runs in its own READ ONLY transaction on a session with the short ``lock_timeout`` and
``statement_timeout`` of :class:`~agent19.ops.health.thresholds.HealthThresholds` (500 ms / 3 s by
default), whatever agent19's own timeouts are. A check whose query cannot get its lock in time, or runs
out of time, becomes ``unknown`` with the reason — who holds the lock it waited for — and the other
checks still run. (``pg_relation_size`` and reading a sequence lock the relation: an
AccessExclusiveLock held on a table, or queued for it, stops them; catalog and statistics views do not.)
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from typing import Any

import psycopg
from psycopg import errors

from agent19.config import AccessMode
from agent19.db.connection import Database
from agent19.db.redact import shown_statement
from agent19.ops.health.model import Check
from agent19.ops.health.thresholds import HealthThresholds
from agent19.units import human_duration

Q_FACTS = """
SELECT current_user AS "user", session_user AS login, current_database() AS database, r.rolsuper AS superuser,
       pg_has_role(current_user, 'pg_monitor', 'USAGE') AS monitor,
       pg_has_role(current_user, 'pg_read_all_stats', 'USAGE') AS read_all_stats,
       CASE WHEN to_regprocedure('pg_ls_archive_statusdir()') IS NOT NULL  -- PostgreSQL 12+
            THEN has_function_privilege('pg_ls_archive_statusdir()', 'EXECUTE') ELSE false END AS archive_dir,
       pg_is_in_recovery() AS standby, current_setting('server_version') AS version,
       current_setting('server_version_num')::int AS version_num,
       (SELECT stats_reset FROM pg_stat_database WHERE datname = current_database())::text AS db_stats_reset
  FROM pg_roles r WHERE r.rolname = current_user
"""
Q_BLOCKERS = """
SELECT l.pid, l.mode, l.granted, format('%I.%I', n.nspname, c.relname) AS relation, a.state,
       extract(epoch FROM now() - coalesce(a.xact_start, a.query_start))::float8 AS xact_s,
       left(regexp_replace(a.query, '\\s+', ' ', 'g'), 80) AS query
  FROM pg_locks l JOIN pg_class c ON c.oid = l.relation JOIN pg_namespace n ON n.oid = c.relnamespace
  LEFT JOIN pg_stat_activity a ON a.pid = l.pid
 WHERE l.locktype = 'relation' AND l.pid <> pg_backend_pid()
   AND l.database = (SELECT oid FROM pg_database WHERE datname = current_database())
   AND (l.mode = 'AccessExclusiveLock'
        OR (c.relkind = 'S' AND l.mode IN ('ShareLock', 'ShareRowExclusiveLock', 'ExclusiveLock')))
 ORDER BY l.granted DESC, xact_s DESC NULLS LAST LIMIT 5
"""

MONITOR = "pg_monitor (or pg_read_all_stats)"


@dataclass
class ServerFacts:
    user: str = ""
    login: str = ""
    database: str = ""
    superuser: bool = False
    monitor: bool = False
    read_all_stats: bool = False
    archive_dir: bool = False
    standby: bool = False
    version: str = ""
    version_num: int = 0
    db_stats_reset: str | None = None

    @property
    def privileges(self) -> str:
        return "superuser" if self.superuser else "pg_monitor" if self.monitor else \
            "pg_read_all_stats" if self.read_all_stats else "limited"

    @property
    def acting_as(self) -> str:
        """The role the checks run as, and the login when a setting (SET role) made them differ."""
        return self.user if self.login in ("", self.user) else \
            f"{self.user} (SET role by a setting; the login is {self.login}, which any code run can RESET ROLE to)"

    @property
    def db_window(self) -> str:
        return f"since {self.db_stats_reset}" if self.db_stats_reset else \
            "since the statistics were last reset (never reset: since the cluster started counting)"


class Unanswered(Exception):
    """A check's query got no answer in time (or was refused); the message says why."""

    def __init__(self, message: str, needs: str | None = None) -> None:
        super().__init__(message)
        self.needs = needs


@dataclass
class Probe:
    """The session(s) health checks use; :meth:`rows` runs one query the way the module docstring says."""

    db: Database
    thresholds: HealthThresholds
    facts: ServerFacts = field(default_factory=ServerFacts)
    last_sql: str = ""

    @classmethod
    def open(cls, db: Database, thresholds: HealthThresholds) -> Probe:
        settings = replace(db.settings, dsn=db.dsn, mode=AccessMode.READ_ONLY,
                           statement_timeout_ms=thresholds.statement_timeout_ms,
                           lock_timeout_ms=thresholds.lock_timeout_ms)
        probe = cls(Database(settings), thresholds)
        try:
            probe.facts = ServerFacts(**probe.rows(Q_FACTS)[0])
        except BaseException:
            probe.close()
            raise
        return probe

    def close(self) -> None:
        self.db.close()

    def rows(self, sql: str) -> list[dict[str, Any]]:
        self.last_sql = sql.strip()
        with self.db.read() as conn:
            return conn.execute(sql.encode()).fetchall()

    def why_unanswered(self, exc: psycopg.Error) -> Unanswered | None:
        """The reason a check's query got no answer, or None for another error."""
        if isinstance(exc, errors.LockNotAvailable):
            return Unanswered(f"no answer within lock_timeout ({self.thresholds.lock_timeout_ms} ms): "
                              f"{self.blockers()}")
        if isinstance(exc, errors.QueryCanceled):
            return Unanswered(f"no answer within statement_timeout ({self.thresholds.statement_timeout_ms} ms)"
                              f"{'; ' + self.blockers() if self._any_blocker() else ''}")
        if isinstance(exc, errors.InsufficientPrivilege):
            return Unanswered(f"refused: {_first_line(exc)}", needs=MONITOR)
        return None

    def _any_blocker(self) -> bool:
        try:
            return bool(self._blocker_rows())
        except psycopg.Error:
            return False

    def _blocker_rows(self) -> list[dict[str, Any]]:
        with self.db.read() as conn:
            return conn.execute(Q_BLOCKERS.encode()).fetchall()

    def blockers(self) -> str:
        """Who holds (or queues for) the locks that stop this session's reads."""
        try:
            rows = self._blocker_rows()
        except psycopg.Error as exc:
            return f"could not read pg_locks: {_first_line(exc)}"
        if not rows:
            return "the lock holder is gone (or in another database)"
        parts = []
        for r in rows:
            what = "holding" if r["granted"] else "queued for"
            where = f"{r['state']}, transaction open {human_duration(r['xact_s'])}" if r["xact_s"] is not None \
                else (r["state"] or "state hidden")
            query = f": {shown_statement(r['query'], 200)}" if r["query"] and r["query"] != "<insufficient privilege>" \
                else ""
            parts.append(f"pid {r['pid']} {what} {r['mode']} on {r['relation']} ({where}{query})")
        return "blocked by " + "; ".join(parts)


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__


CheckFn = Callable[[Probe], list[Check]]


def run_check(probe: Probe, names: tuple[str, ...], fn: CheckFn) -> list[Check]:
    """Run one check function; on no answer, each check it makes is ``unknown`` with the reason."""
    start = time.monotonic()
    try:
        out = fn(probe)
    except psycopg.Error as exc:
        why = probe.why_unanswered(exc)
        if why is not None:
            out = [Check(check=n, status="unknown", message=str(why), evidence=probe.last_sql, needs=why.needs,
                         untrusted_data=True) for n in names]
        else:
            out = [Check(check=n, status="unknown", message=f"the query failed: {probe.db.redact(_first_line(exc))}",
                         evidence=probe.last_sql) for n in names]
    ms = (time.monotonic() - start) * 1000
    for c in out:
        c.duration_ms = round(ms / max(len(out), 1), 1)
    return out
