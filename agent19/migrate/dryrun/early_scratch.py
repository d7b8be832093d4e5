"""A scratch database made while the dry run's transaction runs, instead of after it.

Creating a database costs a fixed ~0.3–0.7 s (``CREATE DATABASE`` copies ``template0`` and syncs it),
which a dry run used to pay after its transaction on the target. When the prediction says a scratch
database will be needed — a statement that cannot run in a transaction block, or one whose lock an
earlier statement already holds on the same relation (it is re-observed in a transaction of its own
there) — :class:`EarlyScratch` starts making it at once, in two threads:

* ``pg_dump --schema-only`` of the target. pg_dump takes ACCESS SHARE on every table, so the dry run
  waits for it (:meth:`EarlyScratch.wait_dumped`) before its transaction locks them: a statement never
  waits behind agent19's own dump, and its observed duration stays its own.
  (The first dump of a database in a process starts at once, in a snapshot whose catalogs' digest — the
  key it is kept under, :func:`cached_dump` — is read meanwhile; later ones wait for the digest, which
  says whether the kept dump is still good.)
* The owner session, ``CREATE DATABASE … TEMPLATE template0`` and, once the dump is there, loading it,
  then the session that will replay the statements there — all while the target's transaction runs.

Only schema-only and empty copies are made early: a ``TEMPLATE <target>`` copy needs the target free
of sessions, the dry run's own included, so it is still made after the rollback. Rows sampled from the
target (``sample_rows``) are copied after the rollback too (reading them would wait for the
transaction's locks). A prediction that turns out wrong costs a database created and dropped in the
background; a scratch database needed but not predicted is made afterwards, as before.
"""

from __future__ import annotations

import logging
import threading
from collections import OrderedDict
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any, Literal

import psycopg
from psycopg.conninfo import conninfo_to_dict, make_conninfo

from agent19.db.connection import Database
from agent19.migrate.dryrun import scratch as scratch_mod
from agent19.migrate.dryrun.scratch import ScratchDatabase

log = logging.getLogger(__name__)


# Every catalog whose rows pg_dump --schema-only turns into SQL (pg_user_mapping is left out: only a superuser
# may read it). Any DDL that commits inserts, updates or deletes rows of some of them: a new row version has a
# new ctid and xmin, so the digest below changes; a rolled-back DDL, ANALYZE and VACUUM's in-place updates
# leave it as it was. (VACUUM FULL of a catalog moves rows: a new digest, a dump taken again — never a stale one.)
_CATALOGS = (
    "pg_namespace", "pg_class", "pg_attribute", "pg_attrdef", "pg_constraint", "pg_index", "pg_trigger",
    "pg_rewrite", "pg_proc", "pg_type", "pg_enum", "pg_range", "pg_extension", "pg_sequence", "pg_inherits",
    "pg_partitioned_table", "pg_description", "pg_policy", "pg_collation", "pg_operator", "pg_opclass",
    "pg_opfamily", "pg_amop", "pg_amproc", "pg_cast", "pg_conversion", "pg_language", "pg_aggregate",
    "pg_statistic_ext", "pg_foreign_data_wrapper", "pg_foreign_server", "pg_foreign_table", "pg_event_trigger",
    "pg_ts_config", "pg_ts_config_map", "pg_ts_dict", "pg_ts_parser", "pg_ts_template", "pg_transform",
    "pg_seclabel", "pg_default_acl", "pg_init_privs", "pg_am", "pg_depend",
)
Q_CATALOG_STATE = (
    "SELECT md5(string_agg(c || ':' || n || ':' || h, ',' ORDER BY c)) FROM ("
    + " UNION ALL ".join(f"SELECT '{c}' AS c, count(*) AS n, coalesce(sum(hashtext(ctid::text || ' ' || "
                         f"xmin::text)), 0) AS h FROM pg_catalog.{c}" for c in _CATALOGS)
    + ") s")

_DUMPS: OrderedDict[tuple[str, int, str], bytes] = OrderedDict()  # (target, major, catalog state) -> its dump
_DUMPS_KEPT = 4
_DUMPS_LOCK = threading.Lock()


def catalog_state(conn: psycopg.Connection[Any]) -> str:
    """A digest of the database's catalogs that changes with every committed DDL (see ``_CATALOGS``)."""
    row = conn.execute(Q_CATALOG_STATE).fetchone()
    value = next(iter(row.values())) if isinstance(row, dict) else row[0] if row else None
    return str(value)


