"""The capacity plan as a document: scaling triggers, the thresholds table, options, recommendations, Markdown.

Triggers are the charter's (storage 80 %, CPU 80 % sustained, connections 80 % of max, query p95 > 100 ms),
each evaluated with the measured value where SQL can measure it, else ``unknown`` with how to measure it.
The Markdown comes from ``agent19/report/templates/capacity_plan.md.j2``; nothing in it is a placeholder.
"""

from __future__ import annotations

from agent19.ops.capacity.model import CapacityPlan, CurrentState, Growth, Trigger
from agent19.optimize.assess import Measured, charter_thresholds
from agent19.report.render import environment
from agent19.units import human_size

STORAGE_PCT, CPU_PCT, CONNECTIONS_PCT, P95_MS, P95_MIN_CALLS = 80, 80, 80, 100, 10


def triggers(s: CurrentState, g: Growth, disk_size: int | None) -> list[Trigger]:
    out = []
    if disk_size:
        pct = 100 * s.cluster_bytes / disk_size
        when = f"; at the fitted growth 80 % in {g.days_to_80_pct:,.0f} days" if g.days_to_80_pct else ""
        out.append(Trigger(trigger="storage", threshold=f"{STORAGE_PCT} % of the disk", action="increase storage",
                           lead_time="4 hours", status="triggered" if pct >= STORAGE_PCT else "ok",
                           value=f"{human_size(s.cluster_bytes)} of {human_size(disk_size)} ({pct:.1f} %){when}"))
    else:
        out.append(Trigger(trigger="storage", threshold=f"{STORAGE_PCT} % of the disk", action="increase storage",
                           lead_time="4 hours", status="unknown",
                           value=f"data {human_size(s.cluster_bytes)}; the disk size is not given",
                           how_to_measure="SQL cannot see the disk: pass --disk-size (df -B1 on the filesystem of "
                           "the data directory, or the volume size of a managed database)"))
    out.append(Trigger(trigger="CPU", threshold=f"{CPU_PCT} % sustained", action="upgrade the instance",
                       lead_time="1-2 hours", status="unknown",
                       how_to_measure="not visible to SQL: the host's metrics (node_exporter, `mpstat 60`, "
                       "`sar -u`) or the cloud provider's CPUUtilization over a peak day"))
    pct = 100 * s.connections_used / s.max_connections if s.max_connections else 0
    out.append(Trigger(trigger="connections", threshold=f"{CONNECTIONS_PCT} % of max_connections",
                       action="add connection pooling (agent19 pgbouncer config)", lead_time="2-4 hours",
                       status="triggered" if pct >= CONNECTIONS_PCT else "ok",
                       value=f"{s.connections_used} of {s.max_connections} ({pct:.1f} %) now - measure at peak"))
    judged = [st for st in s.top_statements if st.calls >= P95_MIN_CALLS]
    if judged:
        worst = max(judged, key=lambda st: st.p95_estimate_ms)
        out.append(Trigger(trigger="query latency", threshold=f"p95 > {P95_MS} ms", action="optimize or scale",
                           lead_time="varies", status="triggered" if worst.p95_estimate_ms > P95_MS else "ok",
                           value=f"worst estimated p95 {worst.p95_estimate_ms:,.1f} ms (mean + 1.645 sigma, "
                           f"{worst.calls:,} calls): {worst.query[:120]}"))
    else:
        out.append(Trigger(trigger="query latency", threshold=f"p95 > {P95_MS} ms", action="optimize or scale",
                           lead_time="varies", status="unknown",
                           how_to_measure=s.statements_unavailable or f"no statement has {P95_MIN_CALLS}+ calls in "
                           "pg_stat_statements yet: let the workload run (or take p95 from the application's "
                           "metrics)"))
    out.append(Trigger(trigger="storage IOPS", threshold="provisioned IOPS", action="faster storage or more memory",
                       lead_time="hours", status="unknown",
                       how_to_measure="not visible to SQL: `iostat -x 60` on the host or the provider's volume "
                       "metrics; blocks read since the reset are in pg_stat_database.blks_read"))
    return out


