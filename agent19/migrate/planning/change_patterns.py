"""A change list's rename or column type change on an existing table, as its zero-downtime pattern's statements.

:func:`~agent19.migrate.patterns.rename_column`, ``rename_table`` and ``change_column_type`` give the phases; here
they become the statements a plan runs: each phase one transaction with its own lock_timeout, a backfill phase the
keyset procedure, and the phases after the pattern's deploy point set apart (:class:`ChangeSteps`), so that a plan
runs every change's expand part, then one deploy, then every contract part. What the pattern knows of its own
statements that the statement alone does not say travels with it (:class:`Generated`).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, replace

import pglast
from pglast.enums import AlterTableType

from agent19.db.models import SchemaSnapshot
from agent19.errors import InputError
from agent19.migrate.model import Risk
from agent19.migrate.patterns.columns import change_column_type
from agent19.migrate.patterns.live import LiveColumn, find_table, index_column_refs, live_from_snapshot
from agent19.migrate.patterns.model import BackfillStep, Pattern, Phase
from agent19.migrate.patterns.rename import rename_column, rename_table
from agent19.migrate.patterns.sqlnames import ident, qname, sibling, split_name
from agent19.migrate.planning.model import Change


@dataclass(frozen=True)
class Generated:
    """One statement a change generates: ``phase`` names the zero-downtime pattern phase it belongs to."""

    sql: str
    phase: str | None = None
    same_data_as: str | None = None
    """The plain statement whose data-loss fact this one shares: the contract's DROP COLUMN of a rename loses no
    data (the values live on in the new column); of a type change, what the conversion itself loses."""
    risk: Risk | None = None
    """The pattern's risk for this step where the statement alone reads worse: a rename whose old name the same
    transaction gives back (a compatibility view, the column swap) breaks no client; a contract drop that loses
    nothing is brief and final, not critical."""
    reverse: str | None = None
    """The pattern phase's rollback, on the phase's last statement: undone phase by phase, last phase first (a
    statement's own inverse, read from the catalog by name, is wrong once the phase has renamed columns)."""
    undoable: bool | None = None
    """None: not a pattern's statement (its own inverse stands); else whether its phase can be rolled back."""


@dataclass(frozen=True)
class ChangeSteps:
    """A change's statements: ``now`` in its place in the order, ``after_deploy`` once the application is deployed
    (a pattern's contract phases), ``notes`` what the pattern could not carry over and what to do."""

    now: list[Generated]
    after_deploy: list[Generated]
    notes: list[str]


def _live(change: Change, catalog: SchemaSnapshot | None) -> LiveColumn | None:
    table = find_table(catalog, change.table)
    if catalog is None or table is None or change.column is None:
        return None
    return live_from_snapshot(catalog, table, change.column.name)


def rename_pattern(change: Change, pg_major: int, catalog: SchemaSnapshot | None) -> Pattern:
    if change.column is None:
        return rename_table(change.table, change.new_name or "", pg_version=pg_major)
    c, live = change.column, _live(change, catalog)
    return rename_column(change.table, c.name, change.new_name or "", None if live else c.type,
                         not_null=not c.nullable, default=None if live else c.default, pg_version=pg_major, live=live)


def type_pattern(change: Change, pg_major: int, catalog: SchemaSnapshot | None) -> Pattern:
    """change_column_type for a modify_column: the live column's NOT NULL, default and type are carried over; a
    ``nullable: false`` or ``default`` in the change is applied to the new column (proved before the swap)."""
    c, live = change.column, _live(change, catalog)
    assert c is not None and change.new_type
    old_type = None if live else (c.type if c.type.strip().lower() != change.new_type.strip().lower() else None)
    return change_column_type(change.table, c.name, change.new_type, old_type=old_type,
                              not_null=True if not c.nullable else None,
                              default=c.default, pg_version=pg_major, live=live)


def pattern_steps(p: Pattern, change: Change, backfill: Callable[[BackfillStep], list[str]]) -> ChangeSteps:
    """The pattern's phases as statements: those up to its deploy point now, the rest after the deploy. A backfill
    phase is ``backfill``'s SQL (the keyset procedure, as a data_migration's); each other phase is one transaction
    with its lock_timeout."""
    now: list[Generated] = []
    later: list[Generated] = []
    target = now
    for phase in p.phases:
        label = f"{p.kind} phase {phase.order} of {len(p.phases)}: {phase.name}"
        if phase.backfill is not None:
            sqls = backfill(phase.backfill)
        else:
            sqls = _phase_statements(phase)
        generated = [_contract_drop(sql, label, change) if target is later else
                     Generated(sql, label, risk="medium" if _renames(sql) else None) for sql in sqls]
        undo = ";\n".join(phase.rollback) or None if phase.can_rollback else None
        target += [replace(g, undoable=phase.can_rollback, reverse=undo if i == len(generated) - 1 else None)
                   for i, g in enumerate(generated)]
        if phase.deploy_after:
            target = later
    return ChangeSteps(now, later, [f"{p.title}: {n}" for n in p.notes])


def _contract_drop(sql: str, label: str, change: Change) -> Generated:
    """A contract statement; the DROP COLUMN of the column the pattern replaced says why lint's A19014 (running
    clients still use it, its data is lost) does not hold — the application was deployed without it and its values
    are in the new column — and which plain statement's data-loss fact it shares."""
    stmt = pglast.parse_sql(sql)[0].stmt
    cmds = getattr(stmt, "cmds", None) or ()
    if type(stmt).__name__ != "AlterTableStmt" or len(cmds) != 1 or cmds[0].subtype != AlterTableType.AT_DropColumn:
        return Generated(sql, label)
    t, c = qname(change.table), ident(change.column.name if change.column else "")
    if change.type == "rename":
        same, why = f"ALTER TABLE {t} RENAME COLUMN {c} TO {ident(change.new_name or '')}", \
            f"its values are in {ident(change.new_name or '')}"
    else:
        same, why = f"ALTER TABLE {t} ALTER COLUMN {c} TYPE {change.new_type}", \
            f"its values are in {c}, converted to {change.new_type}"
    return Generated(f"-- contract: the application deployed above no longer uses it; {why}\n"
                     f"-- agent19:ignore A19014\n{sql}", label, same_data_as=same, risk="medium")


def _renames(sql: str) -> bool:
    """A RENAME inside a pattern's phase: the patterns give the old name back in the same transaction."""
    return type(pglast.parse_sql(sql)[0].stmt).__name__ == "RenameStmt"


def _phase_statements(phase: Phase) -> list[str]:
    """One phase: ``BEGIN``, ``SET LOCAL lock_timeout``, its statements, ``COMMIT`` — or, for statements that cannot
    run in a transaction block (CONCURRENTLY), each alone. A recovery step (``only_if``) is left to the pattern."""
    steps = [st for st in phase.operations if st.only_if is None]
    if not (phase.transactional and all(st.in_transaction for st in steps)):
        return [st.sql for st in steps]
    return ["BEGIN", f"SET LOCAL lock_timeout = '{phase.lock_timeout}'", *(st.sql for st in steps), "COMMIT"]


def require_live(change: Change, changes: list[Change], catalog: SchemaSnapshot | None) -> None:
    """With a database, the table (and column) a rename or type change reads must exist — or be added by the same
    change list — else the pattern's SQL would fail half-way through its phases."""
    if catalog is None:
        return
    table = find_table(catalog, change.table)
    if table is None:
        raise InputError(f"{change.type} on {change.table}: the database has no such table",
                         "name it as the catalog does (schema-qualified, case kept), or create it in the change list")
    col = change.column.name if change.column else None
    added = any(c.type == "add_column" and c.table == change.table and c.column and c.column.name == col
                for c in changes)
    if col is not None and table.column(col) is None and not added:
        names = ", ".join(c.name for c in table.columns[:20])
        raise InputError(f"{change.type} on {change.table}: it has no column {col!r}", f"its columns: {names}")


def is_pattern(change: Change, new_tables: set[str]) -> bool:
    """A rename (with its new name) or a type change of an existing table: made as its zero-downtime pattern."""
    return change.table not in new_tables and bool(change.new_name if change.type == "rename" else
                                                   change.type == "modify_column" and change.new_type)


def check_patterns(changes: list[Change], new_tables: set[str], catalog: SchemaSnapshot | None = None) -> None:
    """Refuse what the patterns cannot combine: each builds on the table as the catalog has it and ends with its own
    contract, so two on one column (a rename and a type change: the rename's contract drops the column the type
    change swapped in) or a column's pattern on a table the list renames (its later statements name a view) break."""
    renamed: dict[str, str] = {}
    for c in changes:
        if c.type == "rename" and c.column is None and c.new_name and c.table not in new_tables:
            new = qname(sibling(c.table, split_name(c.new_name)[1]))
            renamed[qname(c.table)] = renamed[new] = f"{c.table} is renamed to {c.new_name}"
    seen: dict[tuple[str, str], Change] = {}
    for c in changes:
        if not is_pattern(c, new_tables) or c.column is None:
            continue
        t = qname(c.table)
        if t in renamed:
            raise InputError(f"{c.type} of {c.table}.{c.column.name}: {renamed[t]} in the same change list, and a "
                             "table rename's compatibility view takes the old name while the column's pattern runs",
                             "rename the table in a change list of its own, after this one's contract part has run")
        for name in {c.column.name, *([c.new_name] if c.type == "rename" and c.new_name else [])}:
            if (t, name) in seen:
                raise InputError(f"{c.table}.{name} is changed by two zero-downtime patterns in one change list "
                                 f"({seen[t, name].type} and {c.type}): each ends by dropping the column it "
                                 "replaced, so the second undoes the first",
                                 "make one of them a change list of its own, run after the other's contract part")
            seen[t, name] = c
    _shared_indexes([c for c in changes if is_pattern(c, new_tables) and c.column is not None], catalog)
    for c in changes:  # an index or foreign key the list adds on a renamed column: on the old one, the contract drops
        # it (or fails on it); on the new one, it runs before the rename's expand part has added the column
        uses = [(qname(c.table), col) for col in c.index_columns] + \
            [(qname(c.references_table or ""), col) for col in c.references_columns]
        clash = next((u for u in uses if u in seen and seen[u].type == "rename"), None)
        if c.type in ("add_index", "add_foreign_key") and clash:
            raise InputError(f"{c.type} on {c.table} uses {clash[1]}, which the same change list renames "
                             f"({seen[clash].column.name if seen[clash].column else ''} -> {seen[clash].new_name}): "
                             "the rename's contract drops the old column with what is built on it",
                             "add it in a change list of its own, by the new name, after the rename's contract part")


def _shared_indexes(patterns: list[Change], catalog: SchemaSnapshot | None) -> None:
    """Refuse two column patterns on one index: each builds its own copy of it (under the same temporary name) on
    its new column, and each contract's DROP COLUMN drops the other's copy, which reads the column it replaces."""
    columns = [(c.table, c.column.name) for c in patterns if c.column is not None]
    for i, (table, col) in enumerate(columns):
        found = find_table(catalog, table)
        others = [o for t, o in columns[i + 1:] if qname(t) == qname(table) and o != col]
        for other in others if found is not None else []:
            both = next((x.name for x in found.indexes if {col, other} <= index_column_refs(x.definition)), None)
            if both:
                raise InputError(f"{table}.{col} and {table}.{other} are both in the index {both}, and both are "
                                 "replaced by zero-downtime patterns in one change list: each contract drops the "
                                 "copy of the index the other built",
                                 "make one of them a change list of its own, run after the other's contract part")
