"""Write migrations as files, in the layouts teams use: Prisma's and the plain ones.

===============  ==========================================================================
layout           files
===============  ==========================================================================
``prisma``       ``prisma/migrations/<yyyymmddhhmmss>_<name>/migration.sql`` and
                 ``prisma/migrations/migration_lock.toml`` (written when absent)
``plain``        ``NNN_<name>.sql`` and ``NNN_<name>.down.sql``
``golang``       ``NNNNNN_<name>.up.sql`` / ``.down.sql`` (golang-migrate)
``flyway``       ``V<n>__<name>.sql`` and the undo ``U<n>__<name>.sql``
===============  ==========================================================================

Prisma (like golang-migrate) sends a migration file as one multi-statement query, which PostgreSQL
runs as one implicit transaction; ``CREATE INDEX CONCURRENTLY``, ``REINDEX CONCURRENTLY`` and a
``CALL`` of a procedure that commits refuse to run inside one. So every such statement goes into a
migration of its own (a single statement is not wrapped), with a comment saying so.
:func:`pattern_migrations` turns a zero-downtime pattern into those units, phase by phase.
"""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Literal

from pydantic import BaseModel, Field

from agent19.migrate.backfill.executor import BackfillSpec
from agent19.migrate.backfill.scripts import procedure_parts
from agent19.migrate.patterns.model import Pattern, comment

Layout = Literal["prisma", "plain", "golang", "flyway"]
LOCK_TOML = '# written by agent19 for Prisma Migrate: keep it in version control\nprovider = "postgresql"\n'


class Migration(BaseModel):
    name: str
    up: list[str]
    down: list[str] = []
    transactional: bool = Field(default=True, description="false: must run alone, outside a transaction block")
    notes: list[str] = []


def slug(text: str) -> str:
    return re.sub(r"[^a-z0-9]+", "_", text.lower()).strip("_")[:60] or "migration"


def pattern_migrations(pattern: Pattern, *, key: str = "id", key_type: str = "bigint") -> list[Migration]:
    """One migration per phase; statements that cannot run in a transaction each get their own.

    Backfill phases become the PL/pgSQL procedure (``key``/``key_type``: the table's key column).
    """
    out: list[Migration] = []
    base = slug(pattern.kind)
    for phase in pattern.phases:
        name = f"{base}_{phase.order}_{slug(phase.name)}"
        notes = list(phase.notes)
        if phase.deploy_after:
            notes.append("deploy the application before applying the next migration")
        if phase.backfill is not None:
            b = phase.backfill
            spec = BackfillSpec(table=b.table, set=b.set, where=b.where)
            create, call = procedure_parts(spec, key, key_type)
            out.append(Migration(name=f"{name}_procedure", up=[create], notes=notes))
            out.append(Migration(name=name, up=[call], transactional=False,
                                 notes=["CALL commits per batch: alone in its file, never in a transaction; or run "
                                        f"`agent19 backfill {b.table} --set ...` instead"]))
            continue
        tx_steps = [s for s in phase.operations if s.in_transaction]
        if tx_steps and len(tx_steps) == len(phase.operations):
            out.append(Migration(name=name, up=[f"SET lock_timeout = '{phase.lock_timeout}'",
                                                *[s.sql for s in tx_steps]],
                                 down=list(reversed(phase.rollback)), notes=notes))
            continue
        for i, step in enumerate(phase.operations):
            if step.only_if:
                notes.append(f"if a previous run failed: {step.sql}  (when: {step.only_if})")
                continue
            out.append(Migration(name=f"{name}_{i + 1}" if len(phase.operations) > 2 else name, up=[step.sql],
                                 down=list(reversed(phase.rollback)), transactional=step.in_transaction,
                                 notes=notes if step.in_transaction else
                                 [*notes, "cannot run in a transaction block: keep it alone in its file"]))
    return out


def _body(m: Migration, statements: list[str]) -> str:
    head = [comment(n) for n in m.notes]
    return "\n".join(head + [s.rstrip().rstrip(";") + ";" for s in statements]) + "\n"


def write_migrations(migrations: list[Migration], directory: Path, layout: Layout, *,
                     start: datetime | None = None, first_number: int = 1) -> list[Path]:
    """Write ``migrations`` under ``directory`` in ``layout``; return the files written."""
    written: list[Path] = []
    directory.mkdir(parents=True, exist_ok=True)
    when = start or datetime.now(UTC).replace(microsecond=0)
    for i, m in enumerate(migrations):
        n = first_number + i
        name = slug(m.name)
        up = _body(m, m.up)
        down = _body(m, m.down) if m.down else None
        if layout == "prisma":
            root = directory / "prisma" / "migrations"
            folder = root / f"{(when + timedelta(seconds=i)).strftime('%Y%m%d%H%M%S')}_{name}"
            folder.mkdir(parents=True, exist_ok=True)
            files = {folder / "migration.sql": up}
            lock = root / "migration_lock.toml"
            if not lock.exists():
                files[lock] = LOCK_TOML
        elif layout == "plain":
            files = {directory / f"{n:03d}_{name}.sql": up}
            if down:
                files[directory / f"{n:03d}_{name}.down.sql"] = down
        elif layout == "golang":
            files = {directory / f"{n:06d}_{name}.up.sql": up}
            files[directory / f"{n:06d}_{name}.down.sql"] = down or "-- irreversible\n"
        else:
            files = {directory / f"V{n}__{name}.sql": up}
            if down:
                files[directory / f"U{n}__{name}.sql"] = down
        for path, text in files.items():
            path.write_text(text)
            written.append(path)
    return written
