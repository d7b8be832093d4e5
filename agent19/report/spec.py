"""The migration specification: what changes, how it is deployed and undone, and how it was tested.

The testing table is filled from a dry run when one is given and reads "not run" otherwise.
"""

from __future__ import annotations

from agent19.migrate.planning.model import MigrationPlan
from agent19.report.model import (
    DryRunEvidence,
    Header,
    ObjectChange,
    PerformanceIssue,
    Runbook,
    Specification,
    Step,
    TestingRow,
)
from agent19.report.sqlfacts import statement_facts

_OBJECTS = {
    "add_column": ("modified", "table"), "drop_column": ("modified", "table"), "set_not_null": ("modified", "column"),
    "drop_not_null": ("modified", "column"), "alter_type": ("modified", "column"),
    "set_default": ("modified", "column"),
    "add_constraint": ("new", "constraint"), "validate_constraint": ("modified", "constraint"),
    "drop_constraint": ("dropped", "constraint"), "create_index": ("new", "index"), "drop_index": ("dropped", "index"),
    "create_table": ("new", "table"), "drop_table": ("dropped", "table"), "truncate": ("modified", "table data"),
    "rename_column": ("modified", "column"), "rename_table": ("modified", "table"), "grant": ("modified", "privileges"),
    "revoke": ("modified", "privileges"), "policy": ("new", "policy"), "rls": ("modified", "table"),
    "function": ("new", "function"), "create_extension": ("new", "extension"), "data_change": ("modified", "data"),
}


def _objects(steps: list[Step]) -> list[ObjectChange]:
    out = []
    for s in steps:
        for f in statement_facts(s.sql):
            change, kind = _OBJECTS.get(f.kind, ("modified", "other"))
            col = f.column.name if f.column else None
            if f.kind == "drop_column":
                change, kind = "dropped", "column"
            if f.kind == "add_column":
                change, kind = "new", "column"
            if kind == "column" and col:
                name = f"{f.table}.{col}"
            elif kind in ("index", "constraint", "function", "extension", "policy") and f.name:
                name = f.name
            else:
                name = f.table or f.name or f"step {s.order}"
            detail = f"step {s.order}: {s.title}; {s.lock_level or 'no table lock'}"
            out.append(ObjectChange(change=change, object_type=kind, name=name, detail=detail,  # type: ignore[arg-type]
                                    risk=s.risk))
    return out


def _testing(dry: DryRunEvidence | None) -> tuple[list[TestingRow], str]:
    if dry is None:
        return [TestingRow(environment="dry run (test_migration)", result="not run", timings="not run",
                           locks="not run")], (
            "No dry run was given. Run test_migration (`agent19 dry-run ... --mode dry-run`) on a copy of the target "
            "and pass its result to generate_runbook; until then no test result exists.")
    timings = (f"{dry.total_seconds:.3f} s total" if dry.total_seconds is not None else "not reported") + "".join(
        f"; step {s.order}: {s.seconds:.3f} s" for s in dry.statements if s.seconds is not None)
    locks = "; ".join(f"step {s.order}: {s.lock_seen()}" for s in dry.statements) or "not reported"
    rollback = {True: "rollback verified", False: "rollback NOT verified", None: "rollback not tested"}[
        dry.rollback_verified]
    return [TestingRow(environment=dry.environment + (f" ({dry.ran_at})" if dry.ran_at else ""),
                       result=("passed" if dry.passed else "failed") + f"; {rollback}", timings=timings,
                       locks=locks)], "; ".join(dry.notes) or "figures observed by the dry run"


def specification(plan: MigrationPlan, header: Header, steps: list[Step], runbook: Runbook,
                  dry: DryRunEvidence | None, requirements: str | None, files: list[str],
                  perf: list[PerformanceIssue]) -> Specification:
    testing, note = _testing(dry)
    summary = plan.description
    if requirements:
        summary = f"{summary.rstrip('.')}. Requested for: {requirements.strip()}"
    pre = [a.check for a in runbook.pre_deployment if a.check] + [
        p.check for p in runbook.prerequisites if p.check]
    return Specification(
        header=header, summary=summary, requirements=requirements, objects=_objects(steps),
        files=files or ["migration.sql (the statements below, in order; written beside this document)"],
        deployment_steps=plan.deployment.steps or [f"step {s.order}: {s.title}" for s in steps],
        rollback_summary=runbook.rollback.summary, pre_checks=pre, post_checks=runbook.post_deployment,
        testing=testing, testing_note=note, performance_issues=perf,
    )
