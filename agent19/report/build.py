"""Build every document of a migration from its plan: :func:`build_report`.

Inputs: the :class:`~agent19.migrate.planning.model.MigrationPlan` (required), the catalog snapshot
and :class:`~agent19.report.model.LiveFacts` of the target database (optional: without them sizes
and the schema version are "unknown" and the documents say how to find them), a dry-run result
(optional: without it every test result reads "not run"), and the upstream inputs of a pipeline
(feature requirements, performance issues).
"""

from __future__ import annotations

from datetime import UTC, datetime

from pydantic import BaseModel, Field

import agent19
from agent19.db.models import SchemaSnapshot
from agent19.migrate.patterns.sqlnames import literal
from agent19.migrate.planning.model import MigrationPlan
from agent19.report.guardrails import guardrails
from agent19.report.model import (
    Action,
    BackupEvidence,
    DevOpsHandoff,
    DryRunEvidence,
    Handoff,
    HandoffStep,
    Header,
    LiveFacts,
    Metric,
    PerformanceIssue,
    Prerequisite,
    Report,
    RollbackPlan,
    Runbook,
    SignOff,
    SqlCheck,
    Step,
)
from agent19.report.recipients import application_handoff, qa_handoff, security_handoff
from agent19.report.review import checklist, gates
from agent19.report.spec import specification
from agent19.report.sqlfacts import statement_facts
from agent19.report.steps import build_steps, find_table, rollback_steps

FILES = {
    "runbook": "runbook.md", "specification": "specification.md", "rollback_plan": "rollback-plan.md",
    "migration_sql": "migration.sql", "rollback_sql": "rollback.sql", "devops": "devops.md",
    "application": "application.md", "qa": "qa.md", "security": "security.md", "handoff": "handoff.json",
}
"""Document → file name in a handoff folder (and in ``--write DIR``)."""


class ReportOptions(BaseModel):
    requirements: str | None = Field(default=None, description="feature requirements (free text) for the summary")
    performance_issues: list[PerformanceIssue] = []
    files: list[str] = Field(default=[], description="the migration files the plan was made from")
    database: str | None = Field(default=None, description="the target database, password redacted")
    backup: BackupEvidence | None = Field(default=None, description="a verify_backup result, when given")
    lock_timeout_ms: int = 5_000
    statement_timeout_ms: int = 30_000


def _ms(ms: int) -> str:
    return f"{ms // 1000}s" if ms % 1000 == 0 else f"{ms}ms"


def _header(plan: MigrationPlan, opts: ReportOptions) -> Header:
    return Header(
        id=plan.id, name=plan.name, description=plan.description, risk_level=plan.risk_level,
        estimated_duration=plan.estimated_duration, strategy=plan.deployment.kind,
        strategy_reason=plan.deployment.reason, pg_version=plan.pg_version, database=opts.database, live=plan.live,
        generated_at=datetime.now(UTC).isoformat(timespec="seconds"), generated_by=f"agent19 {agent19.__version__}",
    )


def _existing_tables(steps: list[Step]) -> list[str]:
    created, seen = set(), []
    for s in steps:
        for f in statement_facts(s.sql):
            if f.kind == "create_table":
                created.add(f.table)
            elif f.table and f.table not in created and f.table not in seen and "," not in f.table:
                seen.append(f.table)
    return seen


