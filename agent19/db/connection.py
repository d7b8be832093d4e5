"""Connections to the server agent19 works on.

Every session sets ``application_name``, ``statement_timeout`` and ``lock_timeout``, and searches ``pg_catalog``
first whatever the login's ``search_path`` (:mod:`agent19.db.catalog_first`). In
``read-only`` mode every session also has ``default_transaction_read_only = on`` and every
transaction agent19 opens for reading is ``READ ONLY``: the server refuses writes, whatever the
SQL says.

Connections come from a small pool. A connection that died (server restarted, network cut)
is discarded when it is next taken, so the call after a failure reconnects by itself. Every
connection is reset before it goes back to the pool, before the call returns (``DISCARD ALL``:
session advisory locks released, settings reset, temporary objects, prepared statements and
cursors dropped), then agent19's session settings are applied again: nothing a call did to its
session survives it.

User reads can run as a separate least-privilege login (``--read-dsn``): :meth:`Database.reader_database`.
"""

from __future__ import annotations

import dataclasses
import logging
import os
import secrets
import threading
import weakref
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

import psycopg
from psycopg import sql
from psycopg.conninfo import conninfo_to_dict
from psycopg.rows import dict_row, tuple_row
from psycopg_pool import ConnectionPool, PoolTimeout

from agent19.config import AccessMode, Secret, Settings
from agent19.db import captures, catalog_first
from agent19.db.connection_errors import connection_failure, connection_lost
from agent19.db.embedded import start_embedded
from agent19.db.redact import check_dsn, password_of, redact_dsn, redact_text, remember_secret
from agent19.errors import ConfigError, DatabaseUnavailable, ModeError
from agent19.tool_names import at_cli

log = logging.getLogger(__name__)
STRINGS_AS_PARSED = "-c standard_conforming_strings=on"  # string literals read as agent19's parser reads them
Q_STARTUP_PATH = ("SELECT s.reset_val FROM pg_catalog.pg_settings s "
                  "WHERE s.name OPERATOR(pg_catalog.=) 'search_path'")
"""The search_path the session started with (its database's and role's settings, the DSN's options): a ``SET``
(agent19's pin) leaves ``reset_val`` as it was."""

Connection = psycopg.Connection[dict[str, Any]]

SESSION_TOKEN = "agent19.session"
"""A setting each configured session holds (a random value, :meth:`Database._configure`), read again when a call
takes the session from the pool: another value means another server session answered."""
_tokens: weakref.WeakKeyDictionary[Connection, str] = weakref.WeakKeyDictionary()
NOT_OUR_SESSION = (
    "the server session agent19 configured is not the one that answered its next query: a pooler in transaction "
    "or statement mode (PgBouncer pool_mode = transaction) gives each transaction a server connection of its own, "
    "so agent19's session settings (read-only sessions, timeouts, catalog reads searching pg_catalog first) would "
    "not apply, and would stay on server connections other clients then get",
    "connect agent19 to PostgreSQL directly, or through a pool in session mode (pool_mode = session)")

CONNECT_TIMEOUT_S = 5


