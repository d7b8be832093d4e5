"""What ``test_migration`` returns: per statement, predicted vs observed; overall pass/fail.

Every figure here is *observed* on a real server unless its field says ``predicted`` or
``extrapolated``. Durations are wall time in milliseconds.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import TYPE_CHECKING, Literal

from pydantic import BaseModel, Field

from agent19.db.locks import LOCK_RANK
from agent19.db.observe import HeldLock
from agent19.migrate.dryrun.schema_diff import Difference
from agent19.migrate.dryrun.watch import Probe
from agent19.migrate.planning.regression import QueryPlanComparison

if TYPE_CHECKING:
    import psycopg

    from agent19.migrate.parse import Statement
    from agent19.safety.aftermath import Aftermath

PREDICTION_TABLE = "agent19/migrate/classification/knowledge_table.py"
RanIn = Literal["transaction", "scratch", "skipped"]


class StatementError(BaseModel):
    message: str
    sqlstate: str | None = None
    file: str | None = None
    line: int
    column: int | None = Field(default=None, description="1-based; on a statement's first line, from its start")


class LockComparison(BaseModel):
    relation: str
    predicted: str | None = Field(description="lock mode the prediction table gives (pg_locks spelling)")
    observed: str | None = Field(description="strongest mode the server showed for this statement; None when "
                                 "not observed (see not_observed)")
    agrees: bool | None = Field(description="None: could not be decided (the mode was already held)")
    not_observed: str | None = Field(default=None, description="why the strongest mode is unknown, e.g. "
                                     "'AccessExclusiveLock already held since statement 1; not re-observed'")


class PriorLock(BaseModel):
    """A lock the dry run's transaction already held when this statement ran: PostgreSQL shows a mode once
    per transaction, so whether this statement took it too cannot be seen there."""

    relation: str
    mode: str
    since: int = Field(description="0-based index of the statement that took it first")


class StatementResult(BaseModel):
    index: int = Field(description="0-based position in the whole migration")
    file: str | None = None
    line: int
    sql: str
    kind: str | None = Field(default=None, description="the classification's kind, e.g. create_index")
    ran_in: RanIn
    note: str | None = Field(default=None, description="why it ran where it did, or why it was skipped; that it "
                             "ran code agent19 cannot read (--allow-unreadable-code)")
    duration_ms: float | None = None
    locks_held_ms: float | None = Field(default=None, description="in the target's transaction: how long the locks "
                                        "it took were held, from its start to the dry run's rollback (a migration "
                                        "in one transaction holds them until its COMMIT)")
    rows: int | None = Field(default=None, description="rows affected, when the statement reports it")
    locks: list[HeldLock] = Field(default=[], description="locks this statement took (relation, mode)")
    lock_comparison: list[LockComparison] = []
    predicted_rewrite: bool | None = None
    rewritten: list[str] = Field(default=[], description="relations whose relfilenode changed")
    observed_rewrite: bool = Field(default=False, description="a table that existed before was rewritten")
    dropped: list[str] = Field(default=[], description="relations that no longer exist after it, with their kind "
                               "('table app.victim'), observed in the catalog whatever dropped them")
    renamed: list[str] = Field(default=[], description="relations it renamed or moved: 'app.a -> app.b'")
    isolated: bool = Field(
        default=False, description="locks re-observed in a transaction of its own (an earlier statement held "
        "the same mode, which hides it in pg_locks)",
    )
    held_before: list[PriorLock] = Field(
        default=[], description="locks on this statement's relations already held since an earlier statement and "
        "not re-observed: this statement may have taken them too (empty once isolated)")
    notices: list[str] = []
    error: StatementError | None = None
    untested: str | None = Field(default=None, description="why this statement could not be tested (not a failure)")
    extrapolated_ms: float | None = Field(default=None, description="duration scaled to the real table size")
    extrapolation: str | None = Field(default=None, description="how extrapolated_ms was computed")
    probes: list[Probe] = Field(default=[], description="blocking measurement: who waited for this statement")

    @property
    def strongest(self) -> tuple[str, str] | None:
        if not self.locks_complete:
            return None
        table_locks = [lk for lk in self.locks if lk.relkind in ("r", "p", "m")]
        if not table_locks:
            return None
        best = max(table_locks, key=lambda lk: LOCK_RANK.get(lk.mode, -1))
        return best.mode, best.relation


    @property
    def locks_complete(self) -> bool:
        """Every relation's strongest mode is known: no hidden mode outranks what was observed."""
        return not any(c.not_observed for c in self.lock_comparison) and not self.untested

    def not_observed_note(self) -> str | None:
        notes = [f"{c.relation}: {c.not_observed}" for c in self.lock_comparison if c.not_observed]
        if self.untested:
            notes.append(f"could not test: {self.untested}")
        return "; ".join(notes) or None


