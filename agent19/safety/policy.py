"""Execute-mode policies the operator opts into: a dry run first, a verified backup before data changes.

``require_verified_backup_hours`` (``AGENT19_REQUIRE_VERIFIED_BACKUP=24``): an UPDATE, DELETE or MERGE
runs in execute mode only when ``verify_backup`` verified a fresh backup of the same database (restored
and compared) within that many hours; verified backups are recorded in ``<data_dir>/backups.jsonl``.

``require_lock_ack`` (``AGENT19_REQUIRE_LOCK_ACK=1``): a statement whose plan (``plan_migration`` with
the live catalog) carries lock warnings — lint findings of severity warning or error, other than the
missing lock_timeout (agent19's sessions always set one) — runs only when ``acknowledge`` lists each
warning's rule code.

With ``require_dry_run`` (``AGENT19_REQUIRE_DRY_RUN=1``), a statement that changes something runs in
execute mode only when ``test_migration`` passed with it on the same server and database (as the server
identifies itself), on the schema the database still has, within ``AGENT19_DRY_RUN_MAX_AGE_HOURS``
(default 24): see :mod:`agent19.safety.dry_run_ledger`.
"""

from __future__ import annotations

from datetime import UTC, datetime

from psycopg.conninfo import conninfo_to_dict

from agent19.config import Settings
from agent19.db.connection import Database
from agent19.db.models import SchemaSnapshot
from agent19.migrate.parse import Statement
from agent19.migrate.planning.plan import plan_migration
from agent19.safety import dry_run_ledger as ledger
from agent19.safety import readonly
from agent19.tool_names import tool

BACKUPS = "backups.jsonl"
DATA_CHANGES = {"UpdateStmt", "DeleteStmt", "MergeStmt"}


def target_of(settings: Settings) -> str:
    """host:port/database of the configured DSN (no user, no password)."""
    info = conninfo_to_dict(settings.dsn_value() or "")
    return f"{info.get('host') or 'local'}:{info.get('port') or 5432}/{info.get('dbname') or ''}"


def _database_key(db: Database) -> str:
    """The database as the backups ledger records it: the server's own identity (system_identifier) and the
    database's oid, hashed — the same whichever host name or port reaches it, different for another server
    behind the same address (no host or name on disk)."""
    return "db:" + server_state(db).database


def record_backup(settings: Settings, db: Database, kind: str) -> None:
    """Remember that a fresh backup of ``db`` was verified by a restore, now."""
    ledger.append_rows(settings.data_dir / BACKUPS, [{"target": _database_key(db), "kind": kind,
                                           "verified_at": datetime.now(UTC).isoformat()}])


def unbacked(settings: Settings, db: Database, node: str) -> str | None:
    """Why a data change on ``db`` may not run under ``require_verified_backup_hours`` (None: allowed)."""
    hours = settings.require_verified_backup_hours
    if hours is None or node not in DATA_CHANGES:
        return None
    target = _database_key(db)
    now = datetime.now(UTC)
    for row in ledger.read_rows(settings.data_dir / BACKUPS):
        try:
            at = datetime.fromisoformat(row["verified_at"])
        except (KeyError, ValueError):
            continue
        if row.get("target") == target and (now - at).total_seconds() <= hours * 3600:
            return None
    return (f"policy require_verified_backup: no backup of {target_of(settings)} verified by a restore in the "
            f"last {hours:g} h; run {tool('verify_backup')} on this database first, or go through "
            f"{tool('confirm_destructive')} with an archive of the rows")


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
        f"{f.rule}: {f.message}" for f in warnings) + f" - to run it anyway, pass acknowledge={codes}")


def server_state(db: Database) -> ledger.ServerState:
    """The server's identity and schema fingerprint, read as the configured login."""
    with db.read() as conn:
        return ledger.read_state(conn)


def record_dry_run(settings: Settings, state: ledger.ServerState, statements: list[Statement]) -> None:
    """Remember that the migration's changing statements passed a dry run that started from ``state``
    (reads pass the policy anyway and are left out, so they never hold up the next step)."""
    changes = []
    for st in statements:
        try:
            readonly.check_statements([st])
        except readonly.ReadOnlyViolation:
            changes.append(st.sql)
    ledger.record(settings, state, changes)


def tested(settings: Settings, db: Database, sql: str) -> ledger.Verdict:
    """May ``sql`` run under ``require_dry_run``? (``refusal`` None: yes.) Pass the verdict to :func:`ran`
    once the statement ran, so the migration's next change may run."""
    if not settings.require_dry_run:
        return ledger.Verdict(None)
    return ledger.check(settings, server_state(db), sql, target_of(settings))


def ran(settings: Settings, db: Database, verdict: ledger.Verdict) -> None:
    """The statement ``verdict`` allowed was committed: record the schema it left for the next step."""
    if verdict.entry is not None:
        ledger.advance(settings, verdict.entry, server_state(db))
