"""Can this server be recovered, and to how recent a point? (``backup_status``)

Checks, each ``ok`` / ``warning`` / ``critical`` / ``unknown`` with the evidence and the fix:

* ``archive_configured``, ``archive_failures``, ``archive_ready`` — the aspects of
  :func:`agent19.ops.backup.archiver.judge`, the same verdict health's ``archiving`` check gives: archive_mode
  off is a warning (no point-in-time recovery), on without a command critical; the last attempt
  failed (no success since) critical, a failure in the last hour since recovered a warning; segments
  waiting warning ≥ 10, critical ≥ 15 (check_postgres), unknown without superuser or pg_monitor;
* ``last_archived_age`` — the age of the last archived segment; critical when segments wait and the
  last success is older than the recovery-point objective (RPO);
* ``backup_age`` — the newest backup (pgBackRest, WAL-G or a directory of base backups) against
  the RPO;
* ``archive_gaps`` — missing segments in a directory archive: recovery cannot replay past a gap.
"""

from __future__ import annotations

from datetime import datetime
from pathlib import Path

from pydantic import BaseModel, Field

from agent19.config import parse_duration_ms
from agent19.db.connection import Database
from agent19.errors import InputError
from agent19.ops.backup import archive as arch
from agent19.ops.backup.archiver import ArchiverStatus, Aspect, archiver_status
from agent19.ops.health.model import Status, worst
from agent19.ops.health.thresholds import HealthThresholds
from agent19.textsafe import visible
from agent19.units import human_duration

_DEFAULTS = HealthThresholds()  # the same archiving limits as health_check's `archiving` check
READY_WARNING, READY_CRITICAL = _DEFAULTS.archive_ready_warning, _DEFAULTS.archive_ready_critical
FAILURE_WINDOW_S = _DEFAULTS.archive_failure_window_s


class StatusCheck(BaseModel):
    check: str
    status: Status
    message: str
    value: str | int | float | None = None
    threshold: str | int | float | None = None
    fix: str | None = None


class BackupStatus(BaseModel):
    status: Status = Field(description="the worst check")
    summary: str
    rpo_s: float | None = Field(description="the recovery-point objective given, in seconds")
    checks: list[StatusCheck]
    archiver: ArchiverStatus
    newest_backup: arch.BackupEntry | None = None
    backups: list[arch.BackupEntry] = []
    archive: arch.ArchiveScan | None = None


_CHECK = {"configured": "archive_configured", "failures": "archive_failures", "ready": "archive_ready"}
_THRESHOLD = {"failures": f"the last attempt failed: critical; a failure in the last {human_duration(FAILURE_WINDOW_S)}"
                          ", succeeded since: warning",
              "ready": f"warning >= {READY_WARNING}, critical >= {READY_CRITICAL}"}


def _fix(aspect: Aspect) -> str | None:
    if aspect.status in ("ok", "unknown"):
        return None
    if aspect.aspect == "configured":
        return ("ALTER SYSTEM SET archive_mode = on; ALTER SYSTEM SET archive_command = '...'; then restart PostgreSQL "
                "(or accept recovery only to the last base backup)") if aspect.value == "archive_mode=off" else \
            "ALTER SYSTEM SET archive_command = '...'; SELECT pg_reload_conf();"
    if aspect.aspect == "failures":
        return ("read the server log for the archive_command's error; run the command by hand as the postgres user "
                "with a real segment")
    return "the archiver is failing or too slow: check archive_failures and the archive's storage"


def _archive_checks(a: ArchiverStatus, rpo_s: float | None) -> list[StatusCheck]:
    """One check per aspect of :func:`agent19.ops.backup.archiver.judge` (the verdict health's ``archiving`` check
    gives too), then the age of the last archived segment against the RPO."""
    aspects = a.judge()
    out = [StatusCheck(check=_CHECK[x.aspect], status=x.status, message=x.message, value=x.value,
                       threshold=_THRESHOLD.get(x.aspect), fix=_fix(x)) for x in aspects]
    archiving = len(aspects) > 1  # off, or a standby leaving it to its primary: only `configured` is judged
    if not archiving:
        out += [StatusCheck(check=name, status="ok", message=f"not archiving here: {aspects[0].message}")
                for name in ("archive_failures", "archive_ready")]
    age = a.age_s(a.last_archived_time)
    waiting = bool(a.ready_count) or a.failing
    if not archiving:
        out.append(StatusCheck(check="last_archived_age", status="ok", message="not archiving here"))
    elif age is None:
        out.append(StatusCheck(check="last_archived_age", status="warning" if rpo_s is not None and waiting else "ok",
                               threshold=rpo_s, message="no WAL segment has been archived" + (
                                   " since the statistics were reset" if a.stats_reset else "")
                               + ("; segments are waiting" if waiting else "")))
    else:
        late = rpo_s is not None and waiting and age > rpo_s
        out.append(StatusCheck(
            check="last_archived_age", status="critical" if late else "ok", value=round(age, 1),
            threshold=rpo_s, message=f"last archived segment {a.last_archived_wal}, {human_duration(age)} ago"
            + (f"; segments are waiting and the RPO is {human_duration(rpo_s)}" if late else ""),
            fix="fix archiving: everything written since the last archived segment would be lost" if late else None))
    return out


CLOCK_SKEW_S = 300
"""A backup dated further in the future than this is a wrong clock, not a fresh backup."""


