"""The current state of a server for ``capacity_plan``: sizes, rows, connections, cache, statements, rates.

Queries run through :class:`agent19.ops.health.probe.Probe` (short lock and statement timeouts: sizes take
an AccessShareLock, and a capacity report must not queue behind a migration). Connections and the cache
hit ratio are read with ``health_check``'s own queries. Rates are *deltas over a window the caller
chooses* (two readings of pg_stat_database / pg_stat_user_tables / pg_stat_statements ``window_s`` apart,
each in its own transaction so the statistics snapshot is fresh), not lifetime averages. The server flushes
a backend's counters at most once a second, so windows shorter than ~2 s undercount.
"""

from __future__ import annotations

import time

import psycopg

from agent19.db.redact import shown_statement
from agent19.ops.capacity.model import CurrentState, ObjectSize, Rates, Statement
from agent19.ops.health.probe import MONITOR, Probe
from agent19.ops.health.sessions import connections
from agent19.ops.health.stats import Q_CACHE
from agent19.optimize.workload import Q_CHECK

MARK = "/* agent19 capacity */"
"""Leads agent19's own queries here, so pg_stat_statements' top statements and rates leave them out."""
NOT_CONTROL = "query !~* '^\\s*(begin|commit|rollback|start|savepoint|release|end|abort)\\M'"


USER_RELS = ("n.nspname NOT IN ('pg_catalog', 'information_schema') AND n.nspname !~ '^pg_toast' "
             "AND NOT pg_is_other_temp_schema(n.oid)")
Q_TABLES = f"""
SELECT format('%I.%I', n.nspname, c.relname) AS name,
       CASE WHEN c.reltuples >= 0 THEN c.reltuples::bigint ELSE s.n_live_tup END AS rows,
       pg_relation_size(c.oid) AS table_bytes,
       coalesce(pg_total_relation_size(nullif(c.reltoastrelid, 0)), 0) AS toast_bytes,
       pg_indexes_size(c.oid) AS index_bytes
  FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
  LEFT JOIN pg_stat_user_tables s ON s.relid = c.oid
 WHERE c.relkind IN ('r', 'm') AND {USER_RELS}"""
Q_INDEXES = f"""
SELECT format('%I.%I', n.nspname, c.relname) AS name, pg_relation_size(c.oid) AS bytes
  FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
 WHERE c.relkind = 'i' AND {USER_RELS}
 ORDER BY 2 DESC LIMIT %s"""
Q_SERVER = """
SELECT to_char(now() AT TIME ZONE 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS.MS"Z"') AS measured_at,
       current_database() AS database, pg_database_size(current_database()) AS database_bytes,
       (SELECT sum(pg_database_size(oid)) FROM pg_database
         WHERE datallowconn AND (has_database_privilege(oid, 'CONNECT')
                                 OR pg_has_role('pg_read_all_stats', 'USAGE')))::bigint AS cluster_bytes"""
Q_SYSID = "SELECT system_identifier::text AS id FROM pg_control_system()"
Q_READING = """
SELECT d.xact_commit AS commits, d.xact_rollback AS rollbacks, d.tup_inserted AS inserted,
       d.tup_updated AS updated, d.tup_deleted AS deleted, d.tup_returned AS returned, clock_timestamp() AS at,
       (SELECT coalesce(json_object_agg(format('%I.%I', schemaname, relname), n_tup_ins + n_tup_upd + n_tup_del),
                        '{}') FROM pg_stat_user_tables) AS tables{pss}{flush}
  FROM pg_stat_database d WHERE d.datname = current_database()"""


def pss_schema(probe: Probe) -> tuple[str | None, str | None]:
    """(schema of pg_stat_statements, None) when readable here, else (None, why not)."""
    row = probe.rows(Q_CHECK)[0]
    if not row["available"]:
        return None, "pg_stat_statements is not installed on this server (PostgreSQL's contrib package)"
    if row["preloaded"] is False:
        return None, "pg_stat_statements is not in shared_preload_libraries: add it, restart, CREATE EXTENSION"
    if not row["installed"]:
        return None, "pg_stat_statements is not created in this database: CREATE EXTENSION pg_stat_statements"
    found = probe.rows("SELECT quote_ident(n.nspname) AS s FROM pg_extension e "
                       "JOIN pg_namespace n ON n.oid = e.extnamespace WHERE e.extname = 'pg_stat_statements'")
    return found[0]["s"], None


