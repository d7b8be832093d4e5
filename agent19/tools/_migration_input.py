"""The migration a tool is given — a file, SQL text or a change list — turned into a plan.

Shared by plan_migration and generate_runbook (and any tool that takes "a migration"), so that
both accept the same inputs with the same errors.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import TYPE_CHECKING, Any

from pydantic import BaseModel, Field, ValidationError, field_validator

from agent19.config import AccessMode
from agent19.errors import InputError
from agent19.migrate.planning.model import Change

if TYPE_CHECKING:
    from agent19.db.models import SchemaSnapshot
    from agent19.migrate.dryrun.model import DryRunResult
    from agent19.migrate.planning.model import MigrationPlan
    from agent19.migrate.planning.write_activity import TableActivity


class MigrationInput(BaseModel):
    """Arguments naming a migration; exactly one of ``file``, ``sql``, ``changes``."""

    file: str | None = Field(default=None, description="a .sql migration file, or a .json change list")
    sql: str | None = Field(default=None, description="migration SQL (kept in its order)",
                            json_schema_extra={"user_sql": "text"})
    changes: list[Change] | None = Field(
        default=None,
        description="structured changes, e.g. {\"type\": \"add_column\", \"table\": \"orders\", \"column\": "
        "{\"name\": \"note\", \"type\": \"text\"}}; types: add_column, modify_column, drop_column, create_table, "
        "add_index, rename, add_foreign_key, add_not_null, data_migration. SQL is generated and ordered "
        "(creates first, drops last, referenced tables before foreign keys)")
    name: str | None = Field(default=None, description="a name for the migration")
    description: str | None = None
    pg_version: int | None = Field(default=None, description="PostgreSQL version without a database, e.g. 15")
    dry_run_result: str | dict[str, Any] | None = Field(
        default=None, description="test_migration's result for the same SQL (agent19 dry-run --format json), as "
        "an object, JSON text or a .json file: its observed durations, locks and rewrites replace the estimates")
    write_sample_seconds: float = Field(
        default=0, ge=0, le=60, description="with a database: measure each table's insert/update rates over this "
        "many seconds (pg_stat_user_tables deltas) to judge a new index's write cost; 0 = since the statistics "
        "reset (no wait)")

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


def load_json(text_or_path: str | dict[str, Any] | list[Any], what: str) -> Any:
    """JSON given as an object (MCP clients parse JSON text before sending it), inline (starting with
    ``{`` or ``[``) or as a file path."""
    if not isinstance(text_or_path, str):
        return text_or_path
    raw = text_or_path.strip()
    if raw.startswith(("{", "[")):
        try:
            return json.loads(raw)
        except json.JSONDecodeError as exc:  # the caller's own text: where it breaks helps
            raise InputError(f"{what}: not valid JSON: {exc}") from None
    try:
        data = Path(text_or_path).read_bytes()
    except OSError as exc:
        raise InputError(f"{what}: cannot read {text_or_path}: {exc.strerror}") from None
    try:
        return json.loads(data)
    except (json.JSONDecodeError, UnicodeDecodeError):  # never a position or a fragment of a file's content
        raise InputError(f"{what}: {text_or_path} is not a JSON document",
                         "give the JSON file agent19 wrote, or the JSON text itself") from None


def _first_error(exc: ValidationError) -> str:
    """Where and what, without the offending value (it may be a file's content)."""
    err = exc.errors()[0]
    return f"{'.'.join(map(str, err['loc'])) or 'top level'}: {err['msg']}"


def dry_run_result(text_or_path: str | dict[str, Any] | None) -> DryRunResult | None:
    """test_migration's result, or None when not given (another JSON shape is not a dry run of ours)."""
    from agent19.migrate.dryrun.model import DryRunResult

    if not text_or_path:
        return None
    data = load_json(text_or_path, "dry_run_result")
    if not (isinstance(data, dict) and "target_unchanged" in data):
        return None
    try:
        return DryRunResult.model_validate(data)
    except ValidationError as exc:
        raise InputError(f"dry_run_result is not test_migration's result: {exc.errors()[0]['msg']}",
                         "pass the JSON that agent19 dry-run --format json printed") from None


def with_live_data_loss(ctx: Any, plan: MigrationPlan, conn: Any = None) -> MigrationPlan:
    """The plan's escalations completed with live facts: data loss from the safety check (narrowing types), and
    what the catalog records about dropped functions (breaking change). ``conn``: a read session already open."""
    from agent19.migrate.parse import parse_sql
    from agent19.migrate.planning.escalation_drops import live_function_evidence
    from agent19.migrate.planning.escalations import add_data_loss, add_evidence
    from agent19.safety.detect import detect
    from agent19.safety.facts import load_facts

    if conn is None:
        with ctx.db.read() as conn:
            return with_live_data_loss(ctx, plan, conn)
    statements = plan.planned_statements()  # the planner's parse, not a second one
    facts = load_facts(conn, statements)
    findings = detect(statements, facts)
    for op in plan.operations:  # a pattern's step loses what the plain statement it completes would lose
        if op.stands_for and op.line is not None:
            plain = parse_sql(op.stands_for)
            findings += [f.model_copy(update={"line": op.line}) for f in detect(plain, load_facts(conn, plain))]
    functions, missing = live_function_evidence(conn, plan.operations)
    return add_evidence(add_data_loss(plan, findings), "breaking_change", functions, missing)


def live_plan(ctx: Any, args: MigrationInput, catalog: SchemaSnapshot, *,
              accept_plan: bool = False) -> tuple[MigrationPlan, list[str]]:
    """:func:`plan_input` with a database: the tables' write activity measured before planning and the live
    data-loss facts after (:func:`with_live_data_loss`), in one read session (a pooled session costs five round
    trips of its own: check, BEGIN, ROLLBACK, reset, settings), then the durations calibrated where the mode
    allows (:func:`with_calibrated_durations`)."""
    from agent19.migrate.planning.write_activity import table_activity

    with ctx.db.read() as conn:
        activity = table_activity(conn, args.write_sample_seconds)
        plan, files = plan_input(args, catalog, accept_plan=accept_plan, activity=activity)
        plan = with_live_data_loss(ctx, plan, conn)
    return with_calibrated_durations(ctx, plan), files


def with_calibrated_durations(ctx: Any, plan: MigrationPlan) -> MigrationPlan:
    """The plan's durations calibrated on the server (a sample of each table, in a rolled-back transaction) when
    the mode allows one (dry-run, execute); in read-only mode nothing is written (a READ ONLY transaction): only
    scans are calibrated, by reading the sample, and the other figures stay assumed and say why."""
    from agent19.migrate.planning.calibrate import calibrate_plan, sampled_tables

    writes = ctx.db.mode.allows(AccessMode.DRY_RUN)
    if not sampled_tables(plan, writes):  # no table to sample: the labels only, without a session (five round trips)
        return calibrate_plan(None, plan, writes=writes)
    if not writes:
        with ctx.db.read() as conn:
            return calibrate_plan(conn, plan, writes=False)
    with ctx.db.rolled_back() as conn:
        return calibrate_plan(conn, plan)


def plan_input(args: MigrationInput, catalog: SchemaSnapshot | None, *, accept_plan: bool = False,
               activity: dict[str, TableActivity] | None = None) -> tuple[MigrationPlan, list[str]]:
    """The plan for ``args`` and the names of the files it came from.

    With ``accept_plan``, a .json file holding a MigrationPlan (plan_migration's output) is taken as is.
    """
    from agent19.migrate.lint.config import normalize_version
    from agent19.migrate.parse import read_sql_file
    from agent19.migrate.planning.model import MigrationPlan
    from agent19.migrate.planning.plan import PlanOptions, plan_migration

    given = [name for name, value in (("file", args.file), ("sql", args.sql), ("changes", args.changes))
             if value is not None]
    if len(given) > 1:  # a file's statements used to replace the sql given beside it, silently
        raise InputError(f"give exactly one of: a file, sql, or changes (this call gave {' and '.join(given)})",
                         "call once per migration")
    sql, changes, files = args.sql, args.changes, []
    if args.file:
        path = Path(args.file)
        files.append(path.name)
        if path.suffix.lower() == ".json":
            data = load_json(args.file, str(path))
            if accept_plan and isinstance(data, dict) and "operations" in data:
                try:
                    return MigrationPlan.model_validate(data), files
                except ValidationError as exc:
                    raise InputError(f"{path}: not a migration plan: {_first_error(exc)}") from None
            try:
                changes = [Change.model_validate(c) for c in (data["changes"] if isinstance(data, dict) else data)]
            except (KeyError, TypeError, ValidationError) as exc:
                why = _first_error(exc) if isinstance(exc, ValidationError) else "no list of changes"
                raise InputError(f"{path}: not a change list: {why}",
                                 'give a list of changes, or {"changes": [...]}') from None
        else:
            sql = read_sql_file(path)
    if (sql is None) == (changes is None):
        raise InputError("give exactly one of: a file, sql, or changes")
    options = PlanOptions(name=args.name, description=args.description, pg_version=normalize_version(args.pg_version),
                          dry_run=dry_run_result(args.dry_run_result), activity=activity)
    return plan_migration(sql=sql, changes=changes, catalog=catalog, options=options), files
