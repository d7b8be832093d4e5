"""Progress while one statement runs: elapsed time, and what the server says of it in ``pg_stat_progress_*``.

A dry run used to report progress only between statements, so one long ``CREATE INDEX`` or table
rewrite looked like a hang. :func:`run_reporting` runs the statement in a helper thread and, while it
runs, reports every ``interval`` seconds from the caller's thread (the progress callback of the MCP
server must be called from the thread the tool runs in): the elapsed time and, for commands the
server reports progress of, the command, its phase and its blocks/tuples/bytes done of total, read
by another session by the statement's backend pid:

================================  =====================================  ==========
view                              commands                               from
================================  =====================================  ==========
``pg_stat_progress_create_index``  CREATE INDEX [CONCURRENTLY], REINDEX    PG 12
``pg_stat_progress_cluster``       CLUSTER, VACUUM FULL                    PG 12
``pg_stat_progress_vacuum``        VACUUM                                  PG 9.6
``pg_stat_progress_analyze``       ANALYZE                                 PG 13
``pg_stat_progress_copy``          COPY                                    PG 14
================================  =====================================  ==========

The reading session is opened only once a statement has run for ``interval`` seconds, so a fast
statement costs a thread start and nothing on the server. A login that may not see the statement's
backend (another role without ``pg_read_all_stats``) still gets the elapsed time.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, TypeVar

import psycopg

from agent19.db import catalog_first
from agent19.db.catalog import EQ

log = logging.getLogger(__name__)

Progress = Callable[[float, float | None, str | None], None]
T = TypeVar("T")
QUALIFIED_SQL = True  # its statements name functions, operators, types, catalog relations pg_catalog.-qualified

# (first major version, one SELECT returning command, phase, done, total, unit for the backend %(pid)s)
_GT0 = "OPERATOR(pg_catalog.>) 0"
_VIEWS: tuple[tuple[int, str], ...] = (
    (12, f"""SELECT command, phase, CASE WHEN blocks_total {_GT0} THEN blocks_done ELSE tuples_done END,
                    CASE WHEN blocks_total {_GT0} THEN blocks_total ELSE tuples_total END,
                    CASE WHEN blocks_total {_GT0} THEN 'blocks' ELSE 'tuples' END
               FROM pg_catalog.pg_stat_progress_create_index WHERE pid {EQ} %(pid)s"""),
    (12, f"""SELECT command, phase, heap_blks_scanned, heap_blks_total, 'blocks'
               FROM pg_catalog.pg_stat_progress_cluster WHERE pid {EQ} %(pid)s"""),
    (10, f"""SELECT 'VACUUM', phase, heap_blks_scanned, heap_blks_total, 'blocks'
               FROM pg_catalog.pg_stat_progress_vacuum WHERE pid {EQ} %(pid)s"""),
    (13, f"""SELECT 'ANALYZE', phase, sample_blks_scanned, sample_blks_total, 'blocks'
               FROM pg_catalog.pg_stat_progress_analyze WHERE pid {EQ} %(pid)s"""),
    (14, f"""SELECT command, type, CASE WHEN bytes_total {_GT0} THEN bytes_processed ELSE tuples_processed END,
                    CASE WHEN bytes_total OPERATOR(pg_catalog.=) 0 THEN NULL ELSE bytes_total END,
                    CASE WHEN bytes_total {_GT0} THEN 'bytes' ELSE 'rows' END
               FROM pg_catalog.pg_stat_progress_copy WHERE pid {EQ} %(pid)s"""),
)


def progress_query(server_version: int) -> str:
    """One query over every ``pg_stat_progress_*`` view this server has, for one backend pid."""
    major = server_version // 10000
    return "\nUNION ALL\n".join(q for since, q in _VIEWS if major >= since)


@dataclass
class ServerProgress:
    """What the server reports of a running command."""

    command: str
    phase: str
    done: int | None
    total: int | None
    unit: str

    @property
    def share(self) -> float | None:
        return self.done / self.total if self.done is not None and self.total else None

    def __str__(self) -> str:
        text = f"{self.command.lower()}: {self.phase}" if self.phase else self.command.lower()
        if self.done is not None and self.total:
            text += f", {self.unit} {self.done:,}/{self.total:,} ({self.share:.0%})"
        elif self.done:
            text += f", {self.done:,} {self.unit}"
        return text


def read_progress(conn: psycopg.Connection[Any], pid: int) -> ServerProgress | None:
    """The server's progress report of backend ``pid``, or None when it reports none (or is not visible)."""
    row = conn.execute(progress_query(conn.info.server_version), {"pid": pid}).fetchone()  # type: ignore[arg-type]
    if row is None:
        return None
    values = list(row.values()) if isinstance(row, dict) else list(row)
    command, phase, done, total, unit = values
    return ServerProgress(command=str(command or ""), phase=str(phase or ""),
                          done=None if done is None else int(done), total=None if total is None else int(total),
                          unit=str(unit))


