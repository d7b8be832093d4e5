"""The migration plan: what ``plan_migration`` returns and what runbooks, handoffs and the dry run read.

A plan is made from hand-written SQL (kept in its order) or from a structured change list (SQL is
generated and ordered topologically). Everything here is plain data; :mod:`agent19.migrate.planning.plan`
fills it in.

Field meanings that other stages rely on:

* ``Operation*.order`` is 1-based and is the order in which the statements must run.
* ``lock_level`` is the strongest lock the operation takes, in pg_locks spelling
  (``AccessExclusiveLock``…), or ``None`` when it takes no table lock worth naming.
* ``downtime`` says what the operation blocks while it runs: ``none`` (nothing a client
  notices), ``writes`` (writes wait; reads go on), ``reads_and_writes`` (everything waits).
* ``estimated_seconds`` is ``None`` when there is no live database to size tables with.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Literal

from pydantic import BaseModel, Field, PrivateAttr

from agent19.migrate.model import Risk

if TYPE_CHECKING:
    from agent19.migrate.parse import Statement

Downtime = Literal["none", "writes", "reads_and_writes"]
RollbackKind = Literal["automatic", "manual", "restore_from_backup"]
DeploymentKind = Literal["immediate", "rolling", "blue_green", "maintenance_window"]
Severity = Literal["error", "warning", "info"]

ChangeType = Literal[
    "add_column",
    "modify_column",
    "drop_column",
    "create_table",
    "add_index",
    "rename",
    "add_foreign_key",
    "add_not_null",
    "data_migration",
]


class ColumnSpec(BaseModel):
    """A column of a ``create_table`` change (or the column of an ``add_column`` change)."""

    name: str
    type: str = Field(description="SQL type, e.g. bigint, text, timestamptz, numeric(12,2)")
    nullable: bool = True
    default: str | None = Field(default=None, description="SQL expression, e.g. now() or 'x'")
    primary_key: bool = False
    references: str | None = Field(default=None, description="table(column) this column references")


class Change(BaseModel):
    """One structured change; ``type`` decides which fields are read.

    ===================  ===========================================================================
    add_column           table, column (name, type, nullable, default)
    modify_column        table, column.name, new_type (and/or nullable / default on ``column``)
    drop_column          table, column.name
    create_table         table, columns
    add_index            table, columns_list (``index_columns``), unique, index_name, where
    rename               table, and either column.name + new_name (rename column) or new_name (table)
    add_foreign_key      table, index_columns, references_table, references_columns, on_delete
    add_not_null         table, column.name
    data_migration       table, set (SQL assignment list), where, batch_size
    ===================  ===========================================================================
    """

    type: ChangeType
    table: str = Field(description="table name, optionally schema-qualified")
    column: ColumnSpec | None = None
    columns: list[ColumnSpec] = Field(default=[], description="create_table: the table's columns")
    new_type: str | None = Field(default=None, description="modify_column: the column's new type")
    new_name: str | None = Field(default=None, description="rename: the new table or column name")
    index_columns: list[str] = Field(default=[], description="add_index / add_foreign_key: the columns")
    index_name: str | None = None
    unique: bool = False
    where: str | None = Field(default=None, description="add_index: partial-index predicate; data_migration: filter")
    references_table: str | None = None
    references_columns: list[str] = []
    on_delete: Literal["no action", "restrict", "cascade", "set null", "set default"] | None = None
    set: str | None = Field(default=None, description="data_migration: SET clause, e.g. status = 'active'")
    batch_size: int = Field(default=10_000, ge=1, description="data_migration: rows per batch")
    description: str | None = None


class PlanFinding(BaseModel):
    """A lint finding (or an ordering hazard) attached to a plan operation."""

    rule: str
    severity: Severity
    message: str
    fix: str | None = None
    operation: int | None = Field(default=None, description="order of the operation it concerns")


class PlannedOperation(BaseModel):
    order: int = Field(description="1-based position: the order in which to run it")
    type: str = Field(description="operation kind, e.g. add_column, create_index, alter_column_type")
    category: str = Field(description="create_table | alter_table | drop_table | create_index | drop_index | "
                          "data_migration | other")
    table: str | None = Field(default=None, description="the (first) table it touches, schema-qualified")
    description: str
    sql: str
    reversible: bool
    data_loss: bool = Field(default=False, description="loses data no rollback SQL brings back (the knowledge "
                            "table's row for its form says what)")
    reverse_sql: str | None = Field(default=None, description="SQL that undoes it; none with reversible=true "
                                    "means there is nothing to undo (e.g. VALIDATE CONSTRAINT, ANALYZE)")
    estimated_rows: int | None = Field(default=None, description="rows of the table (live estimate), when known")
    lock_level: str | None = Field(default=None, description="strongest lock, pg_locks spelling")
    rewrite: bool = False
    in_transaction: bool = Field(default=True, description="can run inside a transaction block")
    downtime: Downtime
    estimated_seconds: float | None = None
    risk: Risk
    line: int | None = Field(default=None, description="line in the input SQL (hand-written SQL only)")
    figures: Literal["estimated", "calibrated", "observed"] = Field(
        default="estimated", description="observed: duration, lock and rewrite come from a dry run (test_migration); "
        "calibrated: the duration scales a rate measured on this server; estimated: an assumed rate")
    work: Literal["scan", "rewrite", "index", "data_migration"] | None = Field(
        default=None, description="the work that grows with the table's rows; none: a catalog change")
    phase: str | None = Field(default=None, description="the zero-downtime pattern phase it belongs to "
                              "(change lists: a rename or type change of an existing table's column)")
    stands_for: str | None = Field(default=None, description="the plain statement whose effect this pattern step "
                                   "completes (the contract's DROP COLUMN of a type change: the ALTER TYPE): its "
                                   "data-loss facts are checked on that statement")
    deploy_after: bool = Field(default=False, description="deploy the application before the next operation: what "
                               "follows removes what the old version still uses")
    duration_basis: str | None = Field(
        default=None, description="where estimated_seconds comes from: 'calibrated on this server (...)', "
        "'assumed (N rows/s ...)', 'observed in the dry run' or a catalog change")


DEPLOY_MARK = ("-- >>> deploy the application now: the statements below remove what the old version still uses "
               "(contract) <<<")
"""The comment a plan's SQL carries where the application is deployed (between a pattern's expand and contract)."""

RESTORE_DESCRIPTION = ("it destroys data that no SQL brings back: take a backup (or keep a copy of the affected rows) "
                       "before running it, and restore from it to roll back")
BACKUP_PREREQUISITE = "a verified backup (or a copy of the rows and columns it destroys)"


class RollbackStrategy(BaseModel):
    kind: RollbackKind
    description: str
    steps: list[str] = Field(default=[], description="reverse SQL in the order to run it (last operation first)")
    irreversible: list[int] = Field(default=[], description="orders of operations that cannot be undone by SQL")


class ValidationCheck(BaseModel):
    name: str
    query: str
    expected: str = Field(description="what the query must return, in words or as a literal value")
    blocking: bool = Field(description="true: stop the deployment when it fails")
    phase: Literal["before", "after"] = "after"


class DeploymentStrategy(BaseModel):
    kind: DeploymentKind
    reason: str
    steps: list[str] = []


EscalationKind = Literal["data_loss", "downtime", "performance", "breaking_change"]


class Escalation(BaseModel):
    """Who must act before the migration runs, decided from evidence (:mod:`agent19.migrate.planning.escalations`)."""

    kind: EscalationKind
    reviewers: list[str] = Field(description="who must act: tech lead, DBA, product lead, application engineers...")
    action: str = Field(description="what they must do before the migration runs")
    operations: list[int] = Field(description="orders of the operations that raise it")
    statements: list[str] = Field(description="the SQL of those operations")
    evidence: list[str] = Field(min_length=1, description="what shows it: the parsed statement, the plan's "
                                "downtime, a lock observed in a dry run, measured write rates")


class IndexWriteCost(BaseModel):
    """The extra write work of one index a migration creates (:mod:`agent19.migrate.planning.index_cost`)."""

    operation: int
    table: str | None
    index: str | None
    columns: list[str]
    inserts_per_second: float | None = None
    updates_per_second: float | None = None
    hot_updates_per_second: float | None = None
    window: str | None = Field(default=None, description="how the rates were measured")
    hot_lost: bool | None = Field(default=None, description="UPDATEs set an indexed column: HOT updates are "
                                  "lost; None: unknown")
    hot_updates_lost_per_second: float | None = None
    index_entries_per_second: float | None = Field(default=None, description="new index entries written per second")
    estimated_size_bytes: int | None = None
    summary: str


class MigrationPlan(BaseModel):
    id: str = Field(description="stable id: a hash of the SQL the plan runs")
    name: str
    description: str
    risk_level: Risk = Field(description="the highest risk of any operation")
    estimated_duration: str = Field(description="human text; says its throughput assumption, or "
                                    "'unknown - connect a database'")
    estimated_seconds: float | None = None
    observed_in: str | None = Field(default=None, description="the dry run whose observed figures the plan uses")
    pg_version: int = Field(description="the PostgreSQL version the plan was made for (server_version_num)")
    live: bool = Field(description="true when table sizes came from a live database")
    operations: list[PlannedOperation]
    prerequisites: list[str]
    rollback: RollbackStrategy
    validation: list[ValidationCheck]
    deployment: DeploymentStrategy
    findings: list[PlanFinding] = Field(default=[], description="lint findings and ordering hazards")
    sql: str = Field(description="the whole migration as it will run, statements in order")
    escalations: list[Escalation] = Field(default=[], description="reviews the migration needs, each with evidence")
    escalation_summary: str = Field(default="", description="one line: which escalations, or why none is needed")
    index_costs: list[IndexWriteCost] = Field(default=[], description="per index the migration creates on an "
                                              "existing table: the extra write work, measured")
    notes: list[str] = Field(default=[], description="what the plan was made without, e.g. an unreachable database")
    _statements: Any = PrivateAttr(default=None)
    """The statements of :attr:`sql` as the planner parsed them (never dumped): live checks that complete the plan
    read them instead of parsing the SQL again (:func:`planned_statements`)."""

    def planned_statements(self) -> list[Statement]:
        """The parsed statements of :attr:`sql`: the planner's own, or parsed again for a plan read from JSON."""
        if self._statements is None:
            from agent19.migrate.parse import parse_sql

            self._statements = parse_sql(self.sql)
        return self._statements  # type: ignore[no-any-return]
