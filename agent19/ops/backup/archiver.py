"""The WAL archiver's state, read once, and the one judgement of it (:func:`judge`) for backup status and
health alike.

Reads ``archive_mode``/``archive_command``/``archive_library``, ``pg_stat_archiver`` and the number
of segments waiting to be archived (``.ready`` files, ``pg_ls_archive_statusdir()``: superuser or
``pg_monitor``; ``None`` without it). Only reads; works on a primary and a standby.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

import psycopg
from psycopg.rows import dict_row
from pydantic import BaseModel, Field

from agent19.ops.health.model import Status, grade
from agent19.ops.health.thresholds import HealthThresholds
from agent19.units import human_duration

Q_ARCHIVER = """
SELECT current_setting('archive_mode') AS archive_mode,
       current_setting('archive_command') AS archive_command,
       coalesce(current_setting('archive_library', true), '') AS archive_library,
       pg_size_bytes(current_setting('wal_segment_size')) AS wal_segment_bytes,
       s.archived_count, s.last_archived_wal, s.last_archived_time,
       s.failed_count, s.last_failed_wal, s.last_failed_time, s.stats_reset, now() AS now,
       pg_is_in_recovery() AS standby,
       CASE WHEN pg_is_in_recovery() THEN NULL ELSE pg_walfile_name(pg_current_wal_lsn()) END AS current_wal
  FROM pg_stat_archiver s
"""
Q_READY = "SELECT count(*) AS n FROM pg_ls_archive_statusdir() WHERE name LIKE '%.ready'"


class ArchiverStatus(BaseModel):
    archive_mode: str = Field(description="off, on or always")
    archive_command: str = Field(description="'' when unset (and '(disabled)' when archive_mode is off)")
    archive_library: str = ""
    wal_segment_bytes: int
    archived_count: int
    last_archived_wal: str | None
    last_archived_time: datetime | None
    failed_count: int
    last_failed_wal: str | None
    last_failed_time: datetime | None
    stats_reset: datetime | None
    now: datetime
    standby: bool
    current_wal: str | None = Field(description="the WAL segment being written (primary only)")
    ready_count: int | None = Field(description="segments waiting for the archiver; None: needs superuser or "
                                    "pg_monitor (pg_ls_archive_statusdir)")

    @property
    def configured(self) -> bool:
        """archive_mode on and something to archive with."""
        command = self.archive_command.strip()
        return self.archive_mode != "off" and (bool(self.archive_library) or bool(command and command != "(disabled)"))

    @property
    def failing(self) -> bool:
        """The last attempt failed: no success since the last failure."""
        return self.last_failed_time is not None and (
            self.last_archived_time is None or self.last_failed_time > self.last_archived_time)

    def age_s(self, moment: datetime | None) -> float | None:
        return None if moment is None else max(0.0, (self.now - moment).total_seconds())

    def judge(self, limits: HealthThresholds | None = None) -> list[Aspect]:
        return judge(mode=self.archive_mode, configured=self.configured, standby=self.standby, failing=self.failing,
                     failed_count=self.failed_count, last_failed_wal=self.last_failed_wal,
                     failed_age_s=self.age_s(self.last_failed_time), ready=self.ready_count, limits=limits)


def archiver_status(conn: psycopg.Connection[Any]) -> ArchiverStatus:
    """Read the archiver's state through ``conn`` (any row factory)."""
    cur = conn.cursor(row_factory=dict_row)
    row = cur.execute(Q_ARCHIVER).fetchone()
    assert row is not None
    ready: int | None
    try:
        with conn.transaction():
            got = cur.execute(Q_READY).fetchone()
        ready = int(got["n"]) if got else 0
    except psycopg.errors.InsufficientPrivilege:
        ready = None
    return ArchiverStatus(**row, ready_count=ready)


class Aspect(BaseModel):
    """One part of the archiving verdict (``configured``, ``failures``, ``ready``)."""

    aspect: str
    status: Status
    message: str
    value: str | int | None = None


def judge(*, mode: str, configured: bool, standby: bool, failing: bool, failed_count: int,
          last_failed_wal: str | None, failed_age_s: float | None, ready: int | None,
          limits: HealthThresholds | None = None) -> list[Aspect]:
    """The one verdict on WAL archiving, for ``health`` (its ``archiving`` check: the worst aspect) and
    ``backup status`` (one check per aspect) alike.

    * archive_mode off: **warning** — nothing is broken, but point-in-time recovery is impossible
      (recovery reaches only the last base backup): someone should have decided that;
    * a standby with archive_mode on (not always): ok — the primary archives;
    * archive_mode on without archive_command/archive_library: **critical** (WAL piles up in pg_wal);
    * the last attempt failed, no success since: **critical**, however long ago;
    * a failure within ``archive_failure_window_s`` (1 h), succeeded since: **warning** (a flapping
      destination; critical would page someone for an archiver that works now);
    * segments waiting: warning ≥ 10, critical ≥ 15 (check_postgres); **unknown** when this role
      cannot list them (superuser or pg_monitor).
    """
    t = limits or HealthThresholds()
    if mode == "off":
        return [Aspect(aspect="configured", status="warning", value="archive_mode=off",
                       message="archive_mode is off: no WAL archive, so point-in-time recovery is impossible "
                               "(recovery reaches only the last base backup)")]
    if standby and mode != "always":
        return [Aspect(aspect="configured", status="ok", value=f"archive_mode={mode}",
                       message="this standby does not archive (archive_mode is not always): its primary does")]
    out = [Aspect(aspect="configured", status="ok" if configured else "critical", value=f"archive_mode={mode}",
                  message=f"archive_mode={mode}" if configured else f"archive_mode is {mode} but no archive_command or "
                  "archive_library is set: nothing is archived and WAL piles up in pg_wal")]
    window = human_duration(t.archive_failure_window_s)
    if failing:
        out.append(Aspect(aspect="failures", status="critical", value=failed_count,
                          message=f"archiving fails: {failed_count} failure(s), {last_failed_wal} failed "
                                  f"{human_duration(failed_age_s or 0)} ago, no success since"))
    elif failed_age_s is not None and failed_age_s <= t.archive_failure_window_s:
        out.append(Aspect(aspect="failures", status="warning", value=failed_count,
                          message=f"archiving {last_failed_wal} failed {human_duration(failed_age_s)} ago "
                                  f"({failed_count} failure(s)); it has succeeded since"))
    else:
        out.append(Aspect(aspect="failures", status="ok", value=failed_count,
                          message=f"no archiving failure in the last {window}"))
    if ready is None:
        out.append(Aspect(aspect="ready", status="unknown", message="segments waiting to be archived: unknown - "
                          "needs superuser or pg_monitor (pg_ls_archive_statusdir)"))
    else:
        out.append(Aspect(aspect="ready", status=grade(ready, t.archive_ready_warning, t.archive_ready_critical),
                          value=ready, message=f"{ready} WAL segment(s) waiting to be archived"))
    return out
