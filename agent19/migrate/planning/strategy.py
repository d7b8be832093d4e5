"""How a plan is deployed and rolled back, decided from its operations and findings."""

from __future__ import annotations

from agent19.migrate.model import Risk
from agent19.migrate.planning.model import (
    RESTORE_DESCRIPTION,
    DeploymentStrategy,
    PlanFinding,
    PlannedOperation,
    RollbackStrategy,
)

BREAKING_RULES = {"A19013", "A19014", "A19015"}


def _run(ops: list[PlannedOperation], then: str | None = None) -> list[str]:
    """"run the migration" — or, with a pattern's deploy point, its expand part, the deploy, its contract part."""
    k = next((o.order for o in ops if o.deploy_after), None)
    if k is None:
        return ["run the migration", *([then] if then else [])]
    return [f"run operations 1-{k} (expand: the old and the new application version both work with the schema)",
            then or "deploy the application",
            f"once no instance of the old version runs: operations {k + 1}-{len(ops)} (contract)"]


def deployment(ops: list[PlannedOperation], findings: list[PlanFinding], risk: Risk) -> DeploymentStrategy:
    blocking = [o for o in ops if o.downtime != "none"]
    if blocking:
        parts = []
        for what in ("reads_and_writes", "writes"):
            orders = [str(o.order) for o in blocking if o.downtime == what]
            if orders:
                parts.append(f"operation(s) {', '.join(orders)} block {what.replace('_', ' ')}")
        return DeploymentStrategy(
            kind="maintenance_window",
            reason=f"{'; '.join(parts)} on an existing table for a time that grows with it",
            steps=["announce the window and stop writers", "take a backup", *_run(ops),
                   "run the validation checks", "reopen traffic"])
    if any(o.deploy_after for o in ops):
        return DeploymentStrategy(
            kind="rolling",
            reason="expand and contract: what the new application version needs is added and kept in step first; "
            "what the old version uses is removed only after the deploy",
            steps=[*_run(ops, "roll the new application version out, instance by instance"),
                   "run the validation checks"])
    if any(f.rule in BREAKING_RULES for f in findings):
        return DeploymentStrategy(
            kind="blue_green",
            reason="it renames or drops something running clients use: old and new code cannot share the schema",
            steps=["deploy code that works with both schemas (expand)", "run the migration",
                   "switch traffic to the new version", "remove the old names in a later migration (contract)"])
    if risk in ("medium", "high", "critical"):
        return DeploymentStrategy(
            kind="rolling",
            reason="no operation blocks the table, but some take long or need checking: run it before the code "
            "that needs it, watching the validation checks",
            steps=["run the migration (statements that cannot run in a transaction, on their own)",
                   "run the validation checks", "roll the application out instance by instance"])
    return DeploymentStrategy(kind="immediate", reason="every operation is brief and backward compatible",
                              steps=["run the migration", "deploy the application"])


def rollback(ops: list[PlannedOperation], data_loss: bool, one_transaction: bool,
             notes: list[list[str]] | None = None) -> RollbackStrategy:
    """``notes``: the classifier's notes of each operation, in order (they say why one has no inverse)."""
    # reversible with no reverse SQL: nothing to undo (VALIDATE CONSTRAINT, ANALYZE, a comment…)
    irreversible = [o.order for o in ops if not o.reversible]
    steps = [o.reverse_sql for o in reversed(ops) if o.reverse_sql]
    if data_loss:
        return RollbackStrategy(kind="restore_from_backup", steps=steps, irreversible=irreversible,
                                description=RESTORE_DESCRIPTION)
    if irreversible:
        # only the notes that say why there is no inverse (IF NOT EXISTS…): the others are about locks and scans
        why = "".join(f"; operation {o.order}: {n}" for o, found in zip(ops, notes or [[] for _ in ops], strict=True)
                      if not o.reversible for n in found if "no automatic inverse" in n)
        return RollbackStrategy(kind="manual", steps=steps, irreversible=irreversible,
                                description=f"operation(s) {', '.join(map(str, irreversible))} have no automatic "
                                "inverse: undo them by hand; the others with the reverse SQL, last operation first"
                                + why)
    return RollbackStrategy(
        kind="automatic", steps=steps, irreversible=[],
        description=("it runs in one transaction: a failure rolls everything back; after COMMIT run the reverse SQL, "
                     "last operation first") if one_transaction else
        "run the reverse SQL, last operation first (each statement commits on its own)")
