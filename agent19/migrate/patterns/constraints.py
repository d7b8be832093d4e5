"""Constraint patterns: NOT NULL, CHECK, FOREIGN KEY, UNIQUE and PRIMARY KEY without long locks.

The common idea: add the constraint ``NOT VALID`` (a brief lock, no scan: only new rows are
checked), then ``VALIDATE CONSTRAINT`` in its own transaction, which scans under
ShareUpdateExclusiveLock — reads and writes go on. Unique constraints and primary keys are built
as a unique index ``CONCURRENTLY`` first and attached with ``USING INDEX`` (brief).
"""

from __future__ import annotations

from agent19.errors import InputError
from agent19.migrate.patterns.indexes import build_index_phase
from agent19.migrate.patterns.model import BackfillStep, Pattern, Phase, Step
from agent19.migrate.patterns.sqlnames import ident, literal, major, qname, short, sibling, split_name


def _con_exists(table: str, name: str, validated: bool | None = None) -> str:
    cond = "" if validated is None else f" AND convalidated = {'true' if validated else 'false'}"
    return (f"SELECT EXISTS (SELECT 1 FROM pg_constraint WHERE conrelid = to_regclass({literal(qname(table))})"
            f" AND conname = {literal(name)}{cond})")


def _not_null(table: str, column: str) -> str:
    return (f"SELECT attnotnull FROM pg_attribute WHERE attrelid = to_regclass({literal(qname(table))})"
            f" AND attname = {literal(column)}")


def not_null_phases(table: str, column: str, pg: int, first_order: int = 1) -> list[Phase]:
    """CHECK (col IS NOT NULL) NOT VALID → VALIDATE → SET NOT NULL (no scan since 12) → drop the CHECK."""
    _, rel = split_name(table)
    check = short(f"{rel}_{column}", "_not_null")
    t, c = qname(table), ident(column)
    phases = [
        Phase(
            name="add CHECK NOT VALID",
            order=first_order,
            operations=[Step(sql=f"ALTER TABLE {t} ADD CONSTRAINT {ident(check)} CHECK ({c} IS NOT NULL) NOT VALID",
                             lock="AccessExclusiveLock", note="brief: no scan, new rows are checked from now on")],
            rollback=[f"ALTER TABLE {t} DROP CONSTRAINT IF EXISTS {ident(check)}"],
            rollback_point="new and updated rows must have a value; old rows are not checked yet",
            validation=_con_exists(table, check),
        ),
        Phase(
            name="validate the CHECK",
            order=first_order + 1,
            operations=[Step(sql=f"ALTER TABLE {t} VALIDATE CONSTRAINT {ident(check)}",
                             lock="ShareUpdateExclusiveLock", note="scans the table; reads and writes go on")],
            rollback=[f"ALTER TABLE {t} DROP CONSTRAINT IF EXISTS {ident(check)}"],
            rollback_point="every row is known to have a value",
            validation=_con_exists(table, check, validated=True),
            notes=["fails if a NULL remains: backfill it, then run this phase again"],
        ),
    ]
    if pg >= 12:
        phases.append(Phase(
            name="SET NOT NULL and drop the CHECK",
            order=first_order + 2,
            operations=[
                Step(sql=f"ALTER TABLE {t} ALTER COLUMN {c} SET NOT NULL", lock="AccessExclusiveLock",
                     note="brief: the validated CHECK proves there is no NULL, so PostgreSQL 12+ skips the scan"),
                Step(sql=f"ALTER TABLE {t} DROP CONSTRAINT {ident(check)}", lock="AccessExclusiveLock"),
            ],
            rollback=[f"ALTER TABLE {t} ALTER COLUMN {c} DROP NOT NULL"],
            rollback_point="the column is NOT NULL",
            validation=_not_null(table, column),
        ))
    else:
        phases[-1].notes.append(
            f"PostgreSQL {pg} scans the table for SET NOT NULL even with a validated CHECK (the shortcut arrived "
            "in 12): keep the CHECK as the guarantee, or run SET NOT NULL in a quiet window")
    return phases


