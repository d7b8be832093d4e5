"""plan_migration (``agent19 plan``): a migration plan from SQL, a file, or a change list."""

from __future__ import annotations

from agent19.migrate.planning.model import MigrationPlan
from agent19.tools._migration_input import MigrationInput
from agent19.tools.registry import ToolContext, tool


class PlanArgs(MigrationInput):
    """plan_migration's arguments: just the migration (a file, SQL or a change list)."""


def render_plan(p: MigrationPlan) -> str:
    out = [f"plan {p.id}: {p.name}", f"  {p.description}",
           f"  risk {p.risk_level}; duration {p.estimated_duration}",
           f"  deployment: {p.deployment.kind} - {p.deployment.reason}", "", "operations:"]
    for o in p.operations:
        rows = f", ~{o.estimated_rows:,} rows" if o.estimated_rows is not None else ""
        out.append(f"  {o.order:>2}. [{o.risk}] {o.description}; downtime {o.downtime.replace('_', ' ')}{rows}")
        out.append(f"      {' '.join(o.sql.split())[:110]}")
        if o.deploy_after:
            out.append("  >>> deploy the application here: the operations below remove what the old version uses")
    out += ["", "prerequisites:", *(f"  - {x}" for x in p.prerequisites)]
    out += ["", f"rollback ({p.rollback.kind.replace('_', ' ')}): {p.rollback.description}",
            *(f"  {s};" for s in p.rollback.steps)]
    out += ["", "validation:", *(f"  {'[blocking] ' if v.blocking else ''}{v.phase}: {v.name}: {v.query}  -> "
                                 f"{v.expected}" for v in p.validation)]
    out += ["", f"escalations: {p.escalation_summary or 'not decided'}"]
    for e in p.escalations:
        out.append(f"  {e.kind.replace('_', ' ')} -> {', '.join(e.reviewers)}: {e.action}")
        out += [f"    - {x}" for x in e.evidence]
    out += [f"note: {n}" for n in p.notes]
    if p.findings:
        out += ["", "findings:"]
        out += [f"  {f.severity} {f.rule} (operation {f.operation}): {f.message}" for f in p.findings]
    return "\n".join(out)


@tool(
    name="plan_migration",
    briefs={
        "file": ".sql or .json change list", "sql": "", "name": "",
        # the change objects' fields (1,600 characters of schema) are one read away, for the calls that use them
        "changes": {"type": "array", "description": "fields: agent19://tools/plan_migration"},
        "description": "", "dry_run_result": "test_migration's result",
        "write_sample_seconds": "seconds to sample write rates",
    },
    title="Plan a migration",
    args=PlanArgs,
    result=MigrationPlan,
    cli="plan",
    positional=("file",),
    render_text=render_plan,
    examples=(
        "agent19 plan migrations/V7__orders_status.sql",
        "agent19 plan changes.json --dsn postgresql://app@localhost/shop --format json",
        "agent19 plan --sql 'ALTER TABLE orders ADD COLUMN note text'",
    ),
)
def plan_migration_tool(ctx: ToolContext, args: PlanArgs) -> MigrationPlan:
    """Plan a migration before running it: each operation's lock, downtime, order, rollback and checks.

    Plan a schema migration before running it. Give `sql` (kept in its order; ordering mistakes are
    reported) or `changes` (a structured change list; safe SQL is generated — CONCURRENTLY, NOT VALID +
    VALIDATE, NOT NULL through a CHECK, renames and type changes as expand / deploy / contract with the
    deploy point marked (`deploy_after`) — and ordered topologically).

    Returns every operation with its lock (pg_locks names), downtime, estimated rows and reverse SQL;
    the risk level; an estimated duration (needs a database for table sizes); prerequisites; the
    rollback strategy with reverse SQL in reverse order; validation queries with expected results;
    the deployment strategy (immediate, rolling, blue_green, maintenance_window); lint findings; and
    escalations (data loss, downtime, performance, breaking change), each naming its statements, the
    evidence and who must act — or a line saying none is needed and what was checked."""
    from agent19.tools._migration_input import live_plan, plan_input

    catalog, unreachable = ctx.live_catalog_or_why()
    plan = live_plan(ctx, args, catalog)[0] if catalog is not None else plan_input(args, None)[0]
    if unreachable is not None:
        plan.notes.append(f"the database could not be used ({unreachable}): planned from the SQL alone, "
                          "without table sizes or its catalog")
    return plan
