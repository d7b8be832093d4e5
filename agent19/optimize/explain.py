"""Run EXPLAIN safely and return the typed plan, with the facts the diagnostics need.

* Reads (``SELECT``, ``VALUES``, ``TABLE``): ``EXPLAIN (ANALYZE, BUFFERS, SETTINGS, FORMAT JSON)``
  inside a ``READ ONLY`` transaction (:meth:`Database.read`), whatever the mode.
* Writes (INSERT/UPDATE/DELETE/MERGE, or a SELECT with a data-modifying CTE): ANALYZE executes
  them, so only in ``dry-run``/``execute`` mode and only inside a transaction that is always
  rolled back (:meth:`Database.rolled_back`). In ``read-only`` mode they get a plain EXPLAIN and a
  note saying so.
* ``statement_timeout`` always applies (the session's, or a lower ``timeout_ms``). When ANALYZE
  is cancelled by it, the plain plan is returned and the result says so.
* ``$1…`` parameters are bound server-side (``RawCursor``: the values travel separately from the
  SQL text; their types are inferred by the server from the statement).
* Only one statement: stacked statements are refused before anything reaches the server.
"""

from __future__ import annotations

import json
from typing import Any, Literal

import psycopg
from psycopg import RawCursor
from pydantic import BaseModel, Field

from agent19.config import AccessMode
from agent19.db.connection import Connection, Database
from agent19.errors import InputError
from agent19.migrate.parse import Statement, parse_sql
from agent19.optimize.plan import Plan, parse_plan
from agent19.safety import aftermath, gate
from agent19.safety.aftermath import Aftermath
from agent19.sqltree import walk

StatementKind = Literal["read", "write"]
Execution = Literal["analyze", "analyze_rolled_back", "plain"]

_WRITES = {"InsertStmt", "UpdateStmt", "DeleteStmt", "MergeStmt"}

# Settings a caller may change for one EXPLAIN (SET LOCAL) to test a hypothesis: planner and
# memory settings only, nothing that touches security, logging or durability.
TUNABLE_SETTINGS = frozenset({
    "work_mem", "hash_mem_multiplier", "maintenance_work_mem", "effective_cache_size", "random_page_cost",
    "seq_page_cost", "cpu_tuple_cost", "cpu_index_tuple_cost", "cpu_operator_cost", "effective_io_concurrency",
    "default_statistics_target", "from_collapse_limit", "join_collapse_limit", "plan_cache_mode",
    "jit", "jit_above_cost", "jit_inline_above_cost", "jit_optimize_above_cost",
    "max_parallel_workers_per_gather", "max_parallel_workers", "parallel_setup_cost", "parallel_tuple_cost",
    "min_parallel_table_scan_size", "min_parallel_index_scan_size", "parallel_leader_participation",
    "enable_async_append", "enable_bitmapscan", "enable_gathermerge", "enable_hashagg", "enable_hashjoin",
    "enable_incremental_sort", "enable_indexonlyscan", "enable_indexscan", "enable_material", "enable_memoize",
    "enable_mergejoin", "enable_nestloop", "enable_parallel_append", "enable_parallel_hash",
    "enable_partition_pruning", "enable_partitionwise_aggregate", "enable_partitionwise_join",
    "enable_seqscan", "enable_sort", "enable_tidscan", "geqo", "geqo_threshold",
})


class RelationFacts(BaseModel):
    """What the catalog and statistics say about a table that appears in the plan."""

    relation: str = Field(description="schema-qualified name")
    name: str
    row_estimate: float = Field(description="pg_class.reltuples (-1: never analyzed)")
    pages: int
    live_rows: int | None = None
    modified_since_analyze: int | None = None
    last_analyzed: str | None = None
    indexes: dict[str, list[str]] = Field(
        default={}, description="valid indexes: name -> key columns (expressions as text)"
    )


class ExplainRun(BaseModel):
    sql: str
    kind: StatementKind
    execution: Execution
    plan: Plan
    raw: list[dict[str, Any]] = Field(description="EXPLAIN's JSON, for explain.dalibo.com / pev2")
    notes: list[str] = []
    server_version: int
    relations: dict[str, RelationFacts] = Field(default={}, description="by relation name as the plan names it")
    offset: int | None = Field(default=None, description="the constant OFFSET of the top-level query, if any")
    after_rollback: Aftermath | None = Field(default=None, description="a write measured in a rolled-back "
                                             "transaction: what the server showed outside it afterwards")


