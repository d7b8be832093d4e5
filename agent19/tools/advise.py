"""advise_indexes and advise_workload: index advice verified with HypoPG."""

from __future__ import annotations

from pydantic import BaseModel, Field

from agent19.errors import InputError
from agent19.optimize.advisor import Advice
from agent19.optimize.workload import OrderBy
from agent19.safety import gate
from agent19.tools.explain import BoundParams
from agent19.tools.registry import ToolContext, tool


class AdviseArgs(BaseModel):
    sql: str = Field(description="one query (SELECT/UPDATE/DELETE); $1... allowed",
                     json_schema_extra=gate.user_sql("statement"))
    parameters: BoundParams = Field(
        default=[], description="values for $1, $2 ... (without them: the generic plan; numbers and booleans "
        "accepted; null is SQL NULL)")
    min_gain: float = Field(default=0.10, gt=0, lt=1, description="least share of cost an index must remove")


class WorkloadArgs(BaseModel):
    queries: list[str] = Field(default=[], description="the workload's queries; empty: the top statements of "
                               "pg_stat_statements", json_schema_extra=gate.user_sql("statements"))
    order_by: OrderBy = Field(default="total_time", description="how to pick the top statements")
    limit: int = Field(default=20, ge=1, le=200, description="how many top statements")
    budget_mb: float | None = Field(default=None, gt=0, description="storage budget for all new indexes, MB")
    min_gain: float = Field(default=0.01, gt=0, lt=1, description="least share of the workload's cost an index "
                            "must remove")


def render_advice(a: Advice) -> str:
    lines = [f"HypoPG: {a.hypopg}", f"verified with: {a.verification}"]
    for r in a.recommendations:
        size = f", ~{r.estimated_size_bytes / 1048576:.1f} MB" if r.estimated_size_bytes else ""
        lines.append(f"recommend: {r.sql};")
        lines.append(f"    cost {r.cost_before:,.2f} -> {r.cost_after:,.2f} (-{r.improvement:.0%}){size}; "
                     f"{r.table} has {r.existing_indexes} indexes already - {r.reason}")
    if not a.recommendations:
        lines.append("no index recommended")
    for q in a.queries:
        if len(a.queries) > 1:
            lines.append(f"  {q.cost_before:>12,.2f} -> {q.cost_after:>12,.2f}  {q.sql[:90]}")
    for c in a.candidates:
        if c.verdict != "recommended":
            lines.append(f"  considered: {c.definition} - {c.verdict}")
    for cand, index in a.already_served.items():
        lines.append(f"  already served: {cand} - by {index}")
    for u in a.unverified:
        lines.append(f"  unverified idea: {u}")
    lines += [f"note: {n}" for n in a.notes]
    return "\n".join(lines)


@tool(
    briefs={
        "sql": "", "min_gain": "share of cost an index must remove",
    },
    name="advise_indexes", title="Index advice", args=AdviseArgs,
    result=Advice, cli="advise", positional=("sql",), render_text=render_advice,
    examples=("agent19 advise \"SELECT * FROM orders WHERE status = 'refunded' AND amount > 900\"",),
)
def advise_indexes(ctx: ToolContext, args: AdviseArgs) -> Advice:
    """Recommend indexes for one query, each verified with HypoPG before it is recommended.

    Candidates come from the query's equality, range, join, ORDER BY and GROUP BY columns (qualified
    against the catalog): composite with equality columns first, covering (INCLUDE) variants, trigram
    GIN ideas for LIKE '%…'. Candidates an existing index already serves are skipped. Each is created
    as a hypothetical index and the plan's cost compared; only indexes the planner uses and that lower
    the cost by `min_gain` are recommended, with the cost before/after, estimated size and the table's
    existing index count (write cost). Partial indexes (WHERE col = constant) where the constant is rare
    in a low-cardinality column. Recommends CREATE INDEX CONCURRENTLY. Needs the hypopg extension
    (read-only mode: created by a DBA; dry-run mode: created in a rolled-back transaction); without
    HypoPG on the server, dry-run mode builds each candidate for real in a rolled-back transaction
    (tables up to 64 MB, 10 s per build) and marks the advice verified with `real-index`."""
    from agent19.optimize.advisor import advise
    from agent19.optimize.explain import one_statement
    from agent19.tools.explain import bound_text

    stmt = one_statement(args.sql)
    if stmt.node not in {"SelectStmt", "UpdateStmt", "DeleteStmt"}:
        raise InputError("the index advisor reads SELECT, UPDATE and DELETE", "pass the query that reads the rows")
    gate.admit(ctx.db, stmt.sql, gate.Purpose.PLAN)  # only planned (with hypothetical indexes), never run
    return advise(ctx.db, [(stmt.sql, 1.0, bound_text(args.parameters) or None)], min_gain=args.min_gain)


@tool(
    briefs={
        "queries": "default: pg_stat_statements' top", "order_by": "", "limit": "", "budget_mb": "",
        "min_gain": "share of cost an index must remove",
    },
    name="advise_workload", title="Workload indexes", args=WorkloadArgs,
    result=Advice, cli="advise-workload", render_text=render_advice,
    examples=("agent19 advise-workload --budget-mb 500", "agent19 advise-workload --order-by calls --limit 50"),
)
def advise_workload(ctx: ToolContext, args: WorkloadArgs) -> Advice:
    """Choose one set of indexes for many queries within a size budget, verified with HypoPG.

    Choose a set of indexes for a workload: the top statements of pg_stat_statements (by total time,
    mean time or calls) or the queries given. Greedy selection on HypoPG costs, each query weighted by
    calls × mean time, within `budget_mb`; reports the cost of each query before and after. Says
    clearly when pg_stat_statements or hypopg is missing and how to enable them."""
    from agent19.optimize.advisor import advise
    from agent19.optimize.explain import one_statement
    from agent19.optimize.workload import hidden_workload, top_queries
    from agent19.safety.readonly import ReadOnlyViolation

    refused: list[str] = []
    if args.queries:
        queries = [(one_statement(q).sql, 1.0, None) for q in args.queries]
        for q, _, _ in queries:
            gate.admit(ctx.db, q, gate.Purpose.PLAN)  # only planned, never run
    else:
        top = top_queries(ctx.db, args.order_by, args.limit)
        hidden = hidden_workload(ctx.db)
        if hidden:
            refused.append(hidden)
        if not top and hidden:
            raise InputError(f"pg_stat_statements has no statement of this database this login can read: {hidden}",
                             "grant it as said, or pass `queries`")
        if not top:
            raise InputError("pg_stat_statements has no statements for this database yet",
                             "let the application run, or pass `queries`")
        queries = []
        for q in top:  # other sessions wrote these: untrusted SQL, through the same gate
            try:
                gate.admit(ctx.db, q.sql, gate.Purpose.PLAN)
            except ReadOnlyViolation as exc:
                refused.append(f"left out (not safe to plan): {q.sql[:80]} - {exc.message}")
            except gate.PrivilegedPlanner as exc:  # a write, and only a privileged login may plan it here
                refused.append(f"left out (not planned as a privileged login): {q.sql[:80]} - {exc.message}")
            else:
                queries.append((q.sql, q.weight, None))
        if not queries:
            raise InputError("no top statement of pg_stat_statements is safe to plan", "; ".join(refused))
    budget = int(args.budget_mb * 1048576) if args.budget_mb else None
    advice = advise(ctx.db, queries, budget_bytes=budget, min_gain=args.min_gain)
    advice.notes += refused
    return advice
