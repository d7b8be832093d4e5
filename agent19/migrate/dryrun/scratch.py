"""Scratch databases: throwaway copies of the target's schema for statements that cannot run in a
transaction block (``CREATE INDEX CONCURRENTLY``, ``VACUUM``…) and for verified rollbacks.

Lifecycle, and what is guaranteed:

* **Name.** ``agent19_scratch_<pid>_<random>``. The run that owns it keeps an *owner session*
  open on the server whose ``application_name`` is exactly that name.
* **Creation.** ``copy="auto"`` uses ``CREATE DATABASE … TEMPLATE <target>`` (a full copy with
  data: real timings) when no other session is connected to the target and it is smaller than
  ``template_max_bytes``; otherwise a schema-only copy made by ``pg_dump --schema-only --no-owner
  --no-privileges`` piped into ``psql`` (the binaries of the server's major version when installed,
  else any ``pg_dump`` on ``PATH`` that is new enough), optionally with ``sample_rows`` rows of the
  tables the migration touches. With neither possible the scratch database is empty and the
  caller replays the migration's earlier statements (:attr:`ScratchDatabase.strategy` says which).
  (The schema-only copy: :mod:`agent19.migrate.dryrun.scratch_schema`.)
* **Access.** Every way, the database is created with ``ALLOW_CONNECTIONS false``, ``CONNECT`` revoked from
  ``PUBLIC`` (``TEMPORARY`` is left: only who may connect could use it, and a migration's ``SET ROLE`` then
  ``CREATE TEMP TABLE`` needs it), then ``ALLOW_CONNECTIONS true``: only its owner (this login, members
  of its role) and superusers ever connect — another login cannot hold a snapshot there that makes
  ``CREATE INDEX CONCURRENTLY`` wait, nor a session a non-superuser's drop cannot end.
* **Drop.** Always in ``finally`` (``DROP DATABASE … WITH (FORCE)``; terminate-then-drop before
  PostgreSQL 13; a non-superuser's is retried for up to 2 s while an autovacuum worker, which it may not end,
  works in the fresh copy), also on SIGTERM/SIGHUP (handlers installed by :func:`install_signal_handlers`,
  which drop every active scratch database, then let the signal take its usual course; they never wait for a
  lock the interrupted main thread holds) and at interpreter exit (``atexit``). Those drops, and an interrupted
  dry run's (:func:`drop_now`), run on a session of their own and end the owner session first, waiting until it
  is gone: a database still being made is dropped too — a ``CREATE DATABASE`` (or the ``ALTER DATABASE`` after
  it) in flight there is rolled back, or has committed and is dropped, never left to commit after the drop.
* **SIGKILL / power loss** cannot run any code: the owner session dies with the process, and the
  next run (any dry run or rollback check on that server) drops every ``agent19_scratch_*``
  database that has no live owner session (:func:`drop_leftovers`). Nothing else is ever dropped.
"""

from __future__ import annotations

import logging
import os
import secrets
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any, Literal

import psycopg
from psycopg import sql
from psycopg.conninfo import conninfo_to_dict, make_conninfo

from agent19 import lifecycle
from agent19.config import AccessMode
from agent19.db import catalog_first
from agent19.db.connection import Database
from agent19.migrate.dryrun.scratch_schema import (  # noqa: F401 — copy_sample, dump_schema: importable from here
    copy_sample,
    dump_schema,
    extensions,
    load_schema,
)

log = logging.getLogger(__name__)

PREFIX = "agent19_scratch_"
CopyMode = Literal["auto", "template", "schema", "empty"]
Strategy = Literal["template", "schema_copy", "empty"]

_ACTIVE: dict[str, str] = {}  # scratch name -> admin DSN (for the signal/atexit cleanup)
# Re-entrant: the SIGTERM/SIGHUP handler (_drop_active; the pool's close, through close_owner) runs on the main thread
# between two of its bytecodes, also while that thread holds this lock — a plain Lock would wait for itself forever.
# Every section under it is one operation on _ACTIVE, so the handler always sees it whole.
_LOCK = threading.RLock()


