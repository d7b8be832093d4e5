"""test_migration (CLI ``agent19 dry-run``) and verify_rollback (CLI ``agent19 rollback-check``)."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Literal

from pydantic import BaseModel, Field

from agent19.config import AccessMode
from agent19.errors import Agent19Error, InputError
from agent19.migrate.dryrun import scratch as scratch
from agent19.migrate.dryrun.model import DryRunResult, RollbackResult
from agent19.migrate.planning import regression as plan_regression
from agent19.ops.backup import workdir
from agent19.safety import gate
from agent19.tools.registry import ToolContext, tool

if TYPE_CHECKING:
    from collections.abc import Callable

    from agent19.db.connection import Database
    from agent19.migrate.parse import Statement
    from agent19.migrate.planning.model import ValidationCheck
    from agent19.migrate.planning.regression import QueryPlanComparison

# SIGTERM/SIGHUP drop active scratch databases and remove an isolated run's throwaway cluster; handlers can only be
# installed from the main thread, which is where the tools are imported (by the CLI and by the MCP server at start-up).
scratch.install_signal_handlers()
workdir.install_signal_handlers()


class TestMigrationArgs(BaseModel):
    files: list[str] = Field(default=[], description="migration files or directories (read in their tool's order; "
                             "golang-migrate .down.sql / Flyway U... undo files are paired automatically)",
                             json_schema_extra=gate.user_sql("files"))
    sql: str | None = Field(default=None, description="the migration as SQL text (instead of files)",
                            json_schema_extra=gate.user_sql("script"))
    down_sql: str | None = Field(default=None, description="rollback SQL to verify (instead of down files)",
                                 json_schema_extra=gate.user_sql("script"))
    down_files: list[str] = Field(default=[], description="explicit down/undo files, in the order to run them",
                                  json_schema_extra=gate.user_sql("files"))
    verify_rollback: bool = Field(default=True, description="verify the rollback when a down migration is known")
    checks: list[str] = Field(default=[], description="extra validation queries run before the rollback; each "
                              "must return true (or non-zero); a failing one fails the dry run",
                              json_schema_extra=gate.user_sql("statements"))
    plan_checks: bool = Field(default=True, description="also run plan_migration's validation checks")
    measure_blocking: bool = Field(default=False, description="replay in a scratch database and measure how long "
                                   "a SELECT and an INSERT on each touched table wait for each statement")
    probe_timeout_ms: int = Field(default=2000, ge=10, description="lock_timeout of the blocking probes")
    scratch_copy: Literal["auto", "template", "schema", "empty"] = Field(
        default="auto", description="how a scratch database is made: TEMPLATE copy (with data), schema-only "
        "copy (pg_dump), or empty; auto: TEMPLATE when no one else is connected and it is under 2 GB")
    sample_rows: int = Field(default=0, ge=0, description="with a schema-only copy, rows copied per touched "
                             "table (durations are then extrapolated to the real size)")
    queries: list[str] = Field(default=[], description="queries whose plans to compare before and after each "
                               "statement that drops or changes an index, key, column or column type (EXPLAIN of "
                               "the generic plan, never executed; $1... placeholders allowed)",
                               json_schema_extra=gate.user_sql("statements"))
    top_queries: int = Field(default=plan_regression.TOP_QUERIES, ge=0, le=100, description="also compare the N "
                             "most expensive SELECTs in pg_stat_statements that read an affected table (0: none)")
    isolated: bool = Field(default=False, description="run it in a copy of the target's schema (no rows) in a "
                           "throwaway local cluster of its major version (its server programs needed here; takes "
                           "seconds), where code that acts outside a transaction (EXECUTE, setval, signals) reaches "
                           "nobody's sessions; the target is only read (pg_dump, waiting at most lock_timeout for a "
                           "lock). Use it when such code made the dry run say could not test. It shows locks, "
                           "rewrites and errors on this schema; not durations, row counts, failures on existing rows "
                           "or blocking (empty tables: measure_blocking and sample_rows are refused), and it is no "
                           "proof for require_dry_run")


def _load(args: TestMigrationArgs) -> tuple[list[Statement], list[Statement]]:
    from agent19.migrate.layouts.files import load_file, load_paths
    from agent19.migrate.parse import parse_file, parse_sql

    if bool(args.files) == bool(args.sql):
        raise InputError("give migration files or sql (one of them)", "e.g. agent19 dry-run migrations/001.up.sql")
    if args.sql:
        up = parse_sql(args.sql)
        downs: list[Statement] = []
    else:
        migrations = load_paths(args.files)
        up = [s for m in migrations for s in m.statements]
        downs = [s for m in reversed(migrations) if m.down_file for s in parse_file(Path(m.down_file))]
    if args.down_files:
        downs = [s for f in args.down_files for s in load_file(Path(f)).statements]
    if args.down_sql:
        downs = parse_sql(args.down_sql, "rollback")
    if not up:
        raise InputError("the migration has no statements")
    return up, downs


def _checks(args: TestMigrationArgs, up: list[Statement]) -> list[ValidationCheck]:
    from agent19.migrate.planning.model import ValidationCheck

    checks = [ValidationCheck(name=f"check {i + 1}", query=q, expected="true", blocking=True)
              for i, q in enumerate(args.checks)]
    if args.plan_checks:
        from agent19.migrate.planning.plan import plan_migration

        try:
            checks += plan_migration(sql=";\n".join(s.sql for s in up) + ";").validation
        except Exception:  # noqa: BLE001 — a plan that cannot be made must not stop the dry run
            pass
    return checks


def _statement_line(s: object) -> str:
    from agent19.migrate.dryrun.model import StatementResult

    assert isinstance(s, StatementResult)
    where = f"{s.file or 'sql'}:{s.line}"
    head = f"{s.index + 1:>3}. {where} [{s.ran_in}] {s.kind or ''}"
    if s.duration_ms is not None:
        head += f"  {s.duration_ms:.1f} ms"
    if s.extrapolated_ms is not None:
        head += f" (~{s.extrapolated_ms / 1000:.1f} s at real size)"
    lines = [head]
    for c in s.lock_comparison:
        if c.agrees is None:
            lines.append(f"       lock {c.relation}: not observed ({c.not_observed}), predicted {c.predicted or '-'}")
            continue
        mark = "ok" if c.agrees else "MISMATCH"
        lines.append(f"       lock {c.relation}: observed {c.observed or '-'}, predicted {c.predicted or '-'} [{mark}]")
    if s.predicted_rewrite is not None or s.observed_rewrite:
        lines.append(f"       rewrite: observed {'yes' if s.observed_rewrite else 'no'}, predicted "
                     f"{'yes' if s.predicted_rewrite else 'no' if s.predicted_rewrite is not None else '-'}")
    if s.dropped or s.renamed:
        lines.append("       " + "; ".join([f"dropped {', '.join(s.dropped)}"] * bool(s.dropped)
                                           + [f"renamed {', '.join(s.renamed)}"] * bool(s.renamed)))
    for p in s.probes:
        lines.append(f"       {p.kind} on {p.table}: {'waited' if p.waited else 'not blocked'} {p.elapsed_ms:.0f} ms"
                     + (" (gave up)" if p.timed_out else ""))
    if s.error:
        lines.append(f"       ERROR at line {s.error.line}: {s.error.message}")
    if s.untested:
        lines.append(f"       could not test: {s.untested}")
    if s.note:  # where it ran and why; or that it ran code agent19 cannot read (--allow-unreadable-code)
        lines.append(f"       {s.note}")
    return "\n".join(lines)


def render_dry_run(r: DryRunResult) -> str:
    lines = [r.summary, f"target: {r.database} (unchanged: {'yes' if r.target_unchanged else 'NO'})"]
    if r.isolated:  # the target was only read (pg_dump); "unchanged" is the copy's
        lines[1] = (f"target: {r.database} (only read: pg_dump); ran in {r.isolated.where}; the copy unchanged: "
                    f"{'yes' if r.target_unchanged else 'NO'}; throwaway cluster removed: "
                    f"{'yes' if r.isolated.removed else 'NO'}")
    lines += [_statement_line(s) for s in r.statements]
    if r.scratch:
        lines.append(f"scratch database {r.scratch.name} ({r.scratch.strategy}); dropped: "
                     f"{'yes' if r.scratch.dropped else 'NO'}")
    for c in r.checks:
        lines.append(f"check {c.name}: {'passed' if c.passed else 'FAILED'} (got {c.value}, expected {c.expected})")
    if r.query_plans:
        lines.append(f"query plans: {r.query_plans.note}")
        lines += [f"  worse after statement {c.statement + 1}: {' '.join(c.query.query.split())[:200]} - cost "
                  f"{c.cost_before} -> {c.cost_after if c.cost_after is not None else c.error_after}: "
                  f"{c.plan_before} -> {c.plan_after}" for c in r.query_plans.changes if c.worse]
    if r.rollback:
        lines.append(r.rollback.summary)
    for f in r.findings:  # each says what: a finding's place alone (`error: m.sql`) would not
        place = f"{f.file or 'sql'}:{f.line} " if f.line else f"{f.file} " if f.file else ""  # as statements
        lines.append(f"{f.severity}: {place}{f.message or f.kind.replace('_', ' ')}")
    return "\n".join(lines)


@tool(
    name="test_migration",
    briefs={
        "files": "", "sql": "", "down_sql": "", "down_files": "", "verify_rollback": "",
        "checks": "must return true", "plan_checks": "",
        "measure_blocking": "how long reads/writes wait", "probe_timeout_ms": "", "scratch_copy": "",
        "sample_rows": "", "queries": "compare their plans", "top_queries": "",
        "isolated": "empty copy: no durations, no require_dry_run proof",
    },
    title="Dry-run migration",
    args=TestMigrationArgs,
    result=DryRunResult,
    cli="dry-run",
    positional=("files",),
    mode=AccessMode.DRY_RUN,
    read_only=False,
    idempotent=True,
    render_text=render_dry_run,
    exit_code=lambda r: 0 if r.passed and not any(s.untested for s in r.statements) else 1,  # COULD NOT TEST: 1
    examples=("agent19 dry-run migrations/ --mode dry-run",
              "agent19 dry-run 0042_orders.up.sql --measure-blocking --mode dry-run --format json"),
)
def test_migration(ctx: ToolContext, args: TestMigrationArgs) -> DryRunResult:
    """Dry-run a migration, rolled back: each statement's time, locks, rewrites, errors. Use after
    plan_migration; isolated only if unreadable code made it 'could not test'.

    Run a migration on the real server without changing it, and report what each statement really does:
    wall time, the locks it took (from pg_locks) against the predicted ones, whether it rewrote a table
    (relfilenode), rows affected, notices, errors with file and line. Statements run in one transaction
    that is always rolled back; those that cannot (CREATE INDEX CONCURRENTLY, VACUUM…) run in a scratch
    database that is dropped afterwards. Validation checks run before the rollback. With a down
    migration (golang-migrate .down.sql, Flyway U… or down_sql) the rollback is verified: up, down, and
    the schema compared with the start. When a statement drops or changes an index, key, column or
    column type, the plans of `queries` and of pg_stat_statements' most expensive SELECTs on the
    affected tables are compared before and after it (EXPLAIN in a rolled-back transaction): pass the
    result to plan_migration/generate_runbook as dry_run_result and a worse plan is a performance
    escalation with its costs. Needs mode dry-run. Locks on the target are held until the rollback: use
    a staging copy for busy tables.

    With `isolated` the migration runs in an empty copy of the schema in a throwaway local cluster instead:
    for statements the dry run could not test because of code agent19 cannot read (EXECUTE in a trigger).
    It shows locks, rewrites and errors; not durations or blocking, and it is no require_dry_run proof."""
    from agent19.safety import policy

    up, down = _load(args)
    # the migration's statements go through the gate one by one inside the dry run (dryrun_cluster.screen:
    # an escaping statement is refused or, for sequences, reported as not run); the checks are reads
    for check in args.checks:
        gate.admit(ctx.db, check, gate.Purpose.READ)
    for query in args.queries:  # only planned, never run
        gate.admit(ctx.db, query, gate.Purpose.PLAN)
    if args.isolated:
        from agent19.migrate.dryrun.isolated import isolated_copy, label, refuse_unmeasurable, rising

        refuse_unmeasurable(args.sample_rows, args.measure_blocking, args.scratch_copy)
        progress = rising(ctx.progress)  # the copy's making and the dry run there: one rising count
        with isolated_copy(ctx.db, progress) as copy:
            result = _dry_run_and_rollback(ctx, args, copy.db, up, down, progress)
        return label(result, copy, ctx.db)  # no plans (empty tables), not a proof for require_dry_run
    # the server's identity and schema as the dry run starts: what require_dry_run later compares with
    state = policy.server_state(ctx.db) if ctx.settings.dsn_value() is not None else None
    result = _dry_run_and_rollback(ctx, args, ctx.db, up, down, ctx.progress)
    if result.passed:
        result.query_plans = _query_plans(ctx, args, up, result)
    # a statement the dry run could not run is no proof (locks it could not fully observe do not matter here)
    if result.passed and not any(s.untested for s in result.statements) and state is not None:
        policy.record_dry_run(ctx.settings, state, up)
    return result


def _dry_run_and_rollback(ctx: ToolContext, args: TestMigrationArgs, db: Database, up: list[Statement],
                          down: list[Statement], progress: Callable[[float, float | None, str | None], None],
                          ) -> DryRunResult:
    """The dry run on ``db`` (the target, or an isolated copy), and the rollback's verification there."""
    from agent19.migrate.dryrun.model import Finding
    from agent19.migrate.dryrun.run import dry_run

    result = dry_run(
        db, up, checks=_checks(args, up), measure_blocking=args.measure_blocking,
        probe_timeout_ms=args.probe_timeout_ms, scratch_copy=args.scratch_copy, sample_rows=args.sample_rows,
        progress=progress,
    )
    if down and args.verify_rollback:
        from agent19.migrate.dryrun.rollback_check import verify_rollback

        progress(len(up), None, "verifying the rollback")
        result.rollback = verify_rollback(db, up, down)
        result.findings += [Finding(kind="unreadable_code_ran", severity="info", message=f"rollback check: {note}")
                            for note in result.rollback.notes]
        if result.rollback.untested:  # not proven, not failed either
            result.findings.append(Finding(kind="not_tested", severity="warning", message=result.rollback.summary))
            result.complete = False
        elif not result.rollback.verified:
            result.findings.append(Finding(kind="rollback_not_verified", severity="error",
                                           message=result.rollback.summary))
            result.passed = False
            result.summary = result.summary.replace("PASSED", "FAILED", 1)
        result.summary += "; " + result.rollback.summary
    return result


