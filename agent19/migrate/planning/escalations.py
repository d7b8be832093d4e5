"""Escalations: who must review a migration before it runs, decided only from evidence.

Four kinds, each raised by facts the plan already holds — never by a guess:

=================  ==========================================  ==============================================
kind               raised by                                   who acts
=================  ==========================================  ==============================================
data_loss          an operation classified as destroying data  tech lead and DBA review the migration and the
                   (drop, truncate), or a lint finding of a    backup before it runs
                   full-table DELETE / UPDATE
downtime           an operation whose lock blocks traffic on   product and engineering leads schedule a
                   an existing table for ``DOWNTIME_SECONDS``  maintenance window
                   or more (estimated, or observed in a dry
                   run), or for an unknown time
performance        a rewrite of a large table; a new index on  performance analysis before it runs
                   a table measured write-heavy
                   (:mod:`~agent19.migrate.planning.write_activity`);
                   a query whose plan a dry run saw get worse
                   (:mod:`~agent19.migrate.planning.regression`)
breaking_change    renames, drops (columns, tables, views,     application engineers coordinate the code
                   functions, primary keys and unique          changes with the deployment
                   constraints: :mod:`escalation_drops`), type
                   changes, NOT NULL that running clients
                   would violate
=================  ==========================================  ==============================================

What an operation loses is its knowledge-table row's (drops of tables, columns, schemas, sequences, materialized
views, databases, TRUNCATE, DELETE); the safety check (:func:`agent19.safety.detect.detect`) adds its reason
(CASCADE, what is removed), code whose effect cannot be verified, and narrowing type changes from the catalog.

A migration with none says so, with what was checked (:func:`summary`).
"""

from __future__ import annotations

from agent19.db.models import SchemaSnapshot
from agent19.migrate.lint.rules._base import BLOCKS_WRITES, norm
from agent19.migrate.model import Operation
from agent19.migrate.planning.escalation_drops import breaking_drops, drops_of
from agent19.migrate.planning.index_cost import INDEX_KINDS
from agent19.migrate.planning.model import (
    BACKUP_PREREQUISITE,
    RESTORE_DESCRIPTION,
    Escalation,
    EscalationKind,
    IndexWriteCost,
    MigrationPlan,
    PlanFinding,
    PlannedOperation,
)
from agent19.migrate.planning.write_activity import WRITE_HEAVY_PER_SECOND, TableActivity
from agent19.safety.detect import Finding
from agent19.units import human_duration

DOWNTIME_SECONDS = 1.0
"""A lock that blocks traffic this long (or for an unknown time) needs a maintenance window."""
LARGE_TABLE_ROWS = 1_000_000
LARGE_TABLE_BYTES = 1024**3
"""A rewrite of a table this large (rows or bytes) needs a performance analysis."""
FULL_TABLE_WRITE_RULES = {"A19017": "DELETE without WHERE", "A19018": "UPDATE without WHERE"}
BREAKING_RULES = {"A19013": "rename", "A19014": "drop column", "A19015": "drop table",
                  "A19021": "NOT NULL column without a default"}
BREAKING_KINDS = ("alter_column_type", "set_not_null")
LIVE_DATA_LOSS_KINDS = {"alter_column_type", "unverifiable"}
"""Safety-check findings (:func:`agent19.safety.detect.detect`) that raise a data-loss escalation the plan's
operations (the knowledge table) cannot: narrowing types (judged on the catalog) and code (DO blocks, volatile
calls) whose changes cannot be verified."""

WHO: dict[EscalationKind, tuple[list[str], str]] = {
    "data_loss": (["tech lead", "DBA"], "review the migration and confirm a restorable backup of the affected "
                  "data before it runs"),
    "downtime": (["product lead", "engineering lead"], "schedule a maintenance window for the blocking "
                 "operations and announce it"),
    "performance": (["DBA / performance engineer"], "run a performance analysis: measure the extra write work "
                    "or the rewrite's I/O against the table's traffic before it runs"),
    "breaking_change": (["application engineers"], "coordinate the application code changes with the "
                        "deployment (expand/contract, or deploy in lockstep)"),
}


