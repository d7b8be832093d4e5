"""Column patterns: change a column's type through a shadow column; add a column with a volatile default.

``ALTER COLUMN … TYPE`` rewrites the table (and its indexes) under AccessExclusiveLock unless the
types are binary-coercible; ``ADD COLUMN … DEFAULT random()`` (any volatile default) rewrites it
too. Both are replaced by steps that each hold a strong lock for milliseconds, with the rows
themselves rewritten by the batched backfill.
"""

from __future__ import annotations

from pglast import parse_sql
from pglast.parser import ParseError

from agent19.migrate.patterns.carry import CARRIED, PARTITIONED, build_phases, carries, carry_indexes
from agent19.migrate.patterns.constraints import not_null_phases
from agent19.migrate.patterns.live import LiveColumn, advice, refuse_unmovable
from agent19.migrate.patterns.model import BackfillStep, Pattern, Phase, Step
from agent19.migrate.patterns.sqlnames import ident, literal, major, qname, short, sibling, split_name


def _attr_query(table: str, column: str, what: str = "true") -> str:
    return (f"SELECT COALESCE((SELECT {what} FROM pg_attribute WHERE attrelid = to_regclass({literal(qname(table))})"
            f" AND attname = {literal(column)} AND NOT attisdropped), false)")


_TRUNCATED_BY_CAST = {"varchar", "bpchar", "bit", "varbit"}


def _length_limited(new_type: str) -> bool:
    """Whether ``new_type`` is a length-limited character or bit string (``varchar(3)``, ``char(2)``, ``bit(8)``).

    ``ALTER COLUMN … TYPE`` without USING converts with an *assignment* cast, which fails on a value that does
    not fit; an explicit ``CAST(x AS varchar(3))`` silently cuts it to three characters. So the shadow column is
    filled from the bare column (an UPDATE's SET and a PL/pgSQL assignment are assignment casts too): a value
    too long stops the backfill, as it would stop the ALTER, instead of being truncated and swapped in.
    """
    try:
        target = parse_sql(f"SELECT CAST(NULL AS {new_type})")[0].stmt.targetList[0].val
    except ParseError:
        return False
    type_node = getattr(target, "typeName", None)
    names = [getattr(n, "sval", "") for n in getattr(type_node, "names", None) or ()]
    if not names or names[-1] not in _TRUNCATED_BY_CAST or type_node.arrayBounds:
        return False
    return bool(type_node.typmods) or names[-1] in ("bpchar", "bit")  # char and bit alone mean length 1


def sync_function(table: str, name: str, body: str) -> tuple[str, str, str]:
    """(CREATE FUNCTION, CREATE TRIGGER, DROP TRIGGER + FUNCTION) for a BEFORE INSERT OR UPDATE row trigger."""
    fn = qname(sibling(table, name))
    # use_column: a column named like a PL/pgSQL variable (new, old, found, tg_op…) read in the body's queries is
    # the column — by default the name is ambiguous and the trigger fails every insert and update of the table
    create_fn = (f"CREATE OR REPLACE FUNCTION {fn}() RETURNS trigger LANGUAGE plpgsql AS $agent19$\n"
                 "#variable_conflict use_column\nBEGIN\n"
                 f"{body}\n  RETURN NEW;\nEND\n$agent19$")
    create_tg = (f"CREATE TRIGGER {ident(name)} BEFORE INSERT OR UPDATE ON {qname(table)} "
                 f"FOR EACH ROW EXECUTE FUNCTION {fn}()")
    drop = f"DROP TRIGGER IF EXISTS {ident(name)} ON {qname(table)}; DROP FUNCTION IF EXISTS {fn}()"
    return create_fn, create_tg, drop


