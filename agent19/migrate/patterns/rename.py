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

from agent19.migrate.patterns.columns import _attr_query, sync_function
from agent19.migrate.patterns.constraints import not_null_phases
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
    column_type: str,
    *,
    not_null: bool = False,
    default: str | None = None,
    pg_version: int | None = None,
) -> Pattern:
    """Expand/contract rename of ``column`` (of type ``column_type``) to ``new_name``."""
    pg = major(pg_version)
    _, rel = split_name(table)
    t, o, n = qname(table), ident(column), ident(new_name)
    tg = short(f"{rel}_{column}", "_rename_sync")
    body = (f"  IF TG_OP = 'INSERT' THEN\n"
            f"    IF NEW.{n} IS NULL THEN NEW.{n} := NEW.{o}; ELSIF NEW.{o} IS NULL THEN NEW.{o} := NEW.{n}; END IF;\n"
            f"  ELSIF NEW.{n} IS DISTINCT FROM OLD.{n} THEN NEW.{o} := NEW.{n};\n"
            f"  ELSIF NEW.{o} IS DISTINCT FROM OLD.{o} THEN NEW.{n} := NEW.{o};\n"
            f"  END IF;")
    fn_sql, tg_sql, drop = sync_function(table, tg, body)
    expand_ops = [
        Step(sql=f"ALTER TABLE {t} ADD COLUMN {n} {column_type}", lock="AccessExclusiveLock",
             note="brief: nullable, no rewrite"),
    ]
    if default is not None:
        expand_ops.append(Step(sql=f"ALTER TABLE {t} ALTER COLUMN {n} SET DEFAULT {default}",
                               lock="AccessExclusiveLock"))
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
    phases[-1].deploy_after = True
    phases[-1].notes.append(f"deploy the application reading and writing {new_name} (the trigger keeps "
                            f"{column} right for instances still running the old code)")
    phases.append(Phase(
        name="contract: drop the trigger and the old column",
        order=len(phases) + 1,
        operations=[Step(sql=drop.split("; ")[0], lock="AccessExclusiveLock"),
                    Step(sql=drop.split("; ")[1]),
                    Step(sql=f"ALTER TABLE {t} DROP COLUMN {o}", lock="AccessExclusiveLock", note="brief")],
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
    )
