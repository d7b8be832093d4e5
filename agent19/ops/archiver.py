"""The WAL archiver's state, read once, for anything that judges archiving (backup status, health).

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
