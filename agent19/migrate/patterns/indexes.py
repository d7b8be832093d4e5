"""Index patterns: create, drop and rebuild CONCURRENTLY, with recovery from an INVALID index.

``CREATE INDEX CONCURRENTLY`` takes ShareUpdateExclusiveLock (reads and writes go on), cannot run
in a transaction block, and when it fails (duplicate key, deadlock, cancel, lock_timeout) it leaves
an INVALID index behind that is still maintained on every write but never used. Each pattern here
first drops such a leftover (only when it is INVALID), then builds, then checks validity.
"""

from __future__ import annotations

import re

from agent19.migrate.patterns.model import Pattern, Phase, Step
from agent19.migrate.patterns.sqlnames import ident, literal, major, qname, regclass, short, sibling, split_name

Q_INVALID = "SELECT EXISTS (SELECT 1 FROM pg_index WHERE indexrelid = to_regclass({reg}) AND NOT indisvalid)"
Q_VALID = "SELECT COALESCE((SELECT indisvalid FROM pg_index WHERE indexrelid = to_regclass({reg})), false)"
Q_ABSENT = "SELECT to_regclass({reg}) IS NULL"


def index_name(table: str, columns: list[str], unique: bool = False) -> str:
    _, rel = split_name(table)
    parts = [re.sub(r"\W+", "_", c).strip("_") for c in columns]
    return short("_".join([rel, *parts]), "_key" if unique else "_idx")


def drop_invalid_step(index: str) -> Step:
    """Drop ``index`` only if a failed concurrent build left it INVALID."""
    return Step(
        sql=f"DROP INDEX CONCURRENTLY IF EXISTS {qname(index)}",
        lock="ShareUpdateExclusiveLock",
        in_transaction=False,
        only_if=Q_INVALID.format(reg=regclass(index)),
        note="recovery: a previous concurrent build failed and left this index INVALID",
    )


def build_index_phase(
    table: str, index: str, definition_tail: str, unique: bool, order: int, pg: int
) -> Phase:
    """The non-transactional phase that (re)builds ``index`` concurrently."""
    kw = "UNIQUE INDEX" if unique else "INDEX"
    notes = []
    if pg == 14:
        notes.append("PostgreSQL 14.0-14.3 could corrupt indexes built CONCURRENTLY: run 14.4 or later")
    return Phase(
        name="build index concurrently",
        order=order,
        transactional=False,
        operations=[
            drop_invalid_step(index),
            Step(
                sql=f"CREATE {kw} CONCURRENTLY IF NOT EXISTS {ident(split_name(index)[1])} ON {qname(table)} "
                + definition_tail,
                lock="ShareUpdateExclusiveLock",
                in_transaction=False,
                note="waits for transactions that could see the table to finish; reads and writes go on",
            ),
        ],
        lock_timeout="5s",
        rollback=[f"DROP INDEX CONCURRENTLY IF EXISTS {qname(index)}"],
        rollback_point="the index exists and is valid; nothing uses it as a constraint yet",
        validation=Q_VALID.format(reg=regclass(index)),
        notes=notes + ["if the build fails it leaves an INVALID index: run this phase again, it drops it first"
                       + (" (for a unique index, fix the duplicates first)" if unique else "")],
    )


def create_index(
    table: str,
    columns: list[str],
    *,
    name: str | None = None,
    unique: bool = False,
    method: str | None = None,
    where: str | None = None,
    include: list[str] | None = None,
    pg_version: int | None = None,
) -> Pattern:
    """CREATE [UNIQUE] INDEX CONCURRENTLY, outside a transaction, recovering from an INVALID leftover.

    ``columns`` are column names or expressions in parentheses, e.g. ``["lower(email)"]`` → give
    ``"(lower(email))"``.
    """
    pg = major(pg_version)
    index = sibling(table, name or index_name(table, columns, unique))
    cols = ", ".join(c if c.startswith("(") else ident(c) for c in columns)
    tail = (f"USING {method} " if method else "") + f"({cols})"
    if include:
        tail += f" INCLUDE ({', '.join(ident(c) for c in include)})"
    if where:
        tail += f" WHERE {where}"
    phase = build_index_phase(table, index, tail, unique, 1, pg)
    return Pattern(
        kind="create_index",
        title=f"Create index {index} on {table} concurrently",
        table=table,
        pg_version=pg,
        summary="build the index without blocking writes (ShareUpdateExclusiveLock instead of ShareLock)",
        phases=[phase],
        notes=["run outside a transaction block: migration tools that wrap files in a transaction need this "
               "statement in a file of its own"],
    )


