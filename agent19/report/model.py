"""The documents agent19 writes about a migration, as data.

Every document (runbook, specification, rollback plan, the four recipient handoffs) is one of
these models; the Markdown is rendered from them by jinja2 templates (:mod:`agent19.report.render`)
and the JSON is their ``model_dump``. :class:`Handoff` is ``handoff.json``: its JSON Schema ships
in the package (``handoff.schema.json``) and is generated from this model.

Evidence rule: a :class:`ReviewItem` can only be ``satisfied`` with evidence; facts that are not
known say ``unknown`` and how to find them out — nothing is invented.
"""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, Field, model_validator

from agent19.migrate.model import Risk
from agent19.migrate.planning.model import DeploymentKind, Downtime, Escalation, IndexWriteCost, RollbackKind

Status = Literal["satisfied", "not_satisfied", "unknown"]
HANDOFF_FORMAT = "agent19.handoff/2"


class ReviewItem(BaseModel):
    """One self-review checklist item or validation gate."""

    name: str
    status: Status
    evidence: str = Field(description="what shows it: tool output, a plan figure, a dry-run result - or what is "
                          "missing and how to get it")

    @model_validator(mode="after")
    def _evidence_required(self) -> ReviewItem:
        if self.status == "satisfied" and not self.evidence.strip():
            raise ValueError(f"{self.name!r} cannot be satisfied without evidence")
        return self


class BackupEvidence(BaseModel):
    """What the documents cite from a ``verify_backup`` result."""

    verified: bool
    kind: str
    summary: str
    restored_into: str = ""


class Guardrail(ReviewItem):
    phase: Literal["pre", "during", "post"] = Field(description="pre-migration, during, or post-migration")


class SqlCheck(BaseModel):
    """A query to run and what it must return."""

    name: str
    sql: str
    expected: str
    blocking: bool = True


class Prerequisite(BaseModel):
    requirement: str
    how_to_verify: str
    check: SqlCheck | None = None


class Action(BaseModel):
    title: str
    detail: str
    command: str | None = Field(default=None, description="command to run, when there is one")
    lang: Literal["sh", "sql"] = Field(default="sh", description="what `command` is: a shell command or SQL")
    check: SqlCheck | None = None


class Header(BaseModel):
    id: str
    name: str
    description: str
    risk_level: Risk
    estimated_duration: str
    strategy: DeploymentKind
    strategy_reason: str
    pg_version: int
    database: str | None = Field(default=None, description="the database the facts come from (password redacted)")
    live: bool = Field(description="true when table sizes and server facts come from a live database")
    generated_at: str
    generated_by: str


class Step(BaseModel):
    """One migration step as the runbook shows it."""

    order: int
    title: str
    table: str | None
    sql: str
    kind: str
    lock_level: str | None
    lock_effect: str = Field(description="what the lock blocks, in words")
    lock_source: Literal["predicted", "observed"] = "predicted"
    risk: Risk
    downtime: bool
    downtime_kind: Downtime
    estimated_rows: str
    estimated_time: str
    in_transaction: bool
    rewrite: bool
    data_loss: bool
    reversible: bool
    verification: SqlCheck | None
    verification_note: str = ""
    rollback_sql: str | None
    rollback_note: str = ""
    notes: list[str] = []
    fixes: list[str] = Field(default=[], description="one safer alternative: the zero-downtime pattern's phases, "
                             "or the most severe finding's fix")
    deploy_after: bool = Field(default=False, description="deploy the application before the next step (a pattern's "
                               "expand part ends here; what follows removes what the old version uses)")


class Metric(BaseModel):
    name: str
    sql: str
    threshold: str
    action: str


class SignOff(BaseModel):
    role: str
    responsibility: str


class RollbackStep(BaseModel):
    order: int = Field(description="the migration step it undoes")
    title: str
    sql: str | None = Field(description="the SQL that undoes the step; None when only a restore can")
    manual: str | None = Field(default=None, description="what to do by hand (restore from backup)")
    data_loss: bool
    prerequisites: list[str] = []
    estimated_time: str


class RollbackPlan(BaseModel):
    header: Header
    kind: RollbackKind
    summary: str
    steps: list[RollbackStep] = Field(description="in the order to run them: last migration step first")
    restore_procedure: list[Action] = Field(default=[], description="when some step loses data")


class DryRunStatement(BaseModel):
    order: int
    seconds: float | None = None
    observed_lock: str | None = None
    predicted_lock: str | None = None
    rewrite: bool | None = None
    agrees: bool | None = Field(default=None, description="observed lock no stronger than predicted")
    not_observed: str | None = Field(default=None, description="what the dry run could not observe for this "
                                     "statement (then observed_lock is None and the prediction is cited)")

    def lock_seen(self) -> str:
        """The observed lock, or why it was not observed (never a partial observation)."""
        return f"not observed ({self.not_observed})" if self.not_observed else self.observed_lock or "none"


