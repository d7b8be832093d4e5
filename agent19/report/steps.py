"""Plan operations → runbook steps and rollback steps, with the facts the plan does not carry.

The lock a step takes is the plan's prediction, replaced by the dry run's observation when one is
given (and then labelled ``observed``). Data loss is the plan's (the knowledge table's row for the
operation's form, :attr:`~agent19.migrate.classification.behaviour.Behaviour.loses`), and a data
change no SQL undoes: a rollback can re-create a dropped column, never its values.
"""

from __future__ import annotations

from agent19.db.models import SchemaSnapshot
from agent19.migrate.patterns.live import find_table
from agent19.migrate.planning.model import MigrationPlan, PlannedOperation
from agent19.report.alternative import safer_alternative
from agent19.report.model import DryRunEvidence, RollbackStep, SqlCheck, Step
from agent19.report.sqlfacts import StatementFact, statement_facts, verification

LOCK_EFFECT = {
    "AccessExclusiveLock": "blocks reads and writes on the table while held",
    "ExclusiveLock": "blocks writes; plain reads go on",
    "ShareRowExclusiveLock": "blocks writes and other schema changes; plain reads go on",
    "ShareLock": "blocks writes for its duration; plain reads go on",
    "ShareUpdateExclusiveLock": "blocks other schema changes and VACUUM; reads and writes go on",
    "RowExclusiveLock": "the ordinary write lock: conflicts only with Share and stronger locks",
    "RowShareLock": "conflicts only with Exclusive and AccessExclusive locks",
    "AccessShareLock": "the ordinary read lock: conflicts only with AccessExclusive",
}
NO_DSN = "unknown - run with a database (--dsn / DATABASE_URL) to read it from the catalog"


def seconds_text(seconds: float | None) -> str:
    if seconds is None:
        return NO_DSN
    if seconds < 1:
        return "under 1 s"
    if seconds < 90:
        return f"about {seconds:.0f} s"
    return f"about {seconds / 60:.0f} min"


def _estimate(op: PlannedOperation) -> str:
    """The estimate with what it rests on: calibrated on this server, or an assumed rate."""
    text = seconds_text(op.estimated_seconds)
    return f"{text} - {op.duration_basis}" if op.duration_basis else text


def _rows(op: PlannedOperation, facts: list[StatementFact], catalog: SchemaSnapshot | None) -> str:
    if any(f.kind == "create_table" for f in facts):
        return "0 (new table)"
    if op.estimated_rows is not None:
        return f"~{op.estimated_rows:,} (planner estimate, pg_class.reltuples)"
    name = op.table or (facts[0].table if facts else None)
    table = find_table(catalog, name) if name else None
    if table is not None:
        if table.row_estimate is None:
            return "unknown - the table was never analyzed: run ANALYZE on it, then generate again"
        return f"~{table.row_estimate:,} (pg_class.reltuples)"
    if catalog is not None:
        return "unknown - the table was not found in the connected database"
    return NO_DSN


def combined_check(order: int, facts: list[StatementFact]) -> SqlCheck | None:
    """One query whose ``ok`` is true when every change of the step is in place."""
    checks = [c for c in (verification(f) for f in facts) if c is not None]
    if not checks:
        return None
    if len(checks) == 1:
        sql, expected = checks[0]
    else:
        union = "\n  UNION ALL ".join(f"({q})" for q, _ in checks)
        sql = f"SELECT bool_and(ok) AS ok FROM (\n  {union}\n) AS checks"
        expected = "ok = true (" + "; ".join(e.removeprefix("ok = true (").rstrip(")") for _, e in checks) + ")"
    return SqlCheck(name=f"step {order} applied", sql=sql, expected=expected)