def _prerequisites(plan: MigrationPlan, steps: list[Step], facts: LiveFacts | None) -> list[Prerequisite]:
    tables = _existing_tables(steps)
    owner_sql = ("SELECT coalesce(bool_and(pg_has_role(current_user, c.relowner, 'USAGE')), true) AS ok\n"
                 "  FROM pg_class c WHERE c.oid = ANY (ARRAY[" + ", ".join(
                     f"to_regclass({literal(t)})" for t in tables) + "]::oid[])") if tables else (
        "SELECT has_database_privilege(current_database(), 'CREATE') AS ok")
    hours = 1 if plan.risk_level == "critical" else 24
    out = [Prerequisite(
        requirement="Admin access: the deploying role owns the tables the migration alters",
        how_to_verify="run the query as the role that will run the migration",
        check=SqlCheck(name="deploying role may alter the tables", sql=owner_sql, expected="ok = true"),
    )]
    archive = ("" if facts is None else f" (when generated: archive_mode = {facts.archive_mode}, last WAL archived "
               f"{facts.last_archived_at or 'never'})")
    out.append(Prerequisite(
        requirement=f"A backup no older than {hours} h ({'critical' if hours == 1 else plan.risk_level} risk)",
        how_to_verify="fill in the time of the last successful backup: read it from your backup tool "
        "(`pgbackrest info`, `wal-g backup-list`, `barman list-backups`, or the provider's snapshot list); "
        f"the query shows whether WAL archiving works{archive}",
        check=SqlCheck(name="WAL archiving is working",
                       sql="SELECT archived_count > 0 AND (last_failed_time IS NULL OR last_failed_time < "
                       "last_archived_time) AS ok, last_archived_time FROM pg_stat_archiver",
                       expected="ok = true when point-in-time recovery is set up; false means rely on a "
                       "fresh dump (pre-deployment)", blocking=False)))
    out.append(Prerequisite(
        requirement="Stakeholders notified: the window, the expected duration "
        f"({plan.estimated_duration}) and the impact (steps with downtime: "
        f"{', '.join(str(s.order) for s in steps if s.downtime) or 'none'})",
        how_to_verify="the announcement is posted where your team announces deployments"))
    out.append(Prerequisite(
        requirement="Application deploys paused for the window, except the deploys the application handoff "
        "schedules between phases",
        how_to_verify="the deploy pipeline is locked or the release owner confirms"))
    if facts is not None and facts.migration_table:
        out.append(Prerequisite(
            requirement=f"The database is at the expected schema version ({facts.migration_tool})",
            how_to_verify=f"when generated the latest applied migration was {facts.schema_version!r}",
            check=SqlCheck(name="schema version", sql=_version_sql(facts.migration_tool or "", facts.migration_table),
                           expected=f"version = {facts.schema_version}")))
    else:
        why = ("no migration-tool table (_prisma_migrations, flyway_schema_history, schema_migrations, "
               "alembic_version, django_migrations) exists in the database" if facts is not None
               else "unknown - no database was given")
        out.append(Prerequisite(
            requirement="The database is at the expected schema version",
            how_to_verify=f"{why}: confirm with your migration tool that the previous migration is applied "
            "(e.g. `prisma migrate status`, `flyway info`, `migrate version`)"))
    size = "" if facts is None else (f" - when generated: {facts.size_bytes / 1024**2:,.1f} MB, "
                                     f"{facts.connections} of {facts.max_connections} connections")
    out.append(Prerequisite(
        requirement="Database size and connections are as expected" + size,
        how_to_verify="compare with the figures in this requirement; many more connections than usual means "
        "traffic is unusual: postpone",
        check=SqlCheck(
            name="size and connections",
            sql="SELECT pg_size_pretty(pg_database_size(current_database())) AS size,\n"
                "       (SELECT count(*) FROM pg_stat_activity WHERE datname = current_database()) AS connections,\n"
                "       current_setting('max_connections')::int AS max_connections",
            expected="connections below 80 % of max_connections; size close to the one above",
            blocking=False)))
    out.append(Prerequisite(
        requirement=f"The server is PostgreSQL {plan.pg_version // 10000} (the version the plan was made for)",
        how_to_verify="if it is another major version, plan again: lock behaviour differs between versions",
        check=SqlCheck(name="server version",
                       sql=f"SELECT current_setting('server_version_num')::int / 10000 = {plan.pg_version // 10000}"
                       " AS ok", expected="ok = true")))
    return out


