"""Index advice verified with HypoPG: no index is recommended unless the planner uses it and the
plan's cost drops.

For each candidate (:mod:`agent19.optimize.candidates`): ``hypopg_create_index`` → plain EXPLAIN
(hypothetical indexes are seen by the planner only, never by EXPLAIN ANALYZE) → cost → drop.
Selection is greedy: the candidate that lowers the (weighted) cost most is kept, the rest are
re-measured with it in place, until nothing lowers the cost by ``min_gain`` or the storage budget
is spent. One query is a workload of one.

Where HypoPG comes from — decided here:
* the extension is created in the database: hypothetical indexes live in the session only, so
  read-only mode works (the EXPLAINs run in a READ ONLY transaction);
* installed on the server but not created in the database: ``CREATE EXTENSION`` writes the catalog,
  so in read-only mode the advice says to have a DBA run it; in dry-run/execute mode agent19 creates
  it inside the transaction it advises in, which is always rolled back (HypoPG's functions work in
  the same transaction), so nothing is left behind;
* not installed on the server (e.g. the embedded one): in read-only mode the advice names the package
  to install and lists its unverified candidates, recommending none; in dry-run/execute mode each
  candidate is verified by building the real index inside a savepoint of a transaction that is always
  rolled back (CREATE INDEX under a ``statement_timeout``, plain EXPLAIN, ROLLBACK TO SAVEPOINT) —
  only on tables up to ``REAL_INDEX_MAX_TABLE_BYTES`` (a build holds a SHARE lock: writes to the table
  wait for it), the others' candidates stay unverified and the advice says so. ``Advice.verification``
  and each recommendation's ``verified_by`` say which method was used.
Queries with ``$n`` placeholders and no values are planned as generic plans (``PREPARE`` under
``plan_cache_mode = force_generic_plan``, which works on every supported version).
"""

from __future__ import annotations

import itertools
import json
import re
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import psycopg
from psycopg import RawCursor
from pydantic import BaseModel, Field

from agent19 import tool_names
from agent19.config import AccessMode
from agent19.db.connection import Connection, Database
from agent19.errors import InputError
from agent19.migrate.parse import parse_sql
from agent19.migrate.patterns.sqlnames import quoted
from agent19.optimize.candidates import Candidate, TableInfo, candidates, query_shape
from agent19.safety import gate, readonly
from agent19.sqltree import walk

MIN_GAIN = 0.10
MAX_INDEXES_PER_QUERY = 3
REAL_INDEX_MAX_TABLE_BYTES = 64 * 1048576
"""Without HypoPG, candidates on tables larger than this are not built for real to verify them."""
REAL_BUILD_TIMEOUT_MS = 10_000
"""statement_timeout of each real CREATE INDEX built to verify a candidate."""


class HypoPGMissing(InputError):
    """HypoPG is not usable here; the message says what to do."""


class Recommendation(BaseModel):
    table: str
    columns: list[str]
    include: list[str] = []
    where: str | None = Field(default=None, description="a partial index's predicate")
    sql: str = Field(description="CREATE INDEX CONCURRENTLY … (outside a transaction block; it takes "
                     "ShareUpdateExclusive and leaves an INVALID index if it fails)")
    reason: str
    cost_before: float
    cost_after: float
    improvement: float = Field(description="share of the planner's cost removed, 0..1")
    estimated_size_bytes: int | None = Field(default=None, description="HypoPG's estimate of the index size")
    existing_indexes: int = Field(description="indexes the table already has: each one more slows every write")
    verified_by: str = Field(default="hypopg", description="hypopg (hypothetical index) or real-index (built "
                             "in a transaction that was rolled back)")


class CandidateResult(BaseModel):
    definition: str
    reason: str
    cost: float | None = None
    used: bool = False
    verdict: str


class QueryCost(BaseModel):
    sql: str
    weight: float = 1
    cost_before: float
    cost_after: float


class Advice(BaseModel):
    recommendations: list[Recommendation] = []
    queries: list[QueryCost] = []
    candidates: list[CandidateResult] = Field(default=[], description="every candidate measured, with its verdict")
    already_served: dict[str, str] = Field(default={}, description="candidate → the existing index that serves it")
    unverified: list[str] = Field(default=[], description="ideas HypoPG cannot measure (e.g. trigram GIN)")
    notes: list[str] = []
    hypopg: str = Field(description="how HypoPG was used, or why it could not be")
    verification: str = Field(default="hypopg", description="hypopg, real-index (built and rolled back, "
                              "without HypoPG in dry-run/execute mode) or none (nothing verified)")


