"""The migration's guardrails as gates with evidence: before, during and after the deployment.

Like the self-review, a guardrail is ``satisfied`` only when something shows it — a verify_backup
result, a dry run, the runbook's own settings; what the deployer has yet to do is ``unknown`` and
says how to do it.
"""

from __future__ import annotations

from agent19.migrate.patterns.sqlnames import literal
from agent19.report.model import BackupEvidence, DryRunEvidence, Guardrail, Metric, ReviewItem, Step
from agent19.report.review import NOT_RUN

INVALID_INDEXES = ("SELECT indexrelid::regclass AS invalid_index FROM pg_index WHERE NOT indisvalid "
                   "AND indrelid = ANY (ARRAY[{tables}]::oid[])")


def guardrails(steps: list[Step], dry: DryRunEvidence | None, backup: BackupEvidence | None,
               monitoring: list[Metric], lock_timeout: str, rollback: ReviewItem) -> list[Guardrail]:
    out: list[Guardrail] = []

    def add(phase: str, name: str, status: str, evidence: str) -> None:
        out.append(Guardrail(phase=phase, name=name, status=status, evidence=evidence))  # type: ignore[arg-type]

    if backup is None:
        add("pre", "Backup verified by a restore", "unknown", "not verified: run `agent19 backup verify ... --format "
            "json` (verify_backup) and pass its result as --backup-verify-result")
    else:
        where = f" into {backup.restored_into}" if backup.restored_into else ""
        add("pre", "Backup verified by a restore", "satisfied" if backup.verified else "not_satisfied",
            f"verify_backup ({backup.kind}) restored{where}: {backup.summary}")
    if dry is None:
        add("pre", "Tested on a non-production copy", "unknown", NOT_RUN)
    else:
        add("pre", "Tested on a non-production copy", "satisfied" if dry.passed else "not_satisfied",
            f"dry run{(' ' + dry.ran_at) if dry.ran_at else ''} on {dry.environment}: "
            f"{'passed' if dry.passed else 'failed'}")
    add("pre", "Rollback tested", rollback.status, rollback.evidence)
    add("pre", "Monitoring queries ready", "satisfied" if monitoring else "not_satisfied",
        f"{len(monitoring)} queries with thresholds in the runbook's monitoring section: "
        + ", ".join(m.name for m in monitoring))
    outside = [s.order for s in steps if not s.in_transaction]
    add("during", "Transactional where possible", "satisfied",
        "every step runs in a transaction" if not outside else
        f"step(s) {', '.join(map(str, outside))} cannot run in a transaction block (they run on their own); "
        "every other step runs in one")
    add("during", "lock_timeout set", "satisfied", f"the runbook's session settings set lock_timeout = "
        f"'{lock_timeout}' before the first step")
    add("during", "Load monitored", "unknown", "done by whoever deploys: run the monitoring queries during each "
        "step and stop at a threshold")
    if dry is not None and dry.passed:
        add("post", "Validation checks passed", "satisfied", f"dry run on {dry.environment}: validation checks "
            "passed before its rollback; run the post-deployment checks again on the target")
    else:
        add("post", "Validation checks passed", "unknown", "run the runbook's post-deployment checks after the "
            "last step" + ("" if dry is None else "; the dry run failed"))
    tables = sorted({s.table for s in steps if s.table})
    query = INVALID_INDEXES.format(tables=", ".join(f"to_regclass({literal(t)})" for t in tables))
    add("post", "Temporary objects cleaned up", "unknown",
        f"after the deployment, no INVALID index left by a failed CONCURRENTLY build: `{query}` returns no row; "
        "drop copies or scratch tables the migration made")
    return out
