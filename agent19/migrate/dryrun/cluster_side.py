"""A dry run's cluster-wide reads, on a session of their own beside the target's.

Before the migration runs, a dry run drops leftover scratch databases (:func:`scratch.drop_leftovers`) and
fingerprints the cluster (:func:`cluster_state.fingerprint`); after it, it fingerprints the cluster again.
None of this reads the target database — every catalog the fingerprint reads is shared by the whole
cluster — so :class:`ClusterSide` does it on one admin session (to ``postgres``, else the target), in a
helper thread, while the dry run's own session reads the target's catalog: the fixed cost of a dry run is
then the longer of the two, not their sum, and the admin session is opened once for all three.

Without an admin session (the login may connect nowhere else, or the server refuses one more session) the
leftovers are not dropped, as before, and the fingerprints are read on the dry run's own session.
"""

from __future__ import annotations

import logging
from concurrent.futures import Future, ThreadPoolExecutor
from typing import Any

import psycopg

from agent19.db.connection import Database
from agent19.migrate.dryrun import scratch as scratch_mod
from agent19.migrate.dryrun.cluster_state import ClusterFingerprint, fingerprint

log = logging.getLogger(__name__)


class ClusterSide:
    """Starts at once: the admin session, leftovers dropped, the cluster fingerprinted (see the module doc)."""

    def __init__(self, db: Database) -> None:
        self.db = db
        self._admin: psycopg.Connection[Any] | None = None
        self._pool = ThreadPoolExecutor(1, thread_name_prefix="agent19-cluster")
        self._first: Future[tuple[list[str], ClusterFingerprint | None]] = self._pool.submit(self._start)
        self._again: Future[ClusterFingerprint | None] | None = None

    def _start(self) -> tuple[list[str], ClusterFingerprint | None]:
        try:
            self._admin = scratch_mod.admin_session(self.db)
        except psycopg.Error as exc:
            log.debug("no admin session (%s): leftovers stay, the target's session fingerprints", exc)
            return [], None
        try:
            leftovers = scratch_mod.drop_leftovers(self.db, self._admin)
        except psycopg.Error:
            leftovers = []  # cannot list databases here; a scratch database, if needed, will say why
        return leftovers, self._fingerprint()

    def _fingerprint(self) -> ClusterFingerprint | None:
        if self._admin is None or self._admin.closed:
            return None
        try:
            return fingerprint(self._admin)
        except psycopg.OperationalError as exc:  # the admin session broke: the target's session reads it
            log.debug("cluster fingerprint on the admin session failed: %s", exc)
            return None

    def before(self, conn: psycopg.Connection[Any]) -> tuple[list[str], ClusterFingerprint]:
        """The leftover scratch databases dropped and the cluster's fingerprint before the migration (waits)."""
        leftovers, cluster = self._first.result()
        return leftovers, cluster if cluster is not None else fingerprint(conn)

    def start_after(self) -> None:
        """Start fingerprinting the cluster again (the migration is over); :meth:`after` returns it."""
        if self._again is None:
            self._again = self._pool.submit(self._fingerprint)

    def after(self, conn: psycopg.Connection[Any]) -> ClusterFingerprint:
        self.start_after()
        assert self._again is not None
        cluster = self._again.result()
        return cluster if cluster is not None else fingerprint(conn)

    def close(self) -> None:
        """Wait for the helper's work to end, then close the admin session."""
        self._pool.shutdown(wait=True)
        if self._admin is not None:
            self._admin.close()
