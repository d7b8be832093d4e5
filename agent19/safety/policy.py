"""Execute-mode policies the operator opts into: a dry run first, a verified backup before data changes.

``require_verified_backup_hours`` (``AGENT19_REQUIRE_VERIFIED_BACKUP=24``): an UPDATE, DELETE or MERGE
runs in execute mode only when ``verify_backup`` verified a fresh backup of the same database (restored
and compared) within that many hours; verified backups are recorded in ``<data_dir>/backups.jsonl``.

``require_lock_ack`` (``AGENT19_REQUIRE_LOCK_ACK=1``): a statement whose plan (``plan_migration`` with
the live catalog) carries lock warnings — lint findings of severity warning or error, other than the
missing lock_timeout (agent19's sessions always set one) — runs only when ``acknowledge`` lists each
warning's rule code.

With ``require_dry_run`` (``AGENT19_REQUIRE_DRY_RUN=1``), a statement that changes something runs in
execute mode only when ``test_migration`` passed on the same database with the same statement
(whitespace and a trailing ``;`` aside). Passing dry runs are recorded in ``<data_dir>/dry-runs.jsonl``
(mode 0600) as fingerprints: a hash of the target (host, port, database — never a password) and the
statement, with the time it ran. Nothing of the statement's text is stored.
"""

from __future__ import annotations

import hashlib
import json
import os
from datetime import UTC, datetime
from pathlib import Path

from psycopg.conninfo import conninfo_to_dict

from agent19.config import Settings
from agent19.db.models import SchemaSnapshot
from agent19.migrate.plan import plan_migration

LEDGER = "dry-runs.jsonl"
BACKUPS = "backups.jsonl"
DATA_CHANGES = {"UpdateStmt", "DeleteStmt", "MergeStmt"}


def target_of(settings: Settings) -> str:
    """host:port/database of the configured DSN (no user, no password)."""
    info = conninfo_to_dict(settings.dsn_value() or "")
    return f"{info.get('host') or 'local'}:{info.get('port') or 5432}/{info.get('dbname') or ''}"


def _fingerprint(target: str, sql: str) -> str:
    text = " ".join(sql.split()).rstrip("; ")
    return hashlib.sha256(f"{target}\0{text}".encode()).hexdigest()


def _target_hash(settings: Settings) -> str:
    """The configured database, as recorded in the backups ledger (a hash: no host or name on disk)."""
    return hashlib.sha256(target_of(settings).encode()).hexdigest()


def _ledger(settings: Settings) -> Path:
    return settings.data_dir / LEDGER


def _append(path: Path, rows: list[dict[str, str]]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
    with os.fdopen(fd, "a", encoding="utf-8") as f:
        f.writelines(json.dumps(r) + "\n" for r in rows)


def _rows(path: Path) -> list[dict[str, str]]:
    out = []
    if path.is_file():
        for line in path.read_text(encoding="utf-8").splitlines():
            try:
                row = json.loads(line)
            except json.JSONDecodeError:
                continue
            if isinstance(row, dict):
                out.append(row)
    return out


def record_backup(settings: Settings, kind: str) -> None:
    """Remember that a fresh backup of the configured database was verified by a restore, now."""
    _append(settings.data_dir / BACKUPS, [{"target": _target_hash(settings), "kind": kind,
                                           "verified_at": datetime.now(UTC).isoformat()}])


def unbacked(settings: Settings, node: str) -> str | None:
    """Why a data change may not run under ``require_verified_backup_hours`` (None: allowed)."""
    hours = settings.require_verified_backup_hours
    if hours is None or node not in DATA_CHANGES:
        return None
    target = _target_hash(settings)
    now = datetime.now(UTC)
    for row in _rows(settings.data_dir / BACKUPS):
        try:
            at = datetime.fromisoformat(row["verified_at"])
        except (KeyError, ValueError):
            continue
        if row.get("target") == target and (now - at).total_seconds() <= hours * 3600:
            return None
    return (f"policy require_verified_backup: no backup of {target_of(settings)} verified by a restore in the "
            f"last {hours:g} h; run verify_backup (agent19 backup verify) on this database first, or go through "
            "confirm_destructive with an archive of the rows")


LOCK_TIMEOUT_RULE = "A19012"


def unacknowledged(settings: Settings, sql: str, catalog: SchemaSnapshot | None, acknowledged: list[str]) -> str | None:
    """Why ``sql`` may not run under ``require_lock_ack``: its lock warnings not in ``acknowledged``."""
    if not settings.require_lock_ack:
        return None
    plan = plan_migration(sql=sql, catalog=catalog)
    warnings = [f for f in plan.findings if f.severity in ("warning", "error") and f.rule != LOCK_TIMEOUT_RULE
                and f.rule not in acknowledged]
    if not warnings:
        return None
    codes = sorted({f.rule for f in warnings})
    return ("policy require_lock_ack: lock warnings not acknowledged: " + "; ".join(
        f"{f.rule}: {f.message}" for f in warnings) + f" — to run it anyway, pass acknowledge={codes}")


def record_dry_run(settings: Settings, statements: list[str], ran_at: str | None) -> None:
    """Remember that these statements passed a dry run on the configured database."""
    target = target_of(settings)
    when = ran_at or datetime.now(UTC).isoformat(timespec="seconds")
    _append(_ledger(settings), [{"fingerprint": _fingerprint(target, sql), "ran_at": when} for sql in statements])


def untested(settings: Settings, sql: str) -> str | None:
    """Why ``sql`` may not run under ``require_dry_run`` (None when a passing dry run is recorded)."""
    if not settings.require_dry_run:
        return None
    want = _fingerprint(target_of(settings), sql)
    if any(row.get("fingerprint") == want for row in _rows(_ledger(settings))):
        return None
    return (f"policy require_dry_run: this statement has not passed a dry run on {target_of(settings)}; run "
            "test_migration (agent19 dry-run --sql '…' --mode dry-run) with it first, then run it again")
