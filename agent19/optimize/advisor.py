"""Index advice verified with HypoPG: no index is recommended unless the planner uses it and the
plan's cost drops.

For each candidate (:mod:`agent19.optimize.candidates`): ``hypopg_create_index`` → plain EXPLAIN
(hypothetical indexes are seen by the planner only, never by EXPLAIN ANALYZE) → cost → drop.
Selection is greedy: the candidate that lowers the (weighted) cost most is kept, the rest are
re-measured with it in place, until nothing lowers the cost by ``min_gain`` or the storage budget
is spent. One query is a workload of one.

How each candidate is costed (HypoPG, or a real index built and rolled back) is
:mod:`agent19.optimize.index_costs`; the greedy choice is :mod:`agent19.optimize.selection`.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import psycopg
from pydantic import BaseModel, Field

from agent19.config import AccessMode
from agent19.db.connection import Connection, Database
from agent19.errors import InputError
from agent19.migrate.parse import parse_sql
from agent19.optimize.candidates import Candidate, TableInfo, candidates, query_shape
from agent19.optimize.index_costs import REAL_BUILD_TIMEOUT_MS, HypoPGMissing, hypopg_session, plan_json
from agent19.optimize.selection import MIN_GAIN, CandidateResult, choose
from agent19.safety import gate, readonly
from agent19.sqltree import walk

MAX_INDEXES_PER_QUERY = 3
REAL_INDEX_MAX_TABLE_BYTES = 64 * 1048576
"""Without HypoPG, candidates on tables larger than this are not built for real to verify them."""


class Recommendation(BaseModel):
    table: str
    columns: list[str]
    include: list[str] = []
    where: str | None = Field(default=None, description="a partial index's predicate")
    sql: str = Field(description="CREATE INDEX CONCURRENTLY ... (outside a transaction block; it takes "
                     "ShareUpdateExclusive and leaves an INVALID index if it fails)")
    reason: str
    cost_before: float
    cost_after: float
    improvement: float = Field(description="share of the planner's cost removed, 0..1")
    estimated_size_bytes: int | None = Field(default=None, description="HypoPG's estimate of the index size")
    existing_indexes: int = Field(description="indexes the table already has: each one more slows every write")
    verified_by: str = Field(default="hypopg", description="hypopg (hypothetical index) or real-index (built "
                             "in a transaction that was rolled back)")


class QueryCost(BaseModel):
    sql: str
    weight: float = 1
    cost_before: float
    cost_after: float


class Advice(BaseModel):
    recommendations: list[Recommendation] = []
    queries: list[QueryCost] = []
    candidates: list[CandidateResult] = Field(default=[], description="every candidate measured, with its verdict")
    already_served: dict[str, str] = Field(default={}, description="candidate -> the existing index that serves it")
    unverified: list[str] = Field(default=[], description="ideas HypoPG cannot measure (e.g. trigram GIN)")
    notes: list[str] = []
    hypopg: str = Field(description="how HypoPG was used, or why it could not be")
    verification: str = Field(default="hypopg", description="hypopg, real-index (built and rolled back, "
                              "without HypoPG in dry-run/execute mode) or none (nothing verified)")


# -- catalog ------------------------------------------------------------------------------------------
Q_TABLES = """
SELECT n.nspname AS schema, c.relname AS name, c.reltuples AS rows, pg_table_size(c.oid) AS bytes,
       n.nspname::text = ANY(current_schemas(false)) AS on_path,
       (SELECT json_object_agg(s.attname, json_build_array(s.n_distinct, s.most_common_vals::text::text[],
                                                           s.most_common_freqs))
          FROM pg_stats s WHERE s.schemaname = n.nspname AND s.tablename = c.relname) AS stats,
       (SELECT json_object_agg(a.attname, format_type(a.atttypid, a.atttypmod)) FROM pg_attribute a
         WHERE a.attrelid = c.oid AND a.attnum > 0 AND NOT a.attisdropped) AS columns,
       (SELECT coalesce(json_agg(json_build_array(ic.relname, am.amname, ARRAY(
                  SELECT pg_get_indexdef(i.indexrelid, k, true) FROM generate_series(1, i.indnkeyatts) k),
                  i.indpred IS NOT NULL)), '[]')
          FROM pg_index i JOIN pg_class ic ON ic.oid = i.indexrelid JOIN pg_am am ON am.oid = ic.relam
         WHERE i.indrelid = c.oid AND i.indisvalid) AS indexes
  FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
 WHERE c.relkind IN ('r', 'p', 'm') AND c.relname = ANY(%s)
   AND n.nspname NOT IN ('pg_catalog', 'information_schema')
 ORDER BY array_position(current_schemas(false), n.nspname::text) NULLS LAST
