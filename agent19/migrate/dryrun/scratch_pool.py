"""A scratch database made ahead for a target's next dry run, in a long-running process (``agent19 serve``).

A dry run that re-observes locks (or runs statements outside a transaction on a schema-only copy) makes its
scratch database while the target's transaction runs (:mod:`agent19.migrate.dryrun.early_scratch`). Its
``CREATE DATABASE … TEMPLATE template0`` costs 120–250 ms of server CPU, which competes with the migration's own
statements on a small machine. In a running server the next dry run of the same target need not pay it then:
after a dry run that used a schema-only copy of a target whose schema dump is kept
(:mod:`agent19.migrate.dryrun.dump_cache`), the next scratch database is made and loaded with that dump in the
background (:func:`after_dry_run`, once the result is built). The next dry run of that target that makes a
schema-only :class:`~agent19.migrate.dryrun.early_scratch.EarlyScratch` takes it (:func:`take`) when the
catalogs' digest its own session reads with the catalog snapshot is the one the kept dump was taken at; else
(the schema changed) the ready one is dropped and the dry run makes its own, as it would have.

* **Off by default**: the one-shot CLI leaves nothing behind when it exits. :func:`enable` turns it on
  (``agent19 serve`` calls it); :func:`close` (also run at exit, on SIGTERM/SIGHUP and when the server's
  transport closes) drops every ready database, and those still being made at once (``DROP … WITH (FORCE)``
  ends the loading ``psql``): it returns within about 2 s, however long the load (``docker stop`` waits 10 s).
* **One at a time per target**: a dry run whose target's next database is still being made waits for it (up to
  :data:`WAIT` s) and takes it, rather than making its own alongside — the preparation holds sessions of the
  same login, and two at once could exceed the role's ``CONNECTION LIMIT``.
* **Bounded**: one ready database per key — :func:`dump_cache.target_key`, the kept dump's: the target's
  connection parameters without the password, the libpq environment variables that could change the login or the
  server (every ``PG*`` but ``PGPASSWORD``) and the server's major version — and :data:`KEPT` in all, the oldest
  dropped.
  Another login, host, port or database never takes one.
* **Safe**: a ready database is a scratch database like any other: its owner session (``application_name`` = its
  name) stays open, so another run's :func:`scratch.drop_leftovers` leaves it alone, and it is registered for the
  signal/atexit cleanup; after a SIGKILL the next run's drop_leftovers drops it (the owner session is gone).
  :func:`take` removes it from the pool under a lock: two dry runs never get the same one. The taker's own
  settings apply there (the scratch DSN's session options and the replay session's ``statement_timeout`` come
  from the taking dry run's :class:`Database`), and it is dropped before that dry run returns, as any other.
  Like any scratch database, only its owner login and superusers can connect to it (:mod:`scratch`).
* **Made with the same privileges**: its extension set depends on what the login could create then. The login's
  ``SUPERUSER`` and ``CREATEDB`` are recorded, and read again on the owner session at take time (with the check that
  it still exists, one round trip): any difference → dropped, made afresh. (Which extensions the login could not
  create follows from SUPERUSER and the target's extensions, which the digest covers; a package's ``trusted`` flag
  changing between two dry runs is not noticed.)
* **Caveat — an idle owner session can be ended by the server**: a restart, a reaper, the login's
  ``idle_session_timeout``; the next dry run then drops the database as a leftover (listed in its
  ``leftovers_dropped``) and the one after that gets a new one. When the owner session has an
  ``idle_session_timeout`` (PostgreSQL 14+: the login's, its ``postgres`` database's or the server's), none is made
  ahead for that target at all (logged once at info level): each would be lost.
* A failure while preparing is logged at debug level and forgotten: the next dry run proceeds as without it.
  :func:`settle` waits until the background work is done (tests, the benchmark).
"""

from __future__ import annotations

import logging
import threading
import time
from collections import OrderedDict
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, TypeVar

import psycopg

from agent19 import lifecycle
from agent19.db.connection import Database
from agent19.migrate.dryrun import dump_cache, scratch_schema
from agent19.migrate.dryrun import scratch as scratch_mod
from agent19.migrate.dryrun.scratch import ScratchDatabase

if TYPE_CHECKING:
    from agent19.migrate.dryrun.early_scratch import EarlyScratch

log = logging.getLogger(__name__)