def build_steps(
    plan: MigrationPlan, catalog: SchemaSnapshot | None, dry_run: DryRunEvidence | None
) -> list[Step]:
    observed = {s.order: s for s in dry_run.statements} if dry_run else {}
    steps = []
    for op in sorted(plan.operations, key=lambda o: o.order):
        facts = statement_facts(op.sql)
        data_loss = op.data_loss or (op.category == "data_migration" and not op.reversible)
        lock, source = op.lock_level, "predicted"
        seen = observed.get(op.order)
        if seen is not None and seen.observed_lock is not None:
            lock, source = seen.observed_lock, "observed"
        effect = LOCK_EFFECT.get(lock or "", "takes no table lock worth naming")
        check = combined_check(op.order, facts)
        note = "" if check else (
            "no catalog query proves this kind of statement: compare `agent19 describe "
            f"{op.table or 'TABLE'}` before and after the step"
        )
        rollback_sql = op.reverse_sql if op.reverse_sql else None
        if data_loss and rollback_sql:
            rollback_note = "re-creates the structure only; the data comes back only from the backup"
        elif rollback_sql is None and op.reversible:
            rollback_note = NOTHING_TO_UNDO
        elif data_loss or rollback_sql is None:
            rollback_note = "manual: restore from backup (no SQL undoes this step)"
        else:
            rollback_note = ""
        notes = []
        if not op.in_transaction:
            notes.append("cannot run inside a transaction block: run it on its own (autocommit)")
        if op.rewrite:
            notes.append("rewrites the whole table: needs free disk space about the table's size")
        mine = [f for f in plan.findings if f.operation == op.order]
        notes += [f"{f.severity} {f.rule}: {f.message}" for f in mine]
        if op.deploy_after:
            notes.append("stop here and deploy the application: the steps after this one remove what the old "
                         "version still uses (contract)")
        if seen is not None and seen.not_observed:
            notes.append(f"dry run did not observe this step's lock ({seen.not_observed}): the predicted lock is cited")
        alternative = safer_alternative(op, facts, mine, catalog, plan.pg_version or None)
        fixes = [alternative] if alternative else []
        steps.append(Step(
            order=op.order, title=op.description, table=op.table, sql=op.sql, kind=op.type,
            lock_level=lock, lock_effect=effect, lock_source=source,  # type: ignore[arg-type]
            risk=op.risk, downtime=op.downtime != "none", downtime_kind=op.downtime,
            estimated_rows=_rows(op, facts, catalog),
            estimated_time=(f"observed {seen.seconds:.3f} s in the dry run" if seen and seen.seconds is not None
                            else f"observed {op.estimated_seconds or 0:.3f} s in the dry run"
                            if op.figures == "observed"
                            else _estimate(op) if plan.live else NO_DSN),
            in_transaction=op.in_transaction, rewrite=op.rewrite, data_loss=data_loss,
            reversible=op.reversible and not data_loss, verification=check, verification_note=note,
            rollback_sql=rollback_sql, rollback_note=rollback_note, notes=notes, fixes=fixes,
            deploy_after=op.deploy_after,
        ))
    return steps


NOTHING_TO_UNDO = ("nothing to undo here (it leaves nothing a rollback must remove, or it is part of a zero-downtime "
                   "pattern's phase, undone as a whole at the phase's last step)")


def rollback_steps(steps: list[Step]) -> list[RollbackStep]:
    out = []
    for s in reversed(steps):
        prereq = []
        if s.data_loss:
            prereq.append(f"the backup taken before step {s.order} (pre-deployment) is at hand")
        if s.rollback_sql and not s.in_transaction:
            prereq.append("run it on its own, outside a transaction block")
        manual = None
        restore = s.data_loss or (s.rollback_sql is None and not s.reversible)
        if restore:
            manual = "restore from backup: follow the restore procedure below"
        elif s.rollback_sql is None:  # reversible with no SQL: nothing to undo, or undone with its pattern phase
            manual = NOTHING_TO_UNDO
        out.append(RollbackStep(
            order=s.order, title=f"undo step {s.order}: {s.title}", sql=s.rollback_sql, manual=manual,
            data_loss=s.data_loss, prerequisites=prereq,
            estimated_time=s.estimated_time if s.rollback_sql else
            "as long as the restore (see the procedure)" if restore else "none",
        ))
    return out
