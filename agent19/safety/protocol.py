"""The confirmation protocol: nothing that can lose data runs without an impact report and the
exact phrase.

Step 1 (:meth:`Protocol.challenge`): the statement's findings, its impact from the live database,
the checklist, the archive option, alternatives, the phrase to type and a challenge token.
Step 2 (:meth:`Protocol.confirm`): the same statement, the token and the phrase. It runs only in
``execute`` mode, only if the token is this server's, for this statement and database, unexpired
and unused, the impact has not changed, and the phrase matches exactly. Where the client can ask
its human (MCP elicitation, a terminal), the phrase is asked of the human and a phrase passed as an
argument is ignored. Every step is written to the audit log.

Execution happens in one transaction on a dedicated session: lock the targets, measure the impact
again (it must still match the token), archive and verify when asked, run the statement, commit.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any, Literal

import psycopg
from psycopg import sql as pgsql
from pydantic import BaseModel, Field

from agent19.config import AccessMode, Settings
from agent19.db.connection import Database
from agent19.errors import InputError
from agent19.migrate.parse import Statement
from agent19.safety import archive as archiving
from agent19.safety import challenge
from agent19.safety.audit import AuditLog
from agent19.safety.detect import Finding, judge
from agent19.safety.facts import load_facts
from agent19.safety.impact import Impact, measure
from agent19.safety.report import Alternative, ChecklistItem, alternatives, checklist, phrase
from agent19.safety.run import QueryResult, parse_input, run_write

Elicit = Callable[[str, type[BaseModel]], BaseModel | None]
NO_TRANSACTION = {"DropdbStmt", "VacuumStmt"}


class PhraseAnswer(BaseModel):
    phrase: str = Field(description="type the confirmation phrase exactly as shown")


class Report(BaseModel):
    statement: str
    destructive: bool
    findings: list[Finding] = []
    impact: Impact | None = None
    checklist: list[ChecklistItem] = []
    archive_chosen: bool = False
    archive: list[archiving.ArchivePlan] = Field(default=[], description="archive-before-drop (argument archive=true)")
    alternatives: list[Alternative] = []
    phrase: str | None = Field(default=None, description="the exact phrase the human must type")
    token: str | None = Field(default=None, description="the challenge token for step 2")
    expires_at: datetime | None = None
    next_step: str = ""


class Confirmation(BaseModel):
    outcome: Literal["challenge", "not_destructive", "refused", "executed"]
    executed: bool = False
    reasons: list[str] = Field(default=[], description="why it was refused")
    mode: AccessMode
    report: Report | None = None
    archived: list[archiving.ArchiveResult] = []
    result: QueryResult | None = None


class Protocol:
    def __init__(self, settings: Settings, db: Database, elicit: Elicit | None = None) -> None:
        self.settings, self.db, self.elicit = settings, db, elicit
        self.audit = AuditLog(settings.data_dir)
        self.used = challenge.UsedTokens(settings.data_dir)

    # -- assessment ----------------------------------------------------------------------------
    def statement(self, sql: str) -> Statement:
        statements = parse_input(sql)
        if len(statements) != 1:
            raise InputError(f"{len(statements)} statements given; the confirmation protocol takes one statement "
                             "at a time", "confirm each destructive statement on its own; nothing was run")
        return statements[0]

    def _assess(self, conn: Any, st: Statement, want_archive: bool) -> tuple[list[Finding], Impact | None,
                                                                                list[archiving.ArchivePlan]]:
        findings = judge(st, load_facts(conn, [st]))
        if not findings:
            return [], None, []
        impact = measure(conn, findings, missing_ok=bool(st.fields.get("missing_ok")))
        tables = sorted({t.name for f, t in _archivable(findings, impact)})
        plans = archiving.plan(conn, tables, impact.database.name) if tables else []
        return findings, impact, plans

    def _claims(self, st: Statement, impact: Impact, plans: list[archiving.ArchivePlan], archive: bool) -> dict[
            str, Any]:
        return {"sql": challenge.normalized_hash(st), "db": impact.database.model_dump(),
                "archive": [p.archive for p in plans] if archive else None}

    def _report(self, st: Statement, findings: list[Finding], impact: Impact, plans: list[archiving.ArchivePlan],
                archive: bool) -> Report:
        main = max(findings, key=lambda f: ["medium", "high", "critical"].index(f.risk.value))
        return Report(
            statement=st.sql, destructive=True, findings=findings, impact=impact, checklist=checklist(main, impact),
            archive_chosen=archive, archive=plans, alternatives=alternatives(main, impact.targets),
            phrase=phrase(main, impact),
        )

    # -- step 1 --------------------------------------------------------------------------------
    def challenge(self, sql: str, archive: bool = False) -> Confirmation:
        st = self.statement(sql)
        with self.db.read() as conn:
            findings, impact, plans = self._assess(conn, st, archive)
        if not findings or impact is None:
            return Confirmation(outcome="not_destructive", mode=self.settings.mode, report=Report(
                statement=st.sql, destructive=False,
                next_step="not destructive: run it with run_sql (writes need mode execute)"))
        if archive and not plans:
            raise InputError("archive=true, but this statement removes no table rows that can be archived",
                             "call again without archive; nothing was run")
        report = self._report(st, findings, impact, plans, archive)
        claims = {**self._claims(st, impact, plans, archive), "impact": impact.figures()}
        report.token, expires = challenge.issue(challenge.load_key(self.settings), claims)
        report.expires_at = datetime.fromtimestamp(expires, UTC)
        report.next_step = (
            "Show this report to the human. To proceed, call confirm_destructive again with the same sql"
            + (", archive=true" if archive else "") + ", this token, and the phrase typed by the human exactly."
            + ("" if self.settings.mode is AccessMode.EXECUTE else
               f" Execution needs mode execute; this server runs in {self.settings.mode.value}.")
        )
        self.audit.append("challenged", st, findings, impact)
        return Confirmation(outcome="challenge", mode=self.settings.mode, report=report)

    # -- step 2 --------------------------------------------------------------------------------
    def confirm(self, sql: str, token: str | None, given_phrase: str | None, archive: bool = False,
                max_rows: int = 200, execute: Callable[[], None] | None = None) -> Confirmation:
        """Step 2. ``execute``: run the confirmed work another way than as one statement (e.g. a batched
        backfill of this UPDATE); it is called once every check has passed and the impact, measured
        again, still matches the token. Without it the statement itself runs (:meth:`_execute`)."""
        st = self.statement(sql)
        with self.db.read() as conn:
            findings, impact, plans = self._assess(conn, st, archive)
        if not findings or impact is None:
            return Confirmation(outcome="not_destructive", mode=self.settings.mode, report=Report(
                statement=st.sql, destructive=False, next_step="not destructive: run it with run_sql"))
        report = self._report(st, findings, impact, plans, archive)

        def refuse(reason: str) -> Confirmation:
            logged = reason.split("; the human must type exactly:")[0].split("; it must be:")[0]
            self.audit.append("refused", st, findings, impact, reason=logged)
            return Confirmation(outcome="refused", mode=self.settings.mode, reasons=[reason], report=report)

        if self.settings.mode is not AccessMode.EXECUTE:
            return refuse(f"executing needs mode execute; this server runs in {self.settings.mode.value} "
                          "(restart with --mode execute); nothing was run")
        if not token:
            return refuse("no challenge token: call confirm_destructive with the sql alone first (step 1)")
        try:
            claims = challenge.verify(challenge.load_key(self.settings), token,
                                      self._claims(st, impact, plans, archive))
        except challenge.TokenInvalid as exc:
            return refuse(str(exc) + "; nothing was run")
        if self.used.was_used(claims["nonce"]):
            return refuse("the token was already used: each challenge token is good for one attempt; ask for a new "
                          "challenge")
        expected = report.phrase or ""
        source = "argument"
        if self.elicit is not None:
            source = "human (elicitation)"
            answer = self.elicit(_elicit_message(report), PhraseAnswer)
            given_phrase = answer.phrase if isinstance(answer, PhraseAnswer) else None
            if given_phrase is None:
                self.used.consume(claims["nonce"], claims["exp"])
                return refuse("the human declined or cancelled the confirmation; nothing was run")
        if not self.used.consume(claims["nonce"], claims["exp"]):
            return refuse("the token was already used (a concurrent attempt); ask for a new challenge")
        if impact.figures() != claims["impact"]:
            return refuse("the impact changed since the challenge: " + _changes(claims["impact"], impact.figures())
                          + "; ask for a new challenge and show the new figures to the human")
        if given_phrase is None or not given_phrase.strip():
            return refuse(f"no confirmation phrase given; the human must type exactly: {expected}")
        if given_phrase.strip() != expected:
            return refuse(f"the phrase does not match exactly (from {source}); it must be: {expected}")
        if execute is not None:
            return self._execute_by(execute, st, findings, claims, report)
        return self._execute(st, sql, findings, claims, plans if archive else [], report, max_rows)

    def run_with_elicitation(self, sql: str, archive: bool = False, max_rows: int = 200,
                             execute: Callable[[], None] | None = None) -> Confirmation:
        """Both steps in one call, the phrase asked of the human (only when :attr:`elicit` is set)."""
        first = self.challenge(sql, archive)
        if first.outcome != "challenge" or first.report is None:
            return first
        return self.confirm(sql, first.report.token, None, archive, max_rows, execute)

    # -- execution -----------------------------------------------------------------------------
    def _execute_by(self, execute: Callable[[], None], st: Statement, findings: list[Finding],
                    claims: dict[str, Any], report: Report) -> Confirmation:
        with self.db.read() as conn:
            impact = measure(conn, findings, bool(st.fields.get("missing_ok")))
        if impact.figures() != claims["impact"]:
            reason = (f"the impact changed since the challenge: {_changes(claims['impact'], impact.figures())}; "
                      "ask for a new challenge")
            self.audit.append("refused", st, findings, impact, reason=reason)
            return Confirmation(outcome="refused", mode=self.settings.mode, reasons=[reason], report=report)
        try:
            execute()
        except Exception as exc:
            code = getattr(exc, "sqlstate", None) or type(exc).__name__
            self.audit.append("failed", st, findings, impact, reason=f"error {code}")
            raise
        self.audit.append("executed", st, findings, impact)
        report.token = None
        return Confirmation(outcome="executed", executed=True, mode=self.settings.mode, report=report)

    def _execute(self, st: Statement, sql: str, findings: list[Finding], claims: dict[str, Any],
                 plans: list[archiving.ArchivePlan], report: Report, max_rows: int) -> Confirmation:
        missing_ok = bool(st.fields.get("missing_ok"))
        conn = self.db.connect()
        impact: Impact | None = None
        try:
            if st.node in NO_TRANSACTION or st.fields.get("concurrent"):
                impact = measure(conn, findings, missing_ok)
                if impact.figures() != claims["impact"]:
                    raise _Changed(_changes(claims["impact"], impact.figures()))
                result = run_write(conn, sql, st, max_rows, "committed (outside a transaction block)")
                archived: list[archiving.ArchiveResult] = []
            else:
                with conn.transaction():
                    for t in {t.name for t in (report.impact.targets if report.impact else [])
                              if t.kind in {"table", "column"} and t.exists}:
                        schema, _, name = t.partition(".")
                        conn.execute(pgsql.SQL("LOCK TABLE {} IN ACCESS EXCLUSIVE MODE").format(
                            pgsql.Identifier(schema, name)))
                    impact = measure(conn, findings, missing_ok)
                    if impact.figures() != claims["impact"]:
                        raise _Changed(_changes(claims["impact"], impact.figures()))
                    archived = archiving.run(conn, plans)
                    result = run_write(conn, sql, st, max_rows, "committed")
        except _Changed as exc:
            reason = f"the impact changed since the challenge: {exc}; ask for a new challenge"
            self.audit.append("refused", st, findings, impact, reason=reason)
            return Confirmation(outcome="refused", mode=self.settings.mode, reasons=[reason], report=report)
        except (psycopg.Error, archiving.ArchiveMismatch) as exc:
            code = getattr(exc, "sqlstate", None) or type(exc).__name__
            self.audit.append("failed", st, findings, impact, reason=f"error {code}; rolled back")
            raise
        finally:
            conn.close()
        self.audit.append("executed", st, findings, impact,
                          archived=[a.model_dump() for a in archived], rows_affected=result.row_count)
        report.token = None
        return Confirmation(outcome="executed", executed=True, mode=self.settings.mode, report=report,
                            archived=archived, result=result)


class _Changed(Exception):
    pass


def _archivable(findings: list[Finding], impact: Impact) -> list[tuple[Finding, Any]]:
    out = []
    for f in findings:
        if f.kind in archiving.ARCHIVABLE:
            out.extend((f, t) for t in impact.targets if t.kind in {"table", "column"} and t.exists)
    return out


def _changes(before: dict[str, Any], after: dict[str, Any]) -> str:
    parts = []
    old = {t["name"]: t for t in before.get("targets", [])}
    for t in after.get("targets", []):
        o = old.get(t["name"])
        if o is None:
            parts.append(f"{t['name']} is new")
            continue
        for key in ("rows", "cascade_rows", "exists"):
            if o.get(key) != t.get(key):
                parts.append(f"{t['name']} {key.replace('_', ' ')} {o.get(key)} → {t.get(key)}")
        if o.get("dependents") != t.get("dependents"):
            parts.append(f"{t['name']} dependents changed")
    return ", ".join(parts) or "the objects at stake changed"


def _elicit_message(report: Report) -> str:
    lines = ["agent19 is about to run a destructive statement:", "", report.statement, ""]
    for f in report.findings:
        lines.append(f"- {f.risk.value}: {f.reason}")
    for t in report.impact.targets if report.impact else []:
        rows = f", {t.rows_text} rows" if t.rows is not None else ""
        lines.append(f"- {t.kind} {t.name}{rows}, {len(t.dependents)} dependent objects")
    if report.archive_chosen:
        lines.append("- archive first: " + ", ".join(p.archive for p in report.archive))
    lines += ["", "To proceed, type exactly:", report.phrase or "", "", "Decline to cancel."]
    return "\n".join(lines)