@dataclass
class ScratchDatabase:
    name: str
    dsn: str
    strategy: Strategy
    sampled_rows: dict[str, int] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)
    # how this copy differs from the target in ways that can make a statement fail here and not there
    unfaithful: list[str] = field(default_factory=list)

    @property
    def has_data(self) -> bool:
        return self.strategy == "template" or any(self.sampled_rows.values())


def new_name() -> str:
    return f"{PREFIX}{os.getpid()}_{secrets.token_hex(4)}"


def _admin_connect(db: Database, target: str, application_name: str) -> tuple[psycopg.Connection[Any], str]:
    """The owner/admin session (autocommit) and its DSN: the ``postgres`` database if reachable, else the target."""
    for dbname in ("postgres", target):
        dsn = make_conninfo(db.dsn, dbname=dbname, application_name=application_name)
        try:
            return catalog_first.connect(dsn, connect_timeout=5, autocommit=True), dsn
        except psycopg.Error:
            continue
    dsn = make_conninfo(db.dsn, application_name=application_name)
    return catalog_first.connect(dsn, autocommit=True), dsn


def _new_database(admin: psycopg.Connection[Any], name: str, template: str = "template0") -> None:
    """``CREATE DATABASE name TEMPLATE template`` that only its owner (this login, its members) and superusers
    can connect to: made with connections off, CONNECT revoked from PUBLIC, then connections on — no moment
    when another login could connect (and hold a snapshot that makes ``CREATE INDEX CONCURRENTLY`` there wait,
    or a session a non-superuser's ``DROP … WITH (FORCE)`` cannot end)."""
    ident = sql.Identifier(name)
    admin.execute(sql.SQL("CREATE DATABASE {} TEMPLATE {} ALLOW_CONNECTIONS false").format(
        ident, sql.Identifier(template)))
    try:
        admin.execute(sql.SQL("REVOKE CONNECT ON DATABASE {} FROM PUBLIC").format(ident))
        admin.execute(sql.SQL("ALTER DATABASE {} ALLOW_CONNECTIONS true").format(ident))
    except psycopg.Error:
        _drop(admin, name)
        raise


DROP_TRIES = 8  # × 0.25 s: an autovacuum worker in a fresh schema-only copy is done by then


def _drop(conn: psycopg.Connection[Any], name: str) -> None:
    ident = sql.Identifier(name)
    if conn.info.server_version >= 130000:
        for attempt in range(DROP_TRIES):
            try:
                conn.execute(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(ident))
                return
            except psycopg.errors.InsufficientPrivilege as exc:
                # a non-superuser cannot end an autovacuum worker (its role is none of this login's), which
                # a fresh copy's new catalog rows start: it ends quickly, then the drop succeeds
                # PostgreSQL ≤ 15 says so in the message, 16+ in the detail ("… privileges of the role whose
                # process is being terminated …"); a superuser's session is refused in other words: not retried
                said = f"{exc} {exc.diag.message_detail or ''}"
                if "role whose process is being terminated" not in said or attempt == DROP_TRIES - 1:
                    raise
                log.debug("scratch database %s: %s; dropping again", name, str(exc).strip())
                time.sleep(0.25)
    conn.execute("SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = %s", (name,))
    conn.execute(sql.SQL("DROP DATABASE IF EXISTS {}").format(ident))


def drop_leftovers(db: Database, admin: psycopg.Connection[Any] | None = None) -> list[str]:
    """Drop every ``agent19_scratch_*`` database whose owner session is gone (a killed run).

    Returns the names dropped. A scratch database whose owner is alive belongs to a running dry
    run (here or on another machine) and is left alone. ``admin``: an autocommit session to use (from
    :func:`admin_session`, left open), else one is opened and closed here.
    """
    if admin is None:
        with admin_session(db) as conn:
            return drop_leftovers(db, conn)
    rows = admin.execute(
        r"""SELECT d.datname FROM pg_database d
             WHERE d.datname LIKE 'agent19\_scratch\_%'
               AND NOT EXISTS (SELECT 1 FROM pg_stat_activity a WHERE a.application_name = d.datname)"""
    ).fetchall()
    dropped = []
    for (name,) in rows:
        try:
            _drop(admin, name)
            dropped.append(name)
            log.info("dropped leftover scratch database %s", name)
        except psycopg.Error as exc:
            log.warning("could not drop leftover scratch database %s: %s", name, exc)
    return dropped


