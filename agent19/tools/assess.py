"""assess_optimization: measure first; decide what the scale warrants."""

from __future__ import annotations

from agent19.optimize.assess import Assessment, Metrics, assess
from agent19.tools.registry import ToolContext, tool


def render_assessment(a: Assessment) -> str:
    if not a.measured:
        lines = ["measure first — answer these before optimizing:"]
        lines += [f"  - {q}\n      {h}" for q, h in zip(a.questions, a.how_to_measure, strict=True)]
        return "\n".join(lines + [f"meanwhile: {a.simple_fix_first}"])
    lines = [f"first: {a.simple_fix_first}"]
    lines += [f"[{d.verdict}] {d.technique}: {d.why} (revisit when {d.revisit_when})" for d in a.decisions]
    return "\n".join(lines)


@tool(
    name="assess_optimization", title="Measure first: what the scale warrants", args=Metrics, result=Assessment,
    cli="assess", render_text=render_assessment,
    examples=("agent19 assess", "agent19 assess --execution-ms 800 --table-rows 2000000 --qps 5 --have-explain"),
)
def assess_optimization(ctx: ToolContext, args: Metrics) -> Assessment:
    """Decide how far an optimization should go. Without metrics (execution time, row counts, QPS,
    EXPLAIN ANALYZE) it returns the questions to ask and the queries that answer them. With them, it
    says for each scaling technique (pooling, caching, read replicas, materialized views, partitioning,
    denormalization, sharding) whether it is warranted now or premature, and when to revisit — at small
    scale the answer is the simple fix. Needs no database."""
    return assess(args)
