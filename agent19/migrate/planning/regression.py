"""Does a migration make a query's plan worse? EXPLAIN before and after, inside a rolled-back transaction.

A migration that drops an index, drops a primary key or unique constraint (and its index), drops a column or
changes a column's type (its indexes are rebuilt, or the planner can no longer use them for the old
operators) can turn an index scan into a sequential scan. The queries compared are the ones the user gives
and, when the database has ``pg_stat_statements``, its most expensive SELECTs (by total execution time)
that read an affected table — those whose text the login can read: other roles' statements hidden from it
(no ``pg_read_all_stats``) are said in the note (:mod:`agent19.db.hidden_statements`).

How (:func:`compare_plans`, on a connection in a transaction the caller rolls back): every query is
prepared with ``plan_cache_mode = force_generic_plan`` and explained with NULL parameters — the generic
plan, as for a prepared statement, so ``pg_stat_statements``' ``$1`` placeholders need no values and no
value folds the plan away; nothing is executed (no ANALYZE). Then the migration's statements run in order
(``CONCURRENTLY`` index builds and drops as their plain forms, which have the same effect on the catalog);
after each statement that can affect plans, every query is explained again. A plan is *worse* when its
estimated total cost grows by :data:`REGRESSION_FACTOR` or more, or when the query no longer plans (it
names a dropped column, say). Costs are the planner's estimates in its own units, with the live
statistics.
"""

from __future__ import annotations

import re
import uuid
from typing import Any, Literal

import psycopg
from pglast.parser import ParseError
from psycopg import sql
from psycopg.rows import dict_row, tuple_row
from pydantic import BaseModel, Field

from agent19.db.hidden_statements import hidden_statements, statements_view
from agent19.migrate.lint.rules._base import norm
from agent19.migrate.parse import Statement
from agent19.sqltree import parse_json, walk

REGRESSION_FACTOR = 2.0
"""A query whose estimated cost grows this many times (or that stops planning) got worse."""
TOP_QUERIES = 10
AFFECTING_KINDS = ("drop_index", "drop_constraint", "drop_column", "alter_column_type")
"""Operation kinds (prefixes) after which plans are compared."""
GENERIC = "SET LOCAL plan_cache_mode = force_generic_plan"
_CONCURRENTLY = re.compile(r"^(\s*(?:CREATE\s+(?:UNIQUE\s+)?|DROP\s+)INDEX\s+)CONCURRENTLY\s+", re.IGNORECASE)

Q_STATEMENTS = """
SELECT query, calls FROM {view}
 WHERE dbid = (SELECT oid FROM pg_database WHERE datname = current_database())
 ORDER BY total_exec_time DESC LIMIT 500"""


class PlanQuery(BaseModel):
    query: str = Field(description="the SQL explained (pg_stat_statements' text is data from the database)")
    source: Literal["supplied", "pg_stat_statements"]
    calls: int | None = Field(default=None, description="calls recorded by pg_stat_statements")


class QueryPlanChange(BaseModel):
    statement: int = Field(description="0-based index of the migration statement after which it was explained")
    query: PlanQuery
    cost_before: float | None
    cost_after: float | None = Field(description="None when the query no longer plans (error_after says why)")
    plan_before: str = Field(description="the scans of the plan before the statement")
    plan_after: str
    error_after: str | None = None
    worse: bool = Field(description=f"cost grew {REGRESSION_FACTOR:g}x or more, or the query no longer plans")


class QueryPlanComparison(BaseModel):
    """EXPLAIN before and after each plan-affecting statement, in the dry run's rolled-back transaction."""

    queries: int = Field(description="queries compared")
    changes: list[QueryPlanChange] = Field(default=[], description="one per query and plan-affecting statement")
    note: str = Field(description="what was compared, or why nothing was")