def admin_session(db: Database) -> psycopg.Connection[Any]:
    """An autocommit session for cluster-wide reads and drops: to ``postgres`` if reachable, else the target."""
    return _admin_connect(db, target_name(db), "agent19")[0]


def replay_session(dsn: str, statement_timeout_ms: int) -> psycopg.Connection[Any]:
    """The session (autocommit) that replays a migration's statements in the scratch database ``dsn``."""
    conn = catalog_first.connect(dsn, autocommit=True, application_name="agent19 replay")
    try:
        conn.execute(f"SET statement_timeout = {int(statement_timeout_ms)}")
    except BaseException:
        conn.close()
        raise
    return conn


def list_scratch(dsn: str) -> list[str]:
    """Names of the scratch databases that exist on the server of ``dsn`` (for tests and checks)."""
    with catalog_first.connect(dsn, autocommit=True) as conn:
        rows = conn.execute(r"SELECT datname FROM pg_database WHERE datname LIKE 'agent19\_scratch\_%'").fetchall()
    return [r[0] for r in rows]


def target_name(db: Database) -> str:
    return conninfo_to_dict(db.dsn).get("dbname") or os.environ.get("PGDATABASE") or "postgres"


def _escaped(value: str) -> str:
    """``value`` as one word of a startup ``options`` string (backslash before a backslash or a space)."""
    return value.replace("\\", "\\\\").replace(" ", "\\ ")


def scratch_dsn(db: Database, name: str) -> str:
    """The DSN of sessions in the scratch database ``name``: agent19's timeouts (:meth:`Database.session_options`)
    and the search_path the target's sessions start with — its database's and role's settings are rows of
    ``pg_db_role_setting`` for the target's database, which a scratch database (even a TEMPLATE copy) has not: an
    unqualified name there resolved on ``"$user", public`` (r27b-k13). The session pins it as any other
    (:func:`agent19.db.catalog_first.connect`)."""
    options = db.session_options()
    if db.startup_search_path is None:  # read when a session is configured: no session of the target yet
        with db.read():
            pass
    if db.startup_search_path is not None:
        options["options"] = f"{options['options']} -c search_path={_escaped(db.startup_search_path)}"
    return make_conninfo(db.dsn, dbname=name, **options)


# A missing object (relation, column, function, type, schema): what an incomplete copy makes fail
MISSING_OBJECT = {"42P01", "42703", "42883", "42704", "3F000"}


@contextmanager
def scratch_database(
    db: Database, *, copy: CopyMode = "auto", sample_tables: list[str] | None = None, sample_rows: int = 0,
    template_max_bytes: int = 2 * 1024**3,
) -> Iterator[ScratchDatabase]:
    """Create a scratch database from the target's schema; drop it when the block exits, always."""
    db.require(AccessMode.DRY_RUN, "creating a scratch database")
    admin, name = open_owner(db)
    try:
        scratch = create(db, admin, target_name(db), name, copy, sample_tables or [], sample_rows,
                          template_max_bytes)
        yield scratch
    finally:
        close_owner(admin, name)


def open_owner(db: Database) -> tuple[psycopg.Connection[Any], str]:
    """A new scratch database's name and its owner session (``application_name`` = the name), registered for
    the signal/atexit cleanup: create the database with it, and always end with :func:`close_owner`."""
    name = new_name()
    admin, admin_dsn = _admin_connect(db, target_name(db), name)
    with _LOCK:
        _ACTIVE[name] = make_conninfo(admin_dsn, application_name="agent19")
    return admin, name