class Finding(BaseModel):
    kind: Literal["lock_mismatch", "not_observed", "not_tested", "rewrite_mismatch", "statement_error",
                  "check_failed", "target_changed", "skipped", "rollback_not_verified",
                  "dropped_out_of_sight", "unreadable_code_ran"]
    severity: Literal["error", "warning", "info"]
    statement: int | None = None
    file: str | None = None
    line: int | None = None
    message: str


class CheckResult(BaseModel):
    name: str
    query: str
    expected: str
    blocking: bool
    phase: Literal["before", "after"]
    passed: bool
    value: str | None = Field(default=None, description="what the query returned (first column of the first row)")
    error: str | None = None


class LongestLock(BaseModel):
    mode: str
    relation: str
    duration_ms: float = Field(description="how long it was held: in the target's transaction from the statement "
                               "that took it to the rollback; in a scratch database, the statement's own duration")
    statement: int
    line: int
    file: str | None = None


class ScratchInfo(BaseModel):
    name: str
    strategy: Literal["template", "schema_copy", "empty"]
    sampled_rows: dict[str, int] = {}
    notes: list[str] = []
    dropped: bool = Field(description="the scratch database no longer exists")


class RollbackResult(BaseModel):
    verified: bool
    where: Literal["transaction", "scratch"]
    differences: list[Difference] = Field(default=[], description="start vs after up+down; empty when verified")
    up_changes: int = Field(description="schema differences the up migration made (0 means it changed nothing)")
    errors: list[StatementError] = []
    scratch: ScratchInfo | None = None
    untested: str | None = Field(default=None, description="why the rollback could not be tested (then not "
                                 "verified, and not failed either)")
    notes: list[str] = Field(default=[], description="statements that ran code agent19 cannot read because "
                             "--allow-unreadable-code is set: what they did outside the transaction is not known")
    summary: str


class IsolatedCopy(BaseModel):
    """Where an isolated dry run ran (:mod:`agent19.migrate.dryrun.isolated`): not the target, a copy of its schema."""

    where: str = Field(description="what the copy is and what its figures mean")
    major: int = Field(description="the throwaway cluster's PostgreSQL major version (the target's)")
    role: str = Field(description="the role the migration ran as there: the target's login by name, no superuser, "
                      "the target's owners, privileges and settings around it")
    rows: int = Field(default=0, description="rows per table copied (0: the tables are empty)")
    restore_errors: list[str] = Field(default=[], description="what of the schema could not be restored there")
    access_unmade: list[str] = Field(default=[], description="owner and privilege statements of the target the copy "
                                     "refused for an object it has: it may allow what the target refuses, so every "
                                     "statement that ran without error there is not testable")
    stand_ins_lacking: dict[str, str] = Field(
        default={}, description="tables left out (the login cannot read them) whose stand-in lacks what the target's "
        "table has (triggers, rules, policies, a constraint the copy refused), and what: a statement that locks one "
        "is not testable")
    dump: str = Field(default="", description="how the target's schema was had (pg_dump, or a dump kept by a running "
                      "server while the catalogs are unchanged)")
    removed: bool = Field(default=False, description="the throwaway cluster was stopped and its directory removed")


