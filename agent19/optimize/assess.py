"""Measure first: without numbers, ask for them; with numbers, decide what the scale warrants.

The thresholds are agent19's defaults for one PostgreSQL primary on ordinary hardware: orders of
magnitude at which each technique starts to pay for its complexity, not hard limits. Below them
the answer is the simple fix (an index, a query rewrite, ANALYZE).
"""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, Field

Verdict = Literal["warranted", "premature", "not_applicable"]

QUESTIONS = [
    ("execution_ms", "How long does the query take now (typical and worst)?",
     "SELECT mean_exec_time, max_exec_time, calls FROM pg_stat_statements WHERE query ILIKE '%…%';"),
    ("table_rows", "How many rows do the tables involved have?",
     "SELECT relname, reltuples::bigint, pg_size_pretty(pg_total_relation_size(oid)) FROM pg_class "
     "WHERE relname IN (…);"),
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


def assess(m: Metrics) -> Assessment:
    missing = [(q, how) for key, q, how in QUESTIONS
               if (key == "explain" and not m.have_explain) or (key != "explain" and getattr(m, key) is None)]
    simple = ("find the cause in the plan (explain_query) and fix it there: an index verified with advise_indexes, "
              "a query rewrite, ANALYZE or extended statistics — that is enough for most slow queries")
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