def _rows(o: PlannedOperation) -> str:
    return "unknown rows (no database)" if o.estimated_rows is None else f"~{o.estimated_rows:,} rows"


def _source(o: PlannedOperation) -> str:
    return "observed in the dry run" if o.figures == "observed" else "predicted"


def _data_loss(planned: list[PlannedOperation], ops: list[Operation], findings: list[PlanFinding],
               safety: list[Finding]) -> dict[int, list[str]]:
    out: dict[int, list[str]] = {}
    lossy: set[int] = set()  # what the knowledge table says loses data
    for p, op in zip(planned, ops, strict=True):
        if op.data_loss and not op.new_table:
            lossy.add(p.order)
            if p.table:  # a schema, database or extension: the safety check's reason below says what goes
                out.setdefault(p.order, []).append(f"operation {p.order} ({p.type} on {p.table}, {_rows(p)}) "
                                                   "destroys data no rollback SQL brings back")
    first = {}  # statement index → its first operation's order
    for p, op in zip(planned, ops, strict=True):
        first.setdefault(op.statement_index, p.order)
    for f in safety:  # why (CASCADE, what goes), and what the operations cannot say: DO blocks, volatile calls
        order = first.get(f.statement)
        if f.data_loss and order and (order in lossy or (f.kind == "unverifiable" and order not in out)):
            out.setdefault(order, []).append(f"operation {order}: {f.reason} (safety check)")
    for order in lossy - set(out):
        out[order] = [f"operation {order} destroys data no rollback SQL brings back"]
    for f in findings:
        if f.rule in FULL_TABLE_WRITE_RULES and f.operation:
            out.setdefault(f.operation, []).append(f"{f.rule} {FULL_TABLE_WRITE_RULES[f.rule]} "
                                                   f"(operation {f.operation}): {f.message}")
    return out


def _downtime(planned: list[PlannedOperation]) -> dict[int, list[str]]:
    out: dict[int, list[str]] = {}
    for p in planned:
        blocks = p.downtime.replace("_", " ")
        if p.downtime == "none" and p.figures == "observed" and p.lock_level in BLOCKS_WRITES:
            # the dry run saw a lock that blocks traffic where the plan predicted none
            blocks = "reads and writes" if p.lock_level == "AccessExclusiveLock" else "writes"
        elif p.downtime == "none":
            continue
        if p.estimated_rows == 0:
            continue
        secs = p.estimated_seconds
        if secs is not None and secs < DOWNTIME_SECONDS:
            continue
        how = "measured in the dry run" if p.figures == "observed" else "estimated"
        how_long = ("for an unknown time (no database: table sizes unknown)" if secs is None
                    else f"for ~{human_duration(secs)} ({how})")
        out[p.order] = [f"operation {p.order} ({p.type} on {p.table}, {_rows(p)}): {p.lock_level} "
                        f"({_source(p)}) blocks {blocks} {how_long}"]
    return out


def _size(catalog: SchemaSnapshot | None, table: str | None) -> int | None:
    t = catalog.table(table) if catalog and table else None
    return t.total_bytes if t else None


def _performance(planned: list[PlannedOperation], catalog: SchemaSnapshot | None,
                 activity: dict[str, TableActivity] | None, costs: list[IndexWriteCost],
                 worse_plans: dict[int, list[str]]) -> dict[int, list[str]]:
    out: dict[int, list[str]] = {o: list(lines) for o, lines in worse_plans.items()}
    cost_of = {c.operation: c for c in costs}
    for p in planned:
        size = _size(catalog, p.table)
        if p.rewrite and ((p.estimated_rows or 0) >= LARGE_TABLE_ROWS or (size or 0) >= LARGE_TABLE_BYTES):
            mb = f", {size / 1024**2:,.0f} MB with indexes" if size is not None else ""
            out.setdefault(p.order, []).append(
                f"operation {p.order} rewrites {p.table} ({_rows(p)}{mb}; large from {LARGE_TABLE_ROWS:,} rows "
                f"or {LARGE_TABLE_BYTES // 1024**3} GB): the rewrite's I/O and WAL compete with the traffic")
        act = activity.get(norm(p.table)) if activity is not None and p.table else None
        if p.type in INDEX_KINDS and act is not None and act.write_heavy:
            out.setdefault(p.order, []).append(
                f"operation {p.order} adds an index to a write-heavy table (from {WRITE_HEAVY_PER_SECOND:g} "
                f"writes/s): {act.describe()}; every insert, and every update not HOT, also writes the new index")
            if p.order in cost_of:
                out[p.order].append(f"write cost: {cost_of[p.order].summary}")
    return out


