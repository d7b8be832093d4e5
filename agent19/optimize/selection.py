"""Greedy choice of indexes for a workload: the candidate that lowers the (weighted) cost most is kept, the rest
are re-measured with it in place, until nothing lowers the cost by ``min_gain`` or the storage budget is spent."""

from __future__ import annotations

from pydantic import BaseModel

from agent19.db.connection import Connection
from agent19.optimize.candidates import Candidate
from agent19.optimize.index_costs import REAL_BUILD_TIMEOUT_MS, BuildFailed, Evaluator

MIN_GAIN = 0.10
TIE = 0.02
"""Gains closer than this share of the current cost are a tie, which the smaller index wins."""
MIN_COST_GAIN = 1.0
"""The least (weighted) planner cost an index must remove: about one page read."""


class CandidateResult(BaseModel):
    definition: str
    reason: str
    cost: float | None = None
    used: bool = False
    verdict: str


def choose(
    conn: Connection, queries: list[tuple[str, float, list[str | None] | None]], cands: list[Candidate], *,
    budget_bytes: int | None = None, min_gain: float = MIN_GAIN, max_indexes: int | None = None, real: bool = False,
    build_timeout_ms: int = REAL_BUILD_TIMEOUT_MS,
) -> tuple[list[float], list[float], list[tuple[Candidate, float, float, int]], list[CandidateResult]]:
    """Greedy selection: (costs before, costs after, [(candidate, total before, total after, size)], log)."""
    ev = Evaluator(conn, queries, real=real, build_timeout_ms=build_timeout_ms)
    weights = [w for _, w, _ in queries]

    def total(costs: list[float]) -> float:
        return sum(c * w for c, w in zip(costs, weights, strict=True))

    base, _, _ = ev.costs([])
    failed: set[Candidate] = set()
    current, log = list(base), {}
    chosen: list[tuple[Candidate, float, float, int]] = []
    spent = 0
    remaining = [c for c in cands if c.method in {"btree", "hash", "brin"}]
    while remaining and (max_indexes is None or len(chosen) < max_indexes):
        best: tuple[float, Candidate, list[float], int] | None = None
        for cand in remaining:
            # a candidate that extends a chosen index (same leading keys) replaces it rather than adding to it
            try:
                costs, used, sizes = ev.costs([c for c, *_ in chosen if not _extends(cand, c)] + [cand])
            except BuildFailed as exc:
                log[cand] = CandidateResult(definition=cand.definition(), reason=cand.reason,
                                            verdict=f"could not be built to verify it: {exc}")
                failed.add(cand)
                continue
            size = sizes.get(cand, 0)
            gain = total(current) - total(costs)
            is_used = cand.definition() in used
            verdict = "used" if is_used else "not used by the planner"
            if cand not in log:  # the first round measures each candidate alone
                log[cand] = CandidateResult(definition=cand.definition(), reason=cand.reason, cost=total(costs),
                                            used=is_used, verdict=verdict)
            if not is_used or (budget_bytes is not None and spent + size > budget_bytes):
                if is_used and budget_bytes is not None and spent + size > budget_bytes:
                    log[cand].verdict = "over the storage budget"
                continue
            # within TIE of the cost the best removes, the smaller index wins (less storage, cheaper writes): a
            # 16 kB partial index that removes 98.9 % of a query's cost beats a 23 MB covering one that removes 99.9 %
            tie = best is not None and abs(gain - best[0]) <= TIE * total(current)
            if best is None or (gain > best[0] and not tie) or (tie and size < best[3]):
                best = (gain, cand, costs, size)
        # each index must remove min_gain of the cost before any (the workload's, as `min_gain` is documented), and
        # more than a page read's worth: an index is paid for on every write and in storage
        if best is None or best[0] < min_gain * total(base) or best[0] < MIN_COST_GAIN:
            break
        gain, cand, costs, size = best
        replaced = [entry for entry in chosen if _extends(cand, entry[0])]
        for entry in replaced:
            log[entry[0]].verdict = f"superseded by {cand.definition()}"
            spent -= entry[3]
        before = replaced[0][1] if replaced else total(current)
        chosen = [entry for entry in chosen if entry not in replaced]
        chosen.append((cand, before, total(costs), size))
        log[cand].verdict = "recommended"
        current = costs
        spent += size
        remaining = [c for c in remaining if c != cand and c not in failed]
    for cand, entry in log.items():
        if entry.verdict == "used" and cand not in [c for c, *_ in chosen]:
            entry.verdict = f"lowers the cost by less than {min_gain:.0%} (or less than the chosen ones)"
    return base, current, chosen, list(log.values())


def _extends(new: Candidate, old: Candidate) -> bool:
    return (new != old and new.table == old.table and new.where == old.where
            and new.columns[: len(old.columns)] == old.columns)
