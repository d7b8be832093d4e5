"""verify_backup (CLI ``agent19 backup verify``) and backup_status (CLI ``agent19 backup status``)."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, Field

from agent19.errors import DatabaseUnavailable, InputError
from agent19.migrate.dryrun import scratch as scratch
from agent19.ops.backup import workdir as backup_workdir
from agent19.ops.backup.model import VerifyResult
from agent19.ops.backup.runbook import RestoreRunbook
from agent19.ops.backup.status import BackupStatus
from agent19.ops.backup.status import render as render_status
from agent19.ops.backup.summary import render as render_verify
from agent19.safety import gate
from agent19.tool_names import argument
from agent19.tools.registry import ToolContext, tool

# SIGTERM/SIGHUP remove work directories (stopping their clusters) and drop scratch databases;
# handlers can only be installed from the main thread, where the tools are imported.
scratch.install_signal_handlers()
backup_workdir.install_signal_handlers()


class VerifyBackupArgs(BaseModel):
    kind: Literal["logical", "physical", "pitr"] = Field(
        default="logical", description="logical: pg_dump -> restore -> compare; physical: pg_basebackup -> "
        "pg_verifybackup -> start the copy -> compare; pitr: base backup + WAL archive recovered to --target-time")
    from_path: str | None = Field(default=None, json_schema_extra={"cli": "from"}, description="verify this "
                                  "existing backup instead of making one: a pg_dump file or directory (logical), "
                                  "a pg_basebackup directory, plain or tar (physical, pitr); never modified")
    jobs: int = Field(default=1, ge=1, le=32, description="parallel jobs for dump, restore and checksums "
                      "(logical: >1 dumps in directory format)")
    restore_into: Literal["auto", "scratch", "cluster"] = Field(
        default="auto", description="logical: a scratch database on the target's server (mode dry-run; the live "
        "database verified by its owner role, never a superuser login or a dump file), or a throwaway cluster in "
        "the work directory (restored by a role without privileges); auto: scratch unless the mode or the login "
        "forbids it or the target's disk would be left with under a tenth (or 1 GB) free")
    work_dir: str | None = Field(default=None, description="where dumps, base backups and throwaway clusters go "
                                 "(default: the system's temporary directory); needs room for the copy")
    archive_dir: str | None = Field(default=None, description="pitr: the WAL archive directory (what "
                                    "archive_command copies into)")
    target_time: str | None = Field(default=None, description="pitr: recover to this moment, e.g. "
                                    "'2026-11-30 14:00:00+00' (default: the end of the archive); must be in the "
                                    "past and after the start of the base backup given with --from")
    checks: list[str] = Field(default=[], description="pitr: queries run in the recovered database; each must "
                              "return true (e.g. a row committed before the target exists); each one read, "
                              "checked by the read-only guard", json_schema_extra=gate.user_sql("statements"))


@tool(
    name="verify_backup",
    briefs={
        "kind": "", "from_path": "verify this backup, not a new one", "jobs": "",
        "restore_into": "logical only", "work_dir": "", "archive_dir": "pitr", "target_time": "",
        "checks": "pitr: queries returning true",
    },
    title="Verify a backup",
    args=VerifyBackupArgs,
    result=VerifyResult,
    cli="backup verify",
    read_only=False,
    idempotent=True,
    render_text=render_verify,
    exit_code=lambda r: 0 if r.verified else 1,
    error_formats={"json": lambda exc: _error_json(exc)},
    examples=(
        "agent19 backup verify --dsn postgresql://app@db/shop --mode dry-run",
        "agent19 backup verify --from nightly.dump --restore-into cluster --format json",
        "agent19 backup verify --kind physical --work-dir /mnt/scratch",
        "agent19 backup verify --kind pitr --from /backups/base --archive-dir /wal "
        "--target-time '2026-11-30 14:00:00+00' --checks 'SELECT count(*) > 0 FROM orders'",
    ),
)
def verify_backup(ctx: ToolContext, args: VerifyBackupArgs) -> VerifyResult:
    """Prove a backup (logical, physical or PITR) restores to the same data; measure the restore time.

    Prove a backup restores to the same data, and measure how long a restore takes. logical: pg_dump
    of the target at an exported snapshot (or an existing dump file), restored into a scratch database or
    a throwaway cluster, then compared with exactly what the dump saw: schema (the rollback check's
    catalog comparison), row count and content checksum per table, sequence values, extensions.
    physical: pg_basebackup, pg_verifybackup (names damaged files), the copy started on loopback and
    compared. pitr: a base backup recovered from a WAL archive directory to a target time, with checks.
    Reports durations, sizes and a restore-time (RTO) estimate with its method. Only reads the target;
    refuses when the disk lacks room; everything it creates is removed, also on SIGTERM and after a
    SIGKILL (next run). verified=false (exit 1) names the table, file or difference."""
    from agent19.safety import policy

    result = _verify(ctx, args)
    if result.verified and args.from_path is None:  # a fresh backup of the configured database
        policy.record_backup(ctx.settings, ctx.db, result.kind)
    return result


def _error_json(exc: Exception) -> list[str]:
    """`--format json` when verification could not run (exit status 2, 3): a document that says so, not nothing."""
    import json

    from agent19.db.redact import redact_text

    status = getattr(exc, "exit_code", 2) if not isinstance(exc, DatabaseUnavailable) else 3
    return [json.dumps({"verified": False, "could_not_verify": True, "exit_status": status,
                        "error": redact_text(str(exc))}, ensure_ascii=False, indent=2)]


def _verify(ctx: ToolContext, args: VerifyBackupArgs) -> VerifyResult:
    if args.kind == "logical":
        from agent19.ops.backup.logical import verify_logical

        return verify_logical(ctx.db, from_file=args.from_path, jobs=args.jobs, restore_into=args.restore_into,
                              work_base=args.work_dir, progress=ctx.progress)
    if args.kind == "physical":
        from agent19.ops.backup.physical import verify_physical

        return verify_physical(ctx.db, from_dir=args.from_path, jobs=args.jobs, work_base=args.work_dir,
                               progress=ctx.progress)
    if not args.archive_dir:
        raise InputError("a point-in-time drill needs the WAL archive", f"pass {argument('archive_dir')} DIR")
    from agent19.ops.backup.pitr import verify_pitr

    return verify_pitr(ctx.db, archive_dir=args.archive_dir, base_backup=args.from_path,
                       target_time=args.target_time, checks=args.checks, work_base=args.work_dir,
                       progress=ctx.progress)


class BackupStatusArgs(BaseModel):
    rpo: str | None = Field(default=None, description="recovery-point objective: the most data you accept to "
                            "lose, e.g. 15min, 24h, 1d; judged against the newest backup and the archiver")
    pgbackrest_info: str | None = Field(default=None, description="output of `pgbackrest info --output=json` "
                                        "(a file, or the JSON text)")
    walg_backup_list: str | None = Field(default=None, description="output of `wal-g backup-list --json "
                                         "--detail` (a file, or the JSON text)")
    backup_dir: str | None = Field(default=None, description="a directory of pg_basebackup backups (their "
                                   "backup_label says when each started)")
    archive_dir: str | None = Field(default=None, description="a directory WAL archive: gaps in its segment "
                                    "sequence are reported")


@tool(
    name="backup_status", catalog_only=True,
    briefs={
        "rpo": "e.g. 15min", "pgbackrest_info": "`pgbackrest info --output=json`",
        "walg_backup_list": "`wal-g backup-list --json --detail`", "backup_dir": "pg_basebackup backups",
        "archive_dir": "",
    },
    title="Backup status",
    args=BackupStatusArgs,
    result=BackupStatus,
    cli="backup status",
    render_text=render_status,
    exit_code=lambda r: 1 if r.status in ("warning", "critical") else 0,
    examples=(
        "agent19 backup status --rpo 24h --backup-dir /backups",
        "agent19 backup status --rpo 15min --pgbackrest-info info.json --format json",
        "agent19 backup status --archive-dir /var/lib/postgresql/wal-archive",
    ),
)
def backup_status_tool(ctx: ToolContext, args: BackupStatusArgs) -> BackupStatus:
    """Can this server be recovered, to how recent a point? Archiving, backup age vs RPO, archive gaps.

    Can this server be recovered, and how recent a point? Checks archive_mode and archive_command,
    pg_stat_archiver failures (critical if one in the last hour) and the age of the last archived
    segment, WAL segments waiting to be archived (warning at 10, critical at 15), the newest backup's age
    against the recovery-point objective (from pgBackRest or WAL-G JSON, or a backup directory), and gaps
    in a directory WAL archive (point-in-time recovery cannot pass one). Each check: status, message, fix.
    Read-only."""
    from agent19.ops.backup.status import backup_status

    return backup_status(ctx.db, rpo=args.rpo, pgbackrest_info=args.pgbackrest_info,
                         walg_backup_list=args.walg_backup_list, backup_dir=args.backup_dir,
                         archive_dir=args.archive_dir)


class RestoreRunbookArgs(BaseModel):
    verify_result: str | None = Field(default=None, description="the output of `agent19 backup verify --format "
                                      "json` (a file or the JSON text): its measured timings go in the runbook")
    archive_dir: str | None = Field(default=None, description="the WAL archive directory, for restore_command")
    backup_dir: str | None = Field(default=None, description="the base backup to restore from")
    jobs: int = Field(default=4, ge=1, le=64, description="pg_restore --jobs in the commands")
    write_dir: str | None = Field(default=None, json_schema_extra={"cli": "write"},
                                  description="also write restore-runbook.md and restore-runbook.json here")


@tool(
    name="restore_runbook", catalog_only=True,
    briefs={
        "verify_result": "verify_backup's JSON or file", "archive_dir": "", "backup_dir": "", "jobs": "",
        "write_dir": "",
    },
    title="Restore runbook",
    args=RestoreRunbookArgs,
    result=RestoreRunbook,
    cli="backup runbook",
    read_only=False,
    render_text=lambda r: r.markdown + "".join(f"\nwritten: {p}" for p in r.written),
    examples=("agent19 backup verify --format json > verify.json && agent19 backup runbook --verify-result "
              "verify.json --archive-dir /wal --backup-dir /backups/base --write out/",),
)
def restore_runbook_tool(ctx: ToolContext, args: RestoreRunbookArgs) -> RestoreRunbook:
    """Write the restore runbook: measured restore times, exact restore and PITR commands.

    The restore runbook for this server (Markdown and JSON): how long a restore takes here (from a
    verify_backup result: measured durations and the RTO estimate with its method), and the exact commands
    for this PostgreSQL version — pg_dump/pg_restore with --jobs, restoring a base backup, recovery.signal
    and restore_command for point-in-time recovery (recovery.conf before PostgreSQL 12), what the log
    says when the archive has a gap, and what to do after promotion. No password appears in it. Writes
    files only with write_dir."""
    from agent19.ops.backup.runbook import restore_runbook

    return restore_runbook(ctx.db, verify_result=args.verify_result, archive_dir=args.archive_dir,
                           backup_dir=args.backup_dir, jobs=args.jobs, write_dir=args.write_dir)
