"""Measure first: without numbers, ask for them; with numbers, decide what the scale warrants.

The thresholds are agent19's defaults for one PostgreSQL primary on ordinary hardware: orders of
magnitude at which each technique starts to pay for its complexity, not hard limits. Below them
the answer is the simple fix (an index, a query rewrite, ANALYZE).
"""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, Field

from agent19.tool_names import tool

Verdict = Literal["warranted", "premature", "not_applicable"]

QUESTIONS = [
    ("execution_ms", "How long does the query take now (typical and worst)?",
     "SELECT mean_exec_time, max_exec_time, calls FROM pg_stat_statements WHERE query ILIKE '%...%';"),
    ("table_rows", "How many rows do the tables involved have?",
     "SELECT relname, reltuples::bigint, pg_size_pretty(pg_total_relation_size(oid)) FROM pg_class "
     "WHERE relname IN (...);"),
    ("qps", "How often does it run (queries per second at peak)?",
     "SELECT calls / extract(epoch FROM now() - stats_reset) FROM pg_stat_statements, pg_stat_statements_info;"),
    ("explain", "What does EXPLAIN (ANALYZE, BUFFERS) show?", "explain_query with analyze=true"),
]


class Metrics(BaseModel):
    execution_ms: float | None = Field(default=None, ge=0)
    table_rows: int | None = Field(default=None, ge=0, description="rows of the largest table involved")
    table_gb: float | None = Field(default=None, ge=0)
    qps: float | None = Field(default=None, ge=0, description="peak queries per second of this query")
    write_share: float | None = Field(default=None, ge=0, le=1, description="share of the traffic that writes")
    connections: int | None = Field(default=None, ge=0, description="peak client connections")
    have_explain: bool = False
    measure: bool = Field(default=True, description="when a database is connected (--dsn / DATABASE_URL), measure "
                          "the missing numbers there (rows, size, queries/s, connections) and judge the thresholds "
                          "table on them")
    window: float = Field(default=2, ge=0, le=600, description="seconds over which queries/s and writes/s are "
                          "measured (take it at peak)")


class Decision(BaseModel):
    technique: str
    verdict: Verdict
    why: str
    revisit_when: str


class Assessment(BaseModel):
    measured: bool = Field(description="false: the numbers needed to decide are missing; see questions")
    questions: list[str] = []
    how_to_measure: list[str] = []
    simple_fix_first: str
    decisions: list[Decision] = []
    measured_on: str | None = Field(default=None, description="the database the numbers were measured on, if any")
    filled: dict[str, float | int] = Field(default={}, description="numbers taken from the database (the caller's "
                                           "own win)")
    thresholds: list[ThresholdVerdict] = Field(default=[], description="the premature-optimization table judged "
                                               "on measured numbers (connected only)")


def assess(m: Metrics) -> Assessment:
    missing = [(q, how) for key, q, how in QUESTIONS
               if (key == "explain" and not m.have_explain) or (key != "explain" and getattr(m, key) is None)]
    simple = (f"find the cause in the plan ({tool('explain_query')}) and fix it there: an index verified with "
              f"{tool('advise_indexes')}, a query rewrite, ANALYZE or extended statistics - that is enough for most "
              "slow queries")
    if missing:
        return Assessment(measured=False, questions=[q for q, _ in missing], how_to_measure=[h for _, h in missing],
                          simple_fix_first=simple)
    rows, qps = m.table_rows or 0, m.qps or 0
    gb = m.table_gb or rows * 200 / 1e9  # ~200 bytes a row when the size is not given
    writes = (m.write_share or 0) * qps
    rules = [
        ("connection pooling (PgBouncer, transaction mode)", (m.connections or 0) > 200 or qps > 1000,
         "more than ~200 connections or ~1,000 queries/s: per-connection memory and backend churn dominate",
         "connections approach max_connections or connection setup shows in latency"),
        ("caching in the application", qps > 1000 and (m.execution_ms or 0) < 50 and (m.write_share or 0) < 0.1,
         "the same rarely-changing answer is asked for more than ~1,000 times a second",
         "a read-mostly query exceeds ~1,000/s after it is already fast"),
        ("read replicas", qps > 5000 and (m.write_share or 0) < 0.2,
         "reads beyond ~5,000/s on one primary, mostly reads (replicas lag: fine only where slightly stale reads are)",
         "the primary's CPU stays above ~70 % after query fixes"),
        ("materialized view", rows > 10_000_000 and (m.execution_ms or 0) > 1000,
         "an aggregate over more than ~10M rows taking over a second, where refreshed-periodically data is acceptable",
         "a reporting query over ~10M+ rows still takes seconds with the right indexes"),
        ("partitioning", rows > 100_000_000 or gb > 100,
         "a table above ~100M rows or ~100 GB (or with time-based retention to drop old data cheaply)",
         "the table passes ~100M rows / ~100 GB, or old data must be deleted in bulk"),
        ("denormalization", qps > 10_000 and (m.execution_ms or 0) > 10,
         "joins dominate a very hot query (over ~10,000/s) that indexes cannot make cheaper",
         "a join-heavy query stays hot and slow after indexing"),
        ("sharding", gb > 5000 or writes > 20_000,
         "data beyond a few TB or sustained writes beyond ~20,000/s: one primary can no longer hold it",
         "data approaches several TB or writes saturate the primary after everything above"),
    ]
    decisions = [Decision(technique=t, verdict="warranted" if ok else "premature",
                          why=why if ok else f"not at this scale ({rows:,} rows, {qps:,.0f} queries/s): {simple}",
                          revisit_when=later) for t, ok, why, later in rules]
    return Assessment(measured=True, simple_fix_first=simple, decisions=decisions)


