"""A typed tree over PostgreSQL's ``EXPLAIN (FORMAT JSON)`` output.

The JSON keys are PostgreSQL's own (``"Node Type"``, ``"Actual Rows"`` …); :func:`parse_plan`
maps them onto :class:`PlanNode` fields. Per-loop figures stay per loop, as PostgreSQL reports
them; ``total_time_ms`` and ``exclusive_time_ms`` are computed over all loops.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

from pydantic import BaseModel, Field


class Buffers(BaseModel):
    shared_hit: int = 0
    shared_read: int = 0
    shared_dirtied: int = 0
    shared_written: int = 0
    local_hit: int = 0
    local_read: int = 0
    local_written: int = 0
    temp_read: int = 0
    temp_written: int = 0

    @classmethod
    def from_json(cls, n: dict[str, Any]) -> Buffers:
        return cls(
            shared_hit=n.get("Shared Hit Blocks", 0), shared_read=n.get("Shared Read Blocks", 0),
            shared_dirtied=n.get("Shared Dirtied Blocks", 0), shared_written=n.get("Shared Written Blocks", 0),
            local_hit=n.get("Local Hit Blocks", 0), local_read=n.get("Local Read Blocks", 0),
            local_written=n.get("Local Written Blocks", 0),
            temp_read=n.get("Temp Read Blocks", 0), temp_written=n.get("Temp Written Blocks", 0),
        )


class PlanNode(BaseModel):
    id: int = Field(description="position in the plan, depth first from 0 (the root)")
    node_type: str
    parent_relationship: str | None = None
    subplan_name: str | None = None
    relation: str | None = None
    schema_name: str | None = Field(default=None, alias="schema")
    alias: str | None = None
    index: str | None = None
    cte: str | None = None
    join_type: str | None = None
    strategy: str | None = None
    operation: str | None = Field(default=None, description="Insert, Update, Delete or Merge (ModifyTable)")
    startup_cost: float
    total_cost: float
    plan_rows: float = Field(description="estimated rows per loop")
    plan_width: int = 0
    actual_rows: float | None = Field(default=None, description="rows per loop (EXPLAIN ANALYZE)")
    actual_loops: int | None = None
    actual_total_ms: float | None = Field(default=None, description="time per loop, ms")
    never_executed: bool = False
    total_time_ms: float | None = Field(default=None, description="time over all loops, children included")
    exclusive_time_ms: float | None = Field(default=None, description="time of this node alone")
    filter: str | None = None
    index_cond: str | None = None
    recheck_cond: str | None = None
    join_filter: str | None = None
    hash_cond: str | None = None
    rows_removed_by_filter: float | None = Field(default=None, description="per loop")
    rows_removed_by_join_filter: float | None = None
    rows_removed_by_index_recheck: float | None = None
    heap_fetches: float | None = None
    exact_heap_blocks: int | None = None
    lossy_heap_blocks: int | None = None
    sort_key: list[str] = []
    sort_method: str | None = None
    sort_space_kb: int | None = None
    sort_space_type: str | None = None
    hash_batches: int | None = None
    original_hash_batches: int | None = None
    peak_memory_kb: int | None = None
    disk_usage_kb: int | None = None
    workers_planned: int | None = None
    workers_launched: int | None = None
    buffers: Buffers | None = None
    children: list[PlanNode] = []

    model_config = {"populate_by_name": True}

    @property
    def label(self) -> str:
        """``Seq Scan on orders``, ``Index Scan using orders_pkey on orders o`` …"""
        text = self.operation if self.node_type == "ModifyTable" and self.operation else self.node_type
        if self.strategy and self.node_type == "Aggregate":
            text = {"Hashed": "HashAggregate", "Sorted": "GroupAggregate"}.get(self.strategy, text)
        if self.join_type and self.join_type != "Inner":
            text += f" {self.join_type}"
        if self.index:
            text += f" using {self.index}"
        if self.relation:
            text += f" on {self.relation}"
            if self.alias and self.alias != self.relation:
                text += f" {self.alias}"
        elif self.cte:
            text += f" on {self.cte}"
        return text

    def walk(self) -> Iterator[PlanNode]:
        yield self
        for child in self.children:
            yield from child.walk()

    @property
    def loops(self) -> int:
        return self.actual_loops or 1

    @property
    def rows_read(self) -> float | None:
        """Rows this scan looked at over all loops: returned plus removed by its filter."""
        if self.actual_rows is None:
            return None
        return (self.actual_rows + (self.rows_removed_by_filter or 0)) * self.loops


class Plan(BaseModel):
    root: PlanNode
    analyzed: bool
    planning_ms: float | None = None
    execution_ms: float | None = None
    jit_ms: float | None = Field(default=None, description="JIT total time (generation, inlining, ...)")
    jit_functions: int | None = None
    settings: dict[str, str] = Field(default={}, description="settings that differ from the built-in defaults")
    triggers_ms: float = 0

    def nodes(self) -> Iterator[PlanNode]:
        return self.root.walk()

    @property
    def total_ms(self) -> float | None:
        return self.execution_ms


_FIELDS = {
    "Parent Relationship": "parent_relationship", "Subplan Name": "subplan_name",
    "Relation Name": "relation", "Schema": "schema_name", "Alias": "alias", "Index Name": "index",
    "CTE Name": "cte", "Join Type": "join_type", "Strategy": "strategy", "Operation": "operation",
    "Startup Cost": "startup_cost", "Total Cost": "total_cost", "Plan Rows": "plan_rows",
    "Plan Width": "plan_width", "Actual Rows": "actual_rows", "Actual Loops": "actual_loops",
    "Actual Total Time": "actual_total_ms", "Filter": "filter", "Index Cond": "index_cond",
    "Recheck Cond": "recheck_cond", "Join Filter": "join_filter", "Hash Cond": "hash_cond",
    "Rows Removed by Filter": "rows_removed_by_filter",
    "Rows Removed by Join Filter": "rows_removed_by_join_filter",
    "Rows Removed by Index Recheck": "rows_removed_by_index_recheck",
    "Heap Fetches": "heap_fetches", "Exact Heap Blocks": "exact_heap_blocks",
    "Lossy Heap Blocks": "lossy_heap_blocks", "Sort Key": "sort_key", "Sort Method": "sort_method",
    "Sort Space Used": "sort_space_kb", "Sort Space Type": "sort_space_type",
    "Hash Batches": "hash_batches", "Original Hash Batches": "original_hash_batches",
    "Peak Memory Usage": "peak_memory_kb", "Disk Usage": "disk_usage_kb",
    "Workers Planned": "workers_planned", "Workers Launched": "workers_launched",
}


def _node(n: dict[str, Any], counter: list[int], analyzed: bool, buffers: bool) -> PlanNode:
    values: dict[str, Any] = {"id": counter[0], "node_type": n.get("Node Type", "?")}
    counter[0] += 1
    for key, name in _FIELDS.items():
        if key in n:
            values[name] = n[key]
    if "HashAgg Batches" in n:  # HashAggregate spills report their batches under their own key
        values["hash_batches"] = n["HashAgg Batches"]
    if analyzed and n.get("Actual Loops") == 0:
        values["never_executed"] = True
    if buffers and any(k.endswith("Blocks") and k.split()[0] in {"Shared", "Local", "Temp"} for k in n):
        values["buffers"] = Buffers.from_json(n)
    values["children"] = [_node(c, counter, analyzed, buffers) for c in n.get("Plans", [])]
    node = PlanNode(**values)
    if node.actual_total_ms is not None:
        node.total_time_ms = node.actual_total_ms * node.loops
    return node


def _exclusive(node: PlanNode) -> None:
    for child in node.children:
        _exclusive(child)
    if node.total_time_ms is None:
        return
    # InitPlans run once and are counted inside their parent's time like other children.
    children = sum(c.total_time_ms or 0 for c in node.children)
    node.exclusive_time_ms = max(0.0, node.total_time_ms - children)


def parse_plan(data: Any) -> Plan:
    """``data``: the JSON EXPLAIN returns (a one-element list) or its first element."""
    if isinstance(data, list):
        data = data[0]
    top: dict[str, Any] = data
    analyzed = "Execution Time" in top or "Actual Rows" in top["Plan"]
    has_buffers = any("Blocks" in k for k in top["Plan"])
    root = _node(top["Plan"], [0], analyzed, has_buffers or analyzed)
    _exclusive(root)
    jit = top.get("JIT") or {}
    timing = jit.get("Timing") or {}
    jit_total = timing.get("Total")
    if isinstance(jit_total, dict):  # 16+ nests {"Total": …} in some entries; be lenient
        jit_total = jit_total.get("Total")
    return Plan(
        root=root,
        analyzed=analyzed,
        planning_ms=top.get("Planning Time"),
        execution_ms=top.get("Execution Time"),
        jit_ms=jit_total,
        jit_functions=jit.get("Functions"),
        settings={k: str(v) for k, v in (top.get("Settings") or {}).items()},
        triggers_ms=sum(t.get("Time", 0) for t in top.get("Triggers", [])),
    )


def _num(x: float) -> str:
    return f"{x:,.0f}" if x >= 100 or float(x).is_integer() else f"{x:,.2f}"


def render_plan(plan: Plan) -> str:
    """An indented text plan, close to EXPLAIN's own text format, with node ids ``[#n]``."""
    lines: list[str] = []

    def visit(node: PlanNode, depth: int) -> None:
        pad = "  " * depth
        arrow = "-> " if depth else ""
        head = f"{pad}{arrow}[#{node.id}] "
        if node.subplan_name:
            head += f"({node.subplan_name}) "
        head += f"{node.label}  (cost={node.startup_cost:.2f}..{node.total_cost:.2f} rows={_num(node.plan_rows)})"
        if node.never_executed:
            head += " (never executed)"
        elif node.actual_rows is not None:
            head += f" (actual time={node.actual_total_ms or 0:.3f} rows={_num(node.actual_rows)} loops={node.loops})"
        lines.append(head)
        inner = pad + ("   " if depth else "") + "  "
        for label, value in (
            ("Index Cond", node.index_cond), ("Recheck Cond", node.recheck_cond), ("Hash Cond", node.hash_cond),
            ("Join Filter", node.join_filter), ("Filter", node.filter),
        ):
            if value:
                lines.append(f"{inner}{label}: {value}")
        if node.rows_removed_by_filter:
            lines.append(f"{inner}Rows Removed by Filter: {_num(node.rows_removed_by_filter)}")
        if node.heap_fetches is not None:
            lines.append(f"{inner}Heap Fetches: {_num(node.heap_fetches)}")
        if node.lossy_heap_blocks:
            lines.append(f"{inner}Heap Blocks: exact={node.exact_heap_blocks or 0} lossy={node.lossy_heap_blocks}")
        if node.sort_method:
            lines.append(f"{inner}Sort Method: {node.sort_method}  {node.sort_space_type}: {node.sort_space_kb}kB")
        if node.hash_batches and node.hash_batches > 1:
            lines.append(f"{inner}Batches: {node.hash_batches}  Memory Usage: {node.peak_memory_kb}kB")
        if node.workers_planned is not None:
            lines.append(f"{inner}Workers Planned: {node.workers_planned}  Launched: {node.workers_launched}")
        b = node.buffers
        if b and (b.shared_hit or b.shared_read or b.temp_read or b.temp_written):
            lines.append(f"{inner}Buffers: shared hit={b.shared_hit} read={b.shared_read}"
                         + (f" temp read={b.temp_read} written={b.temp_written}" if b.temp_read or b.temp_written
                            else ""))
        for child in node.children:
            visit(child, depth + 1)

    visit(plan.root, 0)
    if plan.planning_ms is not None:
        lines.append(f"Planning Time: {plan.planning_ms:.3f} ms")
    if plan.jit_ms is not None:
        lines.append(f"JIT: {plan.jit_functions} functions, {plan.jit_ms:.3f} ms")
    if plan.execution_ms is not None:
        lines.append(f"Execution Time: {plan.execution_ms:.3f} ms")
    return "\n".join(lines)