"""
# current_schemas(false) is the session's search_path as the server resolves it ("$user" read, missing schemas left
# out): the first table of a name in that order is the one an unqualified name means; a table on no schema of the
# path is reached only by its qualified name


def referenced_tables(conn: Connection, sqls: list[str]) -> dict[str, TableInfo]:
    """Tables the queries name, keyed by schema.name and, for the table an unqualified name finds (the first schema
    of the session's search_path that has it), by bare name."""
    names: set[str] = set()
    for text in sqls:
        for stmt in parse_sql(text):
            names |= {r["relname"] for r in _range_vars(stmt.tree)}
    out: dict[str, TableInfo] = {}
    for row in conn.execute(Q_TABLES, (sorted(names),)).fetchall():
        info = TableInfo(schema=row["schema"], name=row["name"], columns=row["columns"] or {},
                         indexes=[(i[0], i[1], i[2], i[3]) for i in row["indexes"]], rows=row["rows"],
                         stats={col: (float(nd or 0), dict(zip(vals or [], freqs or [], strict=False)))
                                for col, (nd, vals, freqs) in (row["stats"] or {}).items()},
                         size_bytes=row["bytes"] or 0)
        if row["on_path"]:
            out.setdefault(info.name, info)
        out[info.qualified] = info
    return out


def _range_vars(tree: Any) -> Iterator[dict[str, Any]]:
    for node, fields in walk(tree):
        if node == "RangeVar" and "relname" in fields:
            yield fields



def _recommendations(chosen: list[tuple[Candidate, float, float, int]],
                     tables: dict[str, TableInfo], verified_by: str) -> list[Recommendation]:
    out = []
    for cand, before, after, size in chosen:
        info = tables.get(cand.table)
        out.append(Recommendation(
            table=cand.table, columns=list(cand.columns), include=list(cand.include), where=cand.where,
            verified_by=verified_by,
            sql=cand.definition(name=cand.name(), concurrently=True), reason=cand.reason,
            cost_before=round(before, 2), cost_after=round(after, 2),
            improvement=round(1 - after / before, 4) if before else 0.0, estimated_size_bytes=size,
            existing_indexes=len(info.indexes) if info else 0,
        ))
    return out


def _plannable(conn: Connection, queries: list[tuple[str, float, list[str | None] | None]]
               ) -> tuple[list[tuple[str, float, list[str] | None]], list[tuple[str, str]]]:
    ok, skipped = [], []
    for q in queries:
        try:
            with conn.transaction():  # a savepoint: one bad statement does not end the session
                plan_json(conn, q[0], q[2])
            ok.append(q)
        except psycopg.Error as exc:
            skipped.append((q[0], str(exc).strip().splitlines()[0]))
    return ok, skipped


def advise(
    db: Database, queries: list[tuple[str, float, list[str | None] | None]], *, budget_bytes: int | None = None,
    min_gain: float = MIN_GAIN, real_index_max_bytes: int = REAL_INDEX_MAX_TABLE_BYTES,
    build_timeout_ms: int = REAL_BUILD_TIMEOUT_MS,
) -> Advice:
    """Index advice for one query (a workload of one) or for a weighted workload.

    Without HypoPG on the server, in dry-run/execute mode, candidates are verified by building them for
    real in a rolled-back transaction: only on tables up to ``real_index_max_bytes``, each build under
    ``build_timeout_ms``."""
    with db.read() as conn:
        tables = referenced_tables(conn, [q for q, _, _ in queries])
    cands: list[Candidate] = []
    served: dict[str, str] = {}
    for sql, _, _ in queries:
        found, already = candidates(query_shape(sql, tables), tables)
        cands += [c for c in found if c not in cands]
        served |= already
    unverified = [c.definition() for c in cands if c.method == "gin"]
    notes = []
    if unverified:
        notes.append("trigram (pg_trgm GIN) candidates cannot be measured with HypoPG: test them on a copy")
    if not cands:
        notes.append("no candidate index: " + ("existing indexes already serve this query's predicates"
                                               if served else "the query has no predicate, join or order to index"))
    missing: str | None = None  # why HypoPG could not be used, when it could not
    try:
        try:
            reads_only = all(readonly.is_read(st) for q, _, _ in queries for st in parse_sql(q))
            with hypopg_session(db, reads_only) as (conn, how):
                result = _measure(conn, queries, cands, budget_bytes, min_gain, real=False)
                verification = "hypopg"
        except HypoPGMissing as exc:
            if not db.mode.allows(AccessMode.DRY_RUN):
                # nothing is measured, but the queries must plan: no ideas for a column that does not exist
                with gate.reader(db) if reads_only else db.read() as conn:
                    _, skipped = _measure(conn, queries, [], budget_bytes, min_gain, real=False)[:2]
                notes += [f"skipped (cannot be planned): {q[:80]} - {why}" for q, why in skipped]
                return Advice(already_served=served, unverified=[c.definition() for c in cands], hypopg=str(exc),
                              notes=[*notes, "nothing is recommended without verification"], verification="none")
            big = {t.qualified: t.size_bytes for t in tables.values() if t.size_bytes > real_index_max_bytes}
            if big:
                notes += [f"{name} is {size / 1048576:.1f} MB, over the {real_index_max_bytes / 1048576:.1f} MB "
                          "limit for building a real index to verify one: its candidates are not verified (install "
                          "HypoPG)" for name, size in sorted(big.items())]
                unverified += [c.definition() for c in cands if c.table in big and c.method != "gin"]
                cands = [c for c in cands if c.table not in big]
            missing = str(exc)
            how = (f"{exc}; verified instead by building each candidate as a real index inside a "
                   "transaction that was rolled back (CREATE INDEX, EXPLAIN, ROLLBACK; writes to the table wait "
                   f"for each build, at most {build_timeout_ms / 1000:g} s)")
            with db.rolled_back() as conn:
                result = _measure(conn, queries, cands, budget_bytes, min_gain, real=True,
                                  build_timeout_ms=build_timeout_ms)
            verification = "real-index"
    except psycopg.Error as exc:
        raise InputError(f"PostgreSQL could not plan the query: {str(exc).strip().splitlines()[0]}",
                         "check the query and its parameters") from None
    queries, skipped, before, after, chosen, log = result
    notes += [f"skipped (cannot be planned): {q[:80]} - {why}" for q, why in skipped]
    if (cands or unverified) and not any(c.cost is not None for c in log):  # a method that verified no candidate
        how = f"{missing or how}; no candidate could be verified (see each one's verdict and the notes)"
        verification = "none"
    if not [c for c in cands if c.method != "gin"]:
        return Advice(queries=[QueryCost(sql=q, weight=w, cost_before=b, cost_after=b)
                               for (q, w, _), b in zip(queries, before, strict=True)],
                      already_served=served, unverified=unverified, notes=notes, hypopg=how, verification=verification)
    if not chosen:
        notes.append(f"no candidate lowered the planner's cost by {min_gain:.0%} or more: no index recommended")
    return Advice(
        recommendations=_recommendations(chosen, tables, verification),
        queries=[QueryCost(sql=q, weight=w, cost_before=round(b, 2), cost_after=round(a, 2))
                 for (q, w, _), b, a in zip(queries, before, after, strict=True)],
        candidates=log, already_served=served, unverified=unverified, notes=notes, hypopg=how,
        verification=verification,
    )


def _measure(conn: Connection, queries: list[tuple[str, float, list[str | None] | None]], cands: list[Candidate],
             budget_bytes: int | None, min_gain: float, *, real: bool,
             build_timeout_ms: int = REAL_BUILD_TIMEOUT_MS) -> tuple[
                 list[tuple[str, float, list[str] | None]], list[tuple[str, str]], list[float], list[float],
                 list[tuple[Candidate, float, float, int]], list[CandidateResult]]:
    skipped: list[tuple[str, str]] = []
    if len(queries) > 1:
        queries, skipped = _plannable(conn, queries)
    if not [c for c in cands if c.method != "gin"]:
        base = [float(plan_json(conn, q, p)["Total Cost"]) for q, _, p in queries]
        return queries, skipped, base, base, [], []
    before, after, chosen, log = choose(conn, queries, cands, budget_bytes=budget_bytes, min_gain=min_gain,
                                        max_indexes=MAX_INDEXES_PER_QUERY if len(queries) == 1 else None, real=real,
                                        build_timeout_ms=build_timeout_ms)
    return queries, skipped, before, after, chosen, log
