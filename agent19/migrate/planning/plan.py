"""plan_migration: hand-written SQL or a change list → a :class:`MigrationPlan`.

Hand-written SQL keeps its order; ordering mistakes (a table used before the statement that creates
it, a foreign key to a table created later) become findings. A change list is turned into SQL and
ordered topologically (:mod:`agent19.migrate.planning.changes`).

Durations scale the live row counts by a rate per kind of work: assumed
(:data:`~agent19.migrate.planning.calibrate.ROWS_PER_SECOND`, a mid-size server on SSD; real numbers
vary by an order of magnitude with row width, indexes and I/O) until
:func:`~agent19.migrate.planning.calibrate.calibrate_plan` measures them on the server, or a dry run
observes the statements themselves. Every operation says which (``figures``, ``duration_basis``).
"""

from __future__ import annotations

import hashlib

from pydantic import BaseModel, Field

from agent19.db.models import SchemaSnapshot
from agent19.errors import InputError
from agent19.migrate.classification.classify import classify
from agent19.migrate.dryrun.model import DryRunResult
from agent19.migrate.layouts.files import load_text
from agent19.migrate.lint.config import LintConfig
from agent19.migrate.lint.engine import DEFAULT_PG_VERSION, lint
from agent19.migrate.lint.rules._base import BLOCKS_WRITES, norm, rel_name
from agent19.migrate.model import Operation, max_risk
from agent19.migrate.parse import Statement, parse_sql
from agent19.migrate.planning import regression as plan_regression
from agent19.migrate.planning.calibrate import BRIEF_SECONDS, ROWS_PER_SECOND, assumed_basis
from agent19.migrate.planning.change_inverses import with_generated_inverses
from agent19.migrate.planning.changes import Generated, already_there, changes_to_steps
from agent19.migrate.planning.escalations import escalate, summary
from agent19.migrate.planning.existing_indexes import existing_index_findings
from agent19.migrate.planning.index_cost import index_write_costs
from agent19.migrate.planning.model import (
    BACKUP_PREREQUISITE,
    DEPLOY_MARK,
    Change,
    MigrationPlan,
    PlanFinding,
    PlannedOperation,
)
from agent19.migrate.planning.observed import apply_dry_run, observed_statements
from agent19.migrate.planning.strategy import deployment, rollback
from agent19.migrate.planning.validation import validation_checks
from agent19.migrate.planning.write_activity import TableActivity
from agent19.safety.detect import detect
from agent19.units import human_duration


class PlanOptions(BaseModel):
    name: str | None = None
    description: str | None = None
    pg_version: int | None = Field(default=None, description="server_version_num without a live catalog")
    dry_run: DryRunResult | None = Field(default=None, description="a dry run of the same SQL: its observed "
                                         "durations, locks and rewrites replace the estimates")
    activity: dict[str, TableActivity] | None = Field(
        default=None, description="measured write activity per schema.table (write_activity.table_activity)")


def _work(op: Operation) -> str | None:
    if op.kind == "truncate":  # a new empty file: its time does not grow with the rows
        return None
    if op.category == "data_migration":
        return "data_migration"
    if op.rewrite:
        return "rewrite"
    if op.category == "create_index" or op.kind in ("create_index", "add_primary_key", "add_unique"):
        return "index"
    return "scan" if op.scan else None


def _long(op: Operation, new: set[str]) -> bool:
    # the work (scan, rewrite, build) happens on the target, the first table; others are locked briefly
    return _work(op) is not None and not (op.tables and norm(op.tables[0]) in new)


def _downtime(op: Operation, new: set[str]) -> str:
    if not _long(op, new):
        return "none"
    if op.lock == "AccessExclusiveLock":
        return "reads_and_writes"
    if op.lock in BLOCKS_WRITES or op.category == "data_migration":
        return "writes"
    return "none"


def _rows(op: Operation, catalog: SchemaSnapshot | None, new: set[str]) -> int | None:
    if not op.tables:
        return None
    if all(norm(t) in new for t in op.tables):
        return 0
    t = catalog.table(op.tables[0]) if catalog else None
    return t.row_estimate if t else None


def _seconds(op: Operation, rows: int | None, live: bool) -> float | None:
    if not live:
        return None
    work = _work(op)
    if work is None or not rows:
        return BRIEF_SECONDS
    return BRIEF_SECONDS + rows / ROWS_PER_SECOND[work]