def _target_key(db: Database) -> str:
    """The target as a cache key: its connection parameters without the password."""
    params = conninfo_to_dict(db.dsn)
    params.pop("password", None)
    return make_conninfo(**params)


def cached_dump(db: Database, major: int) -> tuple[tuple[bytes | None, str | None], str]:
    """The target's schema dump: taken again unless the catalogs are unchanged since this process last took it
    (a second dry run of the same database skips pg_dump's 0.1–0.2 s). Returns (the dump, how it was had).

    With no dump of this database kept, there is nothing to look up: pg_dump starts at once, dumping as of a
    snapshot that a transaction here exports and reads the catalogs' digest in meanwhile (the digest is then
    exactly the dumped state's), instead of after the digest."""
    target = _target_key(db)
    with _DUMPS_LOCK:
        kept_any = any(k[:2] == (target, major) for k in _DUMPS)
    key: tuple[str, int, str] | None = None
    dump: tuple[bytes | None, str | None] | None = None
    try:
        with psycopg.connect(db.dsn, autocommit=True, connect_timeout=5, application_name="agent19") as conn:
            if not kept_any:
                dump, state = _dump_in_snapshot(conn, db, major)
                key = (target, major, state) if state is not None else None
            else:
                key = (target, major, catalog_state(conn))
    except psycopg.Error as exc:  # pg_dump will say what is wrong, if anything is
        log.debug("no catalog state (%s): pg_dump runs", exc)
    if key is not None and dump is None:
        with _DUMPS_LOCK:
            if (kept := _DUMPS.get(key)) is not None:
                _DUMPS.move_to_end(key)
                return (kept, None), "schema dump reused (the target's catalogs are unchanged since it was taken)"
    if dump is None:
        dump = scratch_mod.dump_schema(db.dsn, major)
    if key is not None and dump[0] is not None:
        with _DUMPS_LOCK:
            _DUMPS[key] = dump[0]
            while len(_DUMPS) > _DUMPS_KEPT:
                _DUMPS.popitem(last=False)
    return dump, "schema dump taken (pg_dump)"


def _dump_in_snapshot(conn: psycopg.Connection[Any], db: Database,
                      major: int) -> tuple[tuple[bytes | None, str | None] | None, str | None]:
    """pg_dump as of a snapshot exported here, and the catalogs' digest read in that same snapshot meanwhile:
    (the dump, the digest); (None, None) when no snapshot can be exported (the caller dumps as before)."""
    conn.execute("BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY")
    try:
        try:
            row = conn.execute("SELECT pg_export_snapshot()").fetchone()
        except psycopg.Error as exc:
            log.debug("no exported snapshot (%s): the digest first, then pg_dump", exc)
            return None, None
        snapshot = str(row[0]) if row else None
        outcome: list[tuple[bytes | None, str | None]] = []

        def take() -> None:  # in a thread of its own, while this session reads the digest
            try:
                outcome.append(scratch_mod.dump_schema(db.dsn, major, snapshot))
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
            return scratch_mod.dump_schema(db.dsn, major), None  # the snapshot could not be used: as before
        return dump, state
    finally:
        conn.execute("ROLLBACK")


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
        self._how: str | None = None
        self.dropped = False
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
            self._dump, self._how = cached_dump(self.db, self.major)
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
            else:  # the database first (the slow part), then the schema once the dump is there
                self._scratch = scratch_mod.create(self.db, self._admin, target, self._name, "schema",
                                                   dump=self._wait_dump)
        except BaseException as exc:  # noqa: BLE001 — re-raised in the dry run's thread by use()
            self._error = exc
            return
        try:  # the replaying session, opened now rather than after the target's rollback
            self._session = scratch_mod.replay_session(self._scratch.dsn, self.db.settings.statement_timeout_ms)
        except psycopg.Error as exc:  # opened again when used, which then says what is wrong
            log.debug("no early session to the scratch database: %s", exc)

    def take_session(self) -> psycopg.Connection[Any] | None:
        """The session to the scratch database opened in advance (the caller closes it), if any; after
        :meth:`use` has returned the scratch database."""
        session, self._session = self._session, None
        return session

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
            if self._how and scratch.strategy == "schema_copy":
                scratch.notes.append(self._how)
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
        if self._session is not None:  # opened in advance, never used
            self._session.close()
            self._session = None
        if self._admin is not None and self._name is not None:
            try:
                self.dropped = scratch_mod.close_owner(self._admin, self._name)
            except psycopg.Error as exc:  # its owner session is closed: the next run's drop_leftovers takes it
                log.warning("could not drop scratch database %s: %s", self._name, exc)
