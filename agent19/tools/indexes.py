"""index_health: unused, duplicate, invalid, missing and bloated indexes, with the SQL to fix them."""

from __future__ import annotations

from pydantic import BaseModel, Field

from agent19.optimize.hygiene import IndexHealth
from agent19.tools.registry import ToolContext, tool


class IndexHealthArgs(BaseModel):
    schema_name: str | None = Field(default=None, alias="schema", description="only this schema")
    unused_min_mb: float = Field(default=10, ge=0, description="report unused indexes from this size")
    bloat_min_mb: float = Field(default=100, ge=0, description="report estimated bloat from this size")

    model_config = {"populate_by_name": True}


def render_health(h: IndexHealth) -> str:
    lines = [f"[{f.kind}] {f.index or f.table}: {f.detail}\n    fix{' (DESTRUCTIVE)' if f.destructive else ''}: "
             f"{f.fix}" for f in h.findings] or ["no index problems found"]
    return "\n".join(lines + [f"note: {n}" for n in [*h.notes, h.note]])


@tool(
    briefs={
        "schema": "", "unused_min_mb": "", "bloat_min_mb": "",
    },
    name="index_health", catalog_only=True, title="Index hygiene", args=IndexHealthArgs,
    result=IndexHealth, cli="index-health", render_text=render_health,
    exit_code=lambda h: 1 if h.findings else 0,
    examples=("agent19 index-health", "agent19 index-health --schema sales --format json"),
)
def index_health_tool(ctx: ToolContext, args: IndexHealthArgs) -> IndexHealth:
    """Unused, duplicate, invalid and bloated indexes, unindexed foreign keys: each with the SQL to fix it.

    Check the indexes: unused (0 scans since the statistics reset, ≥ 10 MB, not unique), duplicate
    (a prefix of another valid index with the same method, expressions and predicate), invalid (left by a
    failed CREATE INDEX CONCURRENTLY), foreign keys without a supporting index, indexes bigger than
    their table, and estimated bloat. Each finding has the SQL to fix it; drops are marked destructive.
    Reads the catalog and statistics only."""
    from agent19.optimize.hygiene import index_health

    return index_health(ctx.db, schema=args.schema_name, unused_min_bytes=int(args.unused_min_mb * 1048576),
                        bloat_min_bytes=int(args.bloat_min_mb * 1048576))
