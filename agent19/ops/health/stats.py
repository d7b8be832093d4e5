"""Health checks on cumulative statistics: cache hit ratios, checkpoints, temporary files, deadlocks.

These counters grow from the last statistics reset; each check says since when, and judges a ratio
only once enough happened to judge it (blocks read, checkpoints). Observed: pg_statio_* count a relation
extension (a new page) as a block read, so right after a bulk load the hit ratio is low though nothing came
from disk — judge it after ``pg_stat_reset()`` following the load.
"""

from __future__ import annotations

from agent19.ops.health.model import Check, grade
from agent19.ops.health.probe import Probe
from agent19.units import human_size

Q_CACHE = """
SELECT coalesce(sum(heap_blks_hit), 0)::bigint AS table_hit, coalesce(sum(heap_blks_read), 0)::bigint AS table_read,
       coalesce(sum(idx_blks_hit), 0)::bigint AS index_hit, coalesce(sum(idx_blks_read), 0)::bigint AS index_read
  FROM pg_statio_user_tables"""
Q_DATABASE = """
SELECT datname AS database, temp_files, temp_bytes, deadlocks, stats_reset::text AS stats_reset
  FROM pg_stat_database WHERE datname IS NOT NULL ORDER BY datname"""


def cache_hit(probe: Probe) -> list[Check]:
    t = probe.thresholds
    r = probe.rows(Q_CACHE)[0]
    out = []
    for kind, name in (("table", "cache_hit_tables"), ("index", "cache_hit_indexes")):
        hit, read = r[f"{kind}_hit"], r[f"{kind}_read"]
        total = hit + read
        pct = round(100 * hit / total, 2) if total else None
        judged = total >= t.cache_hit_min_blocks
        status = grade(pct, None, t.cache_hit_min_pct, below=True) if judged else "ok"
        status = "warning" if status == "critical" else status
        out.append(Check(
            check=name, status=status, value={"hit_pct": pct, "blocks_hit": hit, "blocks_read": read},
            threshold={"min_pct": t.cache_hit_min_pct, "judged_after_blocks": t.cache_hit_min_blocks},
            evidence=Q_CACHE.strip(), window=probe.facts.db_window,
            message=(f"{kind} cache hit ratio {pct} % over {total:,} blocks" if judged else
                     f"{kind} cache hit ratio {pct if pct is not None else '-'} % over only {total:,} blocks: too "
                     f"few to judge (from {t.cache_hit_min_blocks:,})"),
            fix=None if status == "ok" else f"the working set of {kind}s does not fit in shared_buffers (and the OS "
            "cache): find the queries reading most blocks (pg_stat_statements shared_blks_read), add indexes or "
            "memory (shared_buffers ~25 % of RAM)",
        ))
    return out


def checkpoints(probe: Probe) -> list[Check]:
    t = probe.thresholds
    timed, requested, view = ("num_timed", "num_requested", "pg_stat_checkpointer") \
        if probe.facts.version_num >= 170000 else ("checkpoints_timed", "checkpoints_req", "pg_stat_bgwriter")
    sql = f"""SELECT {timed} AS timed, {requested} AS requested, stats_reset::text AS stats_reset,
       current_setting('max_wal_size') AS max_wal_size, current_setting('checkpoint_timeout') AS checkpoint_timeout
  FROM {view}"""
    r = probe.rows(sql)[0]
    total = r["timed"] + r["requested"]
    pct = round(100 * r["requested"] / total, 1) if total else None
    judged = total >= t.checkpoints_min
    status = grade(pct, t.checkpoints_requested_pct, None) if judged else "ok"
    return [Check(
        check="checkpoints", status=status, value={**r, "requested_pct": pct}, evidence=sql,
        threshold={"warning_requested_pct": t.checkpoints_requested_pct, "judged_after": t.checkpoints_min},
        window=f"since {r['stats_reset']}" if r["stats_reset"] else "since the cluster started counting",
        message=(f"{r['requested']} of {total} checkpoints requested ({pct} %)" if judged else
                 f"{total} checkpoints so far: too few to judge (from {t.checkpoints_min})"),
        fix=None if status == "ok" else f"checkpoints forced by WAL volume: raise max_wal_size (now "
        f"{r['max_wal_size']}) so they come from checkpoint_timeout ({r['checkpoint_timeout']}); "
        "ALTER SYSTEM SET max_wal_size = '...'; SELECT pg_reload_conf();",
    )]


def temp_and_deadlocks(probe: Probe) -> list[Check]:
    t = probe.thresholds
    rows = probe.rows(Q_DATABASE)
    temp = [r for r in rows if r["temp_bytes"] >= t.temp_bytes_warning]
    dead = [r for r in rows if t.deadlocks_warning > 0 and r["deadlocks"] >= t.deadlocks_warning]
    resets = {r["stats_reset"] for r in rows if r["stats_reset"]}
    window = "since the statistics were last reset" + (f" ({', '.join(sorted(resets))})" if resets else
                                                        " (never reset)")
    return [
        Check(check="temp_files", status="warning" if temp else "ok", window=window, evidence=Q_DATABASE.strip(),
              value=[{k: r[k] for k in ("database", "temp_files", "temp_bytes")} for r in rows],
              threshold={"warning_bytes": t.temp_bytes_warning}, objects=[r["database"] for r in temp],
              message="; ".join(f"{r['database']}: {r['temp_files']:,} temp files, {human_size(r['temp_bytes'])}"
                                for r in temp) or
              f"no database wrote >= {human_size(t.temp_bytes_warning)} of temporary files",
              fix=None if not temp else "sorts and hashes spill to disk: find them (pg_stat_statements "
              "temp_blks_written, log_temp_files = 0) and raise work_mem for those queries (SET LOCAL work_mem) "
              "or add indexes that avoid the sort"),
        Check(check="deadlocks", status="warning" if dead else "ok", window=window, evidence=Q_DATABASE.strip(),
              value=[{k: r[k] for k in ("database", "deadlocks")} for r in rows],
              threshold={"warning_count": t.deadlocks_warning}, objects=[r["database"] for r in dead],
              message="; ".join(f"{r['database']}: {r['deadlocks']} deadlocks" for r in dead) or "no deadlock",
              fix=None if not dead else "the server log has both statements of each deadlock (log_lock_waits = on "
              "helps): make the transactions take their row locks in the same order; then SELECT pg_stat_reset() "
              "to start counting again"),
    ]