def measured(s: CurrentState, timed: bool | None) -> Measured:
    tables = [o for o in s.largest if o.kind == "table"]
    biggest = max(tables, key=lambda o: o.rows or 0, default=None)
    slow = [st for st in s.top_statements if st.calls >= P95_MIN_CALLS]
    slowest = max(slow, key=lambda st: st.mean_ms, default=None)
    return Measured(
        largest_table=biggest.name if biggest else None, largest_table_rows=biggest.rows if biggest else 0,
        largest_table_bytes=biggest.bytes if biggest else 0, database_bytes=s.database_bytes,
        largest_has_time_column=timed,
        rows_written_per_s=s.rates.rows_written_per_s if s.rates else None,
        read_qps=s.rates.read_statements_per_s if s.rates else None,
        hidden_qps=s.rates.hidden_statements_per_s if s.rates else None,
        slowest_mean_ms=slowest.mean_ms if slowest else None,
        slowest_query=slowest.query if slowest else None, connections=s.connections_used,
        window_s=s.rates.window_s if s.rates else None,
    )


def options(s: CurrentState) -> list[str]:
    return [
        "vertical: more memory first when the cache hit ratio falls "
        f"(now {s.cache_hit_pct if s.cache_hit_pct is not None else 'unknown'} %), more CPU when CPU is the limit "
        "(instance sizes and prices are the provider's; agent19 cannot see them)",
        "connection pooling: PgBouncer in transaction mode (agent19 pgbouncer config)",
        "read replicas for read traffic that tolerates lag (agent19 replication for their state)",
        "partitioning by time for tables past ~100M rows with time-based queries and retention",
        "caching in the application for repeated identical reads",
        "sharding only when one primary cannot hold the data or the writes (see the thresholds)",
    ]


def recommendations(s: CurrentState, g: Growth, trig: list[Trigger], disk_size: int | None) -> list[str]:
    out = []
    for t in trig:
        if t.status == "triggered":
            out.append(f"now: {t.trigger} is past {t.threshold} ({t.value}): {t.action}")
    if g.not_known_yet:
        out.append(f"now: {g.not_known_yet}")
    elif g.source == "none" or g.fit is None:
        out.append("now: start recording growth - `agent19 capacity sample` daily from cron; re-plan after a week")
    elif g.days_to_80_pct is not None:
        out.append(f"plan: the disk reaches 80 % in about {g.days_to_80_pct:,.0f} days at the fitted "
                   f"{g.fit.method.replace('_', ' ')} growth ({g.fit.monthly_growth_pct:,.2f} % a month) - grow "
                   "storage before then (lead time 4 hours)")
    elif disk_size is None:
        out.append("plan: give --disk-size to turn the growth into days until the disk fills")
    if g.fit is not None and g.fit.error_pct is not None and g.fit.error_pct > 10:
        out.append(f"check: the growth fit's error is {g.fit.error_pct:.1f} % on the observed points: treat the "
                   "projections as rough and keep sampling")
    unknown = [t.trigger for t in trig if t.status == "unknown"]
    if unknown:
        out.append(f"measure: {', '.join(unknown)} cannot be measured from SQL - wire them into monitoring (see "
                   "each trigger's how_to_measure)")
    if s.cache_hit_pct is not None and s.cache_hit_pct < 99:
        out.append(f"watch: cache hit ratio {s.cache_hit_pct} % (< 99 %): the working set is outgrowing memory")
    return out or ["nothing is near a trigger: re-run this plan monthly with fresh samples"]


def document(s: CurrentState, g: Growth, timed: bool | None, disk_size: int | None) -> CapacityPlan:
    trig = triggers(s, g, disk_size)
    plan = CapacityPlan(current=s, growth=g, triggers=trig, thresholds=charter_thresholds(measured(s, timed)),
                        scaling_options=options(s), recommendations=recommendations(s, g, trig, disk_size))
    plan.markdown = render_markdown(plan)
    return plan


def render_markdown(plan: CapacityPlan) -> str:
    env = environment()
    env.filters.setdefault("size", human_size)
    text = env.get_template("capacity_plan.md.j2").render(p=plan)
    while "\n\n\n" in text:
        text = text.replace("\n\n\n", "\n\n")
    return text.strip() + "\n"