def _breaking(planned: list[PlannedOperation], findings: list[PlanFinding],
              catalog: SchemaSnapshot | None) -> dict[int, list[str]]:
    out: dict[int, list[str]] = {}
    # drops of views, functions and keys are judged by breaking_drops from the catalog (and replacement later in the
    # migration); the lint finding on the same operation would claim it without that evidence
    judged = {p.order for p in planned if p.type in ("drop_view", "drop_object", "drop_constraint") and drops_of(p.sql)}
    for f in findings:
        if f.rule in BREAKING_RULES and f.operation and f.operation not in judged:
            out.setdefault(f.operation, []).append(f"{f.rule} {BREAKING_RULES[f.rule]} "
                                                   f"(operation {f.operation}): {f.message}")
    for p in planned:
        if p.type.startswith(BREAKING_KINDS) and p.estimated_rows != 0 and p.order not in out:
            what = ("changes a column's type: values or client mappings that do not fit the new type fail"
                    if p.type.startswith("alter_column_type") else
                    "makes a column NOT NULL: clients that write NULL or omit it (without a default) fail")
            out[p.order] = [f"operation {p.order} ({p.type} on {p.table}) {what}"]
    for order, evidence in breaking_drops(planned, catalog).items():
        out.setdefault(order, []).extend(evidence)
    return out


def escalate(planned: list[PlannedOperation], ops: list[Operation], findings: list[PlanFinding],
             catalog: SchemaSnapshot | None, activity: dict[str, TableActivity] | None,
             costs: list[IndexWriteCost] | None = None, safety: list[Finding] | None = None,
             worse_plans: dict[int, list[str]] | None = None) -> list[Escalation]:
    """The escalations ``planned`` needs; each names its operations, their SQL and the evidence. ``safety``: the
    safety check's findings on the same statements (:func:`agent19.safety.detect.detect`, facts optional);
    ``worse_plans``: operation order → queries a dry run saw get a worse plan
    (:func:`agent19.migrate.planning.regression.evidence`)."""
    sql = {p.order: p.sql for p in planned}
    found: dict[EscalationKind, dict[int, list[str]]] = {
        "data_loss": _data_loss(planned, ops, findings, safety or []),
        "downtime": _downtime(planned),
        "performance": _performance(planned, catalog, activity, costs or [], worse_plans or {}),
        "breaking_change": _breaking(planned, findings, catalog),
    }
    return [_escalation(kind, sorted(by_op), sql, [e for o in sorted(by_op) for e in by_op[o]])
            for kind, by_op in found.items() if by_op]


def _escalation(kind: EscalationKind, orders: list[int], sql: dict[int, str], evidence: list[str]) -> Escalation:
    who, action = WHO[kind]
    return Escalation(kind=kind, reviewers=who, action=action, operations=orders,
                      statements=[sql[o] for o in orders], evidence=evidence)


def add_data_loss(plan: MigrationPlan, findings: list[Finding]) -> MigrationPlan:
    """``plan`` with the data-loss evidence of :func:`agent19.safety.detect.detect` run with live facts
    (narrowing type changes, USING rewrites): matched to operations by line; unknown types are no evidence."""
    by_line = {o.line: o for o in plan.operations if o.line is not None}
    old = next((e for e in plan.escalations if e.kind == "data_loss"), None)
    extra: dict[int, list[str]] = {}
    for f in findings:
        op = by_line.get(f.line)
        if f.kind not in LIVE_DATA_LOSS_KINDS or not f.data_loss or op is None or "is unknown" in f.reason:
            continue
        if f.kind != "alter_column_type" and old is not None and op.order in old.operations:
            continue  # already escalated from the plan's own classification
        extra.setdefault(op.order, []).append(f"operation {op.order}: {f.reason} (safety check on the live catalog)")
    return _mark_lossy(add_evidence(plan, "data_loss", extra), set(extra))


