"""Plan diagnostics: each a small function over the typed plan that returns findings with evidence.

Every :class:`Diagnostic` (:mod:`agent19.optimize.diagnostics_model`) names the node, the numbers that
prove it and the threshold they crossed. Severity follows the conventions of plan viewers (REFERENCE:
misestimate factor > 10 / 100 / 1000; rows discarded > 50 % / 90 % of rows read; a node's
exclusive time > 10 % / 40 % / 90 % of the total, which raises a finding's severity; any hash
batches > 1, disk sort or lossy heap blocks). Findings are ranked by the time they could save;
those that could save less than 5 % of the execution time are dropped unless severe.

The checks of scans are in :mod:`agent19.optimize.diagnostics_scans`; those of joins, memory and row
estimates, and the plan-wide ones, are here.

To add a diagnostic: write ``def check_x(ctx: Context) -> Iterator[Diagnostic]`` (here, or in
diagnostics_scans for a scan) and list it in :data:`CHECKS`.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator

from agent19.optimize.diagnostics_model import _RANK, Context, Diagnostic, _diag, _mem, _pct
from agent19.optimize.diagnostics_scans import (
    check_heap_fetches,
    check_lossy_bitmap,
    check_seq_scan,
    check_unusable_index,
    check_wasteful_index_scan,
)
from agent19.optimize.explain import ExplainRun
from agent19.optimize.exprs import filter_columns
from agent19.optimize.plan import PlanNode

MIN_SAVING_SHARE = 0.05


# -- joins, memory ---------------------------------------------------------------------------------
_INDEX_NODES = {"Index Scan", "Index Only Scan", "Bitmap Index Scan"}


def check_nested_loop(ctx: Context) -> Iterator[Diagnostic]:
    for n in ctx.plan.nodes():
        if n.node_type != "Nested Loop" or len(n.children) < 2:
            continue
        inner = n.children[1]
        if inner.actual_loops is None or inner.actual_loops < 100:
            continue
        if any(x.node_type in _INDEX_NODES for x in inner.walk()):
            continue
        scan = next((x for x in inner.walk() if x.relation), inner)
        per_loop = scan.rows_read / scan.loops if scan.rows_read is not None else 0
        if scan.node_type == "Materialize" or inner.node_type == "Materialize":
            per_loop = max(per_loop, inner.actual_rows or 0)
        compared = per_loop * inner.actual_loops
        if compared < 100_000:
            continue
        yield _diag(
            ctx, n, "nested_loop_no_index", f"Nested loop scans {scan.relation or 'its inner side'} "
            f"{inner.actual_loops:,} times without an index", "medium",
            evidence={"inner_loops": inner.actual_loops, "inner_rows_per_loop": per_loop,
                      "rows_compared": compared, "join_filter": n.join_filter,
                      "rows_removed_by_join_filter": (n.rows_removed_by_join_filter or 0) * n.loops},
            threshold=">= 100 inner loops over a path without an index, >= 100,000 rows compared",
            advice=f"index the join column of {scan.relation or 'the inner table'} so each loop is an index lookup, "
            "or, if the outer row count was underestimated, fix the estimate (ANALYZE, CREATE STATISTICS) so the "
            "planner picks a hash join",
            saving_ms=(n.total_time_ms or 0) * 0.8,
        )


def check_spill(ctx: Context) -> Iterator[Diagnostic]:
    for n in ctx.plan.nodes():
        if n.sort_space_type == "Disk":
            kb = n.sort_space_kb or 0
            yield _diag(
                ctx, n, "sort_spill", f"Sort spilled {kb:,} kB to disk", "medium",
                evidence={"sort_method": n.sort_method, "sort_space_kb": kb, "sort_key": ", ".join(n.sort_key)},
                threshold="Sort Space Type = Disk",
                advice=f"an in-memory sort needs roughly 2-3x the disk space: try work_mem = {_mem(kb * 3)} for this "
                "query (SET LOCAL / per role), or an index that returns the rows already in this order",
                saving_ms=(n.exclusive_time_ms or 0) * 0.5,
            )
        elif n.hash_batches and n.hash_batches > 1:
            mem = (n.peak_memory_kb or 0) * n.hash_batches
            disk = n.disk_usage_kb
            need = max(mem, (disk or 0) * 2)
            yield _diag(
                ctx, n, "hash_spill", f"{n.label} spilled to disk in {n.hash_batches} batches", "medium",
                evidence={"batches": n.hash_batches, "original_batches": n.original_hash_batches,
                          "peak_memory_kb": n.peak_memory_kb, "disk_usage_kb": disk},
                threshold="hash batches > 1",
                advice=f"the hash table needs about {need:,.0f} kB: try work_mem = {_mem(need * 1.5)} for this query "
                "(or raise hash_mem_multiplier); check the row estimate of its input too",
                saving_ms=((ctx.parents.get(n.id) or n).exclusive_time_ms or 0) * 0.5 + (n.exclusive_time_ms or 0),
            )


def check_misestimate(ctx: Context) -> Iterator[Diagnostic]:
    if not ctx.plan.analyzed:
        return

    def factor(n: PlanNode) -> float:
        if n.actual_rows is None or n.never_executed:
            return 1.0
        est, act = max(n.plan_rows, 1.0), max(n.actual_rows, 1.0)
        if max(est, act) * n.loops < 100 or (act < est and _under_limit(ctx, n)):
            return 1.0
        return max(est / act, act / est)

    factors = {n.id: factor(n) for n in ctx.plan.nodes()}
    for n in ctx.plan.nodes():
        f = factors[n.id]
        if f < 10 or any(factors[c.id] >= 10 for c in n.walk() if c is not n):
            continue  # report where the misestimate starts, not every node it propagates to
        parent = ctx.parents.get(n.id)
        under = (n.actual_rows or 0) > n.plan_rows
        misled = _misled(parent, under)
        cols = filter_columns(n.filter or n.index_cond or "")
        advice = f"ANALYZE {n.relation}" if n.relation else "ANALYZE the tables below this node"
        if n.relation and len(cols) >= 2:
            advice += (f"; the filter combines {', '.join(cols)}: if they are correlated, CREATE STATISTICS "
                       f"ON {', '.join(cols)} FROM {n.relation} (dependencies, mcv) and ANALYZE")
        yield _diag(
            ctx, n, "row_misestimate",
            f"{n.label}: {'under' if under else 'over'}estimated rows {f:,.0f}x",
            "high" if f > 1000 else "medium" if f > 100 else "low",
            evidence={"estimated_rows": n.plan_rows, "actual_rows": n.actual_rows, "loops": n.loops,
                      "factor": round(f, 1), "misleads": parent.label if parent else None},
            threshold="max(actual/estimated, estimated/actual) > 10 (100, 1000)",
            advice=f"{misled} {advice}.",
            saving_ms=(parent.exclusive_time_ms if parent else n.exclusive_time_ms) or 0,
        )


def _under_limit(ctx: Context, n: PlanNode) -> bool:
    p = ctx.parents.get(n.id)
    while p is not None:
        if p.node_type in {"Limit", "Merge Join"} or p.parent_relationship == "SubPlan":
            return True
        p = ctx.parents.get(p.id)
    return False


def _misled(parent: PlanNode | None, under: bool) -> str:
    if parent is None:
        return "The wrong estimate misleads whatever uses this query's result."
    if parent.node_type == "Nested Loop" and under:
        return "An underestimate makes a nested loop look cheap; with the real row count a hash join is likely better."
    if parent.node_type in {"Hash", "Sort", "Aggregate"}:
        return f"It sizes the memory of {parent.label} wrongly (spills or waste)."
    return f"It misleads the planner's choice of {parent.label}."


# -- plan-wide -------------------------------------------------------------------------------------
def check_subplans(ctx: Context) -> Iterator[Diagnostic]:
    for n in ctx.plan.nodes():
        per_row = n.parent_relationship == "SubPlan" or (n.node_type == "CTE Scan" and n.loops > 1)
        if not per_row or n.actual_loops is None or n.actual_loops < 1000:
            continue
        yield _diag(
            ctx, n, "per_row_subplan", f"{n.subplan_name or n.label} runs once per row ({n.actual_loops:,} times)",
            "medium",
            evidence={"loops": n.actual_loops, "ms_per_loop": n.actual_total_ms, "total_ms": n.total_time_ms},
            threshold="a correlated subquery or CTE scan executed >= 1,000 times",
            advice="rewrite it as a join (or a LATERAL join / one aggregate grouped by the correlation key) so it "
            "runs once for all rows",
            saving_ms=(n.total_time_ms or 0) * 0.8,
        )


def check_workers(ctx: Context) -> Iterator[Diagnostic]:
    for n in ctx.plan.nodes():
        if n.workers_planned is None or n.workers_launched is None or n.workers_launched >= n.workers_planned:
            continue
        yield _diag(
            ctx, n, "workers_not_launched",
            f"{n.label}: {n.workers_launched} of {n.workers_planned} parallel workers launched",
            "medium" if n.workers_launched == 0 else "low",
            evidence={"workers_planned": n.workers_planned, "workers_launched": n.workers_launched},
            threshold="workers launched < workers planned",
            advice="the server ran out of parallel workers (max_parallel_workers / max_worker_processes are in use "
            "by other queries); raise them, or expect this query to run at this speed under load",
            saving_ms=(n.total_time_ms or 0) * (1 - (n.workers_launched + 1) / (n.workers_planned + 1)),
        )


def check_jit(ctx: Context) -> Iterator[Diagnostic]:
    total, jit = ctx.total_ms, ctx.plan.jit_ms
    if not total or not jit:
        return
    share = jit / total
    if share <= 0.1:
        return
    yield _diag(
        ctx, None, "jit_dominates", f"JIT compilation takes {_pct(share)} of the execution time",
        "high" if share > 0.9 else "medium" if share > 0.4 else "low",
        evidence={"jit_ms": round(jit, 3), "execution_ms": round(total, 3), "jit_share": round(share, 4),
                  "functions": ctx.plan.jit_functions},
        threshold="JIT time > 10 % (40 %, 90 %) of the execution time",
        advice="JIT pays off for long analytic queries only: raise jit_above_cost (and the inline/optimize costs) "
        "or SET jit = off for this workload's role",
        saving_ms=jit,
    )


def check_buffers(ctx: Context) -> Iterator[Diagnostic]:
    b = ctx.plan.root.buffers
    if b is None:
        return
    total = b.shared_hit + b.shared_read
    if b.shared_read < 1000 or b.shared_read / total < 0.5:
        return
    yield _diag(
        ctx, None, "buffers_read", f"{_pct(b.shared_read / total)} of the pages came from outside shared buffers",
        "low",
        evidence={"shared_hit": b.shared_hit, "shared_read": b.shared_read,
                  "read_mb": round(b.shared_read * 8 / 1024, 1),
                  "read_share": round(b.shared_read / total, 4)},
        threshold="shared blocks read >= 1,000 and > 50 % of blocks accessed",
        advice="the data was not cached (first run, or the working set exceeds shared_buffers): reading less "
        "(an index, fewer columns) helps more than memory; a second run shows the warm-cache time",
    )


def check_stale_statistics(ctx: Context) -> Iterator[Diagnostic]:
    for facts in ctx.relations.values():
        mods, rows = facts.modified_since_analyze or 0, max(facts.row_estimate, 0)
        never = facts.last_analyzed is None and (facts.live_rows or 0) >= 1000
        if not never and (mods < 1000 or mods < 0.1 * rows):
            continue
        yield Diagnostic(
            code="stale_statistics",
            title=f"Statistics of {facts.relation} are stale" if not never else f"{facts.relation} was never analyzed",
            severity="medium" if never or mods >= rows else "low",
            evidence={"rows_modified_since_analyze": mods, "row_estimate": facts.row_estimate,
                      "live_rows": facts.live_rows, "last_analyzed": facts.last_analyzed},
            threshold="rows modified since the last ANALYZE >= 10 % of the table (and >= 1,000), or never analyzed",
            advice=f"ANALYZE {facts.relation}; then check why autovacuum's analyze lags on it "
            "(autovacuum_analyze_scale_factor, bulk loads)",
        )


def check_offset(ctx: Context) -> Iterator[Diagnostic]:
    if not ctx.offset or ctx.offset < 1000:
        return
    limit = ctx.plan.root if ctx.plan.root.node_type == "Limit" else None
    read = limit.children[0].actual_rows if limit and limit.children else None
    yield Diagnostic(
        code="large_offset", title=f"OFFSET {ctx.offset:,} reads and throws away {ctx.offset:,} rows",
        severity="medium" if ctx.offset >= 100_000 else "low", node_id=limit.id if limit else None,
        node=limit.label if limit else None,
        evidence={"offset": ctx.offset, "rows_produced_below_limit": read},
        threshold="OFFSET >= 1,000",
        advice="page with a keyset instead (WHERE (sort_key, id) > (last seen values) ORDER BY sort_key, id LIMIT n) "
        "over an index on the sort key: every page then costs the same",
        saving_ms=(limit.total_time_ms or 0) * 0.9 if limit else None,
    )


CHECKS: list[Callable[[Context], Iterator[Diagnostic]]] = [
    check_seq_scan, check_unusable_index, check_wasteful_index_scan, check_lossy_bitmap, check_heap_fetches,
    check_nested_loop, check_spill, check_misestimate, check_subplans, check_workers, check_jit, check_buffers,
    check_stale_statistics, check_offset,
]


def diagnose(run: ExplainRun) -> list[Diagnostic]:
    """Every finding, most valuable first; findings that could save little are dropped."""
    parents = {c.id: n for n in run.plan.nodes() for c in n.children}
    ctx = Context(plan=run.plan, relations=run.relations, offset=run.offset, parents=parents)
    found = [d for check in CHECKS for d in check(ctx)]
    total = ctx.total_ms
    if total:
        for d in found:  # node times of parallel workers add up past the wall clock: no saving exceeds the query
            if d.saving_ms is not None and d.saving_ms > total:
                d.saving_ms = total
        found = [d for d in found if d.saving_ms is None or d.saving_ms >= MIN_SAVING_SHARE * total
                 or d.severity == "high"]
    return sorted(found, key=lambda d: (-(d.saving_ms or 0), -_RANK[d.severity], d.node_id or 0))
