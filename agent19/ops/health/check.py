"""``health_check``: every check, each ok / warning / critical / unknown with value, threshold, evidence, fix.

The checks (names are stable; the output contract is in :mod:`agent19.ops.health.model`):

| check | module | judges |
|---|---|---|
| connections | health_sessions | client connections / max_connections |
| long_running_queries, idle_in_transaction, blocked_sessions, prepared_transactions | health_sessions | ages now |
| xid_wraparound, multixact_wraparound | health_vacuum | age of every database vs 2^31; tables nearest freeze |
| dead_tuples, stale_statistics | health_vacuum | per table, since the statistics reset |
| sequences, sequence_column_type | health_objects | every sequence vs its (column's) range |
| invalid_indexes, index_health | health_objects | :func:`agent19.optimize.hygiene.index_health` |
| cache_hit_tables, cache_hit_indexes, checkpoints, temp_files, deadlocks | health_stats | since the reset |
| replication_lag, failover_readiness, replication_slots, archiving, standby_replay | health_replication | now |

Thresholds: :mod:`agent19.ops.health.thresholds`. How queries run (never waiting): :mod:`agent19.ops.health.probe`.
"""

from __future__ import annotations

import time

from agent19.db.connection import Database
from agent19.ops.health import objects as health_objects
from agent19.ops.health import sessions as health_sessions
from agent19.ops.health import stats as health_stats
from agent19.ops.health import vacuum as health_vacuum
from agent19.ops.health.model import Check, HealthReport, summarize
from agent19.ops.health.probe import MONITOR, CheckFn, Probe, run_check
from agent19.ops.health.replication import NAMES as REPLICATION_NAMES
from agent19.ops.health.replication import replication_checks
from agent19.ops.health.thresholds import HealthThresholds

CHECKS: list[tuple[tuple[str, ...], CheckFn]] = [
    (("connections",), health_sessions.connections),
    (("long_running_queries",), health_sessions.long_running),
    (("idle_in_transaction",), health_sessions.idle_in_transaction),
    (("blocked_sessions",), health_sessions.blocked),
    (("prepared_transactions",), health_sessions.prepared_transactions),
    (("xid_wraparound", "multixact_wraparound"), health_vacuum.wraparound),
    (("dead_tuples",), health_vacuum.dead_tuples),
    (("stale_statistics",), health_vacuum.stale_statistics),
    (("sequences", "sequence_column_type"), health_objects.sequences),
    (("invalid_indexes", "index_health"), health_objects.indexes),
    (("cache_hit_tables", "cache_hit_indexes"), health_stats.cache_hit),
    (("checkpoints",), health_stats.checkpoints),
    (("temp_files", "deadlocks"), health_stats.temp_and_deadlocks),
    (REPLICATION_NAMES[:4], replication_checks),
]
ALL_CHECKS = tuple(n for names, _ in CHECKS for n in names) + REPLICATION_NAMES[4:]


def health_check(db: Database, thresholds: HealthThresholds | None = None,
                 only: list[str] | None = None) -> HealthReport:
    """Run the checks (``only`` those named) on ``db``'s server, each with short timeouts."""
    t = thresholds or HealthThresholds()
    start = time.monotonic()
    probe = Probe.open(db, t)
    try:
        checks: list[Check] = []
        for names, fn in CHECKS:
            if only and not set(names) & set(only) and not (fn is replication_checks and "standby_replay" in only):
                continue
            checks += run_check(probe, names, fn)
    finally:
        probe.close()
    if only:
        checks = [c for c in checks if c.check in only]
    f = probe.facts
    cannot_see = [] if f.read_all_stats else [
        f"other roles' sessions (state, timing, query) in pg_stat_activity: needs {MONITOR}",
        f"standbys' positions (pg_stat_replication) and the WAL receiver: needs {MONITOR}"]
    if not f.archive_dir:
        cannot_see.append("WAL segments waiting for the archiver (pg_ls_archive_statusdir): needs pg_monitor")
    cannot_see += sorted({f"{c.check}: {c.needs}" for c in checks if c.needs and c.check == "sequences"})
    summary = summarize(
        checks, t.fail_on, role="standby" if f.standby else "primary", server_version=f.version,
        database=f.database, user=f.acting_as, privileges=f.privileges, cannot_see=cannot_see,
        duration_ms=round((time.monotonic() - start) * 1000, 1), thresholds=t.model_dump(),
    )
    return HealthReport(checks=checks, summary=summary)