def close_owner(admin: psycopg.Connection[Any], name: str) -> bool:
    """Drop the scratch database ``name`` (if it was made) and close its owner session; True when the server
    then lists no database of that name."""
    with _LOCK:
        again_dsn = _ACTIVE.get(name, "")
    try:
        _drop(admin, name)
        return admin.execute("SELECT NOT EXISTS (SELECT 1 FROM pg_database WHERE datname = %s)",
                             (name,)).fetchone() == (True,)
    except psycopg.Error:
        with catalog_first.connect(again_dsn, autocommit=True) as again:  # the owner session broke: a new one
            _drop(again, name)
            return again.execute("SELECT NOT EXISTS (SELECT 1 FROM pg_database WHERE datname = %s)",
                                 (name,)).fetchone() == (True,)
    finally:
        admin.close()
        with _LOCK:
            _ACTIVE.pop(name, None)


def create(
    db: Database, admin: psycopg.Connection[Any], target: str, name: str, copy: CopyMode,
    sample_tables: list[str] | None = None, sample_rows: int = 0, template_max_bytes: int = 2 * 1024**3,
    dump: Callable[[], tuple[bytes | None, str | None]] | None = None,
) -> ScratchDatabase:
    """Make the scratch database ``name`` with the owner session ``admin`` (see the module docstring for the
    strategies). ``dump``: returns the target's :func:`dump_schema`, made earlier (else pg_dump runs here)."""
    # sessions in the scratch database run the migration's statements: agent19's timeouts apply there too
    dsn = scratch_dsn(db, name)
    notes: list[str] = []
    if copy in ("auto", "template") and admin.info.dbname != target:
        row = admin.execute(
            "SELECT (SELECT count(*) FROM pg_stat_activity WHERE datname = %s AND pid <> pg_backend_pid()),"
            " pg_database_size(%s)", (target, target),
        ).fetchone()
        busy, size = (row[0], row[1]) if row else (1, 0)
        if busy and db.release_idle():  # agent19's own idle pooled sessions to the target are closed
            busy = _sessions(admin, target)
        deadline = time.monotonic() + 2
        while busy and time.monotonic() < deadline:  # closed sessions' backends exit a moment later
            time.sleep(0.05)
            busy = _sessions(admin, target)
        if busy == 0 and (copy == "template" or size <= template_max_bytes):
            try:
                _new_database(admin, name, target)
                return ScratchDatabase(name, dsn, "template", notes=["full copy of the target (TEMPLATE)"])
            except psycopg.Error as exc:
                notes.append(f"TEMPLATE copy impossible: {str(exc).strip().splitlines()[0]}")
        elif busy:
            who = admin.execute(
                "SELECT a || ' x ' || count(*) FROM (SELECT coalesce(nullif(application_name, ''), '(unnamed)') AS a"
                " FROM pg_stat_activity WHERE datname = %s AND pid <> pg_backend_pid()) s GROUP BY a ORDER BY a",
                (target,)).fetchall()
            notes.append(f"TEMPLATE copy impossible: {busy} other session(s) connected to {target} "
                         f"({', '.join(r[0] for r in who)})")
        else:
            notes.append(f"TEMPLATE copy skipped: the target is larger than {template_max_bytes} bytes")
    _new_database(admin, name)
    if copy == "empty":
        return ScratchDatabase(name, dsn, "empty", notes=notes)
    major = admin.info.server_version // 10000
    try:
        _, forbidden = extensions(db.dsn)
    except psycopg.Error:
        forbidden = []
    unfaithful = [f"extension {e} not copied: this role cannot create it (not trusted; a superuser can); "
                  "what uses it is missing in the scratch database" for e in forbidden]
    schema = dump() if dump is not None else dump_schema(db.dsn, major, lock_timeout_ms=db.settings.lock_timeout_ms)
    failure = load_schema(dsn, major, schema, forbidden)
    if failure and forbidden:  # something depends on a left-out extension: copy all that can be copied
        _drop(admin, name)
        _new_database(admin, name)
        partial = load_schema(dsn, major, schema, forbidden, stop_on_error=False)
        unfaithful.append(f"schema copied without what depends on {', '.join(forbidden)} ({partial or failure})")
        return ScratchDatabase(name, dsn, "schema_copy", notes=[*notes, "schema-only copy (pg_dump | psql), partial",
                                                                *unfaithful], unfaithful=unfaithful)
    if failure:
        notes.append(f"schema copy failed ({failure}); the migration's earlier statements are replayed instead")
        _drop(admin, name)
        _new_database(admin, name)
        return ScratchDatabase(name, dsn, "empty", notes=notes, unfaithful=[f"schema copy failed: {failure}"])
    scratch = ScratchDatabase(name, dsn, "schema_copy", notes=[*notes, "schema-only copy (pg_dump | psql)",
                                                                 *unfaithful], unfaithful=unfaithful)
    if sample_rows > 0 and sample_tables:
        scratch.sampled_rows, more = copy_sample(db.dsn, dsn, sample_tables, sample_rows)
        scratch.notes.extend(more)
    return scratch