def _query_plans(ctx: ToolContext, args: TestMigrationArgs, up: list[Statement],
                 result: DryRunResult) -> QueryPlanComparison | None:
    """Plans of the supplied and pg_stat_statements' queries before and after each statement that can make them
    worse, in a transaction of their own that is rolled back (see :mod:`agent19.migrate.planning.regression`)."""
    from agent19.migrate.planning.regression import PlanQuery, QueryPlanComparison

    indexes, tables = plan_regression.affecting(result.statements)
    if not indexes:
        return None
    replay = plan_regression.runnable(result.statements, up)
    if replay is None:
        return QueryPlanComparison(queries=0, note="plans not compared: a statement did not run in the dry run's "
                                   "transaction and cannot be replayed there")
    queries = [PlanQuery(query=q, source="supplied") for q in args.queries]
    how = "pg_stat_statements not consulted (top_queries 0)"
    if args.top_queries:
        with ctx.db.read() as conn:
            found, how = plan_regression.top_queries(conn, tables, args.top_queries)
        refused: dict[str, int] = {}
        for q in found:  # text from the database: planned only once the guard admits it, like the user's
            try:
                gate.admit(ctx.db, q.query, gate.Purpose.PLAN)
            except Agent19Error as exc:  # refused (or not checkable): left out, and said why
                refused[exc.message] = refused.get(exc.message, 0) + 1
                continue
            if all(q.query != k.query for k in queries):
                queries.append(q)
        how += "".join(f"; {n} left out: {why}" for why, n in refused.items())
    if not queries:
        return QueryPlanComparison(queries=0, note=f"plans not compared: no query given (queries) and {how}")
    ctx.progress(len(up), None, "comparing query plans before and after")
    with ctx.db.rolled_back() as conn:
        changes, stopped = plan_regression.compare_plans(conn, replay, indexes, queries)
    worse = sum(c.worse for c in changes)
    note = (f"{len(queries)} queries ({len(args.queries)} supplied; {how}) explained before and after "
            f"{len(indexes)} statement(s) that drop or change indexes, keys or column types: {worse} plan(s) worse by "
            f"{plan_regression.REGRESSION_FACTOR:g}x or more" + (f"; stopped early: {stopped}" if stopped else ""))
    return QueryPlanComparison(queries=len(queries), changes=changes, note=note)


