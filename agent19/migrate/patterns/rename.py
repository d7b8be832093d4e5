"""Rename patterns: a table through a compatibility view, a column by expand/contract.

A rename itself is instant (catalog only), but the application that still uses the old name
breaks the moment it commits. Both patterns keep old and new names working at once, for as long
as it takes to deploy the application.

* Table: rename, and create a view with the old name in the same transaction. A view over one
  table with ``SELECT *`` is automatically updatable, so the old code keeps reading *and*
  writing. Drop the view after the deploy. Safer than a copied table: no data moves at all.
* Column: a new column kept in sync both ways by a trigger, backfilled in batches; after the
  deploy the old column and the trigger are dropped. (When every client can switch at the same
  moment, a plain ``RENAME COLUMN`` is instant and enough.)
"""

from __future__ import annotations

from agent19.errors import InputError
from agent19.migrate.patterns.carry import CARRIED, PARTITIONED, build_phases, carries, carry_indexes
from agent19.migrate.patterns.columns import _attr_query, sync_function
from agent19.migrate.patterns.constraints import not_null_phases
from agent19.migrate.patterns.live import LiveColumn, advice, refuse_unmovable
from agent19.migrate.patterns.model import BackfillStep, Pattern, Phase, Step
from agent19.migrate.patterns.sqlnames import ident, literal, major, qname, short, sibling, split_name


def rename_table(table: str, new_name: str, *, pg_version: int | None = None) -> Pattern:
    pg = major(pg_version)
    _, new_rel = split_name(new_name)
    new_q = qname(sibling(table, new_rel))
    old_q = qname(table)
    return Pattern(
        kind="rename_table",
        title=f"Rename {table} to {new_rel}",
        table=table,
        pg_version=pg,
        summary="rename, and keep the old name working as an updatable view until every client uses the new one",
        phases=[
            Phase(
                name="rename and add the compatibility view",
                order=1,
                operations=[
                    Step(sql=f"ALTER TABLE {old_q} RENAME TO {ident(new_rel)}", lock="AccessExclusiveLock",
                         note="brief: catalog only"),
                    Step(sql=f"CREATE VIEW {old_q} AS SELECT * FROM {new_q}", lock="AccessShareLock",
                         note="simple view: inserts, updates and deletes through it reach the table"),
                ],
                lock_timeout="2s",
                deploy_after=True,
                rollback=[f"DROP VIEW IF EXISTS {old_q}",
                          f"ALTER TABLE {new_q} RENAME TO {ident(split_name(table)[1])}"],
                rollback_point="both names work; the table has its new name",
                validation=f"SELECT to_regclass({literal(new_q)}) IS NOT NULL",
                notes=["the view's column list is fixed when it is created: columns added later are not visible "
                       "through the old name", "deploy the application using the new name next"],
            ),
            Phase(
                name="contract: drop the compatibility view",
                order=2,
                operations=[Step(sql=f"DROP VIEW {old_q}", lock="AccessExclusiveLock",
                                 note="on the view only; the table is not locked")],
                lock_timeout="2s",
                can_rollback=True,
                rollback=[f"CREATE VIEW {old_q} AS SELECT * FROM {new_q}"],
                rollback_point="only the new name exists",
                validation=f"SELECT to_regclass({literal(old_q)}) IS NULL",
            ),
        ],
        notes=["grants, RLS policies and triggers stay on the table; the view runs with its owner's rights"],
    )


