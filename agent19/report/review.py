"""The self-review checklist (13 items) and the validation gates, each with its evidence.

A status is ``satisfied`` only when something observed or computed shows it (the plan's figures,
the parsed statements, a dry run); what nobody has measured yet is ``unknown`` and says how to
find out. :class:`~agent19.report.model.ReviewItem` refuses ``satisfied`` without evidence.
"""

from __future__ import annotations

from agent19.migrate.planning.model import MigrationPlan
from agent19.report.model import ApplicationHandoff, DryRunEvidence, ReviewItem, Step
from agent19.tool_names import tool

NOT_RUN = "no dry run given: run test_migration (`agent19 dry-run ... --mode dry-run`) and pass its result"


def _list(steps: list[Step]) -> str:
    return ("steps " if len(steps) > 1 else "step ") + ", ".join(str(s.order) for s in steps)


def _dry_when(d: DryRunEvidence) -> str:
    return f"dry run{(' ' + d.ran_at) if d.ran_at else ''} on {d.environment}"


def checklist(plan: MigrationPlan, steps: list[Step], dry: DryRunEvidence | None,
              app: ApplicationHandoff, sizes_known: bool) -> list[ReviewItem]:
    items: list[ReviewItem] = []

    def add(name: str, status: str, evidence: str) -> None:
        items.append(ReviewItem(name=name, status=status, evidence=evidence))  # type: ignore[arg-type]

    unknown_kind = [s for s in steps if s.kind == "unknown" and s.lock_source != "observed"]
    add("Every step's lock mode is named", "unknown" if unknown_kind else "satisfied",
        (f"{_list(unknown_kind)}: a kind of statement the knowledge table does not know, so its lock is not "
         "known: a dry run observes it; " if unknown_kind else "")
        + "; ".join(f"step {s.order}: {s.lock_level or 'no table lock'} ({s.lock_source})" for s in steps))
    if dry is None:
        add("Locks observed on a real server", "unknown", NOT_RUN)
    else:
        wrong = [s for s in dry.statements if s.agrees is False]
        if wrong:
            add("Locks observed on a real server", "not_satisfied", f"{_dry_when(dry)}: observed locks stronger "
                "than predicted at " + ", ".join(f"step {s.order} ({s.observed_lock})" for s in wrong))
        else:
            add("Locks observed on a real server", "satisfied" if dry.statements else "unknown",
                f"{_dry_when(dry)}: " + ("; ".join(f"step {s.order}: {s.lock_seen()}"
                                                   for s in dry.statements) or "no per-statement locks reported"))
    rows = "; ".join(f"step {s.order}: {s.estimated_rows}" for s in steps)
    unsized = [s for s in steps if s.estimated_rows.startswith("unknown")]  # e.g. never analyzed, not found
    add("Table sizes are known", "satisfied" if sizes_known and not unsized else "unknown",
        rows if sizes_known else "no database was given: run with --dsn to read row counts and sizes")
    blocking = [s for s in steps if s.downtime and not s.estimated_rows.startswith("0 ")]
    add("No step blocks traffic on a populated table", "not_satisfied" if blocking else "satisfied",
        (f"{_list(blocking)}: blocks " + "; ".join(f"{s.downtime_kind.replace('_', ' ')} ({s.lock_level})"
                                                  for s in blocking)) if blocking
        else "plan: every step on an existing table has downtime 'none'")
    plain_ix = [s for s in steps if s.kind in ("create_index", "add_index") and s.lock_level == "ShareLock"]
    add("Indexes on existing tables are built CONCURRENTLY", "not_satisfied" if plain_ix else "satisfied",
        f"{_list(plain_ix)}: builds an index under ShareLock (writes wait): use CREATE INDEX CONCURRENTLY"
        if plain_ix else "no step builds an index under ShareLock (plan lock levels)")
    errors = [f for f in plan.findings if f.severity == "error"]
    add("Lint findings are resolved", "not_satisfied" if errors else "satisfied",
        "; ".join(f"{f.rule}: {f.message}" for f in errors) if errors
        else f"plan_migration: {len(plan.findings)} finding(s), none an error")
    manual = [s for s in steps if s.rollback_sql is None or s.data_loss]
    add("Every step can be undone", "satisfied" if not manual else "not_satisfied",
        "every step has rollback SQL and loses no data" if not manual
        else f"{_list(manual)}: can only be undone by restoring the backup taken before the deployment")
    if dry is None or dry.rollback_verified is None:
        add("Rollback tested", "unknown", NOT_RUN if dry is None else f"{_dry_when(dry)} did not test the rollback")
    elif dry.rollback_verified:
        add("Rollback tested", "satisfied", f"{_dry_when(dry)}: schema identical after the rollback")
    else:
        add("Rollback tested", "not_satisfied", f"{_dry_when(dry)}: schema differs after the rollback: "
            + "; ".join(dry.rollback_differences))
    lossy = [s for s in steps if s.data_loss]
    add("Data loss is identified and backed up", "unknown" if lossy else "satisfied",
        f"{_list(lossy)}: destroys data; confirm the pre-deployment backup exists and was restored in a test "
        "(prerequisite: backup)" if lossy else "every statement classified: none loses data (no drop of a table, "
        "column, schema, sequence or database, no TRUNCATE or DELETE)")
    unchecked = [s for s in steps if s.verification is None]
    add("Every step has a verification query", "not_satisfied" if unchecked else "satisfied",
        f"{_list(unchecked)}: no catalog check: verify by hand as each step says" if unchecked
        else f"{len(steps)} step(s), each with a catalog query returning ok")
    if dry is not None and dry.total_seconds is not None:
        add("Duration is estimated", "satisfied", f"{_dry_when(dry)}: {dry.total_seconds:.3f} s in total")
    elif plan.estimated_seconds is not None and plan.operations and all(
            o.figures == "observed" for o in plan.operations):
        add("Duration is estimated", "satisfied", f"plan: {plan.estimated_duration}")
    elif plan.estimated_seconds is not None and (rows := [o for o in plan.operations if o.work and o.estimated_rows]) \
            and all(o.figures in ("calibrated", "observed") for o in rows):  # measured rates; catalog changes brief
        add("Duration is estimated", "satisfied", f"plan: {plan.estimated_duration}")
    elif plan.estimated_seconds is not None:  # fixed rows/s rates: an assumption, never a satisfied item
        add("Duration is estimated", "unknown", f"plan: {plan.estimated_duration} - assumed, not calibrated on "
            "this server: plan in dry-run mode (--mode dry-run) to calibrate it on a sample of each table, or a "
            "dry run (agent19 dry-run) measures it")
    else:
        add("Duration is estimated", "unknown", f"plan: {plan.estimated_duration}")
    breaking = [c for c in app.changes if c.writes_can_fail]
    add("The application is compatible at every step", "unknown" if breaking else "satisfied",
        "the application owner must confirm: " + "; ".join(f"{c.table}: {c.change}" for c in breaking)
        if breaking else "no change can make existing reads or writes fail (parsed statements)")
    add(*_write_impact(plan))
    assert len(items) == 13
    return items