def set_not_null(
    table: str,
    column: str,
    *,
    default: str | None = None,
    backfill: str | None = None,
    pg_version: int | None = None,
    already_not_null: bool = False,
) -> Pattern:
    """Make a populated column NOT NULL without a long AccessExclusiveLock.

    ``default``: an expression to SET DEFAULT first (so new rows get a value); ``backfill``: an
    expression to fill the existing NULLs with, in keyset batches (defaults to ``default``).
    ``already_not_null``: the live column is NOT NULL already (read from the database): there is no NULL to
    fill and nothing to validate, so the pattern has no phases but the asked-for default, and says so.
    """
    pg = major(pg_version)
    t, c = qname(table), ident(column)
    phases: list[Phase] = []
    fill = None if already_not_null else backfill or default
    if default is not None:
        phases.append(Phase(
            name="set the default",
            order=1,
            operations=[Step(sql=f"ALTER TABLE {t} ALTER COLUMN {c} SET DEFAULT {default}",
                             lock="AccessExclusiveLock", note="brief: catalog only")],
            rollback=[f"ALTER TABLE {t} ALTER COLUMN {c} DROP DEFAULT"],
            rollback_point="new rows get the default",
            deploy_after=False,
        ))
    if fill is not None:
        phases.append(Phase(
            name="backfill the NULLs",
            order=len(phases) + 1,
            backfill=BackfillStep(table=table, set=f"{c} = {fill}", where=f"{c} IS NULL"),
            rollback_point="old rows have a value (the backfill cannot be undone, and need not be)",
            can_rollback=False,
            validation=f"SELECT NOT EXISTS (SELECT 1 FROM {t} WHERE {c} IS NULL)",
        ))
    if already_not_null:
        return Pattern(
            kind="set_not_null", title=f"Make {table}.{column} NOT NULL", table=table, pg_version=pg,
            summary=f"nothing to do: {table}.{column} is already NOT NULL in the connected database"
            + (" (only the default is set)" if phases else ""),
            phases=phases, notes=["no CHECK, validation or SET NOT NULL is needed: the column cannot hold a NULL"])
    phases += not_null_phases(table, column, pg, len(phases) + 1)
    return Pattern(
        kind="set_not_null",
        title=f"Make {table}.{column} NOT NULL",
        table=table,
        pg_version=pg,
        summary="a plain SET NOT NULL scans the whole table under AccessExclusiveLock (no reads or writes); "
        "this validates a CHECK instead, which lets reads and writes go on",
        phases=phases,
        notes=[] if fill else ["if NULLs exist, pass default/backfill or fix them before the validate phase"],
    )


def add_check(table: str, name: str, expression: str, *, pg_version: int | None = None) -> Pattern:
    """ADD CONSTRAINT … CHECK (…) NOT VALID, then VALIDATE in its own transaction."""
    pg = major(pg_version)
    t = qname(table)
    return Pattern(
        kind="add_check",
        title=f"Add CHECK {name} on {table}",
        table=table,
        pg_version=pg,
        summary="a plain ADD CHECK scans the table under AccessExclusiveLock; NOT VALID + VALIDATE does not block",
        phases=[
            Phase(
                name="add NOT VALID",
                order=1,
                operations=[Step(sql=f"ALTER TABLE {t} ADD CONSTRAINT {ident(name)} CHECK ({expression}) NOT VALID",
                                 lock="AccessExclusiveLock", note="brief: no scan")],
                rollback=[f"ALTER TABLE {t} DROP CONSTRAINT IF EXISTS {ident(name)}"],
                rollback_point="new and updated rows are checked",
                validation=_con_exists(table, name),
            ),
            Phase(
                name="validate",
                order=2,
                operations=[Step(sql=f"ALTER TABLE {t} VALIDATE CONSTRAINT {ident(name)}",
                                 lock="ShareUpdateExclusiveLock", note="scans; reads and writes go on")],
                rollback=[f"ALTER TABLE {t} DROP CONSTRAINT IF EXISTS {ident(name)}"],
                rollback_point="the constraint holds for every row",
                validation=_con_exists(table, name, validated=True),
                notes=["fails on the first violating row: fix the data and run it again"],
            ),
        ],
    )