def change_column_type(
    table: str,
    column: str,
    new_type: str,
    *,
    using: str | None = None,
    old_type: str | None = None,
    not_null: bool | None = None,
    default: str | None = None,
    pg_version: int | None = None,
    live: LiveColumn | None = None,
) -> Pattern:
    """Change ``column`` to ``new_type`` through a shadow column, without a table rewrite under lock.

    ``using`` converts a row's old value, written in terms of the table's columns (default
    ``CAST(column AS new_type)``). ``old_type`` lets the swap keep the old column in sync
    backwards, so that the swap can be rolled back without losing writes. ``not_null``: the column
    is NOT NULL (proved with a validated CHECK before the swap). ``default``: the new column's default.

    ``live``: the column as the connected database has it (:func:`~agent19.migrate.patterns.live.read_column`).
    Its NOT NULL, default, type (as ``old_type``) and owned sequence are carried over unless given here;
    what cannot be carried (indexes, constraints, foreign keys, views, column triggers, policies…) is
    named in the pattern's notes with what to do, because it stays on the old column.
    """
    pg = major(pg_version)
    notes: list[str] = []
    if live is not None:
        refuse_unmovable(live, f"type change of {table}.{column}")
        not_null, default, old_type, notes = _carry(live, not_null, default, old_type)
    elif not_null is None:
        notes.append(f"not known here (no database): whether {column} is NOT NULL, its default and what depends "
                     f"on it - the new column is nullable without a default; pass not_null/default, or connect a "
                     "database (--dsn) to carry them over")
    _, rel = split_name(table)
    t, c = qname(table), ident(column)
    shadow, old = short(column, "_new"), short(column, "_old")
    s, o = ident(shadow), ident(old)
    expr = using or (c if _length_limited(new_type) else f"CAST({c} AS {new_type})")
    fwd = short(f"{rel}_{column}", "_to_new")
    back = short(f"{rel}_{column}", "_to_old")
    fn_sql, tg_sql, drop_fwd = sync_function(
        table, fwd, f"  NEW.{s} := (SELECT {expr} FROM (SELECT NEW.*) AS {ident(rel)});")
    phases = [
        Phase(
            name="expand: shadow column and sync trigger",
            order=1,
            operations=[
                Step(sql=f"ALTER TABLE {t} ADD COLUMN {s} {new_type}", lock="AccessExclusiveLock",
                     note="brief: no default, no rewrite"),
                Step(sql=fn_sql, lock=None),
                Step(sql=tg_sql, lock="ShareRowExclusiveLock",
                     note="from now on every insert and update fills the shadow column"),
            ],
            rollback=[drop_fwd, f"ALTER TABLE {t} DROP COLUMN IF EXISTS {s}"],
            rollback_point="the shadow column exists and follows every write; nothing reads it",
            validation=_attr_query(table, shadow),
        ),
        Phase(
            name="backfill the shadow column",
            order=2,
            backfill=BackfillStep(table=table, set=f"{s} = {expr}", where=f"{s} IS NULL AND {c} IS NOT NULL"),
            can_rollback=True,
            rollback=[drop_fwd, f"ALTER TABLE {t} DROP COLUMN IF EXISTS {s}"],
            rollback_point="every row has its converted value",
            validation=f"SELECT NOT EXISTS (SELECT 1 FROM {t} WHERE {s} IS NULL AND {c} IS NOT NULL)",
            notes=["a conversion error stops the backfill on the first bad row: fix it (or `using`) and resume"],
        ),
    ]
    swap_ops: list[Step] = []
    tail: list[Phase] = []
    if not_null:
        tail = not_null_phases(table, shadow, pg, 3)
        if pg >= 12:
            tail = tail[:2]  # the SET NOT NULL itself happens in the swap, on the new column
            check = short(f"{rel}_{shadow}", "_not_null")
            swap_ops_nn = [
                Step(sql=f"ALTER TABLE {t} ALTER COLUMN {s} SET NOT NULL", lock="AccessExclusiveLock",
                     note="no scan: the validated CHECK proves it"),
                Step(sql=f"ALTER TABLE {t} DROP CONSTRAINT {ident(check)}", lock="AccessExclusiveLock"),
            ]
        else:
            swap_ops_nn = []
    else:
        swap_ops_nn = []
    carried = carry_indexes(table, live, column, shadow)
    swap_ops += [
        Step(sql=f"LOCK TABLE {t} IN ACCESS EXCLUSIVE MODE", lock="AccessExclusiveLock",
             note="take the lock first and fail fast (lock_timeout) rather than queue behind a long query"),
        Step(sql=drop_fwd.split("; ")[0], lock="AccessExclusiveLock"),
        Step(sql=drop_fwd.split("; ")[1], lock=None),
        *swap_ops_nn,
        Step(sql=f"ALTER TABLE {t} RENAME COLUMN {c} TO {o}", lock="AccessExclusiveLock"),
        Step(sql=f"ALTER TABLE {t} RENAME COLUMN {s} TO {c}", lock="AccessExclusiveLock"),
        *carried.swap,
        Step(sql=f"ALTER TABLE {t} ALTER COLUMN {o} DROP NOT NULL", lock="AccessExclusiveLock",
             note="writers no longer fill the old column"),
        Step(sql=f"ALTER TABLE {t} ALTER COLUMN {o} DROP DEFAULT", lock="AccessExclusiveLock"),
    ]
    if default is not None:
        swap_ops.append(Step(sql=f"ALTER TABLE {t} ALTER COLUMN {c} SET DEFAULT {default}",
                             lock="AccessExclusiveLock"))
    if live is not None and live.sequence and not live.identity:
        swap_ops.append(Step(sql=f"ALTER SEQUENCE {live.sequence} OWNED BY {t}.{c}", lock=None,
                             note="the sequence follows the new column (DROP COLUMN of the old one would drop it)"))
    # undoing the swap gives the old column back what the swap took from it (NOT NULL, default, its sequence) and
    # the shadow column its sync trigger; without a database, what the change says stands for the old column's
    old_not_null, old_default = (live.not_null, live.default) if live is not None else (not_null, default)
    rollback = [*([f"ALTER TABLE {t} ALTER COLUMN {c} DROP DEFAULT"] if default is not None else []),
                f"ALTER TABLE {t} RENAME COLUMN {c} TO {s}", f"ALTER TABLE {t} RENAME COLUMN {o} TO {c}",
                *([f"ALTER TABLE {t} ALTER COLUMN {c} SET NOT NULL"] if old_not_null else []),
                *([f"ALTER TABLE {t} ALTER COLUMN {c} SET DEFAULT {old_default}"]
                  if old_default is not None and not (live is not None and live.identity) else []),
                *([f"ALTER SEQUENCE {live.sequence} OWNED BY {t}.{c}"]
                  if live is not None and live.sequence and not live.identity else []),
                fn_sql, tg_sql]
    drop_back = ""
    if old_type:
        bfn, btg, drop_back = sync_function(
            table, back, f"  NEW.{o} := CAST(NEW.{c} AS {old_type});")
        swap_ops += [Step(sql=bfn, lock=None), Step(sql=btg, lock="ShareRowExclusiveLock",
                                                   note="keeps the old column right, so the swap can be undone")]
        rollback = [*drop_back.split("; "), *rollback]
    rollback += carried.unswap
    phases += tail
    if carried.build:
        phases += build_phases(carried, shadow, len(phases) + 1)
    phases.append(Phase(
        name="swap the columns",
        order=len(phases) + 1,
        operations=swap_ops,
        lock_timeout="2s",
        deploy_after=True,
        can_rollback=True,
        rollback=rollback,
        rollback_point=f"{column} has type {new_type}; the old values stay in {old} until the contract phase",
        validation=(f"SELECT EXISTS (SELECT 1 FROM pg_attribute WHERE attrelid = to_regclass({literal(t)})"
                    f" AND attname = {literal(column)} AND atttypid = {literal(new_type)}::regtype)"),
        notes=["one short transaction: if it times out waiting for the lock, run it again",
               "indexes, constraints, views and foreign keys on the old column stay on it: create them on the "
               "shadow column (create_index pattern) before this phase"],
    ))
    contract = [Step(sql=s_, lock="AccessExclusiveLock" if "TRIGGER" in s_ else None)
                for s_ in drop_back.split("; ") if s_]
    contract.append(Step(sql=f"ALTER TABLE {t} DROP COLUMN {o}", lock="AccessExclusiveLock",
                         note="brief: catalog only, the space is reclaimed by later updates/VACUUM FULL"))
    contract += carried.restore
    phases.append(Phase(
        name="contract: drop the old column",
        order=len(phases) + 1,
        operations=contract,
        lock_timeout="2s",
        can_rollback=False,
        rollback_point="only the new column remains",
        validation=f"SELECT NOT ({_attr_query(table, old)})",
        notes=["run once the application works with the new type"],
    ))
    return Pattern(
        kind="change_column_type",
        title=f"Change {table}.{column} to {new_type}",
        table=table,
        pg_version=pg,
        summary="ALTER COLUMN TYPE rewrites the table under AccessExclusiveLock; a shadow column kept in sync by "
        "a trigger and filled in batches is swapped in with one short transaction",
        phases=phases,
        notes=notes,
    )