class Database:
    """The database agent19 talks to: resolves the DSN, owns the pool, enforces the mode."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self._dsn: str | None = settings.dsn_value()
        if problem := check_dsn(self._dsn, "the DSN (--dsn / DATABASE_URL)") or check_dsn(
                settings.read_dsn.get_secret_value() if settings.read_dsn else None,
                "the reader DSN (--read-dsn / AGENT19_READ_DSN)"):
            raise ConfigError(problem)
        remember_secret(password_of(self._dsn))  # masked in every value read back (r27-k07)
        remember_secret(password_of(settings.read_dsn.get_secret_value() if settings.read_dsn else None))
        self._embedded = self._dsn is None
        self._pool: ConnectionPool[Connection] | None = None
        self._reader: Database | None = None
        self._pool_suspect = False  # a pooled connection was lost: renew the pool on the next call
        self._no_startup_options = False  # a pooler in between refused the `options` startup parameter
        self.contained = ""
        """Set (a token) when this database is an isolated copy agent19 made (:mod:`agent19.migrate.dryrun.isolated`: a
        throwaway cluster, nobody else's): a trial's guard then refuses only what leaves the copy
        (:mod:`agent19.safety.trial`) — after checking that the server holds the same token in its setting
        ``agent19.isolated_copy`` (else it refuses everything). Set by that module on the copy it made, never from a
        setting or an argument."""
        self.denied_in_copy: Callable[[psycopg.Error], str | None] | None = None
        """On an isolated copy: why a permission error (42501) says nothing of the target, if it does not (it was
        raised inside a function that runs there without the superuser's powers it has on the target:
        :mod:`agent19.migrate.dryrun.isolated_definers`); None: the login lacks the privilege, as on the target."""

    # -- identity -----------------------------------------------------------------------
    @property
    def mode(self) -> AccessMode:
        return self.settings.mode

    @property
    def embedded(self) -> bool:
        return self._embedded

    @property
    def dsn(self) -> str:
        """The real DSN (with password). Never print it: use :attr:`display_dsn`."""
        if self._dsn is None:
            self._dsn = start_embedded(self.settings.data_dir)
        return self._dsn

    @property
    def display_dsn(self) -> str:
        if self._dsn is None:
            return f"(embedded server in {self.settings.data_dir / 'pgdata'})"
        return redact_dsn(self._dsn)

    def redact(self, text: str) -> str:
        return redact_text(text, password_of(self._dsn))

    def reader_database(self) -> Database:
        """Where user reads run: the ``--read-dsn`` login (its own pool, read-only sessions), or the
        reader attached by :meth:`attach_reader`, else self."""
        if self._reader is not None:
            return self._reader
        if self.settings.read_dsn is None:
            return self
        return self.attach_reader(self.settings.read_dsn)

    def attach_reader(self, dsn: str | Secret) -> Database:
        """Run user reads as the login of ``dsn`` (e.g. agent19's own reader on the embedded server)."""
        self._reader = Database(dataclasses.replace(self.settings, dsn=dsn, read_dsn=None, mode=AccessMode.READ_ONLY))
        return self._reader

    @property
    def has_reader(self) -> bool:
        return self._reader is not None

    # -- sessions -----------------------------------------------------------------------
    def _configure(self, conn: Connection, check: bool = True, own: bool = False) -> None:
        """agent19's session settings, in one round trip (it runs again after every pooled call's reset), which also
        reads the search_path: one that searches a schema before pg_catalog is set without that pg_catalog entry (a
        second round trip, only then), so every unqualified catalog name agent19 uses resolves in pg_catalog
        (:mod:`agent19.db.catalog_first`); and the captures on it (:mod:`agent19.db.captures`) unless ``check`` is
        False — after a pooled call's reset, where the next call reads them when it takes the session. ``own``: the
        session searches ``pg_catalog, pg_temp`` only, no schema of the user's (``catalog_first.catalog_only``):
        nothing to check."""
        check = check and not own
        settings = self.settings
        read_only = ", pg_catalog.set_config('default_transaction_read_only', 'on', false)"  # what SET … = on does
        with conn.cursor(row_factory=tuple_row) as cur:
            token = secrets.token_hex(8)
            row = cur.execute(
                f"SELECT {catalog_first.SEARCH_PATH}, pg_catalog.set_config('statement_timeout', %s, false),"
                " pg_catalog.set_config('lock_timeout', %s, false),"
                # how the server reads a string literal must be how agent19's parser read it (a database or role
                # may default it to off: 'a\', ' would then end a string where agent19 saw none end); also a
                # startup option (connect_kwargs), which RESET ALL returns to — this is for a pooler that
                # refused it
                " pg_catalog.set_config('standard_conforming_strings', 'on', false),"
                f" ({Q_STARTUP_PATH}), {captures.AT_START if check else 'NULL'},"
                f" pg_catalog.set_config('{SESSION_TOKEN}', %s, false)"
                + (read_only if settings.mode is AccessMode.READ_ONLY else ""),
                (f"{settings.statement_timeout_ms}ms", f"{settings.lock_timeout_ms}ms", token),
            ).fetchone()
        _tokens[conn] = token
        if row is not None and row[4] is not None:
            self.startup_search_path = str(row[4])
        if check:
            captures.refuse_untrusted(conn, row[5] if row else None)  # before anything else is read
        catalog_first.pin(conn, str(row[0]) if row else "", own=own)

    startup_search_path: str | None = None
    """The search_path the target's sessions start with (its ``ALTER DATABASE/ROLE … SET``, the DSN's options), read
    by :meth:`_configure`: a scratch database's sessions start with it (``scratch.scratch_dsn``)."""

    def session_options(self) -> dict[str, str]:
        """Connection parameters that give any session agent19 opens (scratch databases, watchers…)
        its application_name and timeouts from the start, without a SET."""
        s = self.settings
        return {
            "application_name": s.application_name,
            "options": self._startup_options(f"-c statement_timeout={s.statement_timeout_ms}ms "
                                             f"-c lock_timeout={s.lock_timeout_ms}ms {STRINGS_AS_PARSED}"),
        }

    def _startup_options(self, ours: str) -> str:
        """``ours`` after the options the user's DSN (or ``PGOPTIONS``) gives, which an ``options`` parameter
        would replace: both apply, and for a setting given twice the server takes the later (ours)."""
        users = conninfo_to_dict(self.dsn).get("options") or os.environ.get("PGOPTIONS", "")
        return f"{users} {ours}".strip()

    def connect_kwargs(self) -> dict[str, Any]:
        """``standard_conforming_strings = on`` is a startup option, so ``RESET ALL`` (a statement, or in a
        function's body) returns to on, not to a database's or role's default of off."""
        options = {} if self._no_startup_options else {"options": self._startup_options(STRINGS_AS_PARSED)}
        return {
            "application_name": self.settings.application_name,
            "connect_timeout": CONNECT_TIMEOUT_S,
            "autocommit": True,
            "row_factory": dict_row,
            **options,
        }

    def _open_pool(self) -> ConnectionPool[Connection]:
        if self._pool is not None:
            return self._pool
        # One direct connection first: a pool hides the reason a server is unreachable.
        with self.connect():
            pass
        pool: ConnectionPool[Connection] = ConnectionPool(
            self.dsn,
            # never prepared by psycopg: the DISCARD ALL of every return drops the server's prepared statements, and
            # psycopg notices only the first DISCARD ALL a connection runs — a query it had prepared on its 5th run
            # then failed with 'prepared statement "_pg3_0" does not exist' on the next call
            kwargs={**self.connect_kwargs(), "prepare_threshold": None},
            # a session's captures are read when a call takes it (session()), where the call's path is known
            configure=lambda conn: self._configure(conn, check=False),
            check=ConnectionPool.check_connection,
            min_size=1,
            max_size=4,
            open=False,
            name="agent19",
            timeout=CONNECT_TIMEOUT_S,
        )
        pool.open(wait=False)
        self._pool = pool
        return pool

    def connect(self) -> Connection:
        """A dedicated session outside the pool (for work that must own its session)."""
        try:
            conn: Connection = psycopg.connect(self.dsn, **self.connect_kwargs())
        except psycopg.Error as exc:
            if not self._no_startup_options and "startup parameter" in str(exc):
                # a pooler (PgBouncer before 1.20) that takes no `options`: the setting is then set by _configure
                # only, and a RESET ALL would return it to the login's default (the guards refuse those)
                log.warning("the server or a pooler refused the `options` startup parameter (%s): "
                            "standard_conforming_strings is set after connecting instead", self.redact(str(exc)))
                self._no_startup_options = True
                return self.connect()
            raise self._unavailable(exc) from None
        try:
            self._configure(conn, own=catalog_first.reading_catalog_only())
        except psycopg.Error as exc:
            conn.close()
            raise self._unavailable(exc) from None
        except captures.CapturedPath:
            conn.close()
            raise
        return conn

    def _unavailable(self, exc: BaseException) -> DatabaseUnavailable:
        text = str(exc).strip()
        what, hint = connection_failure(text)
        # libpq's text repeats "connection to server at … failed:"; keep what the server or network said
        lines = [ln.strip() for ln in text.splitlines() if ln.strip()] or [type(exc).__name__]
        reason = self.redact(lines[0].rsplit(" failed: ", 1)[-1])
        # an MCP server's next tool call connects again; a command at the CLI ends here: the hint is what to do
        again = "then run the command again" if at_cli() else "the next call will try again"
        return DatabaseUnavailable(f"{what}: {reason} (PostgreSQL at {self.display_dsn})", f"{hint}; {again}")

    def _renew_pool(self) -> None:
        """Replace a pool that may be backing off after failed reconnects, once the server answers a direct
        connection (which raises the real reason when it does not)."""
        self.connect().close()
        old, self._pool, self._pool_suspect = self._pool, None, False
        if old is not None:  # its workers may be waiting out a connect timeout: do not wait for them here
            threading.Thread(target=old.close, name="agent19-pool-close", daemon=True).start()

    def _getconn(self) -> tuple[ConnectionPool[Connection], Connection]:
        if self._pool_suspect:
            self._renew_pool()
        pool = self._open_pool()
        try:
            return pool, pool.getconn()
        except PoolTimeout as exc:
            self._pool_suspect = True
            self._renew_pool()  # the server is back (else the real reason is raised here): a fresh pool
            pool = self._open_pool()
            try:
                return pool, pool.getconn()
            except PoolTimeout:
                raise self._unavailable(exc) from None

    @contextmanager
    def session(self) -> Iterator[Connection]:
        """A pooled session in autocommit; translate connection loss into a clear error. After a lost
        connection the pool is renewed on the next call, so the first call after a restart works."""
        pool, conn = self._getconn()
        try:
            # configured when the previous call ended: still the same server session, and no untrusted capture since
            # (a call that reads the catalog only searches no schema of the user's instead)
            mine = f"pg_catalog.current_setting('{SESSION_TOKEN}', true)"
            if catalog_first.reading_catalog_only():  # the path set only on agent19's own server session (r29 F9)
                token = conn.cursor(row_factory=tuple_row).execute(
                    f"SELECT {mine}, CASE WHEN {mine} OPERATOR(pg_catalog.=) %s THEN {catalog_first.SET_OWN_PATH} "
                    "END", (_tokens.get(conn, ""),)).fetchone()[0]  # type: ignore[index]
            else:
                token = captures.recheck(conn, also=mine)
            if token != _tokens.get(conn):
                conn.close()  # settings on a server session of someone else's; the pool replaces it
                raise ConfigError(*NOT_OUR_SESSION)
            yield conn
        except psycopg.OperationalError as exc:
            if connection_lost(exc):
                self._pool_suspect = True
                raise self._unavailable(exc) from None
            raise
        finally:
            self._reset_before_return(conn)
            pool.putconn(conn)

    def _reset_before_return(self, conn: Connection) -> None:
        """Reset the session before the call returns, not after: psycopg_pool 3.3 hands a returned
        connection (and its ``reset=`` hook) to a worker thread, and an advisory lock was observed
        still held in pg_locks after the call had ended. A session that cannot be reset is closed
        (the pool replaces it)."""
        if conn.closed:
            return
        try:
            if conn.info.transaction_status != psycopg.pq.TransactionStatus.IDLE:
                conn.rollback()
            conn.execute("DISCARD ALL")  # includes pg_advisory_unlock_all(), RESET ALL, DISCARD TEMP
            self._configure(conn, check=False)  # then agent19's session settings again (session() checks)
        except psycopg.Error:
            conn.close()

    @contextmanager
    def _transaction_rolled_back(self, begin: str) -> Iterator[Connection]:
        with self.session() as conn:
            with conn.cursor() as cur:
                cur.execute(begin)
            try:
                yield conn
            finally:
                if not conn.closed:
                    conn.rollback()

    @contextmanager
    def read(self) -> Iterator[Connection]:
        """A READ ONLY transaction, whatever the mode; always rolled back at the end."""
        with self._transaction_rolled_back("BEGIN READ ONLY") as conn:
            yield conn

    @contextmanager
    def rolled_back(self) -> Iterator[Connection]:
        """A read-write transaction that is always rolled back (``dry-run`` mode or stronger)."""
        self.require(AccessMode.DRY_RUN, "running statements in a rolled-back transaction")
        with self._transaction_rolled_back("BEGIN READ WRITE") as conn:
            yield conn

    def require(self, needed: AccessMode, what: str) -> None:
        if not self.mode.allows(needed):
            raise ModeError(
                f"{what} needs mode {needed.value}; agent19 runs in {self.mode.value}",
                f"restart with --mode {needed.value} (or AGENT19_MODE={needed.value})",
            )

    def execute_read(self, query: str | sql.Composable, params: Any = None) -> list[dict[str, Any]]:
        with self.read() as conn:
            return conn.execute(query, params).fetchall()

    def release_idle(self) -> bool:
        """Close this process's pooled connections when none is in use, so that the target has no session
        of agent19's own (``CREATE DATABASE … TEMPLATE`` needs it free); the pool reopens on the next call.
        Returns False when a pooled connection is in use (then nothing is closed)."""
        for db in (self, self._reader):
            pool = db._pool if db is not None else None
            if pool is None:
                continue
            stats = pool.get_stats()
            if stats.get("pool_size", 0) - stats.get("pool_available", 0) > 0:
                return False
        for db in (self._reader, self):
            if db is not None and db._pool is not None:
                pool, db._pool = db._pool, None
                pool.close()
        return True

    def close(self) -> None:
        if self._reader is not None:
            self._reader.close()
            self._reader = None
        if self._pool is not None:
            self._pool.close()
            self._pool = None

