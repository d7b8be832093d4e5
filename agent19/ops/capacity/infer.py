"""Growth inferred from the data itself, when no samples were recorded.

1. **A creation timestamp column.** Found from the catalog, never guessed from data: a ``timestamp``,
   ``timestamptz`` or ``date`` column named like ``created_at`` / ``inserted_at`` / ``creation_date`` /
   ``created`` that either leads an index or defaults to ``now()`` (``CURRENT_TIMESTAMP``,
   ``clock_timestamp()``…). Rows are counted per month of that column (a ``TABLESAMPLE SYSTEM`` of about a
   million rows on bigger tables, scaled back), giving the cumulative rows — and, at the table's bytes per
   row today, bytes — at each month's end. Tables without such a column are taken as static. Rows whose
   column is NULL count from the start; rows dated in the future are ignored.
2. **Inserts since the statistics reset.** ``n_tup_ins - n_tup_del`` of pg_stat_user_tables over the time
   since ``pg_stat_database.stats_reset``: one average rate (no fit error can be computed from it).
"""

from __future__ import annotations

import re
from collections.abc import Callable
from datetime import datetime, timedelta
from typing import Any

from agent19.migrate.patterns.sqlnames import literal
from agent19.ops.capacity.fit import MIN_SPAN_DAYS
from agent19.ops.capacity.model import DAYS_PER_MONTH, CurrentState, Fit, Point
from agent19.ops.health.probe import Probe

NAME = r"^(created|inserted|creation|added|insert|create)(_?(at|on|date|time|ts|timestamp|dt))?$"
NOW_DEFAULTS = r"(now\(\)|current_timestamp|clock_timestamp\(\)|statement_timestamp\(\)|transaction_timestamp\(\)" \
    r"|current_date|localtimestamp)"
Q_CREATION_COLUMNS = f"""
SELECT DISTINCT ON (c.oid) format('%I.%I', n.nspname, c.relname) AS table_name, quote_ident(a.attname) AS col,
       a.attname AS column_name, c.reltuples::bigint AS reltuples, a.atttypid = 'timestamptz'::regtype AS tz,
       pg_get_expr(d.adbin, d.adrelid) AS default_expr,
       EXISTS (SELECT FROM pg_index i WHERE i.indrelid = c.oid AND i.indkey[0] = a.attnum) AS indexed
  FROM pg_attribute a JOIN pg_class c ON c.oid = a.attrelid JOIN pg_namespace n ON n.oid = c.relnamespace
  LEFT JOIN pg_attrdef d ON d.adrelid = a.attrelid AND d.adnum = a.attnum
 WHERE c.relkind IN ('r', 'p') AND NOT c.relispartition AND a.attnum > 0 AND NOT a.attisdropped
   AND a.atttypid IN ('timestamptz'::regtype, 'timestamp'::regtype, 'date'::regtype)
   AND lower(a.attname) ~ '{NAME}'
   AND n.nspname NOT IN ('pg_catalog', 'information_schema') AND NOT pg_is_other_temp_schema(n.oid)
   AND (EXISTS (SELECT FROM pg_index i WHERE i.indrelid = c.oid AND i.indkey[0] = a.attnum)
        OR lower(coalesce(pg_get_expr(d.adbin, d.adrelid), '')) ~ '{NOW_DEFAULTS}')
   AND has_table_privilege(c.oid, 'SELECT')
 ORDER BY c.oid, (d.adbin IS NOT NULL) DESC, a.attnum"""
SAMPLE_ROWS = 1_000_000
MAX_TABLES = 200
BATCH = 100
"""Tables counted in one query (UNION ALL): round trips, not scans, dominate on many small tables."""
EVIDENCE_LINES = 20


def _month_start(d: datetime) -> datetime:
    return d.replace(day=1, hour=0, minute=0, second=0, microsecond=0)


def _next_month(d: datetime) -> datetime:
    return (d.replace(day=1) + timedelta(days=32)).replace(day=1)


def creation_columns(probe: Probe) -> list[dict[str, Any]]:
    return probe.rows(Q_CREATION_COLUMNS)


def _monthly_sql(i: int, c: dict[str, Any]) -> tuple[str, float]:
    """The per-month count of one table's creation column (sampled past a million rows), and its scale."""
    pct = 100.0
    if c["reltuples"] > SAMPLE_ROWS:
        pct = max(round(100.0 * SAMPLE_ROWS / c["reltuples"], 4), 0.0001)
    sample = f" TABLESAMPLE SYSTEM ({pct})" if pct < 100 else ""
    utc = f"{c['col']} AT TIME ZONE 'UTC'" if c["tz"] else f"{c['col']}::timestamp"  # months in UTC, as `now`
    month = f"date_trunc('month', {utc})"  # grouped by itself: the evidence shows the query without `t`
    return (f"SELECT {i} AS t, {month} AS month, count(*) AS n "
            f"FROM {c['table_name']}{sample} WHERE {c['col']} IS NULL OR {c['col']} <= now() GROUP BY {month}",
            100.0 / pct)


Rows = Callable[[str], list[dict[str, Any]]]


def _monthly(scan: Rows, found: list[dict[str, Any]]) -> list[tuple[dict[datetime, float], float, str]]:
    """Per table: rows per month (scaled when sampled), undated rows, and its query — BATCH tables a query."""
    out: list[tuple[dict[datetime, float], float, str]] = []
    for start in range(0, len(found), BATCH):
        chunk = found[start:start + BATCH]
        parts = [_monthly_sql(i, c) for i, c in enumerate(chunk)]
        results: list[tuple[dict[datetime, float], float, str]] = [({}, 0.0, sql) for sql, _ in parts]
        for r in scan("\nUNION ALL\n".join(sql for sql, _ in parts)):
            counts, _, _ = results[r["t"]]
            n = r["n"] * parts[r["t"]][1]
            if r["month"] is None:
                results[r["t"]] = (counts, n, parts[r["t"]][0])
            else:
                counts[r["month"]] = n
        out += results
    return out