# -- The premature-optimization table (the charter's "Optimization Thresholds"), judged on measured numbers --

ThresholdStatus = Literal["warranted_now", "not_yet", "unknown"]


class Measured(BaseModel):
    """Numbers measured on a live server (``agent19 capacity``); None where they could not be measured."""

    largest_table: str | None = None
    largest_table_rows: int | None = None
    largest_table_bytes: int | None = None
    database_bytes: int | None = None
    largest_has_time_column: bool | None = Field(default=None, description="the largest table has a creation "
                                                 "timestamp column (time-based queries and retention are likely)")
    rows_written_per_s: float | None = None
    read_qps: float | None = Field(default=None, description="SELECT statements a second over the window")
    hidden_qps: float | None = Field(default=None, description="statements a second over the window whose text "
                                     "this login may not read (other roles': reads or writes, unknown)")
    slowest_mean_ms: float | None = Field(default=None, description="highest mean time of a statement called "
                                          "at least 10 times (pg_stat_statements)")
    slowest_query: str | None = None
    connections: int | None = Field(default=None, description="client connections now")
    window_s: float | None = None


class ThresholdVerdict(BaseModel):
    technique: str
    needed_when: str = Field(description="the threshold (the charter's table)")
    verdict: ThresholdStatus
    measured: str = Field(description="the number judged, or what is missing")
    would_change: str = Field(description="for not_yet: the number that would change the verdict; for unknown: "
                              "how to measure it first")


TB = 1 << 40
SHARD_ROWS, PARTITION_ROWS, READ_QPS, MATVIEW_MS, POOL_CONNECTIONS = 100_000_000, 100_000_000, 1000, 1000, 100
WRITE_BOTTLENECK_ROWS_S = 20_000
"""agent19's reading of "write bottleneck" where SQL sees it: sustained rows written a second on one primary
(the order of magnitude where WAL and checkpoint volume dominate on ordinary hardware)."""


def _n(v: float | None) -> str:
    return "unknown" if v is None else f"{v:,.0f}"


NEEDED_WHEN = {
    "sharding": "> 100M rows, > 1 TB, or a write bottleneck",
    "read replicas": "> 1,000 read queries/s",
    "materialized views": "queries > 1 s where staleness is acceptable",
    "connection pooling": "> 100 concurrent connections",
    "partitioning": "> 100M rows with time-based queries",
    "caching layer": "repeated identical queries needing < 10 ms",
}
"""The premature-optimization table: when each technique is needed (the charter's thresholds)."""