def rename_column(
    table: str,
    column: str,
    new_name: str,
    column_type: str | None = None,
    *,
    not_null: bool = False,
    default: str | None = None,
    pg_version: int | None = None,
    live: LiveColumn | None = None,
) -> Pattern:
    """Expand/contract rename of ``column`` (of type ``column_type``) to ``new_name``.

    ``live`` (the column as the database has it): its type, NOT NULL, default and owned sequence are
    carried over unless given here; what the contract phase's DROP COLUMN would drop or fail on
    (indexes, constraints, views, foreign keys from other tables, policies…) is named in the notes.

    The new column gets its default only in the contract phase: during the transition an INSERT's
    value for the new column, when not NULL, was written by new code and wins; a NULL one is taken
    from the old column (so an old client's value, or the old column's default, is kept). A default on
    the new column earlier would hide an old client's value behind the default.
    """
    pg = major(pg_version)
    notes: list[str] = []
    if live is not None:
        refuse_unmovable(live, f"rename of {table}.{column}")
        column_type = column_type or live.type
        not_null = not_null or live.not_null
        if default is None and not live.identity:
            default = live.default
        notes = _rename_notes(live, new_name)
    if not column_type:
        raise InputError("rename_column needs type", "give the column's type, or connect a database (--dsn) so "
                         "that it is read from the catalog")
    _, rel = split_name(table)
    t, o, n = qname(table), ident(column), ident(new_name)
    tg = short(f"{rel}_{column}", "_rename_sync")
    body = (f"  IF TG_OP = 'INSERT' THEN\n"
            f"    IF NEW.{n} IS NULL THEN NEW.{n} := NEW.{o}; ELSE NEW.{o} := NEW.{n}; END IF;\n"
            f"  ELSIF NEW.{n} IS DISTINCT FROM OLD.{n} THEN NEW.{o} := NEW.{n};\n"
            f"  ELSIF NEW.{o} IS DISTINCT FROM OLD.{o} THEN NEW.{n} := NEW.{o};\n"
            f"  END IF;")
    fn_sql, tg_sql, drop = sync_function(table, tg, body)
    expand_ops = [
        Step(sql=f"ALTER TABLE {t} ADD COLUMN {n} {column_type}", lock="AccessExclusiveLock",
             note="brief: nullable, no default (set in the contract phase), no rewrite"),
    ]
    expand_ops += [Step(sql=fn_sql), Step(sql=tg_sql, lock="ShareRowExclusiveLock",
                                          note="old and new code can both write: each column follows the other")]
    phases = [
        Phase(
            name="expand: new column and two-way sync trigger",
            order=1,
            operations=expand_ops,
            rollback=[drop, f"ALTER TABLE {t} DROP COLUMN IF EXISTS {n}"],
            rollback_point="the new column follows every write; nothing reads it yet",
            validation=_attr_query(table, new_name),
        ),
        Phase(
            name="backfill the new column",
            order=2,
            backfill=BackfillStep(table=table, set=f"{n} = {o}", where=f"{n} IS DISTINCT FROM {o}"),
            rollback=[drop, f"ALTER TABLE {t} DROP COLUMN IF EXISTS {n}"],
            rollback_point="both columns hold the same values",
            validation=f"SELECT NOT EXISTS (SELECT 1 FROM {t} WHERE {n} IS DISTINCT FROM {o})",
        ),
    ]
    if not_null:
        phases += not_null_phases(table, new_name, pg, 3)
    carried = carry_indexes(table, live, column, new_name)
    if carried.build:
        phases += build_phases(carried, new_name, len(phases) + 1)
    phases[-1].deploy_after = True
    phases[-1].notes.append(f"deploy the application reading and writing {new_name} (the trigger keeps "
                            f"{column} right for instances still running the old code)")
    contract = [Step(sql=drop.split("; ")[0], lock="AccessExclusiveLock"), Step(sql=drop.split("; ")[1])]
    if default is not None:
        contract.append(Step(sql=f"ALTER TABLE {t} ALTER COLUMN {n} SET DEFAULT {default}",
                             lock="AccessExclusiveLock", note="the old column's default moves to the new one"))
    if live is not None and live.sequence and not live.identity:
        contract.append(Step(sql=f"ALTER SEQUENCE {live.sequence} OWNED BY {t}.{n}", lock=None,
                             note="else DROP COLUMN drops the sequence the default reads"))
    contract.append(Step(sql=f"ALTER TABLE {t} DROP COLUMN {o}", lock="AccessExclusiveLock", note="brief"))
    contract += carried.restore
    phases.append(Phase(
        name="contract: drop the trigger and the old column",
        order=len(phases) + 1,
        operations=contract,
        lock_timeout="2s",
        can_rollback=False,
        rollback_point=f"only {new_name} remains",
        validation=f"SELECT NOT ({_attr_query(table, column)})",
        notes=["indexes and constraints on the old column go with it: create them on the new column first"],
    ))
    return Pattern(
        kind="rename_column",
        title=f"Rename {table}.{column} to {new_name}",
        table=table,
        pg_version=pg,
        summary="a new column kept in sync both ways while old and new application versions run side by side",
        phases=phases,
        notes=notes,
    )


def _rename_notes(live: LiveColumn, new_name: str) -> list[str]:
    """What the rename carries from the live column, and what the contract phase's DROP COLUMN would take or trip on."""
    carried = [what for what, present in (("NOT NULL", live.not_null),
                                          (f"the default {live.default} (set in the contract phase)",
                                           live.default is not None and not live.identity),
                                          (f"ownership of the sequence {live.sequence}",
                                           bool(live.sequence) and not live.identity)) if present]
    notes = [f"carried over from the live column ({live.type}): " + ("; ".join(carried) or "nothing (nullable, "
                                                                      "no default)")]
    if live.identity:
        notes.append(f"not carried: {live.column} is an identity column; make {new_name} one before the contract "
                     "phase (ALTER TABLE ... ALTER COLUMN ... ADD GENERATED BY DEFAULT AS IDENTITY, starting above the "
                     "current maximum)")
    for d in live.dependents:
        what = f"not carried: {d.kind} {d.name}" + (f" ({d.definition})" if d.definition else "")
        if d.kind in CARRIED and live.partitioned:
            notes.append(f"{what}: {PARTITIONED}")
            continue
        if carries(live, d):
            notes.append(f"carried: {d.kind} {d.name}, built on {new_name} CONCURRENTLY before the deploy and "
                         "given its name back after the contract's DROP COLUMN")
            continue
        if d.kind in DROPPED_WITH_COLUMN:
            notes.append(f"{what}: the contract phase's DROP COLUMN drops it - create it on {new_name} first "
                         f"({DROPPED_WITH_COLUMN[d.kind]})")
        else:
            how = advice(d) if d.kind.startswith("foreign key from ") else f"recreate it reading {new_name}"
            notes.append(f"{what}: bound to the old column, the contract phase's DROP COLUMN fails while it exists "
                         f"- {how}, in the contract transaction before the DROP COLUMN or earlier")
    notes += [f"trigger {d.name} fires for every row and may read {live.column} by name: after the contract "
              f"phase it must use {new_name} - check its function" for d in live.row_triggers]
    return notes


DROPPED_WITH_COLUMN = {
    "index": "create_index pattern, CONCURRENTLY",
    "check": "add_check pattern: NOT VALID, then VALIDATE",
    "unique": "add_unique pattern",
    "primary key": "add_primary_key pattern",
    "exclusion": "its definition with the new column",
    "foreign key": "add_foreign_key pattern: NOT VALID, then VALIDATE",
    "statistics": "CREATE STATISTICS with the new column",
}
