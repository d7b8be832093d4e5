"""What is at stake in one statement: static findings, the kind allowlist, or a measurement.

:func:`assess` reads the statement (parse tree + catalog facts) and its kind; when that shows
nothing, :func:`measure_trial` runs a write in a savepoint inside a transaction that is always
rolled back and measures what it touched (:mod:`agent19.safety.measure`) and what the rollback did not undo
(:mod:`agent19.safety.aftermath`); :func:`from_measurement`
turns measured figures over the thresholds into findings and an impact the protocol can challenge.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from agent19.config import Settings
from agent19.db import rls
from agent19.db.connection import Database
from agent19.errors import InputError
from agent19.migrate.parse import Statement
from agent19.safety import aftermath, challenge, unmeasured
from agent19.safety import archive as archiving
from agent19.safety import measure as measuring
from agent19.safety.detect import Finding, Risk, Target, judge, not_known_safe
from agent19.safety.facts import load_facts, quote_written
from agent19.safety.impact import DatabaseIdentity, Impact, TargetImpact, backup_status, measure

Progress = Callable[[float, float | None, str | None], None]
QUALIFIED_SQL = True
"""Every statement here names its functions, operators, types and catalog relations ``pg_catalog.``-qualified: an
overload the login owns is not what it calls (tests/test_qualified_sql.py)."""
Q_SIZE = "SELECT pg_catalog.pg_total_relation_size(pg_catalog.to_regclass(%s)) AS b"


@dataclass
class Assessment:
    st: Statement
    findings: list[Finding]
    impact: Impact | None
    plans: list[archiving.ArchivePlan] = field(default_factory=list)
    archive: bool = False
    measured: measuring.Measurement | None = None

    def claims(self) -> dict[str, Any]:
        """What the token binds besides the impact: statement, database, archive choice, measurement."""
        assert self.impact is not None
        out: dict[str, Any] = {"sql": challenge.normalized_hash(self.st), "db": self.impact.database.model_dump(),
                               "archive": [p.archive for p in self.plans] if self.archive else None}
        if self.measured is not None:
            out["measured"] = self.measured.figures()
        return out


def assess(conn: Any, st: Statement, want_archive: bool = False, progress: Progress | None = None) -> Assessment:
    """Findings on the statement itself (inside a READ ONLY transaction on ``conn``)."""
    findings = judge(st, load_facts(conn, [st]))
    unlisted = not_known_safe(st)
    if unlisted is not None:
        findings.append(unlisted)
    elif (code := unmeasured.finding(conn, st)) is not None:  # no savepoint to measure it in: its code is judged
        findings.append(code)
    if not findings:
        return Assessment(st, [], None)
    impact = measure(conn, findings, missing_ok=bool(st.fields.get("missing_ok")), progress=progress)
    # rows of a table (or a column's values) a finding says are lost can be copied aside first
    tables = sorted({t.name for f in findings if f.data_loss
                     for t in impact.targets if t.kind in {"table", "column"} and t.exists})
    # a copy made through a row-level security policy holds only the rows it shows: not an archive
    hidden = sorted({h for t in impact.targets for h in t.rows_hidden if h in tables})
    if want_archive and hidden:
        raise InputError(f"archive=true refused: {rls.message(hidden[0])}, so a copy would hold only the rows the "
                         "policy shows - not an archive; nothing was run",
                         "archive as a login that sees every row (BYPASSRLS, or the table's owner), or call again "
                         "without archive after keeping a copy another way")
    tables = [t for t in tables if t not in hidden]
    plans = archiving.plan(conn, tables, impact.database.name) if tables else []
    return Assessment(st, findings, impact, plans, want_archive)


def measure_trial(db: Database, st: Statement, settings: Settings
                  ) -> tuple[measuring.Measurement, list[tuple[str | None, str]]]:
    """Run ``st`` in a transaction that is always rolled back and measure what it touched. A statement whose
    code the trial cannot contain or read (:class:`agent19.safety.trial.Untestable`) is not run: it is
    reported unmeasured, which the confirmation protocol treats as destructive."""
    from agent19.safety.gate import admit_trial as admit
    from agent19.safety.readonly import ReadOnlyViolation
    from agent19.safety.trial import Untestable

    try:
        checked = admit(db, st.sql)  # the fingerprint of the code the server may run: compared after the rollback
    except Untestable as exc:
        m = measuring.Measurement(unmeasured=str(exc))
        return m, measuring.verdict(m, settings)
    except ReadOnlyViolation as exc:  # it acts outside any transaction (another server…): no trial, a human decides
        m = measuring.Measurement(unmeasured=exc.message.removeprefix("refused: ") + ", so no trial runs it")
        return m, measuring.verdict(m, settings)
    with aftermath.trial(db, checked) as (conn, after):
        _, m = measuring.run_measured(conn, st, 1, "rolled back (measured)")
        measuring.add_earlier(conn, m, settings, lock=False)  # as run_sql would judge it (agent19.safety.tally)
    m.outside = after.errors + after.warnings  # the rollback did not undo them: the human decides
    return m, measuring.verdict(m, settings)


def from_measurement(conn: Any, st: Statement, m: measuring.Measurement, reasons: list[tuple[str | None, str]],
                     identity: DatabaseIdentity) -> Assessment:
    """Findings and impact stating the measured numbers."""
    findings: list[Finding] = []
    targets: list[TargetImpact] = []
    touches = {t.table: t for t in m.touches}
    for table, reason in reasons:
        touch = touches.get(table or "")
        if touch is None:
            findings.append(Finding(statement=st.index, line=st.line, kind="unverifiable", risk=Risk.HIGH,
                                    data_loss=True, reason=reason))
            continue
        deletes = touch.deleted >= touch.updated
        findings.append(Finding(statement=st.index, line=st.line, kind="mass_delete" if deletes else "mass_update",
                                risk=Risk.CRITICAL if deletes else Risk.HIGH, data_loss=True,
                                targets=[Target(kind="table", name=touch.table)], reason=reason))
        size = conn.execute(Q_SIZE, (quote_written(touch.table),)).fetchone()["b"]
        targets.append(TargetImpact(kind="table", name=touch.table, rows=touch.rows_before, rows_exact=True,
                                    rows_touched=touch.touched, size_bytes=size))
    impact = Impact(database=identity, targets=targets, backup=backup_status(conn))
    return Assessment(st, findings, impact, measured=m)
