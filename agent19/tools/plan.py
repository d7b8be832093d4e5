"""plan_migration (``agent19 plan``): a migration plan from SQL, a file, or a change list."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from pydantic import BaseModel, Field, field_validator

from agent19.errors import InputError
from agent19.migrate.lint_config import normalize_version
from agent19.migrate.parse import read_sql_file
from agent19.migrate.plan import PlanOptions, plan_migration
from agent19.migrate.plan_model import Change, MigrationPlan
from agent19.tools.lint import live_catalog
from agent19.tools.registry import ToolContext, tool


class PlanArgs(BaseModel):
    file: str | None = Field(default=None, description="a .sql migration file, or a .json change list")
    sql: str | None = Field(default=None, description="migration SQL (kept in its order)")
    changes: list[Change] | None = Field(
        default=None,
        description="structured changes, e.g. {\"type\": \"add_column\", \"table\": \"orders\", \"column\": "
        "{\"name\": \"note\", \"type\": \"text\"}}; types: add_column, modify_column, drop_column, create_table, "
        "add_index, rename, add_foreign_key, add_not_null, data_migration. SQL is generated and ordered "
        "(creates first, drops last, referenced tables before foreign keys)")
    name: str | None = Field(default=None, description="a name for the plan")
    description: str | None = None
    pg_version: int | None = Field(default=None, description="PostgreSQL version without a database, e.g. 15")

    @field_validator("changes", mode="before")
    @classmethod
    def _json_items(cls, v: Any) -> Any:
        """On the command line each change is a JSON object string."""
        if isinstance(v, list):
            try:
                return [json.loads(x) if isinstance(x, str) else x for x in v]
            except json.JSONDecodeError as exc:
                raise ValueError(f"a change is not valid JSON: {exc}") from None
        return v


def render_plan(p: MigrationPlan) -> str:
    out = [f"plan {p.id}: {p.name}", f"  {p.description}",
           f"  risk {p.risk_level}; duration {p.estimated_duration}",
           f"  deployment: {p.deployment.kind} — {p.deployment.reason}", "", "operations:"]
    for o in p.operations:
        rows = f", ~{o.estimated_rows:,} rows" if o.estimated_rows is not None else ""
        out.append(f"  {o.order:>2}. [{o.risk}] {o.description}; downtime {o.downtime.replace('_', ' ')}{rows}")
        out.append(f"      {' '.join(o.sql.split())[:110]}")
    out += ["", "prerequisites:", *(f"  - {x}" for x in p.prerequisites)]
    out += ["", f"rollback ({p.rollback.kind.replace('_', ' ')}): {p.rollback.description}",
            *(f"  {s};" for s in p.rollback.steps)]
    out += ["", "validation:", *(f"  {'[blocking] ' if v.blocking else ''}{v.phase}: {v.name}: {v.query}  → "
                                 f"{v.expected}" for v in p.validation)]
    if p.findings:
        out += ["", "findings:"]
        out += [f"  {f.severity} {f.rule} (operation {f.operation}): {f.message}" for f in p.findings]
    return "\n".join(out)


@tool(
    name="plan_migration",
    title="Plan a migration",
    args=PlanArgs,
    result=MigrationPlan,
    cli="plan",
    positional=("file",),
    render_text=render_plan,
    examples=(
        "agent19 plan migrations/V7__orders_status.sql",
        "agent19 plan changes.json --dsn postgresql://app@localhost/shop --format json",
        "agent19 plan --sql 'ALTER TABLE orders ADD COLUMN note text'",
    ),
)
def plan_migration_tool(ctx: ToolContext, args: PlanArgs) -> MigrationPlan:
    """Plan a schema migration before running it. Give `sql` (kept in its order; ordering mistakes are
    reported) or `changes` (a structured change list; safe SQL is generated — CONCURRENTLY, NOT VALID +
    VALIDATE, NOT NULL through a CHECK — and ordered topologically).

    Returns every operation with its lock (pg_locks names), downtime, estimated rows and reverse SQL;
    the risk level; an estimated duration (needs a database for table sizes); prerequisites; the
    rollback strategy with reverse SQL in reverse order; validation queries with expected results;
    the deployment strategy (immediate, rolling, blue_green, maintenance_window); and lint findings."""
    sql, changes = args.sql, args.changes
    if args.file:
        path = Path(args.file)
        if path.suffix.lower() == ".json":
            try:
                data = json.loads(read_sql_file(path))
            except json.JSONDecodeError as exc:
                raise InputError(f"{path}: not valid JSON: {exc}") from None
            changes = [Change.model_validate(c) for c in (data["changes"] if isinstance(data, dict) else data)]
        else:
            sql = read_sql_file(path)
    if (sql is None) == (changes is None):
        raise InputError("give exactly one of: a file, sql, or changes")
    options = PlanOptions(name=args.name, description=args.description, pg_version=normalize_version(args.pg_version))
    return plan_migration(sql=sql, changes=changes, catalog=live_catalog(ctx), options=options)