HIDDEN_TEXT = "(another role's statement: its text is hidden from this login, needs pg_read_all_stats)"


def _hidden(query: str | None) -> bool:
    """pg_stat_statements shows another role's statement as ``<insufficient privilege>`` (or NULL) without
    pg_read_all_stats: its time is real, its text is not a statement."""
    return query is None or query == "<insufficient privilege>"


def _statements(probe: Probe, schema: str, limit: int) -> list[Statement]:
    old = probe.facts.version_num < 130000
    t = "total_time" if old else "total_exec_time"
    m, sd = ("mean_time", "stddev_time") if old else ("mean_exec_time", "stddev_exec_time")
    rows = probe.rows(f"""
SELECT query, calls, {t} AS total_ms, {m} AS mean_ms, {sd} AS sd_ms, rows
  FROM {schema}.pg_stat_statements
 WHERE dbid = (SELECT oid FROM pg_database WHERE datname = current_database())
   AND query NOT LIKE '{MARK}%' AND {NOT_CONTROL}
 ORDER BY {t} DESC LIMIT {int(limit)}""")
    return [Statement(query=HIDDEN_TEXT if _hidden(r["query"]) else shown_statement(r["query"], 500),
                      hidden=_hidden(r["query"]), calls=r["calls"],
                      total_ms=round(r["total_ms"], 2), mean_ms=round(r["mean_ms"], 3),
                      p95_estimate_ms=round(r["mean_ms"] + 1.645 * (r["sd_ms"] or 0), 3), rows=r["rows"])
            for r in rows]


def _pss_columns(schema: str) -> str:
    where = (f"dbid = (SELECT oid FROM pg_database WHERE datname = current_database()) AND {NOT_CONTROL} "
             f"AND query NOT LIKE '{MARK}%'")
    reads = ("query ~* '^\\s*select\\M' OR (query ~* '^\\s*with\\M' "
             "AND query !~* '\\m(insert|update|delete|merge)\\M')")
    hidden = "query IS NULL OR query = '<insufficient privilege>'"  # another role's: SELECT or write, unknown
    total = f"SELECT coalesce(sum(calls), 0)::bigint FROM {schema}.pg_stat_statements WHERE {where}"
    return (f",\n       ({total}) AS calls,\n       ({total} AND ({reads})) AS reads,"
            f"\n       ({total} AND ({hidden})) AS hidden")


def measure_rates(probe: Probe, window_s: float, pss: str | None) -> Rates:
    """Two readings ``window_s`` apart, each one statement on a session of its own.

    agent19's own work is left out: the session's pending statistics are flushed before the first reading
    and right after it (``pg_stat_force_next_flush()``, PostgreSQL 15+), so the first reading's own
    transaction is the only one of agent19's inside the window, and is subtracted. Its statements carry
    :data:`MARK` and are left out of pg_stat_statements' counts, as is transaction control (BEGIN, ROLLBACK).
    Before 15 a backend flushes at most once a second: windows under ~2 s may miss the last writes.
    """
    flush = ", pg_stat_force_next_flush() AS flushed" if probe.facts.version_num >= 150000 else ""
    sql = MARK + Q_READING.replace("{pss}", _pss_columns(pss) if pss else "").replace("{flush}", flush)
    probe.last_sql = sql.strip()
    with probe.db.connect() as conn:
        if flush:
            conn.execute(f"{MARK} SELECT pg_stat_force_next_flush()".encode())
        a = conn.execute(sql.encode()).fetchone()
        time.sleep(window_s)
        b = conn.execute(sql.encode()).fetchone()
    assert a is not None and b is not None
    span = max((b["at"] - a["at"]).total_seconds(), 1e-6)

    def per_s(key: str, minus: int = 0) -> float:
        return round(max(b[key] - a[key] - minus, 0) / span, 3)
    ins, upd, dele = per_s("inserted"), per_s("updated"), per_s("deleted")
    commits, rollbacks = per_s("commits", 1), per_s("rollbacks")
    ta, tb = a["tables"], b["tables"]
    writers = sorted(((n, (w - ta.get(n, 0)) / span) for n, w in tb.items()), key=lambda x: -x[1])
    return Rates(
        window_s=round(span, 3), transactions_per_s=round(commits + rollbacks, 3),
        commits_per_s=commits, rollbacks_per_s=rollbacks, rows_inserted_per_s=ins,
        rows_updated_per_s=upd, rows_deleted_per_s=dele, rows_written_per_s=round(ins + upd + dele, 3),
        rows_read_per_s=per_s("returned"),
        statements_per_s=per_s("calls") if pss else None,
        # a statement whose text is hidden may be a SELECT: with any in the window the reads are not known
        read_statements_per_s=per_s("reads") if pss and not per_s("hidden") else None,
        hidden_statements_per_s=per_s("hidden") if pss else None,
        top_writers=[{"table": n, "rows_written_per_s": round(w, 3)} for n, w in writers[:5] if w > 0],
    )


