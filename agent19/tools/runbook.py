"""generate_runbook (``agent19 runbook``): the runbook, specification, rollback plan and handoffs.

Input: a migration (SQL text, a ``.sql`` file, a ``.json`` change list or a ``.json`` MigrationPlan
as ``plan_migration`` returns it, or a change list), optionally a dry-run result, and the upstream
inputs of a pipeline (feature requirements, slow queries). Live facts (table sizes, database size,
connections, the migration tool's schema version) come from the database when one is configured
(``--dsn`` / ``DATABASE_URL``); the embedded server is never started for them, since it is not
the target. Writes the handoff folder ``<handoff_dir>/<migration id>/`` (and, with ``write_dir``,
every document there too) and returns the paths written.

Also declares the ``handoff`` MCP resource, ``agent19://handoffs/{migration_id}``: the
``handoff.json`` of a migration in the handoff folder.
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import TYPE_CHECKING, Any

from pydantic import BaseModel, Field, ValidationError

from agent19.config import Settings
from agent19.errors import DatabaseUnavailable, InputError
from agent19.report.model import Report
from agent19.resources import resource
from agent19.tools._migration_input import MigrationInput
from agent19.tools.registry import ToolContext, tool

if TYPE_CHECKING:
    from agent19.report.model import BackupEvidence, DryRunEvidence, LiveFacts

_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,99}$")


class RunbookArgs(MigrationInput):
    file: str | None = Field(default=None, description="a .sql migration, a .json change list, or a .json "
                             "MigrationPlan (plan_migration's output)")
    requirements: str | None = Field(default=None, description="feature requirements (free text), carried into "
                                     "the specification's summary")
    performance_issues: list[str] = Field(default=[], description="slow queries reported upstream: listed in the "
                                          "runbook for explain_query before and after",
                                          json_schema_extra={"user_sql": "text"})
    backup_verify_result: str | None = Field(
        default=None, description="verify_backup's result (agent19 backup verify --format json), as JSON text or a "
        "file: the guardrail 'Backup verified by a restore' cites it; without it, 'not verified'")
    write_dir: str | None = Field(default=None, description="also write every document (Markdown and JSON) here",
                                  json_schema_extra={"cli": "write"})
    handoff: bool = Field(default=True, description="write the handoff folder <handoff_dir>/<migration id>/")


class RunbookResult(BaseModel):
    migration_id: str
    runbook: str = Field(description="the deployment runbook, Markdown", json_schema_extra={"artifact": True})
    specification: str = Field(description="the migration specification, Markdown",
                               json_schema_extra={"artifact": True})
    rollback_plan: str = Field(description="the rollback plan, Markdown", json_schema_extra={"artifact": True})
    handoff_dir: str | None = Field(default=None, description="the handoff folder written (absolute)")
    written: list[str] = Field(default=[], description="every file written (absolute paths)")
    notes: list[str] = []
    report: Report = Field(description="the same documents as data", json_schema_extra={"artifact": True})


def dry_run_evidence(data: Any) -> DryRunEvidence:
    """Read the fields the documents cite from a dry run.

    Accepts what test_migration returns (``agent19 dry-run --format json``) or the
    :class:`DryRunEvidence` shape itself; nothing absent is filled in (absent = not run).
    """
    from agent19.migrate.dryrun.model import DryRunResult
    from agent19.report.model import DryRunEvidence

    try:
        if isinstance(data, dict) and "target_unchanged" in data:
            data = DryRunResult.model_validate(data).to_evidence()
        return DryRunEvidence.model_validate(data)
    except ValidationError as exc:
        raise InputError(f"dry_run_result is not a dry-run result: {exc.errors()[0]['msg']}",
                         "pass the JSON that test_migration (agent19 dry-run --format json) printed") from None


def _backup(text_or_path: str | None) -> BackupEvidence | None:
    from agent19.ops.backup.runbook import load_verify_result
    from agent19.report.model import BackupEvidence

    if not text_or_path:
        return None
    r = load_verify_result(text_or_path)
    return BackupEvidence(verified=r.verified, kind=r.kind, summary=r.summary, restored_into=r.restored_into)


def _live(ctx: ToolContext) -> tuple[Any, LiveFacts | None, list[str]]:
    from agent19.report.facts import live_facts

    if ctx.settings.dsn_value() is None:
        return None, None, ["no database given (--dsn / DATABASE_URL): table sizes, durations and the schema "
                            "version are marked unknown"]
    catalog, unreachable = ctx.live_catalog_or_why()
    if unreachable is None:
        try:
            with ctx.db.read() as conn:
                return catalog, live_facts(conn), []
        except DatabaseUnavailable as exc:
            unreachable = exc.message
    return None, None, [f"database not reachable, documents made without live facts: {unreachable}"]


def _write(folder: Path, docs: dict[str, str]) -> list[str]:
    folder.mkdir(parents=True, exist_ok=True)
    out = []
    for name, text in docs.items():
        path = folder / name
        path.write_text(text, encoding="utf-8")
        out.append(str(path.resolve()))
    return out


def render_result(r: RunbookResult) -> str:
    lines = [r.runbook.rstrip(), ""]
    lines += [f"agent19: note: {n}" for n in r.notes]
    lines += [f"wrote {p}" for p in r.written]
    return "\n".join(lines)


@tool(
    name="generate_runbook",
    briefs={
        "file": ".sql, .json change list or plan", "sql": "", "name": "",
        "changes": {"type": "array", "description": "as in plan_migration"},
        "description": "", "dry_run_result": "test_migration's result",
        "write_sample_seconds": "seconds to sample write rates", "requirements": "",
        "performance_issues": "", "backup_verify_result": "verify_backup's JSON or file", "write_dir": "",
        "handoff": "",
    },
    title="Migration runbook",
    args=RunbookArgs,
    result=RunbookResult,
    cli="runbook",
    positional=("file",),
    render_text=render_result,
    read_only=False,
    examples=(
        "agent19 runbook migrations/V7__users.sql --write out/",
        "agent19 runbook --sql 'ALTER TABLE users ADD COLUMN nickname text' --dsn postgresql://app@localhost/shop",
        "agent19 runbook plan.json --dry-run-result dryrun.json --requirements 'users pick a nickname'",
    ),
)
def generate_runbook(ctx: ToolContext, args: RunbookArgs) -> RunbookResult:
    """Write a migration's runbook, specification, rollback plan and handoffs; returns a summary and paths.

    Write the documents a migration needs before anyone runs it: the deployment runbook
    (prerequisites with verification SQL, pre-deployment, one section per step with its lock, downtime,
    estimated rows, SQL, verification query and rollback SQL, post-deployment checks, the rollback
    procedure, monitoring, sign-off, a self-review checklist and validation gates with evidence), the
    migration specification and the rollback plan — plus handoffs for DevOps, application engineers,
    QA (runnable SQL test cases) and security (personal-data-looking columns, grants, RLS, SECURITY
    DEFINER, extensions) and a handoff.json for other agents.

    Give the migration as `sql`, `changes` or a `file` (.sql, change list .json, or a plan .json).
    Pass a dry-run result from test_migration to cite observed locks and timings; without one, test
    results read "not run". Uses live table sizes when a database is configured. Writes
    `<handoff_dir>/<migration id>/` (readable afterwards as the resource
    agent19://handoffs/{migration_id}) and, with `write_dir`, every document there; returns the paths."""
    from agent19.report.build import FILES, ReportOptions, build_report
    from agent19.report.model import PerformanceIssue
    from agent19.report.render import documents
    from agent19.tools._migration_input import live_plan, load_json, plan_input

    catalog, facts, notes = _live(ctx)
    plan, files = (live_plan(ctx, args, catalog, accept_plan=True) if catalog is not None
                   else plan_input(args, None, accept_plan=True))
    if not _ID.match(plan.id):
        raise InputError(f"migration id {plan.id!r} cannot name a folder", "use letters, digits, '.', '_', '-'")
    dry = dry_run_evidence(load_json(args.dry_run_result, "dry_run_result")) if args.dry_run_result else None
    options = ReportOptions(
        requirements=args.requirements, files=files,
        performance_issues=[PerformanceIssue(query=q) for q in args.performance_issues],
        database=ctx.db.display_dsn if facts is not None else None,
        backup=_backup(args.backup_verify_result),
        lock_timeout_ms=ctx.settings.lock_timeout_ms, statement_timeout_ms=ctx.settings.statement_timeout_ms,
    )
    report = build_report(plan, catalog=catalog, facts=facts, dry_run=dry, options=options)
    docs = documents(report)
    written: list[str] = []
    handoff_dir = None
    if args.handoff:
        folder = ctx.settings.handoff_dir / plan.id
        written += _write(folder, docs)
        handoff_dir = str(folder.resolve())
    if args.write_dir:
        as_json = {
            "runbook.json": report.runbook, "specification.json": report.specification,
            "rollback-plan.json": report.rollback_plan,
        }
        extra = {k: json.dumps(v.model_dump(mode="json"), indent=2, ensure_ascii=False) + "\n"
                 for k, v in as_json.items()}
        written += _write(Path(args.write_dir), docs | extra)
    return RunbookResult(
        migration_id=plan.id, runbook=docs[FILES["runbook"]], specification=docs[FILES["specification"]],
        rollback_plan=docs[FILES["rollback_plan"]], handoff_dir=handoff_dir, written=written, notes=notes,
        report=report,
    )


def handoff_path(settings: Settings, migration_id: str) -> Path:
    from agent19.report.build import FILES

    if not _ID.match(migration_id):
        raise InputError(f"{migration_id!r} is not a migration id", "ids are letters, digits, '.', '_', '-'")
    return settings.handoff_dir / migration_id / FILES["handoff"]


@resource(uri="agent19://handoffs/{migration_id}", name="handoff", title="Handoff of a migration",
          mime_type="application/json")
def read_handoff(settings: Settings, migration_id: str) -> str:
    """handoff.json of a migration that generate_runbook wrote: its steps, DevOps, application, QA and
    security handoffs, the self-review and the gates (JSON Schema: agent19/report/handoff.schema.json)."""
    path = handoff_path(settings, migration_id)
    if not path.is_file():
        raise InputError(f"no handoff for migration {migration_id!r} in {settings.handoff_dir}",
                         "run generate_runbook for the migration first")
    return path.read_text(encoding="utf-8")
