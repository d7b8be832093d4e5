"""A scratch database made while the dry run's transaction runs, instead of after it.

Creating a database costs a fixed ~0.3–0.7 s (``CREATE DATABASE`` copies ``template0`` and syncs it),
which a dry run used to pay after its transaction on the target. When the prediction says a scratch
database will be needed — a statement that cannot run in a transaction block, or one whose lock an
earlier statement already holds on the same relation (it is re-observed in a transaction of its own
there) — :class:`EarlyScratch` starts making it at once, in two threads:

* ``pg_dump --schema-only`` of the target. pg_dump takes ACCESS SHARE on every table, so the dry run
  waits for it (:meth:`EarlyScratch.wait_dumped`) before its transaction locks them: a statement never
  waits behind agent19's own dump, and its observed duration stays its own.
* The owner session, ``CREATE DATABASE … TEMPLATE template0`` and, once the dump is there, loading it —
  all while the target's transaction runs.

Only schema-only and empty copies are made early: a ``TEMPLATE <target>`` copy needs the target free
of sessions, the dry run's own included, so it is still made after the rollback. Rows sampled from the
target (``sample_rows``) are copied after the rollback too (reading them would wait for the
transaction's locks). A prediction that turns out wrong costs a database created and dropped in the
background; a scratch database needed but not predicted is made afterwards, as before.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any, Literal

import psycopg

from agent19.db.connection import Database
from agent19.migrate.dryrun import scratch as scratch_mod
from agent19.migrate.dryrun.scratch import ScratchDatabase

log = logging.getLogger(__name__)


class EarlyScratch:
    """A scratch database being made in the background; :meth:`use` waits for it, :meth:`discard` drops it."""

    def __init__(self, db: Database, copy: Literal["schema", "empty"], major: int) -> None:
        self.db, self.copy, self.major = db, copy, major
        self._dump: tuple[bytes | None, str | None] | None = None
        self._dumped = threading.Event()
        self._admin: psycopg.Connection[Any] | None = None
        self._name: str | None = None
        self._scratch: ScratchDatabase | None = None
        self._error: BaseException | None = None
        self._closed = False
        threads = [threading.Thread(target=self._create, name="agent19-scratch-create", daemon=True)]
        if copy == "schema":
            threads.append(threading.Thread(target=self._take_dump, name="agent19-scratch-dump", daemon=True))
        else:
            self._dumped.set()
        self._threads = threads
        for t in threads:
            t.start()

    def _take_dump(self) -> None:
        try:
            self._dump = scratch_mod.dump_schema(self.db.dsn, self.major)
        except Exception as exc:  # noqa: BLE001 — a broken pg_dump is reported as the copy's failure
            self._dump = (None, f"pg_dump failed: {exc}")
        finally:
            self._dumped.set()

    def _create(self) -> None:
        try:
            self._admin, self._name = scratch_mod.open_owner(self.db)
            target = scratch_mod.target_name(self.db)
            if self.copy == "empty":
                self._scratch = scratch_mod.create(self.db, self._admin, target, self._name, "empty")
                return
            # the database first (the slow part), then the schema once the dump is there
            self._scratch = scratch_mod.create(self.db, self._admin, target, self._name, "schema",
                                               dump=self._wait_dump)
        except BaseException as exc:  # noqa: BLE001 — re-raised in the dry run's thread by use()
            self._error = exc

    def _wait_dump(self) -> tuple[bytes | None, str | None]:
        self._dumped.wait()
        return self._dump or (None, "pg_dump did not run")

    def wait_dumped(self) -> None:
        """Return once pg_dump no longer holds locks on the target's tables."""
        self._dumped.wait()

    def _join(self) -> None:
        for t in self._threads:
            t.join()

    @contextmanager
    def use(self, sample_tables: list[str], sample_rows: int) -> Iterator[ScratchDatabase]:
        """The scratch database, once made (with ``sample_rows`` rows of ``sample_tables`` copied now); dropped
        when the block exits. Raises what its creation raised."""
        self._join()
        try:
            if self._error is not None:
                raise self._error
            assert self._scratch is not None
            scratch = self._scratch
            if sample_rows > 0 and sample_tables and scratch.strategy == "schema_copy":
                scratch.sampled_rows, more = scratch_mod.copy_sample(self.db.dsn, scratch.dsn, sample_tables,
                                                                     sample_rows)
                scratch.notes.extend(more)
            yield scratch
        finally:
            self.discard()

    def discard(self) -> None:
        """Drop the scratch database (waiting for its creation to end first); idempotent."""
        self._join()
        if self._closed:
            return
        self._closed = True
        if self._admin is not None and self._name is not None:
            try:
                scratch_mod.close_owner(self._admin, self._name)
            except psycopg.Error as exc:  # its owner session is closed: the next run's drop_leftovers takes it
                log.warning("could not drop scratch database %s: %s", self._name, exc)