def _mark_lossy(plan: MigrationPlan, orders: set[int]) -> MigrationPlan:
    """The operations in ``orders`` lose data: so say the operations themselves (the runbook's steps, self-review,
    gates and rollback read them, not the escalation's text), the rollback (a restore, not reverse SQL) and the
    prerequisites (a backup) — as the plan says them for a statement its own classification finds lossy."""
    lossy = {o.order for o in plan.operations if o.order in orders and not o.data_loss}
    if not lossy:
        return plan
    ops = [o.model_copy(update={"data_loss": True}) if o.order in lossy else o for o in plan.operations]
    rollback = plan.rollback
    if rollback.kind != "restore_from_backup":
        rollback = rollback.model_copy(update={"kind": "restore_from_backup", "description": RESTORE_DESCRIPTION})
    prereq = plan.prerequisites if BACKUP_PREREQUISITE in plan.prerequisites else [
        *plan.prerequisites[:1], BACKUP_PREREQUISITE, *plan.prerequisites[1:]]
    return plan.model_copy(update={"operations": ops, "rollback": rollback, "prerequisites": prereq})


def add_evidence(plan: MigrationPlan, kind: EscalationKind, extra: dict[int, list[str]],
                 withdrawn: set[int] | None = None) -> MigrationPlan:
    """``plan`` with live evidence ``extra`` (operation order → lines) added to its ``kind`` escalation, and the
    operations in ``withdrawn`` (live facts showed nothing at stake) taken out of it."""
    withdrawn = withdrawn or set()
    if not extra and not withdrawn:
        return plan
    old = next((e for e in plan.escalations if e.kind == kind), None)
    orders = sorted((set(old.operations if old else []) | set(extra)) - withdrawn)
    kept = [x for x in (old.evidence if old else [])
            if not any(x.startswith((f"operation {o} ", f"operation {o}:")) for o in withdrawn)]
    evidence = list(dict.fromkeys(kept + [x for o in sorted(extra) if o not in withdrawn for x in extra[o]]))
    escalations = [e for e in plan.escalations if e.kind != kind]
    if orders:
        rank = list(WHO)
        escalations.append(_escalation(kind, orders, {o.order: o.sql for o in plan.operations}, evidence))
        escalations.sort(key=lambda e: rank.index(e.kind))
    return plan.model_copy(update={"escalations": escalations,
                                   "escalation_summary": summary(escalations, True) + _unchecked_note(plan)})


def _unchecked_note(plan: MigrationPlan) -> str:
    """The plan summary's note that query plans were not compared, kept when evidence is added."""
    at = plan.escalation_summary.find(_UNCHECKED)
    return plan.escalation_summary[at:] if at >= 0 else ""


_UNCHECKED = "; query plans not compared"


def summary(escalations: list[Escalation], activity_known: bool, plans_unchecked: list[int] | None = None) -> str:
    """One line for the plan. ``plans_unchecked``: operations after which query plans may get worse (an index,
    key, column or type goes) that no dry run compared — said, so "no escalation" is not read as "checked"."""
    unchecked = (f"{_UNCHECKED} after operation(s) {', '.join(map(str, plans_unchecked))} (an index, "
                 "key, column or type changes): dry-run with --queries or --top-queries (pg_stat_statements) and "
                 "pass --dry-run-result to check that no query gets slower") if plans_unchecked else ""
    if escalations:
        return "; ".join(f"{e.kind.replace('_', ' ')}: {', '.join(e.reviewers)} - operation(s) "
                         f"{', '.join(map(str, e.operations))}" for e in escalations) + unchecked
    writes = ("write rates measured" if activity_known else
              "write rates not measured (no database), so a new index's write cost was not assessed")
    return ("no escalation needed: no operation destroys data, blocks traffic on a populated table for "
            f"{DOWNTIME_SECONDS:g} s or more, rewrites a large table or breaks running clients; {writes}{unchecked}")