def one_statement(text: str) -> Statement:
    stmts = parse_sql(text)
    if not stmts:
        raise InputError("no SQL statement given", "pass one SELECT, INSERT, UPDATE, DELETE or MERGE")
    if len(stmts) > 1:
        raise InputError(
            f"{len(stmts)} statements given; EXPLAIN takes exactly one",
            "pass the statements one at a time",
        )
    stmt = stmts[0]
    if stmt.node not in _WRITES and stmt.node != "SelectStmt":
        raise InputError(
            f"cannot EXPLAIN a {stmt.node.removesuffix('Stmt')} statement",
            "pass the query itself: SELECT, VALUES, INSERT, UPDATE, DELETE or MERGE",
        )
    if stmt.node == "SelectStmt" and stmt.fields.get("intoClause"):
        raise InputError("SELECT ... INTO creates a table", "explain the SELECT without INTO")
    return stmt


def statement_kind(stmt: Statement) -> StatementKind:
    if stmt.node in _WRITES or any(node in _WRITES for node, _ in walk(stmt.tree)):
        return "write"
    locking = stmt.fields.get("lockingClause")
    return "write" if locking else "read"


def top_offset(stmt: Statement) -> int | None:
    offset = stmt.fields.get("limitOffset") if stmt.node == "SelectStmt" else None
    if isinstance(offset, dict):
        ival = offset.get("A_Const", {}).get("ival")
        if isinstance(ival, dict):
            return int(ival.get("ival", 0))
    return None


def _settings(pairs: list[str]) -> list[tuple[str, str]]:
    out = []
    for pair in pairs:
        name, sep, value = pair.partition("=")
        name = name.strip().lower()
        if not sep or not name:
            raise InputError(f"setting {pair!r} is not name=value", "e.g. work_mem=64MB")
        if name not in TUNABLE_SETTINGS:
            raise InputError(
                f"setting {name!r} cannot be changed for an EXPLAIN",
                "allowed: planner, memory, parallelism and JIT settings such as work_mem, enable_seqscan, jit",
            )
        out.append((name, value.strip()))
    return out


def _explain_sql(stmt_sql: str, *, analyze: bool, generic: bool) -> str:
    opts = ["ANALYZE", "BUFFERS"] if analyze else []
    opts += ["SETTINGS", "FORMAT JSON"]
    if generic:
        opts.append("GENERIC_PLAN")
    return f"EXPLAIN ({', '.join(opts)}) {stmt_sql}"


def _run_explain(conn: Connection, text: str, params: list[str | None] | None) -> list[dict[str, Any]]:
    with RawCursor(conn) as cur:
        cur.execute(text.encode(), params or None)  # type: ignore[arg-type]
        row = cur.fetchone()
    assert row is not None
    value = row[0] if isinstance(row, (tuple, list)) else next(iter(row.values()))  # type: ignore[union-attr]
    return value if isinstance(value, list) else json.loads(value)


def _prepare(conn: Connection, settings: list[tuple[str, str]], timeout_ms: int | None) -> None:
    for name, value in settings:
        conn.execute("SELECT set_config(%s, %s, true)", (name, value))
    if timeout_ms is not None:
        conn.execute("SELECT set_config('statement_timeout', %s, true)", (f"{timeout_ms}ms",))


Q_RELATIONS = """
SELECT c.relname AS name, n.nspname || '.' || c.relname AS relation, c.reltuples AS row_estimate,
       c.relpages AS pages, s.n_live_tup AS live_rows, s.n_mod_since_analyze AS modified_since_analyze,
       greatest(s.last_analyze, s.last_autoanalyze)::text AS last_analyzed,
       (SELECT coalesce(json_object_agg(ic.relname, ARRAY(
                  SELECT pg_get_indexdef(i.indexrelid, k, true) FROM generate_series(1, i.indnkeyatts) k)), '{}')
          FROM pg_index i JOIN pg_class ic ON ic.oid = i.indexrelid
         WHERE i.indrelid = c.oid AND i.indisvalid) AS indexes
  FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
  LEFT JOIN pg_stat_all_tables s ON s.relid = c.oid
 WHERE c.relkind IN ('r', 'p', 'm') AND c.relname = ANY(%s)
   AND (%s::text[] IS NULL OR n.nspname = ANY(%s::text[]) OR n.nspname = ANY(current_schemas(false)))
 ORDER BY array_position(current_schemas(false), n.nspname::text) NULLS LAST
"""


def relation_facts(conn: Connection, plan: Plan) -> dict[str, RelationFacts]:
    names = sorted({n.relation for n in plan.nodes() if n.relation})
    if not names:
        return {}
    schemas = sorted({n.schema_name for n in plan.nodes() if n.schema_name}) or None
    facts: dict[str, RelationFacts] = {}
    for row in conn.execute(Q_RELATIONS, (names, schemas, schemas)).fetchall():
        facts.setdefault(row["name"], RelationFacts(**row))  # the first in search_path order wins
    return facts