def tables_read(query: str) -> set[str] | None:
    """``schema.name`` (or ``*.name`` when unqualified) of the relations a SELECT reads; None if not a SELECT."""
    try:
        stmts = parse_json(query)
    except ParseError:
        return None
    if len(stmts) != 1 or "SelectStmt" not in stmts[0].get("stmt", {}):
        return None
    return {f"{rv.get('schemaname') or '*'}.{rv.get('relname', '')}"
            for node, rv in walk(stmts[0]) if node == "RangeVar"}


def _reads(read: set[str], tables: set[str]) -> bool:
    return any(r in tables or (r.startswith("*.") and any(t.split(".", 1)[1] == r[2:] for t in tables)) for r in read)


def top_queries(conn: psycopg.Connection[Any], tables: set[str],
                limit: int = TOP_QUERIES) -> tuple[list[PlanQuery], str]:
    """The most expensive SELECTs in ``pg_stat_statements`` that read one of ``tables``, and how they were found."""
    with conn.cursor(row_factory=dict_row) as cur:
        view = statements_view(lambda q: cur.execute(q).fetchall())
    if view is None:
        return [], "pg_stat_statements is not installed in this database"
    with conn.cursor(row_factory=tuple_row) as cur:
        try:
            with conn.transaction():
                rows = cur.execute(Q_STATEMENTS.format(view=view)).fetchall()
        except psycopg.Error as exc:
            return [], f"pg_stat_statements could not be read ({str(exc).strip().splitlines()[0]})"
    with conn.cursor(row_factory=dict_row) as cur, conn.transaction():
        hidden = hidden_statements(lambda q: cur.execute(q).fetchall(), view,
                                   "which of other roles' SELECTs read an affected table")
    wanted = {norm(t) for t in tables}
    out = []
    for text, calls in rows:
        read = tables_read(text or "")
        if read and _reads(read, wanted):
            out.append(PlanQuery(query=text, source="pg_stat_statements", calls=calls))
        if len(out) >= limit:
            break
    found = f"{len(out)} of pg_stat_statements' most expensive SELECTs read an affected table"
    return out, f"{found}; {hidden}" if hidden else found


def _scans(plan: dict[str, Any]) -> str:
    found: list[str] = []
    stack = [plan]
    while stack:
        node = stack.pop()
        if "Relation Name" in node or "Index Name" in node:  # a Bitmap Index Scan names only its index
            index = f" using {node['Index Name']}" if node.get("Index Name") else ""
            on = f" on {node['Relation Name']}" if node.get("Relation Name") else ""
            found.append(f"{node.get('Node Type', '?')}{index}{on}")
        stack.extend(reversed(node.get("Plans", [])))
    return ", ".join(dict.fromkeys(found)) or plan.get("Node Type", "?")


def explain(conn: psycopg.Connection[Any], query: str) -> tuple[float | None, str, str | None]:
    """(total cost, the plan's scans, error) of ``query``'s generic plan; nothing is executed."""
    name = f"agent19_plan_{uuid.uuid4().hex[:12]}"
    try:
        with conn.transaction(), conn.cursor(row_factory=tuple_row) as cur:
            cur.execute(sql.SQL("PREPARE {} AS {}").format(sql.Identifier(name), sql.SQL(query)))  # type: ignore[arg-type]
            row = cur.execute("SELECT cardinality(parameter_types) FROM pg_prepared_statements WHERE name = %s",
                              (name,)).fetchone()
            params = sql.SQL("({})").format(sql.SQL(", ").join([sql.NULL] * row[0])) if row and row[0] else sql.SQL("")
            result = cur.execute(sql.SQL("EXPLAIN (FORMAT JSON) EXECUTE {}{}").format(sql.Identifier(name),
                                                                                     params)).fetchone()
    except psycopg.Error as exc:
        return None, "does not plan", str(exc).strip().splitlines()[0]
    finally:
        try:
            with conn.transaction():
                conn.execute(sql.SQL("DEALLOCATE {}").format(sql.Identifier(name)))
        except psycopg.Error:
            pass  # never prepared: the PREPARE itself failed
    assert result is not None
    plan = result[0][0]["Plan"]
    return float(plan["Total Cost"]), _scans(plan), None