def _describe(op: Operation) -> str:
    what = op.kind.replace("_", " ")
    table = f" on {op.tables[0]}" if op.tables else ""
    facts = [op.lock or "no table lock"] + (["rewrites the table"] if op.rewrite else []) + (
        ["scans the table"] if op.scan and not op.rewrite else [])
    return f"{what}{table} ({', '.join(facts)})"


def _order_hazards(statements: list[Statement]) -> list[PlanFinding]:
    """A table used before the statement that creates it, or dropped before a later use."""
    created_at: dict[str, int] = {}
    for i, s in enumerate(statements):
        rel = s.fields.get("relation")
        if s.node == "CreateStmt" and isinstance(rel, dict):
            created_at.setdefault(norm(rel_name(rel)), i)
    findings: list[PlanFinding] = []
    dropped: dict[str, int] = {}
    for i, s in enumerate(statements):
        used: set[str] = set()
        rel = s.fields.get("relation")
        if isinstance(rel, dict) and s.node != "CreateStmt":
            used.add(norm(rel_name(rel)))
        from agent19.sqltree import walk

        # a foreign key is a Constraint node: a statement whose tree has none is not walked (most of a plan's)
        for node, f in walk(s.tree) if s.may_contain("Constraint") else ():
            if node == "Constraint" and isinstance(f.get("pktable"), dict):
                used.add(norm(rel_name(f["pktable"])))
        for t in sorted(used):
            if created_at.get(t, -1) > i:
                findings.append(PlanFinding(
                    rule="plan-order", severity="error", operation=i + 1,
                    message=f"line {s.line} uses {t}, which is created later (statement {created_at[t] + 1}): "
                    "this statement fails", fix=f"move the CREATE TABLE {t} before line {s.line}"))
            if t in dropped:
                findings.append(PlanFinding(
                    rule="plan-order", severity="error", operation=i + 1,
                    message=f"line {s.line} uses {t}, which statement {dropped[t] + 1} dropped",
                    fix="drop tables last"))
        if s.node == "DropStmt" and s.fields.get("removeType") == "OBJECT_TABLE":
            for obj in s.fields.get("objects", []):
                names = [n.get("String", {}).get("sval", "") for n in obj.get("List", {}).get("items", [])]
                if names:
                    dropped[norm(".".join(names))] = i
    return findings


def _duration(seconds: float | None, live: bool, observed: int = 0, total: int = 0,
              observed_in: str | None = None) -> str:
    if seconds is None:
        return "unknown - connect a database (durations need the tables' row counts)"
    if observed and observed == total:
        return f"~{seconds:.2f} s, observed in the {observed_in} (plus lock waits)"
    assumption = ", ".join(f"{k.replace('_', ' ')} {v:,} rows/s" for k, v in ROWS_PER_SECOND.items())
    if observed:
        assumption = (f"{observed} of {total} operation(s) observed in the {observed_in}; the rest estimated "
                      f"assuming {assumption}")
        return f"~{human_duration(seconds)}: {assumption} (plus lock waits)"
    return f"~{human_duration(seconds)}, assuming {assumption} (plus lock waits)"