QUALIFIED_SQL = True  # its statements name functions, operators, types, catalog relations pg_catalog.-qualified
Q_IDLE_TIMEOUT = "SELECT pg_catalog.current_setting('idle_session_timeout', true) AS current_setting"
KEPT = 4
WAIT = 10.0  # s a dry run waits for its target's scratch database being made ahead (then makes its own)
MADE_AHEAD = "scratch database made ahead, before this dry run (schema unchanged since)"
Key = dump_cache.Target
T = TypeVar("T")


@dataclass
class _Ready:
    name: str
    admin: psycopg.Connection[Any]  # its owner session
    state: str  # the catalogs' digest of the schema it holds
    notes: list[str] = field(default_factory=list)
    unfaithful: list[str] = field(default_factory=list)
    made_with: tuple[bool, bool] = (False, False)  # the login's SUPERUSER and CREATEDB when it was made


_ENABLED = False
_READY: OrderedDict[Key, _Ready] = OrderedDict()
_PENDING: dict[threading.Thread, tuple[Key, str]] = {}  # each preparation: its target and the digest it holds
_MAKING: dict[threading.Thread, str] = {}  # the name of the database each one is making
_TIMED_OUT: set[Key] = set()  # targets whose owner sessions have an idle_session_timeout: none made ahead
# Re-entrant: close() also runs as the SIGTERM/SIGHUP handler, on the main thread between two of its bytecodes, also
# while that thread holds this lock (a plain Lock: the handler waits for itself forever). Safe to re-enter: close()
# only turns the pool off, waits on _IDLE (which releases the lock whole, so the workers can finish) and empties
# _READY; a section it interrupts reads or adds one entry, and finds the pool off or _READY empty after.
_LOCK = threading.RLock()
_IDLE = threading.Condition(_LOCK)


def _key(db: Database, major: int) -> Key:
    return dump_cache.target_key(db.dsn, major)


def enable() -> None:
    """Keep a scratch database ready for each target's next dry run (see the module doc); idempotent."""
    global _ENABLED
    with _LOCK:
        _ENABLED = True
    lifecycle.cleanup_on_exit(close)


def enabled() -> bool:
    return _ENABLED


def close(timeout: float = 2) -> None:
    """Stop keeping scratch databases ready and drop them all, within about ``timeout`` s: the databases still
    being made are dropped at once (``WITH (FORCE)`` ends their loading ``psql``), not waited for."""
    global _ENABLED
    with _LOCK:
        _ENABLED = False
    deadline = time.monotonic() + timeout
    while not settle(0.1) and time.monotonic() < deadline:
        with _LOCK:
            making = list(_MAKING.values())
        for name in making:
            try:
                scratch_mod.drop_now(name)
            except psycopg.Error as exc:  # its owner's close_owner (or the next run's drop_leftovers) drops it
                log.debug("could not drop scratch database %s being made ahead: %s", name, exc)
    clear()


def clear() -> None:
    """Drop every ready scratch database (the pool stays on or off as it was)."""
    with _LOCK:
        ready = list(_READY.values())
        _READY.clear()
    for r in ready:
        _drop(r)


def settle(timeout: float | None = None) -> bool:
    """Wait until no scratch database is being prepared; False when ``timeout`` s passed first."""
    with _IDLE:
        return _IDLE.wait_for(lambda: not _PENDING, timeout)


def has(db: Database, major: int) -> bool:
    """Whether a scratch database is ready, or being made, for this target (:func:`take` says whether it may be
    used)."""
    key = _key(db, major)
    with _LOCK:
        return key in _READY or _pending(key)


def _pending(key: Key, state: str | None = None) -> bool:
    """A preparation of ``key`` is under way (of the digest ``state``, when given); call holding :data:`_LOCK`."""
    return any(k == key and state in (None, s) for k, s in _PENDING.values())