def compare_plans(conn: psycopg.Connection[Any], statements: list[Statement], affecting: set[int],
                  queries: list[PlanQuery]) -> tuple[list[QueryPlanChange], str | None]:
    """Explain ``queries``, run ``statements`` in order, and explain them again after each statement whose index
    is in ``affecting``; and why it stopped early, if it did. ``conn`` is in a transaction that the caller rolls
    back."""
    conn.execute(GENERIC)
    now = {q.query: explain(conn, q.query) for q in queries}
    out: list[QueryPlanChange] = []
    for st in statements:
        try:
            with conn.transaction():
                conn.execute(_CONCURRENTLY.sub(r"\1", st.sql))  # type: ignore[call-overload]
        except psycopg.Error as exc:
            return out, f"statement {st.index + 1} failed in the comparison ({str(exc).strip().splitlines()[0]})"
        if st.index not in affecting:
            continue
        conn.execute(GENERIC)  # again: a statement of the migration may have reset it
        for q in queries:
            (before, plan_before, _), after = now[q.query], explain(conn, q.query)
            now[q.query] = after
            cost_after, plan_after, error = after
            worse = error is not None if before is not None else False
            if before is not None and cost_after is not None:
                worse = cost_after >= before * REGRESSION_FACTOR and cost_after > before
            out.append(QueryPlanChange(statement=st.index, query=q, cost_before=before, cost_after=cost_after,
                                       plan_before=plan_before, plan_after=plan_after, error_after=error, worse=worse))
    return out, None


def affecting(results: list[Any]) -> tuple[set[int], set[str]]:
    """Of a dry run's statement results: the indexes of those after which plans are compared, and the tables
    they locked on the server (where the queries to compare come from)."""
    indexes: set[int] = set()
    tables: set[str] = set()
    for s in results:
        if s.error is None and (s.kind or "").startswith(AFFECTING_KINDS):
            indexes.add(s.index)
            tables |= {lk.relation for lk in s.locks if lk.relkind in ("r", "p", "m")}
    return indexes, tables


def runnable(results: list[Any], statements: list[Statement]) -> list[Statement] | None:
    """The statements to replay (each ran without error in the dry run's transaction, or is an index built or
    dropped CONCURRENTLY, replayed as its plain form); None when one cannot be replayed."""
    by_index = {s.index: s for s in results}
    out = []
    for st in statements:
        r = by_index.get(st.index)
        if r is None or r.error is not None or r.untested:
            return None
        if r.ran_in == "transaction" or _CONCURRENTLY.match(st.sql):
            out.append(st)
        elif r.ran_in != "skipped":
            return None
    return out


def evidence(comparison: QueryPlanComparison, order_of: dict[int, int]) -> dict[int, list[str]]:
    """Operation order → the queries whose plan the operation made worse, with the costs."""
    out: dict[int, list[str]] = {}
    for c in comparison.changes:
        order = order_of.get(c.statement)
        if not c.worse or order is None:
            continue
        q = c.query
        text = " ".join(q.query.split())
        where = "supplied" if q.source == "supplied" else f"pg_stat_statements, {q.calls:,} calls"
        if c.cost_after is None:
            after = f"no longer plans ({c.error_after})"
        else:
            ratio = c.cost_after / c.cost_before if c.cost_before else float("inf")
            after = (f"costs {c.cost_before:,.2f} -> {c.cost_after:,.2f} (x{ratio:,.1f}): "
                     f"{c.plan_before} -> {c.plan_after}")
        out.setdefault(order, []).append(
            f"operation {order} makes query `{text}` ({where}) worse: it {after} (EXPLAIN before and after in the dry "
            "run's rolled-back transaction)")
    return out
