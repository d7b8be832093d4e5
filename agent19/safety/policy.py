"""Execute-mode policy: no untested migration when the operator requires a dry run first.

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

LEDGER = "dry-runs.jsonl"


def target_of(settings: Settings) -> str:
    """host:port/database of the configured DSN (no user, no password)."""
    info = conninfo_to_dict(settings.dsn_value() or "")
    return f"{info.get('host') or 'local'}:{info.get('port') or 5432}/{info.get('dbname') or ''}"


def _fingerprint(target: str, sql: str) -> str:
    text = " ".join(sql.split()).rstrip("; ")
    return hashlib.sha256(f"{target}\0{text}".encode()).hexdigest()


def _ledger(settings: Settings) -> Path:
    return settings.data_dir / LEDGER


def record_dry_run(settings: Settings, statements: list[str], ran_at: str | None) -> None:
    """Remember that these statements passed a dry run on the configured database."""
    path = _ledger(settings)
    path.parent.mkdir(parents=True, exist_ok=True)
    target = target_of(settings)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
    with os.fdopen(fd, "a", encoding="utf-8") as f:
        for sql in statements:
            f.write(json.dumps({"fingerprint": _fingerprint(target, sql),
                                "ran_at": ran_at or datetime.now(UTC).isoformat(timespec="seconds")}) + "\n")


def untested(settings: Settings, sql: str) -> str | None:
    """Why ``sql`` may not run under ``require_dry_run`` (None when a passing dry run is recorded)."""
    if not settings.require_dry_run:
        return None
    want = _fingerprint(target_of(settings), sql)
    path = _ledger(settings)
    if path.is_file():
        for line in path.read_text(encoding="utf-8").splitlines():
            try:
                if json.loads(line).get("fingerprint") == want:
                    return None
            except json.JSONDecodeError:
                continue
    return (f"policy require_dry_run: this statement has not passed a dry run on {target_of(settings)}; run "
            "test_migration (agent19 dry-run --sql '…' --mode dry-run) with it first, then run it again")
