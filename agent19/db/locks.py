"""PostgreSQL's table lock modes, weakest to strongest, in pg_locks' spelling: data only, no driver and no models
(classification and the lint rules rank locks with it on a path that never opens a database)."""

from __future__ import annotations

LOCK_MODES = (
    "AccessShareLock",
    "RowShareLock",
    "RowExclusiveLock",
    "ShareUpdateExclusiveLock",
    "ShareLock",
    "ShareRowExclusiveLock",
    "ExclusiveLock",
    "AccessExclusiveLock",
)
LOCK_RANK = {mode: i for i, mode in enumerate(LOCK_MODES)}


def strongest_mode(modes: list[str] | set[str]) -> str | None:
    return max(modes, key=lambda m: LOCK_RANK.get(m, -1)) if modes else None