def drop_index(index: str, *, table: str | None = None, pg_version: int | None = None) -> Pattern:
    """DROP INDEX CONCURRENTLY: waits for queries using the index, blocks nothing meanwhile."""
    pg = major(pg_version)
    return Pattern(
        kind="drop_index",
        title=f"Drop index {index} concurrently",
        table=table or index,
        pg_version=pg,
        summary="drop without AccessExclusiveLock on the table (plain DROP INDEX blocks reads and writes)",
        phases=[
            Phase(
                name="drop index concurrently",
                order=1,
                transactional=False,
                operations=[Step(sql=f"DROP INDEX CONCURRENTLY IF EXISTS {qname(index)}",
                                 lock="ShareUpdateExclusiveLock", in_transaction=False)],
                can_rollback=False,
                rollback_point="the index is gone: rebuild it with the create_index pattern to go back",
                validation=Q_ABSENT.format(reg=regclass(index)),
                notes=["an index that backs a constraint (primary key, unique) cannot be dropped this way: "
                       "drop the constraint instead"],
            )
        ],
    )


def reindex(index: str, *, table: str, definition: str | None = None, pg_version: int | None = None) -> Pattern:
    """Rebuild an index without blocking writes.

    12+: ``REINDEX INDEX CONCURRENTLY`` (a failure leaves ``<index>_ccnew`` INVALID: dropped first
    on a retry). Before 12: build a copy concurrently (``definition`` is the part after ``ON table``,
    as ``pg_get_indexdef`` shows it), drop the old one concurrently, rename the copy.
    """
    pg = major(pg_version)
    _, rel = split_name(index)
    if pg >= 12:
        leftovers = [sibling(index, short(rel, "_ccnew")), sibling(index, short(rel, "_ccold"))]
        phases = [
            Phase(
                name="reindex concurrently",
                order=1,
                transactional=False,
                operations=[*(drop_invalid_step(i) for i in leftovers),
                            Step(sql=f"REINDEX INDEX CONCURRENTLY {qname(index)}",
                                 lock="ShareUpdateExclusiveLock", in_transaction=False)],
                rollback_point="the index is rebuilt; a failed run leaves an INVALID *_ccnew copy that the "
                "next run drops",
                validation=Q_VALID.format(reg=regclass(index)),
            )
        ]
    else:
        if not definition:
            from agent19.errors import InputError

            raise InputError("reindex before PostgreSQL 12 needs the index definition",
                             "pass definition, e.g. 'USING btree (email)'")
        copy = sibling(index, short(rel, "_new"))
        phases = [
            build_index_phase(table, copy, definition, definition.upper().startswith("UNIQUE"), 1, pg),
            Phase(
                name="drop the old index",
                order=2,
                transactional=False,
                operations=[Step(sql=f"DROP INDEX CONCURRENTLY {qname(index)}", lock="ShareUpdateExclusiveLock",
                                 in_transaction=False)],
                can_rollback=False,
                validation=Q_ABSENT.format(reg=regclass(index)),
            ),
            Phase(
                name="rename the copy",
                order=3,
                operations=[Step(sql=f"ALTER INDEX {qname(copy)} RENAME TO {ident(rel)}",
                                 lock="AccessExclusiveLock", note="brief: catalog only")],
                validation=Q_VALID.format(reg=regclass(index)),
            ),
        ]
    return Pattern(
        kind="reindex",
        title=f"Rebuild index {index} concurrently",
        table=table,
        pg_version=pg,
        summary="rebuild a bloated or corrupt index while reads and writes go on",
        phases=phases,
        notes=[f"check afterwards: SELECT indisvalid FROM pg_index WHERE indexrelid = to_regclass({literal(index)})"],
    )
