"""assess_optimization: measure first; decide what the scale warrants."""

from __future__ import annotations

from agent19.optimize.assess import Assessment, Metrics
from agent19.tools.registry import ToolContext, tool


def render_assessment(a: Assessment) -> str:
    if not a.measured:
        lines = ["measure first - answer these before optimizing:"]
        lines += [f"  - {q}\n      {h}" for q, h in zip(a.questions, a.how_to_measure, strict=True)]
        return "\n".join(lines + [f"meanwhile: {a.simple_fix_first}"] + _thresholds(a))
    lines = [f"first: {a.simple_fix_first}"]
    lines += [f"[{d.verdict}] {d.technique}: {d.why} (revisit when {d.revisit_when})" for d in a.decisions]
    return "\n".join(lines + _thresholds(a))


def _thresholds(a: Assessment) -> list[str]:
    if not a.thresholds:
        return []
    lines = ["", f"measured on {a.measured_on}: " + ", ".join(f"{k}={v:,}" for k, v in a.filled.items())]
    lines += [f"[{t.verdict.replace('_', ' ')}] {t.technique} (needed when {t.needed_when}): {t.measured} - "
              f"{t.would_change}" for t in a.thresholds]
    return lines


@tool(
    briefs={
        "execution_ms": "", "table_rows": "largest table's rows", "table_gb": "", "qps": "", "write_share": "",
        "connections": "", "have_explain": "", "measure": "measure missing numbers here", "window": "",
    },
    name="assess_optimization", title="Scaling assessment", args=Metrics, result=Assessment,
    cli="assess", render_text=render_assessment,
    examples=("agent19 assess", "agent19 assess --execution-ms 800 --table-rows 2000000 --qps 5 --have-explain"),
)
def assess_optimization(ctx: ToolContext, args: Metrics) -> Assessment:
    """Which of pooling, caching, replicas, partitioning and sharding are warranted now. Use before architecture
    changes.

    Decide how far an optimization should go. Without metrics (execution time, row counts, QPS,
    EXPLAIN ANALYZE) it returns the questions to ask and the queries that answer them. With them, it
    says for each scaling technique (pooling, caching, read replicas, materialized views, partitioning,
    denormalization, sharding) whether it is warranted now or premature, and when to revisit — at small
    scale the answer is the simple fix. Needs no database; when one is connected (and `measure` is on) the
    numbers not given are measured there (largest table's rows and size, queries/s over `window` seconds,
    connections) and the premature-optimization table (sharding, read replicas, materialized views,
    pooling, partitioning, caching) is judged on them: warranted now, not yet (with the number that would
    change it), or unknown (with how to measure it first)."""
    from agent19.ops.capacity.plan import measured_numbers
    from agent19.optimize.assess import assess, assess_measured

    if not args.measure or ctx.settings.dsn_value() is None:
        return assess(args)
    m, state = measured_numbers(ctx.db, args.window)
    rates = state.rates
    return assess_measured(args, m, qps=rates.statements_per_s if rates else None,
                           read_qps=rates.read_statements_per_s if rates else None,
                           measured_on=f"{state.database} ({state.measured_at})")
