"""What a dry run concludes from its observations: each statement's locks against the prediction (a lock
hidden by one an earlier statement holds is "not observed", never compared), the findings, the longest
lock and the one-line summary."""

from __future__ import annotations

from agent19.db.locks import LOCK_RANK
from agent19.migrate.dryrun.model import (
    PREDICTION_TABLE,
    Finding,
    LockComparison,
    LongestLock,
    PriorLock,
    StatementResult,
)
from agent19.migrate.model import Operation

DROPS_BY_ITS_TEXT = {"DropStmt", "DropOwnedStmt", "RenameStmt", "AlterObjectSchemaStmt", "AlterTableStmt",
                     "ReindexStmt"}
"""Statement kinds whose own text drops or renames relations (a DROP, ALTER TABLE … DROP COLUMN taking an index
with it, REINDEX CONCURRENTLY swapping indexes): what they drop is said where they are written."""


def predicted_locks(ops: list[Operation]) -> dict[str, str]:
    locks: dict[str, str] = {}
    for op in ops:
        for rel, mode in op.locks.items():
            if rel not in locks or LOCK_RANK.get(mode, -1) > LOCK_RANK.get(locks[rel], -1):
                locks[rel] = mode
    return locks


def rank(mode: str | None) -> int:
    return LOCK_RANK.get(mode, -1) if mode else -1


def _since(index: int) -> str:
    return f"statement {index + 1}" if index >= 0 else "the 'before' checks"


def hidden_locks(res: StatementResult) -> dict[str, list[PriorLock]]:
    """Per relation, the modes held before this statement that outrank what it was seen to take: whether
    it took them too is not visible in pg_locks, so its strongest mode there is unknown."""
    new: dict[str, str] = {}
    for lk in res.locks:
        if rank(lk.mode) > rank(new.get(lk.relation)):
            new[lk.relation] = lk.mode
    out: dict[str, list[PriorLock]] = {}
    for prior in res.held_before:
        if rank(prior.mode) > rank(new.get(prior.relation)):
            out.setdefault(prior.relation, []).append(prior)
    return out


def compare(res: StatementResult, ops: list[Operation], existing: set[str], node: str = "") -> list[Finding]:
    """Fill the prediction-vs-observation fields; a disagreement is a finding on the prediction table; what
    it dropped or renamed out of sight (``node``: its parse-tree kind) is a finding too (:func:`out_of_sight`).

    A relation whose strongest mode is hidden by a lock an earlier statement holds is "not observed",
    never compared: only a mode seen to be stronger than the prediction is a certain disagreement."""
    predicted = predicted_locks(ops)
    # untested, or failed (what a failed statement held is not what it takes when it succeeds: its error is the
    # finding): its predictions are shown, never compared
    why = f"could not test: {res.untested}" if res.untested else "not compared: the statement failed" \
        if res.error is not None else None
    if why is not None:
        res.lock_comparison = [LockComparison(relation=rel, predicted=mode, observed=None, agrees=None,
                                              not_observed=why) for rel, mode in sorted(predicted.items())]
        return []
    observed: dict[str, str] = {}
    for lk in res.locks:
        rel = lk.relation.removesuffix(" (dropped)")  # the statement dropped it: compared under its name
        if rel in existing and rank(lk.mode) > rank(observed.get(rel)):
            observed[rel] = lk.mode
    hidden = hidden_locks(res)
    res.lock_comparison = []
    for rel in sorted(set(predicted) | set(observed) | set(hidden)):
        if not (rel in existing or rel in observed or rel in hidden):
            continue
        pred, seen = predicted.get(rel), observed.get(rel)
        if rel in hidden:
            priors = sorted(hidden[rel], key=lambda p: -rank(p.mode))
            why = ", ".join(f"{p.mode} already held since {_since(p.since)}" for p in priors) + "; not re-observed"
            stronger = seen is not None and rank(seen) > rank(pred)
            res.lock_comparison.append(LockComparison(
                relation=rel, predicted=pred, observed=seen if stronger else None,
                agrees=False if stronger else None, not_observed=why))
        else:
            res.lock_comparison.append(LockComparison(relation=rel, predicted=pred, observed=seen, agrees=pred == seen))
    res.predicted_rewrite = any(op.rewrite for op in ops) if ops else None
    res.observed_rewrite = bool(set(res.rewritten) & existing)
    if res.error is not None or res.ran_in == "skipped":
        return []
    where = f"{PREDICTION_TABLE} (kind {res.kind or 'unclassified'})"
    findings = [
        Finding(kind="lock_mismatch", severity="warning", statement=res.index, file=res.file, line=res.line,
                message=f"{c.relation}: predicted {c.predicted or 'no lock'}, the server took "
                f"{c.observed or 'no lock'} - the prediction in {where} disagrees with the server")
        for c in res.lock_comparison if c.agrees is False
    ]
    if res.ran_in != "scratch" and (unseen := [c for c in res.lock_comparison if c.not_observed]):
        findings.append(Finding(
            kind="not_observed", severity="info", statement=res.index, file=res.file, line=res.line,
            message="lock not fully observed: " + "; ".join(f"{c.relation}: {c.not_observed}" for c in unseen)
            + " (a re-observation needs a scratch database: CREATEDB)"))
    if res.predicted_rewrite is not None and res.predicted_rewrite != res.observed_rewrite:
        findings.append(Finding(
            kind="rewrite_mismatch", severity="warning", statement=res.index, file=res.file, line=res.line,
            message=f"predicted {'a rewrite' if res.predicted_rewrite else 'no rewrite'}, the server "
            f"{'rewrote ' + ', '.join(sorted(set(res.rewritten) & existing)) if res.observed_rewrite else 'did not'}"
            f" - the prediction in {where} disagrees with the server"))
    return findings + out_of_sight(res, node)