def explain(
    db: Database,
    text: str,
    *,
    analyze: bool = True,
    parameters: list[str | None] | None = None,
    generic_plan: bool = False,
    settings: list[str] | None = None,
    timeout_ms: int | None = None,
) -> ExplainRun:
    stmt = one_statement(text)
    kind = statement_kind(stmt)
    tuned = _settings(settings or [])
    notes: list[str] = []
    with db.read() as conn:
        version = int(conn.execute("SELECT current_setting('server_version_num')::int AS v").fetchone()["v"])  # type: ignore[index]
    if generic_plan:
        if version < 160000:
            raise InputError(
                f"GENERIC_PLAN needs PostgreSQL 16 or later (the server is {version // 10000})",
                "pass values for $1... as `parameters` instead",
            )
        if analyze:
            notes.append("GENERIC_PLAN cannot be combined with ANALYZE: showing the estimated plan only")
            analyze = False
        if parameters:
            raise InputError("GENERIC_PLAN plans without values", "leave out `parameters`")
    execution: Execution = "plain"
    if analyze and kind == "write" and not db.mode.allows(AccessMode.DRY_RUN):
        notes.append(
            "EXPLAIN ANALYZE executes the statement, and this one writes: in read-only mode agent19 shows "
            "the estimated plan only (restart with --mode dry-run to measure it inside a transaction that "
            "is always rolled back)"
        )
        analyze = False
    elif analyze:
        execution = "analyze_rolled_back" if kind == "write" else "analyze"
    # Even a plain EXPLAIN evaluates immutable calls while planning: every path goes through the gate.
    checked = None  # the fingerprint of the code the server may run, read with the trial's guard: compared after
    if execution == "analyze_rolled_back":
        checked = gate.admit_trial(db, stmt.sql)
    else:
        gate.admit(db, stmt.sql, gate.Purpose.READ if execution == "analyze" else gate.Purpose.PLAN)
    if execution == "analyze_rolled_back":
        # the write is planned too: nothing in it may call a denied function
        gate.admit(db, stmt.sql, gate.Purpose.PLAN)

    def analyzed(conn: Connection) -> list[dict[str, Any]]:
        nonlocal timeout_ms
        timeout_ms = gate.cap_timeout_ms(conn, timeout_ms)
        _prepare(conn, tuned, timeout_ms)
        return _run_explain(conn, _explain_sql(stmt.sql, analyze=True, generic=False), parameters)

    raw: list[dict[str, Any]] | None = None
    facts: dict[str, RelationFacts] = {}
    after: Aftermath | None = None
    if execution != "plain":
        try:
            if execution == "analyze_rolled_back":  # checked afterwards for what the rollback did not undo
                with aftermath.trial(db, checked) as (conn, after):
                    raw = analyzed(conn)
            else:
                with gate.reader(db) as conn:
                    raw = analyzed(conn)
            if kind == "write":
                notes.append("the statement was executed inside a transaction and rolled back: nothing changed")
        except psycopg.errors.QueryCanceled:
            limit = f"{timeout_ms} ms" if timeout_ms is not None else f"{db.settings.statement_timeout_ms} ms"
            notes.append(
                f"EXPLAIN ANALYZE was cancelled by statement_timeout ({limit}): this is the estimated plan only; "
                "the query runs longer than that"
            )
            execution = "plain"
            raw = None
        except psycopg.Error as exc:
            raise _input_error(exc) from None
    try:
        # EXPLAIN of a write needs the write's privileges, which the reader login does not have;
        # it is only planned (checked as PLAN above), inside a READ ONLY transaction.
        with (db.read() if kind == "write" else gate.reader(db)) as conn:
            if raw is None:
                _prepare(conn, tuned, None)
                raw = _run_explain(conn, _explain_sql(stmt.sql, analyze=False, generic=generic_plan), parameters)
            plan = parse_plan(raw)
            facts = relation_facts(conn, plan)
    except psycopg.Error as exc:
        raise _input_error(exc) from None
    return ExplainRun(
        sql=stmt.sql, kind=kind, execution=execution, plan=plan, raw=raw, notes=notes,
        server_version=version, relations=facts, offset=top_offset(stmt), after_rollback=after,
    )


def _input_error(exc: psycopg.Error) -> InputError:
    message = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
    hint = "check the statement and its parameters"
    if "there is no parameter $" in message or "bind message supplies" in message:
        hint = "pass one value per $n placeholder in `parameters`" + (
            "" if "bind" in message else ", or use generic_plan on PostgreSQL 16+")
    return InputError(f"PostgreSQL refused the EXPLAIN: {message}", hint)