def add_foreign_key(
    table: str,
    columns: list[str],
    references: str,
    ref_columns: list[str],
    *,
    name: str | None = None,
    on_delete: str | None = None,
    on_update: str | None = None,
    pg_version: int | None = None,
) -> Pattern:
    """ADD FOREIGN KEY … NOT VALID (brief ShareRowExclusiveLock on both tables), then VALIDATE."""
    pg = major(pg_version)
    _, rel = split_name(table)
    fk = name or short(f"{rel}_{'_'.join(columns)}", "_fkey")
    t = qname(table)
    actions = (f" ON DELETE {on_delete.upper()}" if on_delete else "") + (
        f" ON UPDATE {on_update.upper()}" if on_update else "")
    cols = ", ".join(ident(c) for c in columns)
    refs = ", ".join(ident(c) for c in ref_columns)
    return Pattern(
        kind="add_foreign_key",
        title=f"Add foreign key {fk} on {table}",
        table=table,
        pg_version=pg,
        summary="a plain ADD FOREIGN KEY blocks writes on both tables while it checks every row; NOT VALID "
        "then VALIDATE checks without blocking them",
        phases=[
            Phase(
                name="add NOT VALID",
                order=1,
                operations=[Step(sql=f"ALTER TABLE {t} ADD CONSTRAINT {ident(fk)} FOREIGN KEY ({cols}) "
                                 f"REFERENCES {qname(references)} ({refs}){actions} NOT VALID",
                                 lock="ShareRowExclusiveLock", note="brief, on both tables: no scan")],
                rollback=[f"ALTER TABLE {t} DROP CONSTRAINT IF EXISTS {ident(fk)}"],
                rollback_point="new and updated rows are checked",
                validation=_con_exists(table, fk),
            ),
            Phase(
                name="validate",
                order=2,
                operations=[Step(sql=f"ALTER TABLE {t} VALIDATE CONSTRAINT {ident(fk)}",
                                 lock="ShareUpdateExclusiveLock",
                                 note="scans; RowShareLock on the referenced table; reads and writes go on")],
                rollback=[f"ALTER TABLE {t} DROP CONSTRAINT IF EXISTS {ident(fk)}"],
                rollback_point="every row has its referenced row",
                validation=_con_exists(table, fk, validated=True),
            ),
        ],
        notes=[f"index {table} ({cols}) (create_index pattern) so deletes on {references} do not scan {table}"],
    )


def _unique_pattern(table: str, columns: list[str], name: str | None, primary: bool, pg: int) -> Pattern:
    _, rel = split_name(table)
    con = name or short(f"{rel}_{'_'.join(columns)}" if not primary else rel, "_pkey" if primary else "_key")
    index = sibling(table, con)
    cols = ", ".join(ident(c) for c in columns)
    t = qname(table)
    kind = "PRIMARY KEY" if primary else "UNIQUE"
    attach = Phase(
        name=f"attach as {kind.lower()}",
        order=2,
        operations=[Step(sql=f"ALTER TABLE {t} ADD CONSTRAINT {ident(con)} {kind} USING INDEX {ident(con)}",
                         lock="AccessExclusiveLock", note="brief: the index is already built")],
        rollback=[f"ALTER TABLE {t} DROP CONSTRAINT IF EXISTS {ident(con)}"],
        rollback_point=f"the {kind.lower()} constraint exists (dropping it drops the index too)",
        validation=_con_exists(table, con),
    )
    notes = []
    if primary:
        notes.append("every key column must already be NOT NULL (use the set_not_null pattern first): "
                     "otherwise ADD PRIMARY KEY USING INDEX runs SET NOT NULL, which scans under "
                     "AccessExclusiveLock")
    return Pattern(
        kind="add_primary_key" if primary else "add_unique",
        title=f"Add {kind.lower()} {con} on {table}",
        table=table,
        pg_version=pg,
        summary=f"a plain ADD {kind} builds its index under AccessExclusiveLock; building it CONCURRENTLY and "
        "attaching it with USING INDEX blocks only for the attach",
        phases=[build_index_phase(table, index, f"({cols})", True, 1, pg), attach],
        notes=notes,
    )


def add_unique(table: str, columns: list[str], *, name: str | None = None,
               pg_version: int | None = None) -> Pattern:
    """CREATE UNIQUE INDEX CONCURRENTLY, then ADD CONSTRAINT … UNIQUE USING INDEX."""
    if not columns:
        raise InputError("add_unique needs at least one column")
    return _unique_pattern(table, columns, name, False, major(pg_version))


def add_primary_key(table: str, columns: list[str], *, name: str | None = None,
                    pg_version: int | None = None) -> Pattern:
    """CREATE UNIQUE INDEX CONCURRENTLY, then ADD CONSTRAINT … PRIMARY KEY USING INDEX."""
    if not columns:
        raise InputError("add_primary_key needs at least one column")
    return _unique_pattern(table, columns, name, True, major(pg_version))