def _carry(live: LiveColumn, not_null: bool | None, default: str | None,
           old_type: str | None) -> tuple[bool, str | None, str, list[str]]:
    """What the pattern takes over from the live column, and notes naming what it cannot."""
    carried = []
    if not_null is None:
        not_null = live.not_null
        if live.not_null:
            carried.append("NOT NULL (proved by a validated CHECK before the swap)")
    if default is None and live.default is not None and not live.identity:
        default = live.default
        carried.append(f"the default {default}")
    if live.sequence and not live.identity:
        carried.append(f"ownership of the sequence {live.sequence}")
    notes = [f"carried over from the live column ({live.type}): " + ("; ".join(carried) if carried else "nothing "
                                                                       "(nullable, no default)")]
    if live.identity:
        notes.append(f"not carried: {live.column} is an identity column; after the swap make the new column one "
                     f"(ALTER TABLE ... ALTER COLUMN ... ADD GENERATED BY DEFAULT AS IDENTITY, starting above the "
                     f"current maximum)")
    notes += [f"carried: {d.kind} {d.name}, built on the shadow column CONCURRENTLY before the swap and given its "
              "name back after the contract's DROP COLUMN" if carries(live, d) else
              f"not carried: {d.kind} {d.name}" + (f" ({d.definition})" if d.definition else "") +
              f": {PARTITIONED if d.kind in CARRIED and live.partitioned else advice(d)}"
              for d in live.dependents]
    notes += [f"trigger {d.name} fires for every row and may read {live.column} by name: after the swap it sees "
              f"the new type - check its function" for d in live.row_triggers]
    return bool(not_null), default, old_type or live.type, notes


