"""The dry run's findings once everything ran: per statement (failed, not tested, not run, compared with the
prediction), per validation check, and what the target was left with (:mod:`agent19.migrate.dryrun.lasting`,
the catalog and cluster diffs)."""

from __future__ import annotations

from agent19.migrate.dryrun.compare import compare
from agent19.migrate.dryrun.model import CheckResult, Finding, StatementResult
from agent19.migrate.dryrun.schema_diff import Difference, errors_only
from agent19.migrate.model import Operation
from agent19.migrate.parse import Statement


def statement_findings(results: list[StatementResult], preds: dict[int, list[Operation]], existing: set[str],
                       statements: list[Statement], allowed: dict[int, str]) -> list[Finding]:
    """Each statement's: compared with the prediction, failed, not tested, not run; and the note of each that
    ran code agent19 cannot read because the operator allowed it (``allowed``, added to its note too)."""
    findings: list[Finding] = []
    for res in results:
        findings += compare(res, preds.get(res.index, []), existing, statements[res.index].node)
        if res.error:
            failed = f"statement {res.index + 1} failed: {res.error.message}"
            findings.append(Finding(kind="statement_error", severity="error", statement=res.index, file=res.file,
                                    line=res.error.line, message=failed
                                    + (f" ({res.error.sqlstate})" if res.error.sqlstate else "")))
        elif res.untested:
            findings.append(Finding(kind="not_tested", severity="warning", statement=res.index, file=res.file,
                                    line=res.line, message=f"could not test: {res.untested}"))
        elif res.ran_in == "skipped" and res.note and res.note.startswith("not run: statement "):
            findings.append(Finding(kind="skipped", severity="info", statement=res.index, file=res.file,
                                    line=res.line, message=res.note))
        elif res.ran_in == "skipped" and res.note and "whole server" in res.note:
            findings.append(Finding(kind="skipped", severity="warning", statement=res.index, file=res.file,
                                    line=res.line, message=f"not run: {res.note}"))
        if ran := allowed.get(res.index):  # it ran (never blocked) because --allow-unreadable-code is set
            res.note = f"{res.note}; {ran}" if res.note else ran
            findings.append(Finding(kind="unreadable_code_ran", severity="info", statement=res.index, file=res.file,
                                    line=res.line, message=ran))
    return findings


def stopped(results: list[StatementResult]) -> bool:
    """The transactional part stopped at a statement that failed: statements after it were not run."""
    return any(r.ran_in == "skipped" and (r.note or "").startswith("not run: statement ") for r in results)


def check_findings(check_results: list[CheckResult], results: list[StatementResult]) -> list[Finding]:
    """The validation checks that failed; 'after' checks that fail because a statement failed count once."""
    findings: list[Finding] = []
    statement_failed = any(r.error or r.untested for r in results)
    following: list[CheckResult] = []
    for c in check_results:
        if not c.passed and statement_failed and c.phase == "after":
            following.append(c)
        elif not c.passed:
            findings.append(Finding(kind="check_failed", severity="error" if c.blocking else "warning",
                                    message=f"check '{c.name}' ({c.phase}) returned {c.value!r}, expected "
                                    f"{c.expected}" + (f": {c.error}" if c.error else "")))
    if following:
        findings.append(Finding(kind="check_failed", severity="info", message=(
            f"{len(following)} 'after' check(s) failed, which follows from the statement(s) above that failed or "
            "could not be tested: "
            + ", ".join(f"'{c.name}'" for c in following[:5]) + (" ..." if len(following) > 5 else ""))))
    return findings


def target_findings(differences: list[Difference], unmeasured: str | None) -> list[Finding]:
    """What the target was left with: a difference that is an error (the catalog, the cluster, a sequence used up,
    planner statistics off) fails the dry run; an effect measured (``warning``: a sequence advanced, a table or
    index grown) is said, with its numbers."""
    findings: list[Finding] = []
    if changed := errors_only(differences):
        findings.append(Finding(kind="target_changed", severity="error",
                                message="the target's catalog or the cluster changed: " + "; ".join(map(str, changed))))
    if left := [d for d in differences if d.severity == "warning"]:
        findings.append(Finding(kind="target_changed", severity="warning", message=(
            "left on the target (a rollback does not undo it): " + "; ".join(map(str, left)))))
    if unmeasured:
        findings.append(Finding(kind="skipped", severity="info", message=unmeasured))
    return findings