# -- catalog ------------------------------------------------------------------------------------------
Q_TABLES = """
SELECT n.nspname AS schema, c.relname AS name, c.reltuples AS rows, pg_table_size(c.oid) AS bytes,
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


def referenced_tables(conn: Connection, sqls: list[str]) -> dict[str, TableInfo]:
    """Tables the queries name, keyed by bare name (search_path order wins) and schema.name."""
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
        out.setdefault(info.name, info)
        out[info.qualified] = info
    return out


def _range_vars(tree: Any) -> Iterator[dict[str, Any]]:
    for node, fields in walk(tree):
        if node == "RangeVar" and "relname" in fields:
            yield fields


# -- HypoPG session -------------------------------------------------------------------------------------
Q_HYPOPG = """
SELECT (SELECT installed_version FROM pg_available_extensions WHERE name = 'hypopg') AS installed,
       EXISTS (SELECT FROM pg_available_extensions WHERE name = 'hypopg') AS available
"""


@contextmanager
def hypopg_session(db: Database, reads_only: bool = False) -> Iterator[tuple[Connection, str]]:
    """A transaction in which HypoPG works, and a sentence saying how (see the module docstring).

    ``reads_only``: every query only reads, so they are planned as the reader login (``--read-dsn``);
    planning a write needs its privileges, so writes are planned as the main login."""
    with db.read() as conn:
        row = conn.execute(Q_HYPOPG).fetchone()
    assert row is not None
    if row["installed"]:
        with (gate.reader(db) if reads_only else db.read()) as conn:
            try:
                yield conn, f"hypopg {row['installed']} (hypothetical indexes in this session only)"
            finally:
                conn.rollback()
                conn.execute("SELECT hypopg_reset()")  # hypothetical indexes outlive transactions
        return
    if not row["available"]:
        raise HypoPGMissing(
            "HypoPG is not installed on this server, so no index can be verified",
            "install the OS package postgresql-<version>-hypopg (the embedded server has no contrib "
            "extensions), then CREATE EXTENSION hypopg",
        )
    if not db.mode.allows(AccessMode.DRY_RUN):
        raise HypoPGMissing(
            "the hypopg extension is installed on the server but not created in this database",
            "have a DBA run CREATE EXTENSION hypopg, or "
            + ("run the command again with --mode dry-run" if tool_names.at_cli()
               else "restart agent19 with --mode dry-run")
            + " (it then creates it inside a transaction that is rolled back)",
        )
    with db.rolled_back() as conn:
        try:
            with conn.transaction():
                conn.execute("CREATE EXTENSION hypopg")
        except psycopg.errors.InsufficientPrivilege as exc:
            raise HypoPGMissing(
                f"this login may not create the hypopg extension ({str(exc).strip().splitlines()[0]})",
                "hypothetical-index verification needs hypopg created in this database by an owner (a DBA runs "
                "CREATE EXTENSION hypopg), or CREATE on the database where hypopg is a trusted extension",
            ) from None
        yield conn, "hypopg created inside a transaction that was rolled back (nothing left behind)"


# -- costs -----------------------------------------------------------------------------------------------
_names = itertools.count()


def _max_param(sql: str) -> int:
    return max((int(m) for m in re.findall(r"\$(\d+)", sql)), default=0)


def plan_json(conn: Connection, sql: str, params: list[str] | None = None) -> dict[str, Any]:
    """The estimated plan (plain EXPLAIN, where hypothetical indexes are visible)."""
    nparams = _max_param(sql)
    with RawCursor(conn) as cur:
        if params or not nparams:
            cur.execute(f"EXPLAIN (FORMAT JSON) {sql}".encode(), params or None, prepare=False)  # type: ignore[arg-type]
            row = cur.fetchone()
        else:
            name = f"agent19_advise_{next(_names)}"
            cur.execute(b"SET LOCAL plan_cache_mode = force_generic_plan", prepare=False)
            cur.execute(f"PREPARE {name} AS {sql}".encode(), prepare=False)
            nulls = ", ".join(["NULL"] * nparams)
            cur.execute(f"EXPLAIN (FORMAT JSON) EXECUTE {name}({nulls})".encode(), prepare=False)
            row = cur.fetchone()
            cur.execute(f"DEALLOCATE {name}".encode(), prepare=False)
    assert row is not None
    value = row[0] if isinstance(row, (tuple, list)) else next(iter(row.values()))  # type: ignore[union-attr]
    data = value if isinstance(value, list) else json.loads(value)
    return data[0]["Plan"]  # type: ignore[no-any-return]


def _index_names(plan: dict[str, Any]) -> set[str]:
    names = {plan["Index Name"]} if "Index Name" in plan else set()
    for child in plan.get("Plans", []):
        names |= _index_names(child)
    return names


class BuildFailed(Exception):
    """A real index could not be built for verification (timeout, lock, error)."""


class _Evaluator:
    """Costs of the workload's queries with a given set of indexes in place: hypothetical (HypoPG), or real
    ones built inside a savepoint that is always rolled back (``real``; no HypoPG, dry-run/execute mode)."""

    def __init__(self, conn: Connection, queries: list[tuple[str, float, list[str | None] | None]], *,
                 real: bool = False, build_timeout_ms: int = REAL_BUILD_TIMEOUT_MS):
        self.conn, self.queries, self.real, self.build_timeout_ms = conn, queries, real, build_timeout_ms

    def costs(self, indexes: list[Candidate]) -> tuple[list[float], set[str], dict[Candidate, int]]:
        if self.real:
            return self._real_costs(indexes)
        made: dict[Candidate, tuple[int, str]] = {}
        try:
            for cand in indexes:
                row = self.conn.execute("SELECT indexrelid, indexname FROM hypopg_create_index(%s)",
                                        (cand.definition(),)).fetchone()
                assert row is not None
                made[cand] = (row["indexrelid"], row["indexname"])
            costs, used = self._plans()
            sizes = {}
            for cand, (oid, _) in made.items():
                size = self.conn.execute("SELECT hypopg_relation_size(%s) AS s", (oid,)).fetchone()
                sizes[cand] = int(size["s"]) if size else 0
            return costs, {c.definition() for c, (_, n) in made.items() if n in used}, sizes
        finally:
            for oid, _ in made.values():
                self.conn.execute("SELECT hypopg_drop_index(%s)", (oid,))

    def _plans(self) -> tuple[list[float], set[str]]:
        costs, used = [], set()
        for sql, _, params in self.queries:
            plan = plan_json(self.conn, sql, params)
            costs.append(float(plan["Total Cost"]))
            used |= _index_names(plan)
        return costs, used

    def _real_costs(self, indexes: list[Candidate]) -> tuple[list[float], set[str], dict[Candidate, int]]:
        """CREATE INDEX → plain EXPLAIN → ROLLBACK TO SAVEPOINT: nothing stays, the SHARE lock on the table
        (writes wait, reads do not) ends with the savepoint, and ``statement_timeout`` bounds each build."""
        names: dict[Candidate, str] = {}
        sizes: dict[Candidate, int] = {}
        with self.conn.transaction(force_rollback=True):
            row = self.conn.execute("SELECT current_setting('statement_timeout') AS t").fetchone()
            session_timeout = row["t"] if row else "0"
            self.conn.execute(f"SET LOCAL statement_timeout = {int(self.build_timeout_ms)}")
            for cand in indexes:
                names[cand] = f"agent19_verify_{next(_names)}"
                try:
                    with self.conn.transaction():
                        self.conn.execute(cand.definition(name=names[cand]).encode())  # type: ignore[call-overload]
                except psycopg.Error as exc:
                    raise BuildFailed(str(exc).strip().splitlines()[0]) from None
                row = self.conn.execute("SELECT pg_relation_size(%s::regclass) AS s", (quoted(names[cand]),)
                                        ).fetchone()
                sizes[cand] = int(row["s"]) if row else 0
            # the EXPLAINs run under the session's own timeout again
            self.conn.execute("SELECT set_config('statement_timeout', %s, true)", (session_timeout,))
            costs, used = self._plans()
        return costs, {c.definition() for c, n in names.items() if n in used}, sizes


def choose(
    conn: Connection, queries: list[tuple[str, float, list[str | None] | None]], cands: list[Candidate], *,
    budget_bytes: int | None = None, min_gain: float = MIN_GAIN, max_indexes: int | None = None, real: bool = False,
    build_timeout_ms: int = REAL_BUILD_TIMEOUT_MS,
) -> tuple[list[float], list[float], list[tuple[Candidate, float, float, int]], list[CandidateResult]]:
    """Greedy selection: (costs before, costs after, [(candidate, total before, total after, size)], log)."""
    ev = _Evaluator(conn, queries, real=real, build_timeout_ms=build_timeout_ms)
    weights = [w for _, w, _ in queries]

    def total(costs: list[float]) -> float:
        return sum(c * w for c, w in zip(costs, weights, strict=True))

    base, _, _ = ev.costs([])
    failed: set[Candidate] = set()
    current, log = list(base), {}
    chosen: list[tuple[Candidate, float, float, int]] = []
    spent = 0
    remaining = [c for c in cands if c.method in {"btree", "hash", "brin"}]
    while remaining and (max_indexes is None or len(chosen) < max_indexes):
        best: tuple[float, Candidate, list[float], int] | None = None
        for cand in remaining:
            # a candidate that extends a chosen index (same leading keys) replaces it rather than adding to it
            try:
                costs, used, sizes = ev.costs([c for c, *_ in chosen if not _extends(cand, c)] + [cand])
            except BuildFailed as exc:
                log[cand] = CandidateResult(definition=cand.definition(), reason=cand.reason,
                                            verdict=f"could not be built to verify it: {exc}")
                failed.add(cand)
                continue
            size = sizes.get(cand, 0)
            gain = total(current) - total(costs)
            is_used = cand.definition() in used
            verdict = "used" if is_used else "not used by the planner"
            if cand not in log:  # the first round measures each candidate alone
                log[cand] = CandidateResult(definition=cand.definition(), reason=cand.reason, cost=total(costs),
                                            used=is_used, verdict=verdict)
            if not is_used or (budget_bytes is not None and spent + size > budget_bytes):
                if is_used and budget_bytes is not None and spent + size > budget_bytes:
                    log[cand].verdict = "over the storage budget"
                continue
            # within 1 % of the best gain, the smaller index wins (less storage, cheaper writes)
            tie = best is not None and abs(gain - best[0]) <= 0.01 * total(current)
            if best is None or (gain > best[0] and not tie) or (tie and size < best[3]):
                best = (gain, cand, costs, size)
        if best is None or best[0] < min_gain * total(current):
            break
        gain, cand, costs, size = best
        replaced = [entry for entry in chosen if _extends(cand, entry[0])]
        for entry in replaced:
            log[entry[0]].verdict = f"superseded by {cand.definition()}"
            spent -= entry[3]
        before = replaced[0][1] if replaced else total(current)
        chosen = [entry for entry in chosen if entry not in replaced]
        chosen.append((cand, before, total(costs), size))
        log[cand].verdict = "recommended"
        current = costs
        spent += size
        remaining = [c for c in remaining if c != cand and c not in failed]
    for cand, entry in log.items():
        if entry.verdict == "used" and cand not in [c for c, *_ in chosen]:
            entry.verdict = f"lowers the cost by less than {min_gain:.0%} (or less than the chosen ones)"
    return base, current, chosen, list(log.values())


def _extends(new: Candidate, old: Candidate) -> bool:
    return (new != old and new.table == old.table and new.where == old.where
            and new.columns[: len(old.columns)] == old.columns)


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
                notes += [f"skipped (cannot be planned): {q[:80]} — {why}" for q, why in skipped]
                return Advice(already_served=served, unverified=[c.definition() for c in cands], hypopg=str(exc),
                              notes=[*notes, "nothing is recommended without verification"], verification="none")
            big = {t.qualified: t.size_bytes for t in tables.values() if t.size_bytes > real_index_max_bytes}
            if big:
                notes += [f"{name} is {size / 1048576:.1f} MB, over the {real_index_max_bytes / 1048576:.1f} MB "
                          "limit for building a real index to verify one: its candidates are not verified (install "
                          "HypoPG)" for name, size in sorted(big.items())]
                unverified += [c.definition() for c in cands if c.table in big and c.method != "gin"]
                cands = [c for c in cands if c.table not in big]
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
    notes += [f"skipped (cannot be planned): {q[:80]} — {why}" for q, why in skipped]
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