class DryRunEvidence(BaseModel):
    """What the documents cite from a dry run (``test_migration``). Absent means "not run"."""

    ran_at: str | None = None
    environment: str
    passed: bool
    total_seconds: float | None = None
    statements: list[DryRunStatement] = []
    longest_lock: str | None = None
    rollback_verified: bool | None = None
    rollback_differences: list[str] = []
    notes: list[str] = []


class LiveFacts(BaseModel):
    """Facts read from the target database (read-only catalog and statistics queries)."""

    database: str
    server_version: int
    server_version_text: str
    size_bytes: int
    connections: int
    max_connections: int
    migration_tool: str | None = None
    migration_table: str | None = None
    schema_version: str | None = None
    archive_mode: str | None = None
    last_archived_at: str | None = None
    collected_at: str


class PerformanceIssue(BaseModel):
    query: str
    note: str | None = None


class Runbook(BaseModel):
    header: Header
    requirements: str | None = None
    prerequisites: list[Prerequisite]
    plan_prerequisites: list[str] = Field(default=[], description="prerequisites plan_migration listed")
    pre_deployment: list[Action]
    steps: list[Step]
    post_deployment: list[SqlCheck]
    rollback: RollbackPlan
    monitoring: list[Metric]
    signoff: list[SignOff]
    checklist: list[ReviewItem]
    gates: list[ReviewItem]
    findings: list[str] = []
    performance_issues: list[PerformanceIssue] = []
    escalations: list[Escalation] = Field(default=[], description="reviews needed before it runs, with evidence")
    escalation_summary: str = ""
    guardrails: list[Guardrail] = Field(default=[], description="pre / during / post gates, each with evidence")


class ObjectChange(BaseModel):
    change: Literal["new", "modified", "dropped"]
    object_type: str
    name: str
    detail: str
    risk: Risk


class TestingRow(BaseModel):
    environment: str
    result: str
    timings: str
    locks: str


class Specification(BaseModel):
    header: Header
    summary: str
    requirements: str | None = None
    objects: list[ObjectChange]
    files: list[str]
    deployment_steps: list[str]
    rollback_summary: str
    pre_checks: list[SqlCheck]
    post_checks: list[SqlCheck]
    testing: list[TestingRow]
    testing_note: str
    performance_issues: list[PerformanceIssue] = []


class DevOpsHandoff(BaseModel):
    files: list[str] = Field(description="files to run or read, relative to the handoff folder, in order")
    run_order: list[str] = Field(description="one line per step: order, what, how")
    outside_transaction: list[int] = Field(description="steps that must run on their own, not in BEGIN ... COMMIT")
    lock_timeout: str
    statement_timeout: str
    expected_duration: str
    maintenance_window: bool
    backup_required: str


class AppChange(BaseModel):
    table: str | None
    change: str
    impact: str
    writes_can_fail: bool


class DeployPhase(BaseModel):
    name: str
    steps: list[int]
    deploy_after: bool
    note: str


class ApplicationHandoff(BaseModel):
    changes: list[AppChange]
    phases: list[DeployPhase]
    prisma: list[str] = Field(default=[], description="schema.prisma edits, when the project uses Prisma")
    prisma_note: str


class QaCase(BaseModel):
    name: str
    when: Literal["before", "after", "before_and_after"]
    sql: str
    expected: str


class QaHandoff(BaseModel):
    cases: list[QaCase]


class PiiFlag(BaseModel):
    table: str | None
    column: str
    type: str
    change: str
    reason: str


class SecurityHandoff(BaseModel):
    personal_data: list[PiiFlag]
    grants: list[str]
    row_level_security: list[str]
    security_definer: list[str]
    extensions: list[str]
    summary: str


class HandoffStep(BaseModel):
    order: int
    sql: str
    lock_level: str | None
    downtime: Downtime
    in_transaction: bool
    risk: Risk
    data_loss: bool
    rollback_sql: str | None
    verification: SqlCheck | None


class Handoff(BaseModel):
    """``handoff.json``: one migration, everything a downstream agent or person needs to act on it."""

    format: Literal["agent19.handoff/2"] = HANDOFF_FORMAT
    migration: Header
    requirements: str | None = None
    files: dict[str, str] = Field(description="document name -> file name in the handoff folder")
    steps: list[HandoffStep]
    devops: DevOpsHandoff
    application: ApplicationHandoff
    qa: QaHandoff
    security: SecurityHandoff
    checklist: list[ReviewItem]
    gates: list[ReviewItem]
    dry_run: DryRunEvidence | None = Field(default=None, description="None: no dry run was given (not run)")
    performance_issues: list[PerformanceIssue] = []
    escalations: list[Escalation] = Field(description="reviews needed before it runs (data_loss, downtime, "
                                          "performance, breaking_change), each with statements and evidence")
    escalation_summary: str = Field(description="which escalations, or why none is needed")
    index_costs: list[IndexWriteCost] = Field(default=[], description="extra write work of each index the "
                                              "migration creates on an existing table, measured")
    guardrails: list[Guardrail] = Field(default=[], description="pre / during / post gates, each with evidence")


class Report(BaseModel):
    """Everything ``generate_runbook`` produces for one migration."""

    runbook: Runbook
    specification: Specification
    rollback_plan: RollbackPlan
    handoff: Handoff