def take(db: Database, major: int, state: str | None) -> tuple[psycopg.Connection[Any], ScratchDatabase] | None:
    """The ready scratch database of this target — its owner session and it, with ``db``'s session options —
    when its schema is the one of the catalogs' digest ``state``; else None (one that does not match is
    dropped). Each ready database is handed out once. One still being made is waited for (up to :data:`WAIT`
    s): its preparation holds sessions of this login, so a dry run making its own alongside could hit the
    role's or the server's connection limit. One being made of another digest (the schema changed since) is not
    waited for: it could not be used."""
    key = _key(db, major)
    with _IDLE:
        if state is not None:
            _IDLE.wait_for(lambda: not _pending(key, state), WAIT)
        ready = _READY.pop(key, None)
    if ready is None:
        return None
    if state is None or state != ready.state:
        log.debug("scratch database %s made ahead: the target's schema changed since; dropped", ready.name)
        _drop(ready)
        return None
    try:
        exists, now = scratch_schema.login_now(ready.admin, ready.name)
    except psycopg.Error as exc:
        exists, now = False, ready.made_with
        log.debug("scratch database %s made ahead was lost: its owner session ended (%s)", ready.name,
                  str(exc).strip() or type(exc).__name__)
    if not exists or now != ready.made_with:
        if exists:
            log.debug("scratch database %s made ahead: the login's SUPERUSER/CREATEDB changed "
                      "since (%s, now %s); dropped", ready.name, ready.made_with, now)
        _drop(ready)
        return None
    dsn = scratch_mod.scratch_dsn(db, ready.name)  # the taker's timeouts and search_path, not the maker's
    return ready.admin, ScratchDatabase(ready.name, dsn, "schema_copy", notes=[MADE_AHEAD, *ready.notes],
                                        unfaithful=list(ready.unfaithful))


def after_dry_run(early: EarlyScratch | None, result: T) -> T:
    """Once a dry run's ``result`` is built: when the pool is on and ``early`` was a complete schema-only copy
    of a target whose dump is kept, start preparing that target's next scratch database. Returns ``result``."""
    state = early.schema_state() if early is not None else None
    if early is None or state is None or bool(early.db.contained):  # an isolated copy's cluster is removed next
        return result
    key = _key(early.db, early.major)
    with _LOCK:
        current = _READY.get(key)
        if not _ENABLED or key in _TIMED_OUT or _pending(key) or (current is not None and current.state == state):
            return result
        worker = threading.Thread(target=_prepare, args=(early.db, early.major, state, key),
                                  name="agent19-scratch-ahead", daemon=True)
        _PENDING[worker] = key, state
    worker.start()
    return result


def _prepare(db: Database, major: int, state: str, key: Key) -> None:
    try:
        dump = dump_cache.lookup(key, state)
        if dump is None:
            return  # no longer kept: nothing to load
        admin, name = scratch_mod.open_owner(db)
        with _LOCK:
            _MAKING[threading.current_thread()] = name
        try:
            if idle := _idle_session_timeout(admin):
                _timed_out(key, idle)
                raise RuntimeError(f"the owner session would be ended by idle_session_timeout = {idle}")
            _, (su, createdb) = scratch_schema.login_now(admin, name)  # the login's, before it is made
            made = scratch_mod.create(db, admin, scratch_mod.target_name(db), name, "schema", dump=lambda: (dump, None))
            if made.strategy != "schema_copy":
                raise RuntimeError("; ".join(made.unfaithful) or "no schema copy")
        except BaseException:
            scratch_mod.close_owner(admin, name)
            raise
        ready = _Ready(name, admin, state, made.notes, made.unfaithful, (su, createdb))
        with _LOCK:
            stale = [ready]
            if _ENABLED:
                stale = [_READY.pop(key)] if key in _READY else []
                _READY[key] = ready
                while len(_READY) > KEPT:
                    stale.append(_READY.popitem(last=False)[1])
        for old in stale:
            _drop(old)
    except Exception as exc:  # noqa: BLE001 — the next dry run makes its own, as without the pool
        log.debug("no scratch database made ahead: %s", exc)
    finally:
        with _IDLE:
            _PENDING.pop(threading.current_thread(), None)
            _MAKING.pop(threading.current_thread(), None)
            _IDLE.notify_all()


def _idle_session_timeout(admin: psycopg.Connection[Any]) -> str | None:
    """The owner session's ``idle_session_timeout`` when it has one (PostgreSQL 14+), else None."""
    row = admin.execute(Q_IDLE_TIMEOUT).fetchone()
    value = (row["current_setting"] if isinstance(row, dict) else row[0]) if row else None
    return value if value not in (None, "", "0") else None


def _timed_out(key: Key, idle: str) -> None:
    """The owner sessions of ``key`` would be ended while idle: make none ahead for that target (said once)."""
    with _LOCK:
        if key in _TIMED_OUT:
            return
        _TIMED_OUT.add(key)
    log.info("no scratch database is made ahead for this target: its idle owner session would be ended by "
             "idle_session_timeout = %s (set for the login, its database or the server)", idle)


def _drop(ready: _Ready) -> None:
    try:
        scratch_mod.close_owner(ready.admin, ready.name)
    except psycopg.Error as exc:  # its owner session is closed: the next run's drop_leftovers takes it
        log.debug("could not drop scratch database %s made ahead: %s", ready.name, exc)