class RollbackArgs(BaseModel):
    up: str | None = Field(default=None, description="the up migration file", json_schema_extra=gate.user_sql("files"))
    down: str | None = Field(default=None, description="the down/undo file (default: the up file's pair by its "
                             "naming convention: .down.sql, Flyway U...)", json_schema_extra=gate.user_sql("files"))
    up_sql: str | None = Field(default=None, description="the up migration as SQL text (instead of a file)",
                               json_schema_extra=gate.user_sql("script"))
    down_sql: str | None = Field(default=None, description="the down migration as SQL text (instead of a file)",
                                 json_schema_extra=gate.user_sql("script"))


@tool(
    name="verify_rollback",
    briefs={
        "up": "file", "down": "file (default: up's pair)", "up_sql": "", "down_sql": "",
    },
    title="Verify rollback",
    args=RollbackArgs,
    result=RollbackResult,
    cli="rollback-check",
    positional=("up", "down"),
    mode=AccessMode.DRY_RUN,
    read_only=False,
    render_text=lambda r: "\n".join([r.summary, *(f"  {d}" for d in r.differences),
                                      *(f"  note: {n}" for n in r.notes)]),
    exit_code=lambda r: 0 if r.verified else 1,
    examples=("agent19 rollback-check 0042_orders.up.sql --mode dry-run",
              "agent19 rollback-check V42__orders.sql U42__orders.sql --mode dry-run"),
)
def verify_rollback_tool(ctx: ToolContext, args: RollbackArgs) -> RollbackResult:
    """Prove a down migration undoes its up migration: apply both (rolled back), compare schemas.

    Prove a rollback: apply the up migration, then the down migration, and compare the schema
    (tables, columns with types/defaults/nullability, constraints, indexes, sequences, enum values)
    with the start. Reports "rollback verified" or the exact differences (e.g. a missing index).
    Runs in a transaction that is rolled back, or in a scratch database when a statement cannot run in
    a transaction: nothing persists. Needs mode dry-run."""
    from agent19.migrate.dryrun.rollback_check import verify_rollback
    from agent19.migrate.layouts.files import load_path
    from agent19.migrate.parse import parse_file, parse_sql

    for text, path in (("up_sql", "up"), ("down_sql", "down")):
        if getattr(args, text) and getattr(args, path):  # one of them used to be ignored, silently
            raise InputError(f"give {path} (a file) or {text}, not both")
    if args.up_sql:
        up = parse_sql(args.up_sql, "up")
    elif args.up:
        migration = load_path(Path(args.up))[0]
        up = migration.statements
        if not args.down and not args.down_sql and migration.down_file:
            args = args.model_copy(update={"down": migration.down_file})
    else:
        raise InputError("give the up migration (a file or up_sql)")
    if args.down_sql:
        down = parse_sql(args.down_sql, "down")
    elif args.down:
        down = parse_file(Path(args.down))
    else:
        raise InputError("no down migration", "give the down file, or name files by golang-migrate "
                         "(.up.sql/.down.sql) or Flyway (V.../U...) conventions")
    return verify_rollback(ctx.db, up, down)  # each statement goes through the gate (dryrun_cluster.screen)