class DryRunResult(BaseModel):
    ran_at: str = Field(default_factory=lambda: datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC"),
                        description="when the dry run started")
    passed: bool = Field(description="no statement, check or rollback failed (untested statements do not fail)")
    complete: bool = Field(default=True, description="every statement was tested and every lock observed")
    summary: str
    database: str = Field(description="the target, password redacted")
    server_version: int
    total_ms: float
    statements: list[StatementResult]
    findings: list[Finding] = []
    checks: list[CheckResult] = []
    longest_lock: LongestLock | None = None
    scratch: ScratchInfo | None = None
    target_unchanged: bool = Field(description="the target is as before the dry run: its catalog and the cluster, "
                                   "and nothing left that a rollback does not undo (sequences advanced, tables "
                                   "grown, planner statistics written in place: target_differences, measured)")
    target_differences: list[Difference] = []
    rollback: RollbackResult | None = None
    leftovers_dropped: list[str] = Field(default=[], description="scratch databases of killed runs dropped now")
    isolated: IsolatedCopy | None = Field(default=None, description="set when it ran in an isolated copy of the "
                                          "schema (a throwaway cluster), not on the target")
    prediction_table: str = PREDICTION_TABLE
    query_plans: QueryPlanComparison | None = Field(
        default=None, description="queries' plans before and after the statements that drop or change indexes, "
        "keys or column types (EXPLAIN in a rolled-back transaction)")

    def to_evidence(self) -> dict[str, object]:
        """This result in the shape the runbook cites (``agent19.report.model.DryRunEvidence``)."""
        statements = []
        for s in self.statements:
            mine = [c for c in s.lock_comparison if c.observed or c.predicted]
            complete = s.locks_complete and s.error is None
            # a partial observation is never cited as the statement's lock
            observed = max((c.observed for c in mine if c.observed), key=_rank, default=None) if complete else None
            predicted = max((c.predicted for c in mine if c.predicted), key=_rank, default=None)
            decided = [c.agrees for c in s.lock_comparison if c.agrees is not None]
            statements.append({
                "order": s.index + 1,  # an isolated copy's durations are those of empty tables: none
                "seconds": None if s.duration_ms is None or self.isolated else s.duration_ms / 1000,
                "observed_lock": observed, "predicted_lock": predicted, "rewrite": s.observed_rewrite,
                "agrees": (False if False in decided else True if complete and decided else None),
                "not_observed": s.not_observed_note(),
            })
        lock = self.longest_lock
        return {
            "ran_at": self.ran_at, "passed": self.passed,
            "environment": f"isolated copy of {self.database}'s schema (no rows)" if self.isolated else self.database,
            "total_seconds": self.total_ms / 1000,
            "statements": statements,
            "longest_lock": f"{lock.mode} on {lock.relation} for {lock.duration_ms / 1000:.2f} s" if lock else None,
            "rollback_verified": self.rollback.verified if self.rollback else None,
            "rollback_differences": [str(d) for d in self.rollback.differences] if self.rollback else [],
            "notes": [f.message for f in self.findings],
        }


def _rank(mode: str) -> int:
    return LOCK_RANK.get(mode, -1)


def statement_error(stmt: Statement, exc: psycopg.Error | None = None, message: str | None = None,
                    sqlstate: str | None = None, position: int | None = None) -> StatementError:
    """The error of ``stmt`` (from ``exc`` or the given fields), its position as a line and column of the file."""
    if exc is not None:
        text = str(exc).strip()
        message = text.splitlines()[0] if text else type(exc).__name__
        sqlstate = exc.sqlstate
        pos = exc.diag.statement_position
        position = int(pos) if pos else None
    line, column = stmt.line, None
    if position:
        before = stmt.sql[: position - 1]
        line += before.count("\n")
        column = position - (before.rfind("\n") + 1)
    return StatementError(message=message or "error", sqlstate=sqlstate, file=stmt.file, line=line, column=column)


def after_trial(seen: Aftermath) -> list[Finding]:
    """What the server showed after the dry run's rollback (:mod:`agent19.safety.aftermath`), as findings: code
    another session changed during it (an error: what ran is not what was checked), sessions of the role gone
    (a warning), sequences not compared (info). Sequences set back are in the catalog diff."""
    from agent19.safety.fingerprint import CHANGED

    return ([Finding(kind="target_changed", severity="error", message=e) for e in seen.errors if e == CHANGED]
            + [Finding(kind="target_changed", severity="warning", message=w) for w in seen.warnings]
            + [Finding(kind="skipped", severity="info", message=n) for n in seen.notes])