def _write_impact(plan: MigrationPlan) -> tuple[str, str, str]:
    """Satisfied only with measured numbers for every index the migration creates on an existing table."""
    name = "Index impact on write performance is measured"
    if not plan.index_costs:
        return name, "satisfied", "no operation creates an index on a table that exists before the migration"
    unmeasured = [c for c in plan.index_costs if c.index_entries_per_second is None]
    evidence = "; ".join(c.summary for c in plan.index_costs)
    return name, "unknown" if unmeasured else "satisfied", evidence


def gates(steps: list[Step], dry: DryRunEvidence | None, app: ApplicationHandoff,
          checklist_items: list[ReviewItem], perf_issues: int) -> list[ReviewItem]:
    by_name = {i.name: i for i in checklist_items}
    out = []
    if dry is None:
        out.append(ReviewItem(name="schema", status="unknown", evidence=NOT_RUN))
    else:
        out.append(ReviewItem(name="schema", status="satisfied" if dry.passed else "not_satisfied",
                              evidence=f"{_dry_when(dry)}: {'passed' if dry.passed else 'failed'}"))
    lossy = [s for s in steps if s.data_loss]
    if dry is not None and not dry.passed:
        out.append(ReviewItem(name="data integrity", status="not_satisfied", evidence=f"{_dry_when(dry)} failed"))
    elif dry is not None and not lossy:
        out.append(ReviewItem(name="data integrity", status="satisfied",
                              evidence=f"{_dry_when(dry)} passed its validation checks; no step loses data"))
    else:
        why = f"{_list(lossy)}: destroys data (backup required)" if lossy else NOT_RUN
        out.append(ReviewItem(name="data integrity", status="unknown", evidence=why))
    blocking = by_name["No step blocks traffic on a populated table"]
    perf_note = f"; {perf_issues} reported slow quer(y/ies): run {tool('explain_query')} on each" if perf_issues else ""
    if blocking.status == "not_satisfied":
        out.append(ReviewItem(name="performance", status="not_satisfied", evidence=blocking.evidence + perf_note))
    elif dry is None or dry.total_seconds is None or perf_issues:
        out.append(ReviewItem(name="performance", status="unknown",
                              evidence=(NOT_RUN if dry is None else "no timings in the dry run") + perf_note))
    else:
        out.append(ReviewItem(name="performance", status="satisfied",
                              evidence=f"{_dry_when(dry)}: {dry.total_seconds:.3f} s; longest lock "
                              f"{dry.longest_lock or 'none reported'}; no step blocks a populated table"))
    compat = by_name["The application is compatible at every step"]
    out.append(ReviewItem(name="application", status=compat.status, evidence=compat.evidence))
    tested = by_name["Rollback tested"]
    out.append(ReviewItem(name="rollback", status=tested.status, evidence=tested.evidence))
    return out
