"""Replace a plan's estimates with what a dry run (test_migration) observed on the server.

A dry run of the same SQL reports, per statement, its wall time (scaled to the real table size when
it ran on a sample), the locks the server showed and whether a table was rewritten. Those figures
take the place of the planner's estimates; every operation says which kind of figure it carries
(``PlannedOperation.figures``), and the plan says where they were observed.

Statements are matched by position and text: a dry run of other SQL changes nothing. A dry run in an isolated copy
(``isolated``: the schema without rows) gives its locks and rewrites, never its durations: the estimates stay.
"""

from __future__ import annotations

from agent19.migrate.dryrun.model import DryRunResult, StatementResult
from agent19.migrate.model import Operation
from agent19.migrate.planning.model import PlanFinding, PlannedOperation


def _same(a: str, b: str) -> bool:
    return " ".join(a.split()) == " ".join(b.split())


def observed_statements(dry: DryRunResult, statement_sql: dict[int, str]) -> dict[int, StatementResult]:
    """The dry run's statements that ran without error, by statement index, where the text matches."""
    return {s.index: s for s in dry.statements
            if s.error is None and s.duration_ms is not None and s.index in statement_sql
            and _same(s.sql, statement_sql[s.index])}


def apply_dry_run(planned: list[PlannedOperation], ops: list[Operation], dry: DryRunResult,
                  statement_sql: dict[int, str]) -> tuple[list[PlannedOperation], list[PlanFinding], str]:
    """The operations with observed figures, findings where the server disagreed, and where it was seen."""
    seen = observed_statements(dry, statement_sql)
    out: list[PlannedOperation] = []
    findings: list[PlanFinding] = []
    if dry.isolated is not None and seen:
        findings.append(PlanFinding(rule="dry-run", severity="info", message=(
            "the dry run ran in an isolated copy of the schema (no rows): its locks and rewrites are used, its "
            "durations are not (those of empty tables): the estimates are kept")))
    first_of: set[int] = set()
    for p, op in zip(planned, ops, strict=True):
        result = seen.get(op.statement_index)
        if result is None:
            out.append(p)
            continue
        first = op.statement_index not in first_of
        first_of.add(op.statement_index)
        ms = result.extrapolated_ms if result.extrapolated_ms is not None else result.duration_ms
        strongest = result.strongest
        update: dict[str, object] = {
            "figures": "observed",
            # a multi-command ALTER TABLE runs as one statement: its time is counted once
            "estimated_seconds": (ms or 0) / 1000 if first else 0.0,
            "rewrite": result.observed_rewrite,
        }
        if dry.isolated is not None:
            update = {"rewrite": result.observed_rewrite}
        if strongest is not None:
            update["lock_level"] = strongest[0]
        elif first and (unseen := result.not_observed_note()):
            findings.append(PlanFinding(
                rule="dry-run", severity="info", operation=p.order,
                message=f"the dry run did not observe this statement's lock ({unseen}): the predicted lock is kept"))
        out.append(p.model_copy(update=update))
        for c in result.lock_comparison:
            if c.agrees is False:  # None: not observed (already held), never a disagreement
                findings.append(PlanFinding(
                    rule="dry-run", severity="warning", operation=p.order,
                    message=f"the dry run observed {c.observed or 'no lock'} on {c.relation} where the plan "
                    f"predicted {c.predicted or 'none'}: the observed lock is used"))
    where = f"dry run {dry.ran_at} " + (f"in an isolated copy of {dry.database}'s schema" if dry.isolated
                                        else f"on {dry.database}")
    return out, findings, where