VERSION_TABLES = {
    "prisma": ("_prisma_migrations", "SELECT migration_name AS version FROM {t} WHERE finished_at IS NOT NULL "
               "AND rolled_back_at IS NULL ORDER BY finished_at DESC LIMIT 1"),
    "flyway": ("flyway_schema_history", "SELECT version FROM {t} WHERE success AND version IS NOT NULL "
               "ORDER BY installed_rank DESC LIMIT 1"),
    "golang-migrate / rails": ("schema_migrations", "SELECT max(version::text) AS version FROM {t}"),
    "alembic": ("alembic_version", "SELECT max(version_num) AS version FROM {t}"),
    "django": ("django_migrations", "SELECT app || '.' || name AS version FROM {t} ORDER BY applied DESC LIMIT 1"),
}
"""Migration tool → (its bookkeeping table, the query for the latest applied version)."""


def _version_sql(tool: str, table: str) -> str:
    return VERSION_TABLES[tool][1].format(t=table) if tool in VERSION_TABLES else f"SELECT * FROM {table}"


def _pre_deployment(plan: MigrationPlan, steps: list[Step], opts: ReportOptions) -> list[Action]:
    out = [Action(
        title="Health check: no long transactions", detail="a transaction open for minutes holds locks the "
        "migration would queue behind (and every later query queues behind the migration)",
        check=SqlCheck(name="no long transactions",
                       sql="SELECT count(*) AS long_transactions FROM pg_stat_activity\n"
                           " WHERE xact_start < now() - interval '5 minutes' AND pid <> pg_backend_pid()",
                       expected="long_transactions = 0 (else wait, or find them in pg_stat_activity)")),
        Action(title="Health check: replicas keep up", detail="a lagging replica falls further behind during "
               "table rewrites and index builds",
               check=SqlCheck(name="replication lag",
                              sql="SELECT coalesce(max(extract(epoch FROM replay_lag)), 0) AS lag_seconds "
                                  "FROM pg_stat_replication",
                              expected="lag_seconds < 5 (0 when there is no replica)", blocking=False))]
    tables = _existing_tables(steps)
    if plan.risk_level in ("high", "critical") or any(s.data_loss for s in steps):
        flags = " ".join(f"--table={t}" for t in tables)
        out.append(Action(
            title="Backup the affected tables",
            detail="a logical copy of the tables this migration changes, in addition to the regular backup "
            "(prerequisite); keep it until the migration is signed off",
            command=f'pg_dump --format=custom {flags} --file=pre-{plan.id}.dump "$DATABASE_URL"'.replace("  ", " ")))
    if any(s.downtime for s in steps):
        which = ", ".join(f"step {s.order} ({s.downtime_kind.replace('_', ' ')})" for s in steps if s.downtime)
        out.append(Action(title="Maintenance mode", detail=f"{which} block traffic while they run: put the "
                          "application in maintenance mode (or accept the blocked requests) for those steps"))
    out.append(Action(title="Session settings", detail="in the session that runs the migration: fail fast instead "
                      "of queueing traffic behind a lock; retry later when a lock is not granted", lang="sql",
                      command=f"SET lock_timeout = '{_ms(opts.lock_timeout_ms)}'; "
                      f"SET statement_timeout = '{_statement_timeout(steps, opts)}';"))
    return out


def _statement_timeout(steps: list[Step], opts: ReportOptions) -> str:
    long = any(s.rewrite or any(k in s.kind for k in ("index", "validate", "not_null")) for s in steps)
    return "0" if long else _ms(
        opts.statement_timeout_ms)