def charter_thresholds(m: Measured) -> list[ThresholdVerdict]:
    """Each technique of the premature-optimization table: warranted now, not yet (and the number that would
    change it), or unknown (and how to measure it first)."""
    out: list[ThresholdVerdict] = []

    def add(technique: str, verdict: ThresholdStatus, measured: str, would_change: str) -> None:
        out.append(ThresholdVerdict(technique=technique, needed_when=NEEDED_WHEN[technique], verdict=verdict,
                                    measured=measured, would_change=would_change))

    rows = m.largest_table_rows
    where = f" ({m.largest_table})" if m.largest_table else ""
    window = f" over {m.window_s:g} s" if m.window_s else ""
    # sharding
    if rows is None or m.database_bytes is None:
        add("sharding", "unknown", "table sizes not measured", "connect a database: agent19 capacity")
    else:
        db_tb = m.database_bytes / TB
        hit = rows > SHARD_ROWS and (db_tb > 1 or (m.rows_written_per_s or 0) > WRITE_BOTTLENECK_ROWS_S)
        add("sharding", "warranted_now" if hit else "not_yet",
            f"largest table{where} {_n(rows)} rows; database {db_tb:.4f} TB; "
            f"{_n(m.rows_written_per_s)} rows written/s{window}",
            f"the largest table past {SHARD_ROWS:,} rows AND the database past 1 TB or sustained "
            f"writes past ~{WRITE_BOTTLENECK_ROWS_S:,} rows/s after tuning - partition and add replicas before that")
    # read replicas
    if m.read_qps is None and m.hidden_qps:
        add("read replicas", "unknown",
            f"read queries a second not known: {m.hidden_qps:,.1f} statements/s{window} are other roles' whose text "
            "this login may not read (SELECTs or writes)",
            "GRANT pg_read_all_stats TO the login agent19 measures with (or measure as a role that has it), then "
            "agent19 capacity --window 60 at peak")
    elif m.read_qps is None:
        add("read replicas", "unknown", "read queries a second not measured",
            "CREATE EXTENSION pg_stat_statements, then agent19 capacity --window 60 at peak (SELECT calls over the "
            "window)")
    else:
        add("read replicas", "warranted_now" if m.read_qps > READ_QPS else "not_yet",
            f"{m.read_qps:,.1f} read queries/s{window}",
            f"more than {READ_QPS:,} read queries/s sustained at peak (or readers in another region)")
    # materialized views
    if m.slowest_mean_ms is None:
        add("materialized views", "unknown",
            "no statement time measured (none called 10+ times, or no pg_stat_statements)",
            "CREATE EXTENSION pg_stat_statements and let the workload run")
    else:
        add("materialized views", "warranted_now" if m.slowest_mean_ms > MATVIEW_MS else "not_yet",
            f"slowest statement (>= 10 calls) averages {m.slowest_mean_ms:,.1f} ms",
            "a repeated query averaging over 1,000 ms after indexing (explain_query first)")
    # connection pooling
    if m.connections is None:
        add("connection pooling", "unknown", "connections not measured",
            "agent19 capacity at peak (pg_stat_activity)")
    else:
        add("connection pooling", "warranted_now" if m.connections > POOL_CONNECTIONS else "not_yet",
            f"{m.connections} client connections now",
            f"more than {POOL_CONNECTIONS} concurrent connections at peak (measure at peak: this is one moment) "
            "- then agent19 pgbouncer config")
    # partitioning
    if rows is None:
        add("partitioning", "unknown", "row counts not measured", "connect a database: agent19 capacity")
    else:
        timed = m.largest_has_time_column
        verdict: ThresholdStatus = "warranted_now" if rows > PARTITION_ROWS and timed else \
            "unknown" if rows > PARTITION_ROWS and timed is None else "not_yet"
        add("partitioning", verdict,
            f"largest table{where} {rows:,} rows; creation timestamp column: "
            f"{'yes' if timed else 'no' if timed is False else 'unknown'}",
            f"the table past {PARTITION_ROWS:,} rows with queries and retention by time")
    # caching
    add("caching layer", "unknown",
        "pg_stat_statements normalizes parameter values away: it cannot show that the same query with the same "
        "values repeats",
        "measure repeats where the values are visible: the application's query log or "
        "log_min_duration_statement = 0 for a sample window, counting identical texts")
    return out


def assess_measured(args: Metrics, m: Measured, *, qps: float | None, read_qps: float | None,
                    measured_on: str) -> Assessment:
    """:func:`assess` with the numbers ``args`` does not give taken from ``m`` (measured on ``measured_on``),
    and the premature-optimization table judged on them. ``qps``/``read_qps``: statements and reads a second."""
    given = args.model_dump(exclude_unset=True)
    numbers = {"table_rows": m.largest_table_rows, "table_gb": round((m.largest_table_bytes or 0) / 1e9, 3),
               "qps": qps, "connections": m.connections}
    if qps and read_qps is not None:  # unknown reads (other roles' hidden statements) make no share
        numbers["write_share"] = round(1 - read_qps / qps, 3)
    filled: dict[str, float | int] = {k: v for k, v in numbers.items() if k not in given and v is not None}
    result = assess(args.model_copy(update=filled))
    result.measured_on = measured_on
    result.filled = filled
    result.thresholds = charter_thresholds(m)
    return result


Assessment.model_rebuild()  # its `thresholds` field refers to ThresholdVerdict, defined above