def out_of_sight(res: StatementResult, node: str) -> list[Finding]:
    """A warning per relation a statement dropped or renamed though its own text does not (a function it calls,
    a trigger it fires, a DO block): the lock lines show only an unexplained AccessExclusiveLock."""
    if node in DROPS_BY_ITS_TEXT or res.error is not None:
        return []
    return [Finding(kind="dropped_out_of_sight", severity="warning", statement=res.index, file=res.file,
                    line=res.line, message=f"statement {res.index + 1} {what} through a function, trigger or DO "
                    "block: its own text does not say so")
            for what in [f"dropped {d}" for d in res.dropped] + [f"renamed {r}" for r in res.renamed]]


def longest_lock(results: list[StatementResult]) -> LongestLock | None:
    best: LongestLock | None = None
    for r in results:
        strongest = r.strongest
        held = r.locks_held_ms if r.locks_held_ms is not None else r.duration_ms
        if strongest and held is not None and (best is None or held > best.duration_ms):
            best = LongestLock(mode=strongest[0], relation=strongest[1], duration_ms=held,
                               statement=r.index, line=r.line, file=r.file)
    return best


def _first_failure(results: list[StatementResult]) -> str:
    """`` at statement 71 (sql:71, `ALTER TABLE …`): <error>`` — first in the summary, which a shortened result keeps
    (its statements and text are cut from the end, where a long migration's failing statement is)."""
    failed = [r for r in results if r.error is not None]
    if not failed:
        return ""
    first = failed[0]
    assert first.error is not None
    sql = " ".join(first.sql.split())
    sql = sql if len(sql) <= 60 else sql[:59] + "..."
    message = first.error.message.strip().splitlines()[0] if first.error.message.strip() else "error"
    more = f" (and {len(failed) - 1} more failing statement(s))" if len(failed) > 1 else ""
    return (f" at statement {first.index + 1} ({first.file or 'sql'}:{first.line}, `{sql}`): "
            f"{message[:160]}{more}")


def summary_text(passed: bool, results: list[StatementResult], findings: list[Finding], longest: LongestLock | None,
             total_ms: float) -> str:
    errors = sum(f.severity == "error" for f in findings)
    mismatches = sum(f.kind in ("lock_mismatch", "rewrite_mismatch") for f in findings)
    untested = [r for r in results if r.untested]
    verdict = "FAILED" if not passed else "COULD NOT TEST" if untested else "PASSED"
    text = (f"{verdict}{_first_failure(results)}: {len(results)} statements in {total_ms / 1000:.2f} s; "
            f"{errors} error(s), {mismatches} prediction mismatch(es)")
    if untested:
        text += (f"; could not test {len(untested)} statement(s) "
                 f"({', '.join(str(r.index + 1) for r in untested[:10])}): {untested[0].untested}")
    # a failed statement's locks are not compared (its error is the finding), an untested one's are said above:
    # what is left is hidden by a lock an earlier statement holds
    unseen = [r for r in results if not r.untested and r.error is None and not r.locks_complete]
    if unseen:
        text += (f"; locks of {len(unseen)} statement(s) not fully observed "
                 f"({', '.join(str(r.index + 1) for r in unseen[:10])}): already held since an earlier statement")
    if longest:
        text += (f"; longest lock: {longest.mode} on {longest.relation} held {longest.duration_ms:.0f} ms "
                 f"(taken by statement {longest.statement + 1}, line {longest.line})")
    return text
