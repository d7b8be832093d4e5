"""A catalog snapshot reused for a few seconds by the advisory tools (lint, plan, runbook) of one process.

Reading the catalog is most of what a small plan costs with a database (a dozen catalog queries); an assistant
or a pipeline calling plan_migration and lint_migration in a row, or many sessions of one HTTP server, would
read the same catalog again and again. The rule:

* a snapshot of a database (by its DSN) is reused for at most :data:`SNAPSHOT_TTL_S` seconds;
* only when agent19 cannot have changed that database's schema itself: in ``read-only`` mode (every session is
  read-only) and in ``dry-run`` mode (every statement runs in a transaction that is rolled back, or in a
  scratch database). In ``execute`` mode, where agent19's own writes change the schema, every call reads afresh;
* a schema change made by someone else shows within :data:`SNAPSHOT_TTL_S` seconds.

Every caller within the TTL gets the same snapshot object, shared read-only, not a copy (a deep copy of a
2,000-table snapshot took longer than planning a migration against it): the engine reads a snapshot and never
changes it. What a migration does to the catalog is kept beside it, in the classification's own state
(:class:`agent19.migrate.classification.state.MigrationState`: the relations created, dropped or renamed, the
columns added), never written into the snapshot; code that needs a changed snapshot makes one with
``model_copy(update=...)`` (new lists, the shared ones untouched). Tools that decide whether a statement may run
(the confirmation protocol, run_sql's policies) always read the catalog afresh.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable

from agent19.config import AccessMode
from agent19.db.models import SchemaSnapshot

SNAPSHOT_TTL_S = 2.0
_CACHED_MODES = (AccessMode.READ_ONLY, AccessMode.DRY_RUN)
_entries: dict[str, tuple[float, SchemaSnapshot]] = {}
_locks: dict[str, threading.Lock] = {}
_guard = threading.Lock()


def cached_snapshot(dsn: str, mode: AccessMode, load: Callable[[], SchemaSnapshot]) -> SchemaSnapshot:
    """The snapshot of the database at ``dsn``: the one read less than :data:`SNAPSHOT_TTL_S` ago, else
    ``load()`` (one reader at a time per database: calls arriving together share one read). The snapshot is
    shared with the other callers: read it, never change it."""
    if mode not in _CACHED_MODES:
        return load()
    with _guard:
        lock = _locks.setdefault(dsn, threading.Lock())
    with lock:
        entry = _entries.get(dsn)
        if entry is None or time.monotonic() - entry[0] >= SNAPSHOT_TTL_S:
            started = time.monotonic()  # the snapshot's age counts from before its reads began
            entry = (started, load())
            _entries[dsn] = entry
        return entry[1]


def forget(dsn: str | None = None) -> None:
    """Drop the snapshot of ``dsn`` (every snapshot when None): the next call reads the catalog again."""
    with _guard:
        if dsn is None:
            _entries.clear()
        else:
            _entries.pop(dsn, None)