def measure(probe: Probe, *, window_s: float = 5, largest: int = 10, statements: int = 10) -> CurrentState:
    """Everything ``capacity_plan`` reports about now (``window_s`` 0: no rates)."""
    f = probe.facts
    cannot_see: list[str] = []
    server = probe.rows(MARK + Q_SERVER)[0]
    try:
        sysid: str | None = probe.rows(Q_SYSID)[0]["id"]
    except psycopg.errors.InsufficientPrivilege:
        sysid = None
        cannot_see.append("the system identifier (pg_control_system()): needs pg_monitor or EXECUTE on it; "
                          "samples are keyed by host, port and database instead")
    tables = probe.rows(MARK + Q_TABLES)
    objects: list[ObjectSize] = []
    for t in tables:
        total = t["table_bytes"] + t["toast_bytes"] + t["index_bytes"]
        rows = max(int(t["rows"] or 0), 0)
        objects.append(ObjectSize(name=t["name"], kind="table", bytes=total, table_bytes=t["table_bytes"],
                                  toast_bytes=t["toast_bytes"], index_bytes=t["index_bytes"], rows=rows,
                                  bytes_per_row=round(total / rows, 1) if rows else None))
    objects += [ObjectSize(name=i["name"], kind="index", bytes=i["bytes"])
                for i in probe.rows(MARK + Q_INDEXES.replace("%s", str(int(largest))))]
    objects.sort(key=lambda o: -o.bytes)
    conn = connections(probe)[0]
    if conn.needs:
        cannot_see.append(f"other roles' sessions are counted but not their state: needs {MONITOR}")
    cache = probe.rows(Q_CACHE)[0]
    hit = cache["table_hit"] + cache["index_hit"]
    total_blocks = hit + cache["table_read"] + cache["index_read"]
    schema, why = pss_schema(probe)
    top: list[Statement] = []
    if schema:
        top = _statements(probe, schema, statements)
        if not f.read_all_stats:
            cannot_see.append("other roles' statements in pg_stat_statements: needs pg_read_all_stats")
    rates = measure_rates(probe, window_s, schema) if window_s > 0 else None
    return CurrentState(
        measured_at=server["measured_at"], server_version=f.version, system_identifier=sysid,
        database=server["database"], database_bytes=server["database_bytes"],
        cluster_bytes=server["cluster_bytes"] or server["database_bytes"],
        table_bytes=sum(t["table_bytes"] for t in tables), index_bytes=sum(t["index_bytes"] for t in tables),
        toast_bytes=sum(t["toast_bytes"] for t in tables), rows=sum(max(int(t["rows"] or 0), 0) for t in tables),
        tables=len(tables), largest=objects[:largest], connections_used=conn.value["used"],
        max_connections=conn.value["max"], superuser_reserved_connections=conn.value["reserved"],
        cache_hit_pct=round(100 * hit / total_blocks, 2) if total_blocks else None,
        stats_reset=f.db_stats_reset, top_statements=top, statements_unavailable=why, rates=rates,
        cannot_see=cannot_see,
    )
