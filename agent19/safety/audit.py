"""The audit log: every confirmation asked, refused, executed (or failed), as JSON lines.

``<data_dir>/audit.jsonl`` (mode 0600), one object a line: time (UTC, ISO 8601), outcome, reason,
the statement's fingerprint (libpg_query's, which leaves out constants, plus a hash of the full
normalized statement), its kinds and targets, the impact figures and the database's name and oid.
Never the statement text, its constants, the token or the DSN: none of them is needed to audit,
and any of them may carry a secret.
"""

from __future__ import annotations

import fcntl
import json
import os
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from pglast.parser import fingerprint

from agent19.migrate.parse import Statement
from agent19.safety.challenge import normalized_hash
from agent19.safety.detect import Finding
from agent19.safety.impact import Impact

AUDIT_FILE = "audit.jsonl"


def statement_fingerprint(statement: Statement) -> dict[str, str]:
    return {"fingerprint": fingerprint(statement.sql), "normalized_sha256": normalized_hash(statement)[:32]}


class AuditLog:
    def __init__(self, data_dir: Path) -> None:
        self.path = data_dir / AUDIT_FILE

    def append(
        self,
        outcome: str,
        statement: Statement,
        findings: list[Finding],
        impact: Impact | None = None,
        reason: str = "",
        **extra: Any,
    ) -> None:
        entry = {
            "time": datetime.now(UTC).isoformat(timespec="milliseconds"),
            "outcome": outcome,
            "reason": reason,
            **statement_fingerprint(statement),
            "kinds": sorted({f.kind for f in findings}),
            "targets": sorted({t.name + (f".{t.column}" if t.column else "") for f in findings for t in f.targets}),
            "impact": impact.figures() if impact else None,
            "database": {"name": impact.database.name, "oid": impact.database.oid} if impact else None,
            **extra,
        }
        self.path.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(self.path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600)
        with os.fdopen(fd, "a") as fh:
            fcntl.flock(fh, fcntl.LOCK_EX)
            fh.write(json.dumps(entry, default=str, ensure_ascii=False) + "\n")

    def entries(self) -> list[dict[str, Any]]:
        if not self.path.exists():
            return []
        return [json.loads(line) for line in self.path.read_text().splitlines() if line.strip()]
