"""The confirmation protocol: nothing that can lose data runs without an impact report and the
exact phrase, typed by a human.

Step 1 (:meth:`Protocol.challenge`): what is destructive — found on the parse tree
(:mod:`~agent19.safety.detect`), because its kind is not on the allowlist of kinds that lose nothing
(:mod:`~agent19.safety.kinds`), or *measured* by running the write in a savepoint that is rolled
back (:mod:`~agent19.safety.measure`) — its impact from the live database (exact row counts), the
checklist, the archive option, alternatives, the phrase and a signed challenge token.

The phrase comes from a human, not the model:

* with MCP elicitation (or a terminal for the CLI) the human is asked directly;
* otherwise the human confirms out of band — ``agent19 confirm --token …`` at a terminal (a TTY is
  required) or the one-time loopback page ``agent19 serve`` offers (:mod:`~agent19.safety.page`) —
  and the model's retry with the token (no phrase) then runs;
* a phrase passed as a tool argument is refused, unless the operator set
  ``AGENT19_ALLOW_MODEL_CONFIRMATION=1`` / ``--allow-model-confirmation`` (for pipelines whose
  approver is another program). The audit log records which channel confirmed.

Step 2 (:meth:`Protocol.confirm`) runs only in execute mode, with a token that is this server's
(HMAC key), for this statement and database, unexpired and unused; the statement runs in one
transaction that locks the tables at stake (SHARE: writes wait, reads go on), counts them exactly
under that lock, refuses if anything changed since step 1, records the token's single use in the
target database (:mod:`~agent19.safety.ledger`), archives when asked, and runs the statement
(:mod:`~agent19.safety.execution`).
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any, Literal

from pydantic import BaseModel, Field

from agent19.config import AccessMode, Settings
from agent19.db.connection import Database
from agent19.errors import InputError
from agent19.migrate.parse import Statement
from agent19.safety import archive as archiving
from agent19.safety import challenge, ledger, page
from agent19.safety import measure as measuring
from agent19.safety.assess import Assessment, assess, from_measurement, measure_trial
from agent19.safety.audit import AuditLog
from agent19.safety.detect import Finding
from agent19.safety.gate import parse_input
from agent19.safety.impact import Impact, database_identity
from agent19.safety.kinds import MEASURED
from agent19.safety.report import Alternative, ChecklistItem, alternatives, checklist, phrase
from agent19.safety.run import QueryResult
from agent19.tool_names import at_cli, tool

QUALIFIED_SQL = True  # no SQL of its own: any it gets is read like the rest of the confirmation path's

Elicit = Callable[[str, type[BaseModel]], BaseModel | None]
Progress = Callable[[float, float | None, str | None], None]
IN_BAND = "argument (operator opt-in)"


class PhraseAnswer(BaseModel):
    phrase: str = Field(description="type the confirmation phrase exactly as shown")


class Report(BaseModel):
    statement: str
    destructive: bool
    findings: list[Finding] = []
    impact: Impact | None = None
    measured: bool = Field(default=False, description="true: the figures were measured by running the statement "
                           "in a savepoint that was rolled back")
    checklist: list[ChecklistItem] = []
    archive_chosen: bool = False
    archive: list[archiving.ArchivePlan] = Field(default=[], description="archive-before-drop (argument archive=true)")
    alternatives: list[Alternative] = []
    phrase: str | None = Field(default=None, description="the exact phrase the human must type")
    token: str | None = Field(default=None, description="the challenge token for step 2")
    expires_at: datetime | None = None
    confirm_url: str | None = Field(default=None, description="one-time loopback page where the human reads the "
                                    "impact and types the phrase (show it to the human)")
    confirm_command: str | None = Field(default=None, description="or: the command the human runs at a terminal")
    next_step: str = ""


class Confirmation(BaseModel):
    outcome: Literal["challenge", "not_destructive", "refused", "approved", "executed"]
    executed: bool = False
    reasons: list[str] = Field(default=[], description="why it was refused")
    mode: AccessMode
    channel: str | None = Field(default=None, description="who confirmed: elicitation, terminal, loopback page, "
                                "or argument (operator opt-in)")
    report: Report | None = None
    archived: list[archiving.ArchiveResult] = []
    result: QueryResult | None = None


class Protocol:
    def __init__(self, settings: Settings, db: Database, elicit: Elicit | None = None,
                 progress: Progress | None = None) -> None:
        self.settings, self.db, self.elicit, self.progress = settings, db, elicit, progress
        self.channel: str = getattr(elicit, "channel", "elicitation")
        self.audit = AuditLog(settings.data_dir)

    def statement(self, sql: str) -> Statement:
        statements = parse_input(sql)
        if len(statements) != 1:
            raise InputError(f"{len(statements)} statements given; the confirmation protocol takes one statement "
                             "at a time", "confirm each destructive statement on its own; nothing was run")
        return statements[0]

    def _report(self, a: Assessment) -> Report:
        assert a.impact is not None
        main = max(a.findings, key=lambda f: ["medium", "high", "critical"].index(f.risk.value))
        return Report(
            statement=a.st.sql, destructive=True, findings=a.findings, impact=a.impact,
            measured=a.measured is not None, checklist=checklist(main, a.impact), archive_chosen=a.archive,
            archive=a.plans, alternatives=alternatives(main, a.impact.targets), phrase=phrase(main, a.impact),
        )

    def _not_destructive(self, st: Statement, note: str = "") -> Confirmation:
        return Confirmation(outcome="not_destructive", mode=self.settings.mode, report=Report(
            statement=st.sql, destructive=False,
            next_step=note or f"not destructive: run it with {tool('run_sql')} (writes need mode execute)"))

    # -- step 1 --------------------------------------------------------------------------------
    def challenge(self, sql: str, archive: bool = False, trial: bool = True,
                  measure: Callable[[], measuring.Measurement] | None = None) -> Confirmation:
        """Step 1. ``trial``: measure a write the statement itself does not show as destructive by
        running it in a rolled-back transaction (off for work that must never run as one statement,
        such as a batched backfill, which passes ``measure``: its own exact count of what it would
        overwrite, judged by the same thresholds)."""
        st = self.statement(sql)
        with self.db.read() as conn:
            a = assess(conn, st, archive, self.progress)
        if not a.findings and measure is not None:
            m = measure()
            if reasons := measuring.verdict(m, self.settings):
                return self.challenge_measured(st, m, reasons)
        if not a.findings and trial and st.node in MEASURED:
            if not self.settings.mode.allows(AccessMode.DRY_RUN):
                return self._not_destructive(st, "nothing destructive is visible in the statement itself; in execute "
                                             "mode agent19 also measures the rows it touches before keeping it")
            m, reasons = measure_trial(self.db, st, self.settings)
            if reasons:
                return self.challenge_measured(st, m, reasons)
        if not a.findings:
            return self._not_destructive(st)
        if archive and not a.plans:
            raise InputError("archive=true, but this statement removes no table rows that can be archived",
                             "call again without archive; nothing was run")
        return self._issue(a)

    def challenge_measured(self, st: Statement, m: measuring.Measurement, reasons: list[tuple[str | None, str]]
                           ) -> Confirmation:
        """Step 1 for a write whose measured effect is over the thresholds (already rolled back)."""
        with self.db.read() as conn:
            identity = database_identity(conn)
            a = from_measurement(conn, st, m, reasons, identity)
        return self._issue(a)

    def _issue(self, a: Assessment) -> Confirmation:
        assert a.impact is not None
        report = self._report(a)
        claims = {**a.claims(), "impact": a.impact.figures(), "text": a.st.sql}
        report.token, expires = challenge.issue(challenge.load_key(self.settings), claims)
        report.expires_at = datetime.fromtimestamp(expires, UTC)
        self._instruct(report, a.archive)
        self.audit.append("challenged", a.st, a.findings, a.impact)
        return Confirmation(outcome="challenge", mode=self.settings.mode, report=report)

    def _instruct(self, report: Report, archive: bool) -> None:
        again = (f"call {tool('confirm_destructive')} again with the same sql" + (", archive=true" if archive else "")
                 + " and this token")
        if self.elicit is not None:
            report.next_step = f"To proceed, {again}: the human is asked for the phrase directly."
        elif at_cli():  # the reader is the person who confirms: no model, no server
            report.confirm_command = f"agent19 confirm --token {report.token} --mode execute"
            report.next_step = (f"To proceed, run `{report.confirm_command}` with the same database and settings (it "
                                "shows the impact again and asks for the phrase), then `agent19 confirm` with the same "
                                f"statement, --mode execute and --token {report.token} runs it once.")
        else:
            report.confirm_command = f"agent19 confirm --token {report.token} --mode execute"
            report.confirm_url = page.offer(report.token or "", report.expires_at)
            where = (f"open {report.confirm_url} (a one-time page on this machine) or run confirm_command at a "
                     "terminal" if report.confirm_url else "run confirm_command at a terminal")
            report.next_step = (
                f"Show this report to the human. The human confirms out of band: {where} (same database and "
                f"settings as this server), reading the impact and typing the phrase there. Then {again} "
                "(no phrase). Never type the phrase yourself"
                + (": a phrase passed as an argument is refused." if not self.settings.allow_model_confirmation
                   else "; this server also accepts the phrase as an argument (operator opt-in).")
            )
        if self.settings.mode is not AccessMode.EXECUTE:
            report.next_step += f" Execution needs mode execute; this server runs in {self.settings.mode.value}."

    # -- out-of-band approval ---------------------------------------------------------------------
    def review(self, token: str) -> tuple[dict[str, Any], Assessment, Report]:
        """What a token is for, checked against the live database (for the terminal and the page)."""
        claims = challenge.peek(challenge.load_key(self.settings), token)
        st = self.statement(str(claims.get("text", "")))
        if challenge.normalized_hash(st) != claims.get("sql"):
            raise challenge.TokenInvalid("the token's statement does not match its signature")
        a = self._assess_for(st, claims)
        if a.impact is None or not a.findings:
            raise challenge.TokenInvalid("the statement is no longer destructive as challenged; ask for a new "
                                         "challenge")
        if a.claims()["db"] != claims.get("db"):
            raise challenge.TokenInvalid("the token was issued for another database")
        if a.measured is None and a.impact.figures() != claims.get("impact"):
            raise challenge.TokenInvalid("the impact changed since the challenge: "
                                         + changes(claims["impact"], a.impact.figures()) + "; ask for a new challenge")
        report = self._report(a)
        report.token, report.expires_at = token, datetime.fromtimestamp(claims["exp"], UTC)
        return claims, a, report

    def approve(self, token: str, given_phrase: str | None, channel: str) -> Confirmation:
        """A human confirms ``token`` out of band (``given_phrase`` None: ask through :attr:`elicit`)."""
        self.db.require(AccessMode.EXECUTE, "confirming a destructive statement")
        try:
            claims, a, report = self.review(token)
        except challenge.TokenInvalid as exc:
            hint = (" (confirm with the same AGENT19_CONFIRM_KEY or --data-dir as the server that issued it)"
                    if "signature" in str(exc) else "")
            return Confirmation(outcome="refused", mode=self.settings.mode,
                                reasons=[f"{exc}{hint}; nothing was approved"])

        def refuse(reason: str) -> Confirmation:
            self.audit.append("refused", a.st, a.findings, a.impact, reason=reason, channel=channel)
            return Confirmation(outcome="refused", mode=self.settings.mode, reasons=[reason], report=report)

        with self.db.read() as conn:
            row = ledger.status(conn, claims["nonce"])
        if row is not None and row["used_at"] is not None:
            return refuse("the token was already used; ask for a new challenge")
        if given_phrase is None:
            if self.elicit is None:
                raise InputError("confirming a token needs a person at a terminal (a TTY)",
                                 "run `agent19 confirm --token ...` in a terminal, or open the confirmation page")
            answer = self.elicit(elicit_message(report), PhraseAnswer)
            given_phrase = answer.phrase if isinstance(answer, PhraseAnswer) else None
            if given_phrase is None:
                return refuse("the human declined; nothing was approved")
        if given_phrase.strip() != (report.phrase or ""):
            return refuse("the phrase does not match exactly; nothing was approved")
        conn = self.db.connect()
        try:
            ledger.approve(conn, claims["nonce"], claims["exp"], channel, challenge.load_key(self.settings))
        except ledger.AlreadyUsed:
            return refuse("the token was already used; ask for a new challenge")
        finally:
            conn.close()
        self.audit.append("approved", a.st, a.findings, a.impact, channel=channel)
        if not at_cli():
            report.next_step = ("Approved. The model can now call confirm_destructive with the same sql and this "
                                "token (no phrase) to run it.")
        else:  # approved at a terminal: the statement runs from here too, or from the model that asked
            report.next_step = (f"Approved. Run it with the same statement and this token (no phrase): agent19 confirm "
                                f"'...' --token {token} --mode execute - or, if a model asked for it, it now calls "
                                "confirm_destructive with the same sql and this token.")
        return Confirmation(outcome="approved", mode=self.settings.mode, channel=channel, report=report)

    # -- step 2 --------------------------------------------------------------------------------
    def _assess_for(self, st: Statement, claims: dict[str, Any] | None, archive: bool = False) -> Assessment:
        with self.db.read() as conn:
            a = assess(conn, st, archive, self.progress)
            if not a.findings and claims and claims.get("measured"):
                m = measuring.Measurement.model_validate(claims["measured"])
                a = from_measurement(conn, st, m, measuring.verdict(m, self.settings), database_identity(conn))
        return a

    def confirm(self, sql: str, token: str | None, given_phrase: str | None, archive: bool = False,
                max_rows: int = 200, execute: Callable[[], None] | None = None) -> Confirmation:
        """Step 2. ``execute``: run the confirmed work another way than as one statement (e.g. a batched
        backfill of this UPDATE); it is called once every check has passed. Without it the statement
        itself runs (:mod:`agent19.safety.execution`)."""
        from agent19.safety import execution

        st = self.statement(sql)
        claims: dict[str, Any] | None = None
        try:
            if token:
                claims = challenge.peek(challenge.load_key(self.settings), token)
        except challenge.TokenInvalid:
            claims = None
        a = self._assess_for(st, claims, archive)
        if not a.findings or a.impact is None:
            return self._not_destructive(st, f"not destructive: run it with {tool('run_sql')}")
        report = self._report(a)

        def refuse(reason: str, burn: bool = False, logged: str | None = None) -> Confirmation:
            if burn and claims is not None:
                self._burn(claims, reason)
            # the audit log never holds the phrase or the token
            self.audit.append("refused", st, a.findings, a.impact, reason=logged or reason.split("; it must be:")[0])
            return Confirmation(outcome="refused", mode=self.settings.mode, reasons=[reason], report=report)

        if self.settings.mode is not AccessMode.EXECUTE:
            return refuse(f"executing needs mode execute; this server runs in {self.settings.mode.value} "
                          "(restart with --mode execute); nothing was run")
        if not token:
            return refuse(f"no challenge token: call {tool('confirm_destructive')} with the sql alone first (step 1)")
        try:
            claims = challenge.verify(challenge.load_key(self.settings), token, a.claims())
        except challenge.TokenInvalid as exc:
            return refuse(str(exc) + "; nothing was run")
        if a.measured is None and a.impact.figures() != claims["impact"]:
            return refuse("the impact changed since the challenge: " + changes(claims["impact"], a.impact.figures())
                          + "; ask for a new challenge and show the new figures to the human")
        with self.db.read() as conn:
            row = ledger.status(conn, claims["nonce"])
        if row is not None and row["used_at"] is not None:
            return refuse("the token was already used: each challenge token is good for one attempt; ask for a new "
                          "challenge")
        expected = report.phrase or ""
        channel: str | None = None
        if row is not None and ledger.approved_channel(challenge.load_key(self.settings), claims["nonce"],
                                                       row["approved_by"]):
            channel = None  # a human approved it out of band: the ledger says who (sealed; SQL cannot forge it)
        elif self.elicit is not None:
            answer = self.elicit(elicit_message(report), PhraseAnswer)
            said = answer.phrase if isinstance(answer, PhraseAnswer) else None
            if said is None:
                return refuse("the human declined or cancelled the confirmation; nothing was run", burn=True)
            if said.strip() != expected:
                return refuse(f"the phrase does not match exactly (from {self.channel}); nothing was run", burn=True)
            channel = self.channel
        elif given_phrase is not None and given_phrase.strip():
            if not self.settings.allow_model_confirmation:
                return refuse("a confirmation phrase passed as a tool argument is not accepted: the human confirms "
                              f"out of band - {self._where(report, token)} - then call again with the token and no "
                              "phrase (operators whose approver is a program can set "
                              "AGENT19_ALLOW_MODEL_CONFIRMATION=1); nothing was run",
                              logged="a confirmation phrase passed as a tool argument is not accepted (no operator "
                              "opt-in); nothing was run")
            if given_phrase.strip() != expected:
                return refuse(f"the phrase does not match exactly (from an argument); it must be: {expected}",
                              burn=True)
            channel = IN_BAND
        else:
            return refuse(f"not confirmed by a human yet: {self._where(report, token)}; then call again with the "
                          "same sql and token; nothing was run",
                          logged="not confirmed by a human yet; nothing was run")
        return execution.run(self, a, report, claims, channel, max_rows, execute)

    def _where(self, report: Report, token: str) -> str:
        url = page.offer(token, report.expires_at)
        command = f"`agent19 confirm --token {token} --mode execute` at a terminal"
        return f"open {url} or run {command}" if url else f"run {command}"

    def _burn(self, claims: dict[str, Any], reason: str) -> None:
        conn = self.db.connect()
        try:
            ledger.burn(conn, claims["nonce"], claims["exp"], reason)
        finally:
            conn.close()

    def run_with_elicitation(self, sql: str, archive: bool = False, max_rows: int = 200,
                             execute: Callable[[], None] | None = None,
                             measure: Callable[[], measuring.Measurement] | None = None) -> Confirmation:
        """Both steps in one call, the phrase asked of the human (only when :attr:`elicit` is set)."""
        first = self.challenge(sql, archive, trial=execute is None, measure=measure)
        if first.outcome != "challenge" or first.report is None:
            return first
        return self.confirm(sql, first.report.token, None, archive, max_rows, execute)


def changes(before: dict[str, Any], after: dict[str, Any]) -> str:
    parts = []
    old = {t["name"]: t for t in before.get("targets", [])}
    for t in after.get("targets", []):
        o = old.get(t["name"])
        if o is None:
            parts.append(f"{t['name']} is new")
            continue
        for key in ("rows", "touched", "cascade_rows", "exists"):
            if o.get(key) != t.get(key):
                parts.append(f"{t['name']} {key.replace('_', ' ')} {o.get(key)} -> {t.get(key)}")
        if o.get("dependents") != t.get("dependents"):
            parts.append(f"{t['name']} dependents changed")
    return ", ".join(parts) or "the objects at stake changed"


def elicit_message(report: Report) -> str:
    lines = ["agent19 is about to run a destructive statement:", "", report.statement, ""]
    for f in report.findings:
        lines.append(f"- {f.risk.value}: {f.reason}")
    for t in report.impact.targets if report.impact else []:
        rows = f", {t.rows_text} rows" if t.rows is not None else ""
        touched = f", {t.rows_touched} of them touched (measured)" if t.rows_touched is not None else ""
        lines.append(f"- {t.kind} {t.name}{rows}{touched}, {len(t.dependents)} dependent objects")
        lines += [f"- {note}" for note in t.hidden_notes]
    if report.archive_chosen:
        lines.append("- archive first: " + ", ".join(p.archive for p in report.archive))
    lines += ["", "To proceed, type exactly:", report.phrase or "", "", "Decline to cancel."]
    return "\n".join(lines)