def _sessions(admin: psycopg.Connection[Any], target: str) -> int:
    row = admin.execute("SELECT count(*) FROM pg_stat_activity WHERE datname = %s AND pid <> pg_backend_pid()",
                        (target,)).fetchone()
    return int(row[0]) if row else 1


OWNER_GONE_S = 5.0  # an ended owner session's backend is gone by then (a CREATE DATABASE it ran rolled back)


def drop_now(name: str, connect_timeout: int = 2) -> None:
    """Drop the active scratch database ``name`` now, also while it is being made, on a session of its own: its
    owner session is ended first and waited for (:func:`_end_owner`), then ``DROP … WITH (FORCE)`` ends the sessions
    in it, a loading ``psql`` included. Its owner still ends with :func:`close_owner` (which finds it dropped)."""
    with _LOCK:
        admin_dsn = _ACTIVE.get(name)
    if admin_dsn is not None:
        with catalog_first.connect(admin_dsn, autocommit=True, connect_timeout=connect_timeout) as conn:
            _end_owner(conn, name)
            _drop(conn, name)


def _end_owner(conn: psycopg.Connection[Any], name: str, timeout: float = OWNER_GONE_S) -> None:
    """End the owner session of the scratch database ``name`` (``application_name`` = the name) and wait until its
    backend is gone (up to ``timeout`` s). A ``CREATE DATABASE`` or ``ALTER DATABASE`` it is running — the database
    being made, by a thread of this process — is then rolled back or committed, and a drop after this sees the
    database as it is for good: dropped while that statement still ran, it would be created after the drop, and
    stay (the next run's :func:`drop_leftovers` drops it). Its thread then fails on the closed session, as
    when the server ends it, and makes nothing more there."""
    try:
        pids = [r[0] for r in conn.execute(  # in the select list: only for the rows the WHERE keeps
            "SELECT pid, pg_terminate_backend(pid) FROM pg_stat_activity"
            " WHERE application_name = %s AND pid <> pg_backend_pid()", (name,)).fetchall()]
        deadline = time.monotonic() + timeout
        while pids and time.monotonic() < deadline:
            row = conn.execute("SELECT count(*) FROM pg_stat_activity WHERE pid = ANY(%s)", (pids,)).fetchone()
            if row is None or row[0] == 0:
                return
            time.sleep(0.02)
    except psycopg.errors.InsufficientPrivilege as exc:  # not this login's session: the drop says what is wrong
        log.debug("scratch database %s: its owner session not ended: %s", name, str(exc).strip())


def _drop_active() -> None:
    """The signal/exit cleanup: drop every active scratch database, those being made included (:func:`drop_now`)."""
    with _LOCK:
        active = list(_ACTIVE)
    for name in active:
        try:
            drop_now(name, connect_timeout=5)
            with _LOCK:
                _ACTIVE.pop(name, None)
        except psycopg.Error as exc:  # the next run's drop_leftovers will take it
            log.warning("could not drop scratch database %s on exit: %s", name, exc)


def install_signal_handlers() -> None:
    """Drop active scratch databases on SIGTERM/SIGHUP and at exit (main thread only; idempotent)."""
    lifecycle.cleanup_on_exit(_drop_active)
