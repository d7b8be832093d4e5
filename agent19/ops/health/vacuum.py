"""Health checks on vacuum: XID and multixact wraparound, dead tuples, stale planner statistics.

Wraparound is judged on every database's ``datfrozenxid`` / ``datminmxid`` age against 2^31 (the point
where the server stops taking writes); the tables of the current database nearest
``autovacuum_freeze_max_age`` come with it. Dead tuples and modifications since the last analyze come
from pg_stat_user_tables, counted since the database's statistics were last reset.
"""

from __future__ import annotations

from agent19.ops.health.model import Check, grade, worst
from agent19.ops.health.probe import Probe
from agent19.ops.health.thresholds import WRAPAROUND_LIMIT
from agent19.units import human_duration

Q_DATABASES = """
SELECT datname AS database, age(datfrozenxid)::bigint AS xid_age, mxid_age(datminmxid)::bigint AS mxid_age
  FROM pg_database ORDER BY age(datfrozenxid) DESC"""
Q_TABLES = """
SELECT format('%I.%I', n.nspname, c.relname) AS "table", age(c.relfrozenxid)::bigint AS xid_age,
       mxid_age(c.relminmxid)::bigint AS mxid_age,
       current_setting('autovacuum_freeze_max_age')::bigint AS freeze_max_age,
       current_setting('autovacuum_multixact_freeze_max_age')::bigint AS mxid_freeze_max_age
  FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
 WHERE c.relkind IN ('r', 'm', 't') AND c.relfrozenxid <> '0'::xid
 ORDER BY age(c.relfrozenxid) DESC LIMIT 5"""


def wraparound(probe: Probe) -> list[Check]:
    t = probe.thresholds
    dbs = probe.rows(Q_DATABASES)
    tables = probe.rows(Q_TABLES)
    out = []
    for key, name, what, setting in (
        ("xid_age", "xid_wraparound", "transaction ID", "freeze_max_age"),
        ("mxid_age", "multixact_wraparound", "multixact ID", "mxid_freeze_max_age"),
    ):
        for d in dbs:
            d[f"{key}_pct"] = 100 * d[key] / WRAPAROUND_LIMIT
        ranked = sorted(dbs, key=lambda d: -d[key])
        statuses = {d["database"]: grade(d[f"{key}_pct"], t.wraparound_warning_pct, t.wraparound_critical_pct)
                    for d in ranked}
        flagged = [d for d in ranked if statuses[d["database"]] != "ok"]
        top = ranked[0] if ranked else None
        nearest = [{"table": r["table"], "age": r[key],
                    "pct_of_freeze_max_age": round(100 * r[key] / r[setting], 1) if r[setting] else None}
                   for r in sorted(tables, key=lambda r: -r[key])]
        out.append(Check(
            check=name, status=worst(list(statuses.values())), evidence=Q_DATABASES.strip() + ";\n" + Q_TABLES.strip(),
            value={"databases": [{"database": d["database"], "age": d[key], "pct": d[f"{key}_pct"]} for d in ranked],
                   "tables_nearest_freeze_max_age": nearest},
            threshold={"warning_pct": t.wraparound_warning_pct, "critical_pct": t.wraparound_critical_pct,
                       "limit": WRAPAROUND_LIMIT},
            objects=[d["database"] for d in flagged],
            message=(f"oldest {what} age {top[key]:,} in database {top['database']} = {top[f'{key}_pct']:.2f} % of "
                     f"2^31" if top else "no database") + (f"; {len(flagged)} database(s) past the threshold"
                                                           if flagged else ""),
            fix=None if not flagged else "run a freezing vacuum in "
            + ", ".join(d["database"] for d in flagged)
            + " (oldest tables first: vacuumdb --all --freeze --min-xid-age N / --min-mxid-age N, or VACUUM (FREEZE, "
            "VERBOSE) on the tables listed); first end what holds the xmin horizon back (long transactions, "
            "prepared transactions, stale replication slots) or the vacuum cannot advance it",
        ))
    return out


