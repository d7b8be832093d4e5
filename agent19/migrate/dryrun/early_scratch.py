"""A scratch database made while the dry run's transaction runs, instead of after it.

Creating a database costs a fixed ~0.3–0.7 s (``CREATE DATABASE`` copies ``template0`` and syncs it),
which a dry run used to pay after its transaction on the target. When the prediction says a scratch
database will be needed — a statement that cannot run in a transaction block, or one whose lock an
earlier statement already holds on the same relation (it is re-observed in a transaction of its own
there) — :class:`EarlyScratch` starts making it at once, in two threads:

* ``pg_dump --schema-only`` of the target. pg_dump takes ACCESS SHARE on every table, so the dry run
  waits for it (:meth:`EarlyScratch.wait_dumped`) before its transaction locks them: a statement never
  waits behind agent19's own dump, and its observed duration stays its own.
  (With no dump of the database kept, pg_dump starts at once, in a snapshot whose catalogs' digest — the
  key it is kept under, :func:`cached_dump` — is read meanwhile. With one kept in this process,
  the dry run's own session reads the digest in the round trip of its catalog snapshot
  (:attr:`EarlyScratch.wants_state`), which says whether the kept dump is still good.)
* The owner session, ``CREATE DATABASE … TEMPLATE template0`` and, once the dump is there, loading it,
  then the session that will replay the statements there — all while the target's transaction runs.
  In a running server (:mod:`agent19.migrate.dryrun.scratch_pool` on) a schema-only copy made ahead, after the
  previous dry run of this target, is taken instead when the digest the dry run's session reads is the one it
  was made at: then neither ``CREATE DATABASE`` nor the dump runs here, only the replaying session is opened.

Only schema-only and empty copies are made early: a ``TEMPLATE <target>`` copy needs the target free
of sessions, the dry run's own included, so it is still made after the rollback. Rows sampled from the
target (``sample_rows``) are copied after the rollback too (reading them would wait for the
transaction's locks). A prediction that turns out wrong costs a database created and dropped in the
background; a scratch database needed but not predicted is made afterwards, as before.

A dry run that fails or is interrupted (Ctrl-C) while the database is still being made does not wait for it:
:meth:`EarlyScratch.cancel` ends the owner session's statement and drops the database on a session of its own
(:func:`agent19.migrate.dryrun.scratch.drop_now`; ``WITH (FORCE)`` ends the loading ``psql``'s session), and stops its
pg_dump and psql (:func:`agent19.children.stop_owned`).
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from typing import Any, Literal

import psycopg

from agent19 import children
from agent19.db import catalog_first
from agent19.db.catalog import snapshot
from agent19.db.connection import Database
from agent19.db.models import SchemaSnapshot
from agent19.migrate.dryrun import dump_cache, scratch_pool
from agent19.migrate.dryrun import scratch as scratch_mod
from agent19.migrate.dryrun.dump_cache import _DUMPS, catalog_state  # noqa: F401 — kept importable from here
from agent19.migrate.dryrun.scratch import ScratchDatabase

log = logging.getLogger(__name__)

QUALIFIED_SQL = True  # its statements name functions, operators, types, catalog relations pg_catalog.-qualified
BEGIN_SNAPSHOT, ROLLBACK = "BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY", "ROLLBACK"
Q_EXPORT = "SELECT pg_catalog.pg_export_snapshot()"


def cached_dump(db: Database, major: int, state: Callable[[], str | None] | None = None,
                exclude_tables: Sequence[str] = ()) -> tuple[tuple[bytes | None, str | None], str]:
    """The target's schema dump: taken again unless the catalogs are unchanged since it was last taken (by this
    process: :mod:`agent19.migrate.dryrun.dump_cache`) — a dry run of an unchanged schema skips
    pg_dump's 0.1–0.2 s. Returns (the dump, how it was had).

    ``state``: where the digest is read when a dump is kept — the dry run's own session reads it in the round
    trip of its catalog snapshot (:meth:`EarlyScratch.give_state`; None: read here, on a session of its own).
    With no dump of this database kept, there is nothing to look up: pg_dump starts at once, dumping as of a
    snapshot that a transaction here exports and reads the catalogs' digest in meanwhile (the digest is then
    exactly the dumped state's), instead of after the digest.

    ``exclude_tables``: pg_dump patterns of tables left out (:func:`agent19.migrate.dryrun.scratch_schema.dump_schema`);
    such a dump is neither reused nor kept (what the login may read changes without its catalogs changing)."""
    if exclude_tables:
        return (scratch_mod.dump_schema(db.dsn, major, lock_timeout_ms=db.settings.lock_timeout_ms,
                                        exclude_tables=exclude_tables), "schema dump taken (pg_dump)")
    dump, how, _ = keyed_dump(db, major, state)
    return dump, how


def keyed_dump(db: Database, major: int, state: Callable[[], str | None] | None = None,
               ) -> tuple[tuple[bytes | None, str | None], str, str | None]:
    """:func:`cached_dump`, and the digest the dump is kept under (None: not kept)."""
    target = dump_cache.target_key(db.dsn, major)
    key: str | None = None
    dump: tuple[bytes | None, str | None] | None = None
    warm = dump_cache.kept(target)
    if warm and state is not None:
        key = state()
    if key is None:
        try:
            with catalog_first.connect(db.dsn, autocommit=True, connect_timeout=5, application_name="agent19") as conn:
                if not warm:
                    dump, key = _dump_in_snapshot(conn, db, major)
                else:
                    key = catalog_state(conn)
        except psycopg.Error as exc:  # pg_dump will say what is wrong, if anything is
            log.debug("no catalog state (%s): pg_dump runs", exc)
    if key is not None and dump is None and (kept := dump_cache.lookup(target, key)) is not None:
        return (kept, None), "schema dump reused (the target's catalogs are unchanged since it was taken)", key
    if dump is None:
        dump = scratch_mod.dump_schema(db.dsn, major, lock_timeout_ms=db.settings.lock_timeout_ms)
    if key is not None and dump[0] is not None:
        dump_cache.store(target, key, dump[0])
        return dump, "schema dump taken (pg_dump)", key
    return dump, "schema dump taken (pg_dump)", None


def _dump_in_snapshot(conn: psycopg.Connection[Any], db: Database,
                      major: int) -> tuple[tuple[bytes | None, str | None] | None, str | None]:
    """pg_dump as of a snapshot exported here, and the catalogs' digest read in that same snapshot meanwhile:
    (the dump, the digest); (None, None) when no snapshot can be exported (the caller dumps as before)."""
    conn.execute(BEGIN_SNAPSHOT)
    try:
        try:
            row = conn.execute(Q_EXPORT).fetchone()
        except psycopg.Error as exc:
            log.debug("no exported snapshot (%s): the digest first, then pg_dump", exc)
            return None, None
        snapshot = str(row[0]) if row else None
        outcome: list[tuple[bytes | None, str | None]] = []
        work = children.owner()  # an EarlyScratch's: its cancel() stops this pg_dump too

        def take() -> None:  # in a thread of its own, while this session reads the digest
            try:
                with children.owned_by(work):
                    outcome.append(scratch_mod.dump_schema(db.dsn, major, snapshot,
                                                                   lock_timeout_ms=db.settings.lock_timeout_ms))
            except Exception as exc:  # noqa: BLE001 — a broken pg_dump is reported as the copy's failure
                outcome.append((None, f"pg_dump failed: {exc}"))

        dumping = threading.Thread(target=take, name="agent19-pg-dump", daemon=True)
        dumping.start()
        state: str | None = None
        try:
            state = catalog_state(conn)
        except psycopg.Error as exc:  # the dump is still good; it is only not kept
            log.debug("no catalog state (%s): the dump is not kept", exc)
        finally:
            dumping.join()
        dump = outcome[0] if outcome else (None, "pg_dump did not run")
        if dump[0] is None and "snapshot" in (dump[1] or ""):
            # the snapshot could not be used: as before
            return scratch_mod.dump_schema(db.dsn, major, lock_timeout_ms=db.settings.lock_timeout_ms), None
        return dump, state
    finally:
        conn.execute(ROLLBACK)


class EarlyScratch:
    """A scratch database being made in the background; :meth:`use` waits for it, :meth:`discard` drops it."""

    def __init__(self, db: Database, copy: Literal["schema", "empty"], major: int) -> None:
        self.db, self.copy, self.major = db, copy, major
        self._dump: tuple[bytes | None, str | None] | None = None
        self._dumped = threading.Event()
        self._admin: psycopg.Connection[Any] | None = None
        self._name: str | None = None
        self._scratch: ScratchDatabase | None = None
        self._session: psycopg.Connection[Any] | None = None
        self._error: BaseException | None = None
        self._closed = False
        self._cancelled = threading.Event()
        # set when the creating thread is done (the dump thread: _dumped). Waited for instead of Thread.join: on
        # Python 3.11 a join interrupted by Ctrl-C marks the thread as ended, and every later join returns at once
        self._created = threading.Event()
        self._how: str | None = None
        self.dropped = False
        # a dump is kept: its key, the digest, is read by the dry run's session with its catalog snapshot (one
        # backend warms the catalog caches once, instead of two), and handed over with give_state()
        self.wants_state = copy == "schema" and dump_cache.kept(dump_cache.target_key(db.dsn, major))
        self._state: str | None = None
        self._stated = threading.Event()
        # a running server may have made this target's scratch database ahead (scratch_pool): taken if its schema
        # is the target's now (the digest above), else the database is made here as below
        self._ahead = self.wants_state and scratch_pool.has(db, major)
        self._decided = threading.Event()
        self.state_key: str | None = None  # the digest of the schema this copy holds (None: unknown)
        threads = [threading.Thread(target=self._create, name="agent19-scratch-create", daemon=True)]
        if copy == "schema":
            threads.append(threading.Thread(target=self._take_dump, name="agent19-scratch-dump", daemon=True))
        else:
            self._dumped.set()
        self._threads = threads
        for t in threads:
            t.start()

    def give_state(self, state: str | None) -> None:
        """The catalogs' digest as the dry run's session read it (None: not read; then read on a session of its
        own). Called once when :attr:`wants_state`, even when the read failed."""
        self._state = state
        self._stated.set()

    def _given_state(self) -> str | None:
        self._stated.wait()
        return self._state

    def _take_dump(self) -> None:
        try:
            with children.owned_by(self):
                self._dump_now()
        except Exception as exc:  # noqa: BLE001 — a broken pg_dump is reported as the copy's failure
            self._dump = (None, f"pg_dump failed: {exc}")
        finally:
            self._dumped.set()

    def _dump_now(self) -> None:
        if self._ahead:
            self._decided.wait()
            if self.state_key is not None:  # the database made ahead was taken: no dump needed
                return
        self._dump, self._how, self.state_key = keyed_dump(self.db, self.major,
                                                           self._given_state if self.wants_state else None)

    def _take_ahead(self) -> bool:
        """Take the scratch database made ahead for this target, if its schema is the target's now."""
        try:
            state = self._given_state()
            if (taken := scratch_pool.take(self.db, self.major, state)) is None:
                return False
            self._admin, self._scratch = taken
            self._name, self.state_key = self._scratch.name, state
            return True
        finally:
            self._decided.set()

    def _create(self) -> None:
        try:
            with children.owned_by(self):
                self._make()
        except BaseException as exc:  # noqa: BLE001 — re-raised in the dry run's thread by use()
            self._error = exc
            self._created.set()
            return
        try:  # the replaying session, opened now rather than after the target's rollback
            self._session = scratch_mod.replay_session(self._scratch.dsn, self.db.settings.statement_timeout_ms)
        except psycopg.Error as exc:  # opened again when used, which then says what is wrong
            log.debug("no early session to the scratch database: %s", exc)
        finally:
            self._created.set()

    def _make(self) -> None:
        if not (self._ahead and self._take_ahead()):
            self._admin, self._name = scratch_mod.open_owner(self.db)
            if self._cancelled.is_set():  # cancel() came before the name: nothing is made
                raise InterruptedError("the dry run ended before its scratch database was made")
            target = scratch_mod.target_name(self.db)
            if self.copy == "empty":
                self._scratch = scratch_mod.create(self.db, self._admin, target, self._name, "empty")
            else:  # the database first (the slow part), then the schema once the dump is there
                self._scratch = scratch_mod.create(self.db, self._admin, target, self._name, "schema",
                                                   dump=self._wait_dump)

    def schema_state(self) -> str | None:
        """The catalogs' digest of the target's schema this scratch database was a complete copy of, once it is
        dropped (None: not a schema-only copy, or the digest is unknown): what :mod:`scratch_pool` prepares from."""
        made = self._scratch is not None and self._scratch.strategy == "schema_copy" and self._error is None
        return self.state_key if made and self.copy == "schema" else None

    def take_session(self) -> psycopg.Connection[Any] | None:
        """The session to the scratch database opened in advance (the caller closes it), if any; after
        :meth:`use` has returned the scratch database."""
        session, self._session = self._session, None
        return session

    def _wait_dump(self) -> tuple[bytes | None, str | None]:
        self._dumped.wait()
        return self._dump or (None, "pg_dump did not run")

    def wait_dumped(self) -> None:
        """Return once pg_dump no longer holds locks on the target's tables (a digest not handed over by now is
        read on a session of the dump's own)."""
        if not self._stated.is_set():
            self.give_state(None)
        self._dumped.wait()

    def _join(self) -> None:
        if not self._stated.is_set():  # the dry run ended before its snapshot: the dump thread waits no more
            self.give_state(None)
        self._dumped.wait()
        self._created.wait()

    @contextmanager
    def use(self, sample_tables: list[str], sample_rows: int) -> Iterator[ScratchDatabase]:
        """The scratch database, once made (with ``sample_rows`` rows of ``sample_tables`` copied now); dropped
        when the block exits. Raises what its creation raised. Interrupted while it is being made (Ctrl-C): it is
        not waited for (:meth:`cancel`)."""
        try:
            self._join()
            if self._error is not None:
                raise self._error
            assert self._scratch is not None
            scratch = self._scratch
            if self._how and scratch.strategy == "schema_copy":
                scratch.notes.append(self._how)
            if sample_rows > 0 and sample_tables and scratch.strategy == "schema_copy":
                scratch.sampled_rows, more = scratch_mod.copy_sample(self.db.dsn, scratch.dsn, sample_tables,
                                                                     sample_rows)
                scratch.notes.extend(more)
            yield scratch
        except BaseException:
            self.cancel()
            raise
        finally:
            self.discard()

    def cancel(self) -> None:
        """Stop making the scratch database, when it still is (the dry run failed or was interrupted): its owner
        session's statement is ended and the database dropped on a session of its own (:func:`scratch.drop_now`:
        ``WITH (FORCE)`` ends the loading psql's session), then its pg_dump and psql are stopped. Its threads then
        end at once; :meth:`discard` still closes the owner session. Idempotent."""
        if self._created.is_set() and self._dumped.is_set():
            return  # made (or failed): discard() drops it with its owner session
        self._cancelled.set()
        if not self._stated.is_set():  # the dump thread waits no more for the digest
            self.give_state(None)
        if (name := self._name) is not None:
            try:
                scratch_mod.drop_now(name)
            except psycopg.Error as exc:  # discard()'s close_owner drops it, or the next run's drop_leftovers
                log.warning("could not drop scratch database %s being made: %s", name, exc)
        children.stop_owned(self)

    def discard(self, cancel: bool = False) -> None:
        """Drop the scratch database (waiting for its creation to end first, unless ``cancel``: :meth:`cancel`);
        idempotent."""
        if cancel:
            self.cancel()
        self._join()
        if self._closed:
            return
        self._closed = True
        if self._session is not None:  # opened in advance, never used
            self._session.close()
            self._session = None
        if self._admin is not None and self._name is not None:
            try:
                self.dropped = scratch_mod.close_owner(self._admin, self._name)
            except psycopg.Error as exc:  # its owner session is closed: the next run's drop_leftovers takes it
                log.warning("could not drop scratch database %s: %s", self._name, exc)


def catalog_snapshot(conn: psycopg.Connection[Any], early: EarlyScratch | None) -> SchemaSnapshot:
    """The target's catalog snapshot on the dry run's session; when ``early`` wants the catalogs' digest (a dump
    is kept), that digest too, in the same round trip, handed to ``early`` (None if the read failed)."""
    if early is None or not early.wants_state:
        return snapshot(conn)
    rows: list[Any] = [dump_cache.Q_CATALOG_STATE]
    state: str | None = None
    try:
        before = snapshot(conn, also=rows)
        state = dump_cache.state_of(rows[0][0]) if rows[0] else None
        return before
    finally:
        early.give_state(state)