MONITORING = [
    Metric(name="sessions waiting for a lock", sql="SELECT count(*) AS waiting FROM pg_locks WHERE NOT granted",
           threshold="> 0 for longer than lock_timeout", action="find the blocker with pg_blocking_pids(); "
           "cancel the migration's statement (pg_cancel_backend) and retry later"),
    Metric(name="long-running queries", sql="SELECT count(*) AS long_running FROM pg_stat_activity\n"
           " WHERE state <> 'idle' AND now() - query_start > interval '60 seconds' AND pid <> pg_backend_pid()",
           threshold="> 0 (60 s)", action="check whether they wait on the migration's locks"),
    Metric(name="connections in use", sql="SELECT round(100.0 * count(*) / current_setting('max_connections')::int)"
           " AS pct FROM pg_stat_activity", threshold="> 80 %",
           action="requests are piling up behind a lock: stop the step"),
    Metric(name="replication lag", sql="SELECT coalesce(max(extract(epoch FROM replay_lag)), 0) AS lag_seconds "
           "FROM pg_stat_replication", threshold="> 5 s", action="pause between steps until replicas catch up"),
    Metric(name="idle in transaction", sql="SELECT count(*) AS idle_in_tx FROM pg_stat_activity "
           "WHERE state = 'idle in transaction'", threshold="> 0 for more than 1 min during a step",
           action="such sessions hold locks: end them (pg_terminate_backend) or wait"),
]

SIGNOFF = [
    SignOff(role="Database engineer", responsibility="plan, dry run and runbook reviewed"),
    SignOff(role="DevOps / release owner", responsibility="window, backup and execution"),
    SignOff(role="Application owner", responsibility="application compatible at every step"),
    SignOff(role="QA", responsibility="test cases pass after deployment"),
    SignOff(role="Security", responsibility="security review accepted"),
]


def _rollback_plan(plan: MigrationPlan, header: Header, steps: list[Step]) -> RollbackPlan:
    rsteps = rollback_steps(steps)
    lossy = [s for s in steps if s.data_loss]
    restore: list[Action] = []
    if lossy or any(s.rollback_sql is None for s in steps):
        tables = _existing_tables(lossy or steps)
        restore = [
            Action(title="Stop writes", detail="put the application in maintenance mode for the affected tables: "
                   + ", ".join(tables)),
            Action(title="Undo the structure", detail="run the rollback SQL of the steps below, last step first"),
            Action(title="Restore the data into a scratch database",
                   detail="restore the pre-deployment dump of the affected tables into a new database",
                   command=f'createdb restore_{plan.id[:12]} && pg_restore --dbname=restore_{plan.id[:12]} '
                   f'pre-{plan.id}.dump'),
            Action(title="Copy the lost values back",
                   detail="for each dropped column: \\copy (SELECT primary key, column FROM table) out of the "
                   "scratch database, \\copy it into a temporary table on the target, then UPDATE the table "
                   "joining on the primary key; for a dropped table restore it whole with pg_restore --table"),
            Action(title="Verify and reopen", detail="run the pre-deployment checks and the QA row counts, then "
                   "leave maintenance mode; drop the scratch database"),
        ]
    if lossy:
        which = ", ".join(str(s.order) for s in lossy)
        summary = (f"step{'s' if len(lossy) > 1 else ''} {which} destroy{'' if len(lossy) > 1 else 's'} data: SQL "
                   "restores at most the structure, the data only comes back from the pre-deployment backup "
                   "(restore procedure below)")
    elif plan.rollback.kind == "automatic":
        summary = "every step has rollback SQL; run it in the order below, last step first"
    else:
        summary = plan.rollback.description
    return RollbackPlan(header=header, kind="restore_from_backup" if lossy else plan.rollback.kind, summary=summary,
                        steps=rsteps, restore_procedure=restore)


def _devops(plan: MigrationPlan, steps: list[Step], opts: ReportOptions) -> DevOpsHandoff:
    order = [
        f"step {s.order}: {s.title} - "
        f"{'in the migration transaction' if s.in_transaction else 'ON ITS OWN, autocommit'}"
        f"; {s.lock_level or 'no table lock'}; {s.estimated_time}" for s in steps]
    lossy = any(s.data_loss for s in steps)
    backup = ("required: the pre-deployment dump of the affected tables plus a full backup no older than "
              f"{1 if plan.risk_level == 'critical' else 24} h" if lossy or plan.risk_level in ("high", "critical")
              else f"a regular backup no older than 24 h ({plan.risk_level} risk, no data loss)")
    return DevOpsHandoff(
        files=[FILES["runbook"], FILES["migration_sql"], FILES["rollback_sql"], FILES["rollback_plan"]],
        run_order=order, outside_transaction=[s.order for s in steps if not s.in_transaction],
        lock_timeout=f"{_ms(opts.lock_timeout_ms)} - fail fast instead of queueing traffic; retry on failure",
        statement_timeout=(_statement_timeout(steps, opts) + (" (disabled: index builds and rewrites run long)"
                           if _statement_timeout(steps, opts) == "0" else "")),
        expected_duration=plan.estimated_duration, maintenance_window=any(s.downtime for s in steps),
        backup_required=backup,
    )


