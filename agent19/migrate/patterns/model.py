"""The shape every zero-downtime pattern has: ordered phases of SQL with their locks.

A :class:`Pattern` is the safe way to make one dangerous change (``SET NOT NULL`` on a big table,
a column type change, a unique constraint…). It is split into :class:`Phase` s that each run
quickly, each declaring the strongest lock it takes, whether it runs inside a transaction,
whether an application deploy must happen before the next phase, how to roll it back and a
validation query that must return true before moving on.

Conventions:

* ``lock`` values use ``pg_locks`` spelling (``AccessExclusiveLock``…), the same as
  :mod:`agent19.db.observe`, so a test can compare a declaration with what the server shows.
* A validation query returns one row whose first column is a boolean: true means "done, go on".
* A step's ``only_if`` is a query returning one boolean; the step runs only when it is true (the
  recovery from an INVALID index left by a failed concurrent build uses it).
* A phase with ``backfill`` is executed by :func:`agent19.migrate.backfill.executor.run_backfill` (keyset
  batches, checkpointed); its ``operations`` are empty.
"""

from __future__ import annotations

import shlex
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Literal

from agent19.db.locks import LOCK_RANK, strongest_mode
from agent19.migrate.patterns.sqlnames import comment, qname

PatternKind = Literal[
    "rename_column", "rename_table", "change_column_type", "set_not_null", "add_foreign_key", "add_check",
    "add_unique", "add_primary_key", "create_index", "drop_index", "reindex", "add_column_volatile_default",
]


def _doc(description: str) -> dict[str, str]:
    return {"description": description}


@dataclass
class BackfillStep:
    """A batched ``UPDATE table SET <set> WHERE <where>`` run by the backfill executor."""

    table: str = field(metadata=_doc("schema-qualified table"))
    set: str = field(metadata=_doc("the SET list, e.g. `amount_new = amount::numeric(12,2)`"))
    where: str | None = field(default=None, metadata=_doc("rows that still need it (makes the batches idempotent)"))


@dataclass
class Step:
    sql: str
    lock: str | None = field(default=None, metadata=_doc("strongest lock this statement takes on a table"))
    in_transaction: bool = field(default=True, metadata=_doc("false: must run alone, outside a transaction block"))
    only_if: str | None = field(default=None, metadata=_doc("run only when this query returns true"))
    note: str = ""


@dataclass
class Phase:
    name: str
    order: int = field(metadata=_doc("1-based position"))
    operations: list[Step] = field(default_factory=list)
    backfill: BackfillStep | None = None
    transactional: bool = field(
        default=True, metadata=_doc("the operations run together in one transaction (else each on its own)")
    )
    lock_timeout: str = field(default="5s", metadata=_doc("SET lock_timeout for this phase: fail fast, retry later"))
    deploy_after: bool = field(default=False, metadata=_doc("deploy the application before starting the next phase"))
    can_rollback: bool = True
    rollback: list[str] = field(default_factory=list, metadata=_doc("SQL that undoes this phase"))
    rollback_point: str = field(default="", metadata=_doc("the state the database is in if you stop after this "
                                                          "phase"))
    validation: str | None = field(default=None, metadata=_doc("query returning true once this phase is done"))
    notes: list[str] = field(default_factory=list)

    @property
    def lock(self) -> str | None:
        """The strongest lock any operation of this phase declares (RowExclusiveLock for a backfill)."""
        modes = {s.lock for s in self.operations if s.lock}
        if self.backfill is not None:
            modes.add("RowExclusiveLock")
        return strongest_mode(modes)


@dataclass
class Pattern:
    kind: PatternKind
    title: str
    table: str
    pg_version: int = field(metadata=_doc("major version the SQL was written for"))
    summary: str
    phases: list[Phase]
    notes: list[str] = field(default_factory=list)

    @property
    def strongest_lock(self) -> str | None:
        return strongest_mode({p.lock for p in self.phases if p.lock})

    def phase(self, name: str) -> Phase:
        for p in self.phases:
            if p.name == name:
                return p
        raise KeyError(name)

    def to_sql(self) -> str:
        """The whole pattern as an annotated SQL script (one section per phase)."""
        out = [comment(self.title), comment(self.summary), f"-- written for PostgreSQL {self.pg_version}"]
        out += [comment(f"note: {n}") for n in self.notes]
        for p in self.phases:
            out.append("")
            out.append(comment(f"phase {p.order}: {p.name} (strongest lock: {p.lock or 'none'})"))
            out += [comment(n) for n in p.notes]
            out.append(f"SET lock_timeout = '{p.lock_timeout}';")
            out.extend(phase_sql(p))
            if p.validation:
                out.append(comment(f"check before going on: {p.validation}"))
            if p.deploy_after:
                out.append("-- >>> deploy the application before the next phase <<<")
        return "\n".join(out) + "\n"


def phase_sql(p: Phase) -> list[str]:
    """The statements of one phase as SQL lines (BEGIN/COMMIT around transactional groups)."""
    out: list[str] = []
    if p.backfill is not None:
        b = p.backfill
        where = f" --where {_shell(b.where)}" if b.where else ""
        out.append(comment(f"batched backfill: agent19 backfill {_shell(qname(b.table))} --set {_shell(b.set)}{where} "
                           "--mode execute"))
        out.append(comment(f"(each batch: UPDATE {qname(b.table)} SET {b.set} WHERE <key range>"
                           + (f" AND ({b.where})" if b.where else "") + ")"))
        return out
    grouped = p.transactional and all(s.in_transaction for s in p.operations) and len(p.operations) > 1
    if grouped:
        out.append("BEGIN;")
    for s in p.operations:
        if s.only_if:
            out.append(comment(f"only if: {s.only_if}"))
        if s.note:
            out.append(comment(s.note))
        out.append(s.sql.rstrip(";") + ";")
    if grouped:
        out.append("COMMIT;")
    return out


def fix_script(phases: list[Phase], backfill: Callable[[BackfillStep], list[str]] | None = None) -> str:
    """Phases as a short runnable script for a lint fix or a runbook alternative.

    Each phase is headed by a comment naming it and its lock; a phase of several statements is one
    ``BEGIN … COMMIT``; phases are never merged into one transaction (that is the point of them).
    ``backfill`` writes a backfill phase as SQL (the keyset procedure of
    :func:`agent19.migrate.backfill.scripts.keyset_backfill`, when the table's key is known); without it the
    phase names the ``agent19 backfill`` command that runs it.
    """
    out: list[str] = []
    for i, p in enumerate(phases):
        own = "" if i == 0 else ", in its own transaction"
        out.append(comment(f"{p.order}. {p.name} ({p.lock or 'no lock'}{own})"))
        out += [comment(n) for n in p.notes]
        out += backfill(p.backfill) if backfill is not None and p.backfill is not None else phase_sql(p)
        if p.deploy_after and i < len(phases) - 1:
            out.append("-- >>> deploy the application before the next phase <<<")
    return "\n".join(out)


def _shell(text: str) -> str:
    return shlex.quote(text)


def weaker_or_equal(observed: str | None, declared: str | None) -> bool:
    """Whether an observed lock mode is no stronger than the declared one."""
    if observed is None:
        return True
    if declared is None:
        return False
    return LOCK_RANK[observed] <= LOCK_RANK[declared]