def add_column_volatile_default(
    table: str,
    column: str,
    type_: str,
    default: str,
    *,
    not_null: bool = True,
    pg_version: int | None = None,
) -> Pattern:
    """ADD COLUMN … DEFAULT <volatile> without the rewrite: nullable column, default, backfill, NOT NULL."""
    pg = major(pg_version)
    t, c = qname(table), ident(column)
    phases = [
        Phase(
            name="add the column and its default",
            order=1,
            operations=[
                Step(sql=f"ALTER TABLE {t} ADD COLUMN {c} {type_}", lock="AccessExclusiveLock",
                     note="brief: nullable and without default, no rewrite"),
                Step(sql=f"ALTER TABLE {t} ALTER COLUMN {c} SET DEFAULT {default}", lock="AccessExclusiveLock",
                     note="brief: applies to new rows only"),
            ],
            rollback=[f"ALTER TABLE {t} DROP COLUMN IF EXISTS {c}"],
            rollback_point="new rows get the default; old rows are NULL",
            validation=_attr_query(table, column),
        ),
        Phase(
            name="backfill existing rows",
            order=2,
            backfill=BackfillStep(table=table, set=f"{c} = {default}", where=f"{c} IS NULL"),
            can_rollback=True,
            rollback=[f"ALTER TABLE {t} DROP COLUMN IF EXISTS {c}"],
            rollback_point="every row has a value",
            validation=f"SELECT NOT EXISTS (SELECT 1 FROM {t} WHERE {c} IS NULL)",
        ),
    ]
    if not_null:
        phases += not_null_phases(table, column, pg, 3)
    return Pattern(
        kind="add_column_volatile_default",
        title=f"Add {table}.{column} {type_} DEFAULT {default}",
        table=table,
        pg_version=pg,
        summary="ADD COLUMN with a volatile default rewrites the table under AccessExclusiveLock; adding it "
        "nullable, setting the default, backfilling in batches and then NOT NULL does not",
        phases=phases,
    )