def plan_migration(
    sql: str | None = None,
    changes: list[Change] | None = None,
    catalog: SchemaSnapshot | None = None,
    options: PlanOptions | None = None,
) -> MigrationPlan:
    """Plan ``sql`` (kept in order) or ``changes`` (SQL generated, ordered topologically)."""
    options = options or PlanOptions()
    version = (catalog.server_version if catalog else None) or options.pg_version or DEFAULT_PG_VERSION
    if (sql is None) == (changes is None):
        raise InputError("give either sql or changes", "sql: migration text; changes: a structured change list")
    change_notes: list[str] = []
    pattern_notes: list[str] = []
    deploy_at: int | None = None
    deploy_statement: int | None = None
    present: list[str] = []
    if changes is not None:
        if not changes:
            raise InputError("the change list is empty")
        ordered, steps = changes_to_steps(changes, version // 10000, catalog)
        change_notes = [c.description or f"{c.type} {c.table}" for c in ordered]
        generated = [g for st in steps for g in st.now]
        contract = [g for st in steps for g in st.after_deploy]
        text = ";\n\n".join(g.sql for g in generated) + ";\n"
        if contract:  # one deploy point: every change's expand part before it, every contract part after it
            deploy_at = len(generated) - 1
            text += f"\n{DEPLOY_MARK}\n\n" + ";\n\n".join(g.sql for g in contract) + ";\n"
            generated += contract
        pattern_notes = [n for st in steps for n in st.notes]
        present = already_there(changes, catalog)
    else:
        text = sql or ""
    statements = parse_sql(text)
    if not statements:
        raise InputError("nothing to do: the database already has " + "; ".join(present), "leave these changes out"
                         ) if present else InputError("no SQL statements to plan", "the input is only comments")
    by_generated: dict[int, Generated] = {}
    if changes is not None:  # one statement per generated step (fragments are refused unless exactly one)
        by_generated = {st.index: g for st, g in zip(statements, generated, strict=True)}
        deploy_statement = statements[deploy_at].index if deploy_at is not None else None
    # parsed once, classified once: lint classifies every statement in order, as classify() would, and hands the
    # operations over
    ops: list[Operation] = []
    report = lint([load_text(text, statements=statements)], catalog=catalog, pg_version=version,
                  config=LintConfig(fail_on="never"), operations=ops)
    by_index = {s.index: s for s in statements}
    # the tables the migration creates, named as classified (an unqualified name on the session's search_path)
    new = {norm(op.tables[0]) for op in ops if op.tables and by_index[op.statement_index].node == "CreateStmt"}
    if changes is not None:
        _pattern_facts(ops, by_generated, catalog, version)
    planned: list[PlannedOperation] = []
    for i, op in enumerate(ops, start=1):
        rows = _rows(op, catalog, new)
        planned.append(PlannedOperation(
            order=i, type=op.kind, category=op.category, table=op.tables[0] if op.tables else None,
            description=_describe(op), sql=op.sql, reversible=op.reversible, data_loss=op.data_loss,
            reverse_sql=op.inverse_sql, estimated_rows=rows, lock_level=op.lock, rewrite=op.rewrite,
            in_transaction=op.in_transaction, downtime=_downtime(op, new),  # type: ignore[arg-type]
            estimated_seconds=_seconds(op, rows, catalog is not None), risk=op.risk, line=op.line,
            work=_work(op), duration_basis=assumed_basis(_work(op), rows) if catalog is not None else None,
            phase=g.phase if (g := by_generated.get(op.statement_index)) else None,
            stands_for=g.same_data_as if g else None,
        ))
    if deploy_statement is not None:  # after the statement's last operation
        last = max(p.order for p, op in zip(planned, ops, strict=True) if op.statement_index == deploy_statement)
        planned[last - 1] = planned[last - 1].model_copy(update={"deploy_after": True})
    if changes is not None:  # a pattern's statements are undone by its phases' rollbacks, not one by one
        planned = [p.model_copy(update={"reverse_sql": g.reverse, "reversible": g.undoable})
                   if (g := by_generated.get(op.statement_index)) and g.undoable is not None else p
                   for p, op in zip(planned, ops, strict=True)]
    if changes is not None:  # the rollback drops the backfill procedure, not the NOT NULL CHECK already dropped
        planned = with_generated_inverses(planned)
    order_of = {}
    for p, op in zip(planned, ops, strict=True):
        order_of.setdefault(op.statement_index, p.order)
    findings = [PlanFinding(rule=f.rule, severity=f.severity, message=f.message, fix=f.fix,
                            operation=order_of.get(s_i))
                for s_i, s in enumerate(report.statements) for f in s.findings]
    if changes is None:
        findings += _order_hazards(statements) + existing_index_findings(statements, catalog)
    findings += [PlanFinding(rule="already-exists", severity="info", message=m) for m in present]
    # what a pattern's contract drops with the old column and cannot build again itself: to do before the contract
    findings += [PlanFinding(rule="not-carried", severity="warning", message=n) for n in pattern_notes
                 if "not carried:" in n]
    observed_in = None
    if options.dry_run is not None:
        planned, observed_findings, observed_in = apply_dry_run(
            planned, ops, options.dry_run, {i: st.sql for i, st in by_index.items()})
        findings += observed_findings
    risk = max_risk([p.risk for p in planned] + (["high"] if any(f.severity == "error" for f in findings) else []))
    observed = [p for p in planned if p.figures == "observed"]
    all_observed = bool(observed) and len(observed) == len(planned)
    seconds = sum(p.estimated_seconds or 0 for p in planned) if catalog is not None or all_observed else None
    data_loss = any(op.data_loss for op in ops)
    prerequisites = _prerequisites(ops, planned, data_loss, version, catalog is not None)
    one_tx = all(op.in_transaction for op in ops) and any(s.node == "TransactionStmt" for s in statements)
    costs = index_write_costs(planned, options.activity, catalog,
                              {s.sql: s.fields for s in statements if s.node == "IndexStmt"})
    escalations = escalate(planned, ops, findings, catalog, options.activity, costs, detect(statements),
                           _worse_plans(options.dry_run, order_of, {i: st.sql for i, st in by_index.items()}))
    name = options.name or ("; ".join(change_notes[:3]) if change_notes else
                            f"{planned[0].description.split(' (')[0]}" + (
                                f" and {len(planned) - 1} more" if len(planned) > 1 else ""))
    plan = MigrationPlan(
        id=hashlib.sha256(text.encode()).hexdigest()[:12],
        name=name,
        description=options.description or f"{len(planned)} operation(s) on "
        f"{', '.join(sorted({p.table for p in planned if p.table})) or 'no table'}; highest risk {risk}",
        risk_level=risk,
        estimated_duration=_duration(seconds, catalog is not None, len(observed), len(planned), observed_in),
        estimated_seconds=seconds,
        observed_in=observed_in if observed else None,
        pg_version=version,
        live=catalog is not None,
        operations=planned,
        prerequisites=prerequisites,
        rollback=rollback(planned, data_loss, one_tx, [op.notes for op in ops]),
        validation=validation_checks(ops, by_index),
        deployment=deployment(planned, findings, risk),
        findings=findings,
        sql=text,
        escalations=escalations,
        escalation_summary=summary(escalations, options.activity is not None, [
            p.order for p in planned if p.type.startswith(plan_regression.AFFECTING_KINDS)
        ] if options.dry_run is None or options.dry_run.query_plans is None else None),
        index_costs=costs,
        notes=pattern_notes,
    )
    plan._statements = statements
    return plan


def _pattern_facts(ops: list[Operation], generated: dict[int, Generated], catalog: SchemaSnapshot | None,
                   version: int) -> None:
    """What a pattern knows of its own statements (:class:`~agent19.migrate.planning.changes.Generated`): its risk
    for the step, and for the contract's DROP COLUMN what the plain statement it stands for would lose (a rename:
    nothing; a type change: what the conversion loses) — classified, as every statement is, not assumed."""
    for op in ops:
        g = generated.get(op.statement_index)
        if g is None:
            continue
        if g.risk is not None:
            op.risk = g.risk
        if g.same_data_as:
            equivalent = classify(parse_sql(g.same_data_as), catalog=catalog, pg_version=version)
            op.data_loss = any(e.data_loss for e in equivalent)
            if op.data_loss:
                op.risk = "critical"


def _worse_plans(dry: DryRunResult | None, order_of: dict[int, int], sql: dict[int, str]) -> dict[int, list[str]]:
    """Operation order → queries the dry run saw get a worse plan after it (a dry run of this same SQL only)."""
    if dry is None or dry.query_plans is None:
        return {}
    seen = observed_statements(dry, sql)
    return plan_regression.evidence(dry.query_plans, {i: o for i, o in order_of.items() if i in seen})


def _prerequisites(ops: list[Operation], planned: list[PlannedOperation], data_loss: bool, version: int,
                   live: bool) -> list[str]:
    out = ["SET lock_timeout (e.g. '5s') in the session that runs it, and retry on timeout"]
    if data_loss:
        out.append(BACKUP_PREREQUISITE)
    if any(not op.in_transaction for op in ops):
        out.append("run the statements that cannot run in a transaction block on their own, outside BEGIN ... COMMIT")
    if any(p.rewrite for p in planned):
        out.append("free disk space at least the size of each rewritten table and its indexes")
    if any(op.kind == "data_migration" or op.category == "data_migration" for op in ops):
        out.append("the application tolerates old and new values while the data migration runs")
    if not live:
        out.append(f"assumed PostgreSQL {version // 10000} and large, busy tables: plan again with a database "
                   "connected for real sizes")
    return out