def dead_tuples(probe: Probe) -> list[Check]:
    t = probe.thresholds
    sql = f"""
SELECT format('%I.%I', s.schemaname, s.relname) AS "table", s.n_live_tup AS live, s.n_dead_tup AS dead,
       round(100.0 * s.n_dead_tup / greatest(s.n_live_tup + s.n_dead_tup, 1), 1)::float8 AS dead_pct,
       extract(epoch FROM now() - greatest(s.last_vacuum, s.last_autovacuum))::float8 AS vacuum_age_s,
       extract(epoch FROM now() - greatest(s.last_analyze, s.last_autoanalyze))::float8 AS analyze_age_s,
       coalesce(c.reloptions::text[] && ARRAY['autovacuum_enabled=false', 'autovacuum_enabled=off'], false)
         OR NOT current_setting('autovacuum')::bool AS autovacuum_off
  FROM pg_stat_user_tables s JOIN pg_class c ON c.oid = s.relid
 WHERE s.n_dead_tup >= {int(t.dead_tuples_min)}
   AND s.n_dead_tup >= {float(t.dead_tuples_pct) / 100} * (s.n_live_tup + s.n_dead_tup)
 ORDER BY s.n_dead_tup DESC LIMIT 50"""
    rows = probe.rows(sql)

    def when(age: float | None) -> str:
        return "never" if age is None else f"{human_duration(age)} ago"

    details = [f"{r['table']}: {r['dead']:,} dead rows ({r['dead_pct']} %), last vacuum {when(r['vacuum_age_s'])}"
               + (", autovacuum off" if r["autovacuum_off"] else "") for r in rows]
    fixes = [f"VACUUM (VERBOSE, ANALYZE) {r['table']};" + (f" ALTER TABLE {r['table']} RESET (autovacuum_enabled);"
                                                          if r["autovacuum_off"] else "") for r in rows[:10]]
    return [Check(
        check="dead_tuples", status="warning" if rows else "ok", value=rows, evidence=sql.strip(),
        objects=[r["table"] for r in rows], window=probe.facts.db_window,
        threshold={"warning_pct": t.dead_tuples_pct, "min_dead_rows": t.dead_tuples_min},
        message="; ".join(details) if rows else
        f"no table with >= {t.dead_tuples_pct} % and >= {t.dead_tuples_min:,} dead rows",
        fix=None if not rows else " ".join(fixes) + " If vacuum runs but the count stays, something holds the xmin "
        "horizon (see idle_in_transaction, prepared_transactions, replication_slots).",
    )]


def _ago(r: dict[str, object]) -> str:
    age = r["analyze_age_s"]
    return "never analyzed" if age is None else f"analyzed {human_duration(float(age))} ago"  # type: ignore[arg-type]


def stale_statistics(probe: Probe) -> list[Check]:
    t = probe.thresholds
    sql = f"""
SELECT format('%I.%I', s.schemaname, s.relname) AS "table", s.n_live_tup AS live,
       s.n_mod_since_analyze AS modified,
       extract(epoch FROM now() - greatest(s.last_analyze, s.last_autoanalyze))::float8 AS analyze_age_s
  FROM pg_stat_user_tables s
 WHERE s.n_mod_since_analyze >= {int(t.stale_stats_min)}
   AND s.n_mod_since_analyze >= {float(t.stale_stats_pct) / 100} * greatest(s.n_live_tup, 1)
 ORDER BY s.n_mod_since_analyze DESC LIMIT 50"""
    rows = probe.rows(sql)
    return [Check(
        check="stale_statistics", status="warning" if rows else "ok", value=rows, evidence=sql.strip(),
        objects=[r["table"] for r in rows], window=probe.facts.db_window,
        threshold={"warning_pct": t.stale_stats_pct, "min_modified_rows": t.stale_stats_min},
        message="; ".join(f"{r['table']}: {r['modified']:,} rows changed since the last analyze ({_ago(r)})"
                          for r in rows) if rows else "every table's planner statistics are recent enough",
        fix=None if not rows else " ".join(f"ANALYZE {r['table']};" for r in rows[:10])
        + " (autovacuum analyzes after autovacuum_analyze_scale_factor of the table changes: lower it per table "
        "for big ones)",
    )]