def _backup_check(backups: list[arch.BackupEntry], rpo_s: float | None, now: datetime,
                  given: bool) -> tuple[StatusCheck, arch.BackupEntry | None]:
    dated = [b for b in backups if b.finished is not None]
    newest = max(dated, key=lambda b: b.finished) if dated else None  # type: ignore[arg-type, return-value]
    if not given:
        return StatusCheck(check="backup_age", status="unknown", message="newest backup: unknown - pass "
                           "--pgbackrest-info, --walg-backup-list or --backup-dir"), None
    if newest is None or newest.finished is None:
        return StatusCheck(check="backup_age", status="critical", message="no backup found",
                           fix="take a base backup (pg_basebackup, pgBackRest, WAL-G) and verify it"), None
    if (newest.finished - now).total_seconds() > CLOCK_SKEW_S:
        return StatusCheck(check="backup_age", status="warning", threshold=rpo_s,
                           message=f"newest backup {newest.label} ({newest.source}) says it finished "
                           f"{newest.finished.isoformat()}, in the future: a clock is wrong, its age is unknown",
                           fix="fix the clock of the host that took or labelled it (NTP), then check again"), newest
    age = max(0.0, (now - newest.finished).total_seconds())
    late = rpo_s is not None and age > rpo_s
    return StatusCheck(
        check="backup_age", status="critical" if late else "ok", value=round(age, 1), threshold=rpo_s,
        message=f"newest backup {newest.label} ({newest.source}) finished {human_duration(age)} ago"
        + (f", older than the RPO ({human_duration(rpo_s)})" if late else
           "" if rpo_s is None else f", within the RPO ({human_duration(rpo_s)})"),
        fix="take a backup now, and schedule them more often than the RPO" if late else None), newest


def _gap_check(scan: arch.ArchiveScan) -> StatusCheck:
    if scan.damaged:
        return StatusCheck(
            check="archive_gaps", status="critical", value=len(scan.gaps) + len(scan.damaged),
            message=f"{len(scan.damaged)} segment(s) in {scan.directory} are not a whole segment (truncated copies, "
                    f"or a copy still in progress), first {scan.damaged[0]}: recovery cannot replay past it",
            fix="make archive_command copy to a temporary name and rename it, then take a new base backup")
    if not scan.segments:
        return StatusCheck(check="archive_gaps", status="warning", value=0,
                           message=f"no WAL archived yet in {scan.directory}: point-in-time recovery has nothing to "
                                   "replay",
                           fix="check that archive_command copies into this directory (see the archiving check), "
                               "or pass the directory it copies to")
    if not scan.gaps:
        return StatusCheck(check="archive_gaps", status="ok", value=0,
                           message=f"{scan.segments} segment(s) in {scan.directory}, {scan.first} ... {scan.last}, "
                                   "no gap")
    first = scan.gaps[0]
    return StatusCheck(
        check="archive_gaps", status="critical", value=len(scan.gaps),
        message=f"{sum(g.missing_count for g in scan.gaps)} segment(s) missing from {scan.directory}, first "
                f"{first.missing_first}: point-in-time recovery from an earlier base backup cannot go past "
                f"{first.after}",
        fix="take a new base backup now: recovery from it does not need the missing segments")


def parse_rpo(text: str) -> float:
    """``'15min'`` / ``'24h'`` / ``'1d'`` → seconds; a unit is required."""
    value = text.strip()
    if value.endswith("d") and value[:-1].strip().isdigit():
        return int(value[:-1]) * 86400.0
    if value.isdigit():
        raise InputError(f"rpo {text!r} has no unit", "e.g. --rpo 15min, --rpo 24h, --rpo 1d")
    return parse_duration_ms(value, "rpo") / 1000


def backup_status(db: Database, *, rpo: str | None = None, pgbackrest_info: str | None = None,
                  walg_backup_list: str | None = None, backup_dir: str | None = None,
                  archive_dir: str | None = None) -> BackupStatus:
    rpo_s = parse_rpo(rpo) if rpo else None
    with db.read() as conn:
        a = archiver_status(conn)
    checks = _archive_checks(a, rpo_s)
    backups: list[arch.BackupEntry] = []
    if pgbackrest_info:
        backups += arch.from_pgbackrest(pgbackrest_info)
    if walg_backup_list:
        backups += arch.from_walg(walg_backup_list)
    if backup_dir:
        backups += arch.from_directory(Path(backup_dir))
    check, newest = _backup_check(backups, rpo_s, a.now, bool(pgbackrest_info or walg_backup_list or backup_dir))
    checks.append(check)
    scan = arch.scan_archive(Path(archive_dir), a.wal_segment_bytes) if archive_dir else None
    if scan:
        checks.append(_gap_check(scan))
    status = worst([c.status for c in checks])
    bad = [c for c in checks if c.status in ("warning", "critical")]
    summary = f"backups and archiving: {status}" + (": " + "; ".join(c.message for c in bad) if bad else "")
    return BackupStatus(status=status, summary=summary, rpo_s=rpo_s, checks=checks, archiver=a, newest_backup=newest,
                        backups=backups, archive=scan)


def render(s: BackupStatus) -> str:
    lines = [s.summary]
    for c in s.checks:
        lines.append(f"  {c.status:8} {c.check}: {c.message}")
        if c.fix and c.status != "ok":
            lines.append(f"           fix: {c.fix}")
    return "\n".join(visible(line) for line in lines)  # names and labels come from files and the database