class _Reader:
    """The session that reads ``pg_stat_progress_*``, opened at the first report."""

    def __init__(self, dsn: str) -> None:
        self.dsn = dsn
        self.conn: psycopg.Connection[Any] | None = None
        self.broken = False

    def read(self, pid: int) -> ServerProgress | None:
        if self.broken:
            return None
        try:
            if self.conn is None:
                self.conn = catalog_first.connect(self.dsn, autocommit=True, connect_timeout=5,
                                            application_name="agent19 progress",
                                            options="-c statement_timeout=5000")
            return read_progress(self.conn, pid)
        except psycopg.Error as exc:  # progress is a courtesy: the statement goes on, reported by elapsed time
            log.debug("no server progress for backend %s: %s", pid, exc)
            self.broken = True
            return None

    def close(self) -> None:
        if self.conn is not None:
            self.conn.close()


def run_reporting(
    work: Callable[[], T], *, conn: psycopg.Connection[Any], dsn: str, progress: Progress | None, done: float,
    total: float | None, label: str, interval: float = 1.0,
) -> T:
    """Run ``work`` — which runs a statement on ``conn`` — and, while it runs, call ``progress`` every
    ``interval`` seconds with ``done`` (plus the share of this statement the server reports done, when it
    does), ``total`` and ``label`` followed by the elapsed time and the server's progress report.

    ``dsn`` is where the reading session connects (the database ``conn`` is in). Without ``progress`` this
    is ``work()``. ``work``'s exception is raised here; if this thread is interrupted, the statement is
    cancelled."""
    if progress is None:
        return work()
    outcome: list[T] = []
    failure: list[BaseException] = []
    finished = threading.Event()
    pid = conn.info.backend_pid

    def run() -> None:
        try:
            outcome.append(work())
        except BaseException as exc:  # noqa: BLE001 — raised again in the caller's thread
            failure.append(exc)
        finally:
            finished.set()

    reader = _Reader(dsn)
    helper = threading.Thread(target=run, name="agent19-statement", daemon=True)
    started = time.monotonic()
    helper.start()
    try:
        while not finished.wait(interval):
            server = reader.read(pid)
            elapsed = time.monotonic() - started
            share = server.share if server is not None else None
            message = f"{label}: {elapsed:.0f} s" + (f"; {server}" if server is not None else "")
            progress(done + (min(share, 1.0) if share is not None and total else 0.0), total, message)
    except BaseException:
        conn.cancel_safe()  # the caller is going away: the statement must not run on unwatched
        finished.wait(10)
        raise
    finally:
        reader.close()
    helper.join()
    if failure:
        raise failure[0]
    return outcome[0]


def never_back(progress: Progress) -> Progress:
    """``progress`` whose value always increases, as MCP requires: the scratch database's part comes back to
    earlier statements (the message names them), and a statement's reports without a server figure repeat
    its number — those advance by a millionth, invisible in a percentage."""
    furthest = [-1.0]

    def report(done: float, total: float | None, message: str | None) -> None:
        furthest[0] = done if done > furthest[0] else furthest[0] + 1e-6
        progress(furthest[0], total, message)

    return report