def _escalation_summary(plan: MigrationPlan) -> str:
    return plan.escalation_summary or ("not decided: the plan was made by an agent19 without escalations; "
                                       "plan the migration again")


def build_report(plan: MigrationPlan, *, catalog: SchemaSnapshot | None = None, facts: LiveFacts | None = None,
                 dry_run: DryRunEvidence | None = None, options: ReportOptions | None = None) -> Report:
    opts = options or ReportOptions()
    header = _header(plan, opts)
    steps = build_steps(plan, catalog, dry_run)
    prisma = None if facts is None else facts.migration_tool == "prisma"
    app = application_handoff(steps, prisma)
    sizes_known = plan.live or (catalog is not None and all(
        find_table(catalog, t) is not None for t in _existing_tables(steps)))
    items = checklist(plan, steps, dry_run, app, sizes_known)
    gate_items = gates(steps, dry_run, app, items, len(opts.performance_issues))
    rollback = _rollback_plan(plan, header, steps)
    post = [s.verification for s in steps if s.verification] + [
        SqlCheck(name=v.name, sql=v.query, expected=v.expected, blocking=v.blocking)
        for v in plan.validation if v.phase == "after"]
    pre = _pre_deployment(plan, steps, opts)
    guards = guardrails(steps, dry_run, opts.backup, MONITORING, _ms(opts.lock_timeout_ms),
                        next(i for i in items if i.name == "Rollback tested"))
    named = {a.check.name for a in pre if a.check}
    pre += [Action(title=v.name, detail="plan validation before the migration",
                   check=SqlCheck(name=v.name, sql=v.query, expected=v.expected, blocking=v.blocking))
            for v in plan.validation if v.phase == "before" and v.name not in named]
    runbook = Runbook(
        header=header, requirements=opts.requirements, prerequisites=_prerequisites(plan, steps, facts),
        plan_prerequisites=plan.prerequisites,
        pre_deployment=pre,
        steps=steps, post_deployment=post, rollback=rollback, monitoring=MONITORING, signoff=SIGNOFF,
        checklist=items, gates=gate_items,
        findings=[f"{f.severity} {f.rule} (step {f.operation}): {f.message}" for f in plan.findings],
        performance_issues=opts.performance_issues,
        escalations=plan.escalations, escalation_summary=_escalation_summary(plan), guardrails=guards,
    )
    spec = specification(plan, header, steps, runbook, dry_run, opts.requirements, opts.files,
                         opts.performance_issues)
    handoff = Handoff(
        migration=header, requirements=opts.requirements, files=FILES,
        steps=[HandoffStep(order=s.order, sql=s.sql, lock_level=s.lock_level, downtime=s.downtime_kind,
                           in_transaction=s.in_transaction, risk=s.risk, data_loss=s.data_loss,
                           rollback_sql=s.rollback_sql, verification=s.verification) for s in steps],
        devops=_devops(plan, steps, opts), application=app, qa=qa_handoff(steps),
        security=security_handoff(steps, catalog), checklist=items, gates=gate_items, dry_run=dry_run,
        performance_issues=opts.performance_issues,
        escalations=plan.escalations, escalation_summary=_escalation_summary(plan), index_costs=plan.index_costs,
        guardrails=guards,
    )
    return Report(runbook=runbook, specification=spec, rollback_plan=rollback, handoff=handoff)