def from_creation_columns(probe: Probe, state: CurrentState, found: list[dict[str, Any]], scan: Rows,
                          max_months: int = 36) -> tuple[list[Point], list[str]]:
    """Cumulative bytes and rows of the database at each month's end (and now) from creation columns, the tables'
    rows counted by ``scan`` (the login user reads run as: :func:`agent19.ops.capacity.plan.row_scanner`).

    The :data:`MAX_TABLES` largest tables with a creation column are counted (others are small next to them
    and are taken as static, as tables without one are).
    """
    sizes = _table_bytes(probe, [c["table_name"] for c in found])
    found = sorted(found, key=lambda c: -sizes.get(c["table_name"], 0))
    skipped = found[MAX_TABLES:]
    found = found[:MAX_TABLES]
    tables, evidence = [], []
    for c, (counts, undated, sql) in zip(found, _monthly(scan, found), strict=True):
        total = sum(counts.values()) + undated
        if not counts or total <= 0:
            continue
        bpr = sizes.get(c["table_name"], 0) / total
        tables.append((counts, undated, bpr))
        why = "indexed" if c["indexed"] else f"default {c['default_expr']}"
        if len(evidence) < EVIDENCE_LINES:
            evidence.append(f"{c['table_name']}.{c['column_name']} ({why}): {round(total):,} rows, "
                            f"{bpr:,.0f} bytes a row - {re.sub(r'^SELECT [0-9]+ AS t, ', 'SELECT ', sql)}")
    if len(tables) > EVIDENCE_LINES:
        evidence.append(f"... and {len(tables) - EVIDENCE_LINES} more tables with a creation column")
    if skipped:
        evidence.append(f"{len(skipped)} smaller tables with a creation column taken as static "
                        f"({sum(sizes.get(c['table_name'], 0) for c in skipped):,} bytes)")
    if not tables:
        return [], evidence
    now = datetime.fromisoformat(state.measured_at.replace("Z", "+00:00")).replace(tzinfo=None)
    first = min(min(t[0]) for t in tables)
    first = max(first, _month_start(now) - timedelta(days=int(max_months * DAYS_PER_MONTH)))
    first = _month_start(first)
    grown_now = sum(sum(t[0].values()) * t[2] + t[1] * t[2] for t in tables)
    static = state.database_bytes - grown_now
    rows_static = state.rows - sum(sum(t[0].values()) + t[1] for t in tables)
    pts: list[Point] = []
    boundary = _next_month(first)
    while True:
        at = min(boundary, now)
        rows = sum(t[1] + sum(n for m, n in t[0].items() if m < at) for t in tables)
        nbytes = static + sum(t[2] * (t[1] + sum(n for m, n in t[0].items() if m < at)) for t in tables)
        pts.append(Point(at=at.strftime("%Y-%m-%dT%H:%M:%SZ"), bytes=max(round(nbytes), 1),
                         rows=max(round(rows + max(rows_static, 0)), 0)))
        if boundary >= now:
            break
        boundary = _next_month(boundary)
    return pts, evidence


def _table_bytes(probe: Probe, names: list[str]) -> dict[str, int]:
    if not names:
        return {}
    rows = probe.rows("SELECT format('%I.%I', n.nspname, c.relname) AS name, pg_total_relation_size(c.oid) AS b "
                      "FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace WHERE c.relkind IN ('r', 'p') "
                      "AND format('%I.%I', n.nspname, c.relname) = ANY(ARRAY[" +
                      ", ".join(map(literal, names)) + "]::text[])")
    return {r["name"]: int(r["b"]) for r in rows}


Q_INSERTS = """
SELECT format('%I.%I', s.schemaname, s.relname) AS name, s.n_tup_ins - s.n_tup_del AS net,
       pg_total_relation_size(s.relid) AS bytes, greatest(s.n_live_tup, 1) AS live,
       extract(epoch FROM now() - d.stats_reset)::float8 / 86400 AS days
  FROM pg_stat_user_tables s, pg_stat_database d
 WHERE d.datname = current_database() AND d.stats_reset IS NOT NULL"""


def from_inserts(probe: Probe, state: CurrentState) -> tuple[Fit | None, Fit | None, str]:
    """One linear rate from net inserts since the statistics reset (bytes and rows), or why not."""
    rows = probe.rows(Q_INSERTS)
    if not rows:
        return None, None, ("the statistics of this database were never reset, so the time over which "
                            "pg_stat_user_tables counted inserts is unknown")
    days = rows[0]["days"]
    if days < MIN_SPAN_DAYS:
        return None, None, (f"the statistics were reset {days:.2f} days ago: a rate of inserts needs at least "
                            f"{MIN_SPAN_DAYS:.0f} days since the reset")
    net_rows = sum(r["net"] for r in rows)
    net_bytes = sum(r["net"] * r["bytes"] / r["live"] for r in rows)
    per = DAYS_PER_MONTH / days

    def fit(unit: str, value: float, now: float) -> Fit:
        return Fit(method="linear", unit=unit, per_month=round(value * per, 1),  # type: ignore[arg-type]
                   monthly_growth_pct=round(100 * value * per / now, 3) if now else 0.0, error_pct=None,
                   points=2, span_days=round(days, 3))
    return (fit("bytes", net_bytes, state.database_bytes), fit("rows", net_rows, state.rows),
            f"{Q_INSERTS.strip()}  -- {net_rows:,} net rows inserted in {days:.1f} days")
