"""What a plan diagnostic is and reads: the :class:`Diagnostic` record, the :class:`Context` every check gets,
and the helpers that make a finding and word its advice.

Every :class:`Diagnostic` names the node (``[#id]`` in the rendered plan), the numbers that prove
it and the threshold they crossed. A node's exclusive time > 10 % / 40 % / 90 % of the total raises
a finding's severity (:meth:`Context.time_severity`).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Literal

from pydantic import BaseModel, Field

from agent19.optimize.explain import RelationFacts
from agent19.optimize.plan import Plan, PlanNode

Severity = Literal["low", "medium", "high"]
_RANK = {"low": 0, "medium": 1, "high": 2}


class Diagnostic(BaseModel):
    code: str
    title: str
    severity: Severity
    node_id: int | None = Field(default=None, description="the node's [#id] in the plan text")
    node: str | None = Field(default=None, description="the node, e.g. 'Seq Scan on orders'")
    evidence: dict[str, float | int | str | None]
    threshold: str = Field(description="the threshold the evidence crossed")
    advice: str
    saving_ms: float | None = Field(default=None, description="time it could save at most (EXPLAIN ANALYZE only; an "
                                    "upper bound, never more than the query's execution time)")


@dataclass
class Context:
    plan: Plan
    relations: dict[str, RelationFacts]
    offset: int | None
    parents: dict[int, PlanNode]

    @property
    def total_ms(self) -> float | None:
        return self.plan.execution_ms

    def time_severity(self, node: PlanNode) -> Severity | None:
        total = self.total_ms
        if not total or node.exclusive_time_ms is None:
            return None
        share = node.exclusive_time_ms / total
        return "high" if share > 0.9 else "medium" if share > 0.4 else "low" if share > 0.1 else None

    def facts(self, node: PlanNode) -> RelationFacts | None:
        return self.relations.get(node.relation) if node.relation else None


def _max(*levels: Severity | None) -> Severity:
    return max((lv for lv in levels if lv), key=_RANK.__getitem__, default="low")


def _diag(ctx: Context, node: PlanNode | None, code: str, title: str, base: Severity, **kw: object) -> Diagnostic:
    severity = _max(base, ctx.time_severity(node)) if node is not None else base
    return Diagnostic(
        code=code, title=title, severity=severity, node_id=node.id if node else None,
        node=node.label if node else None, **kw,  # type: ignore[arg-type]
    )


def _mem(kb: float) -> str:
    """A work_mem value to try: the next power of two in MB above ``kb``."""
    mb = max(1, 2 ** math.ceil(math.log2(max(kb, 1) / 1024))) if kb > 1024 else 1
    return f"{mb}MB" if mb < 1024 else f"{mb // 1024}GB"


def _pct(x: float) -> str:
    return f"{x:.0%}" if x >= 0.01 or x == 0 else f"{x * 100:.2g}%"
