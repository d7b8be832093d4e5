"""SQL for a structured change list, ordered topologically.

Order: tables are created first (a referenced table before the tables that reference it), then
columns are added and changed, data is migrated, NOT NULL is added, indexes are built, foreign keys
added, renames done, and drops come last. Within a step, the given order is kept.

The SQL generated is the safe form for a table that exists and is in use (CONCURRENTLY, NOT VALID +
VALIDATE, NOT NULL through a validated CHECK, batched data migration); for a table created by the
same change list the plain form is used. The safe forms come from the zero-downtime patterns
(:mod:`agent19.migrate.patterns`) and the keyset backfill (:mod:`agent19.migrate.backfill.scripts`),
so a change list, a lint fix and a runbook write the same SQL. A NOT NULL asked for on an existing
table (``add_column`` without a default, ``modify_column`` with ``nullable: false``) is made after
the data migrations (step ``add_not_null``), so a backfill in the same change list runs first.

A ``rename`` or a ``modify_column`` type change on an existing table is the zero-downtime pattern's phases
(:func:`~agent19.migrate.patterns.rename_column`, ``rename_table``, ``change_column_type``: expand, backfill,
deploy, contract), never the plain RENAME / ALTER TYPE that breaks running clients or rewrites the table under
lock. Every change's expand part runs first; one deploy point follows; then the contract parts, in the change
list's order (:func:`changes_to_steps`).

A foreign key also gets an index on its referencing columns (CONCURRENTLY, outside the transaction,
on an existing table) unless the catalog or the change list already has one that leads with them. A foreign key
the live catalog already has (same columns, referenced table and columns, ON DELETE; ON UPDATE NO ACTION, MATCH
SIMPLE, not deferrable) is not added again: nothing
is generated for it (only VALIDATE CONSTRAINT when the live one is NOT VALID), and the plan says so.
"""

from __future__ import annotations

import shlex
from collections.abc import Callable
from graphlib import CycleError, TopologicalSorter

from agent19.db.models import Constraint, SchemaSnapshot
from agent19.errors import InputError
from agent19.migrate.backfill.executor import BackfillSpec
from agent19.migrate.backfill.scripts import procedure_parts
from agent19.migrate.patterns import fragments as F
from agent19.migrate.patterns.constraints import not_null_phases
from agent19.migrate.patterns.live import find_table, single_key
from agent19.migrate.patterns.model import BackfillStep
from agent19.migrate.patterns.sqlnames import ident, qname, short, split_name, table_arg
from agent19.migrate.planning.change_patterns import (
    ChangeSteps,
    Generated,
    check_patterns,
    is_pattern,
    pattern_steps,
    rename_pattern,
    require_live,
    type_pattern,
)
from agent19.migrate.planning.model import Change, ColumnSpec

STEP = {
    "create_table": 0, "add_column": 1, "modify_column": 2, "data_migration": 3, "add_not_null": 4,
    "add_index": 5, "add_foreign_key": 6, "rename": 7, "drop_column": 8,
}


def _base(table: str) -> str:
    return table.rpartition(".")[2]


def _column_sql(c: ColumnSpec) -> str:
    parts = [ident(c.name), c.type]
    if c.primary_key:
        parts.append("PRIMARY KEY")
    elif not c.nullable:
        parts.append("NOT NULL")
    if c.default is not None:
        parts.append(f"DEFAULT {c.default}")
    if c.references:
        parts.append(f"REFERENCES {c.references}")
    return " ".join(parts)


def _need(change: Change, what: str, ok: object) -> None:
    if not ok:
        raise InputError(f"{change.type} on {change.table}: {what} is required")


def _has_index(change: Change, changes: list[Change], catalog: SchemaSnapshot | None) -> bool:
    """An index whose leading columns are the foreign key's: in the catalog, or added by the change list."""
    cols = change.index_columns
    table = find_table(catalog, change.table)
    keys = [ix.key_names() for ix in table.indexes] if table else []
    keys += [c.index_columns for c in changes if c.type == "add_index" and c.table == change.table]
    keys += [[col.name] for c in changes if c.type == "create_table" and c.table == change.table
             for col in c.columns or [] if col.primary_key and len(cols) == 1]
    return any(k[: len(cols)] == cols or set(k[: len(cols)]) == set(cols) for k in keys)


def _check_fragments(change: Change) -> None:
    """Refuse SQL text pieces that are not exactly one type / expression / SET list (they are pasted in), and
    table names that are ambiguous (``a.b.c``: which dot ends the schema?)."""
    for name in (change.table, change.references_table):
        if name:
            table_arg(name)
    for col in [*([change.column] if change.column else []), *change.columns]:
        if change.type in ("create_table", "add_column"):
            F.type_name(col.type, f"type of column {col.name}")
        if col.default is not None:
            F.expression(col.default, f"default of column {col.name}")
        if col.references:
            F.references(col.references, f"references of column {col.name}")
    if change.new_type:
        F.type_name(change.new_type, "new_type")
    if change.where:
        F.expression(change.where, "where")
    if change.set:
        F.assignments(change.set, "set")


def change_steps(change: Change, new_tables: set[str], pg_major: int, changes: list[Change] | None = None,
                 catalog: SchemaSnapshot | None = None) -> ChangeSteps:
    """The statements for one change: a rename or type change of an existing table's column is its pattern."""
    _check_fragments(change)
    if is_pattern(change, new_tables):
        require_live(change, changes or [], catalog)
        if change.type == "rename":
            return pattern_steps(rename_pattern(change, pg_major, catalog), change,
                                 _backfiller(change, changes, catalog))
        if change.column is not None:
            return pattern_steps(type_pattern(change, pg_major, catalog), change,
                                 _backfiller(change, changes, catalog))
    return ChangeSteps([Generated(sql) for sql in change_sql(change, new_tables, pg_major, changes, catalog)], [], [])


def _backfiller(change: Change, changes: list[Change] | None,
                catalog: SchemaSnapshot | None) -> Callable[[BackfillStep], list[str]]:
    """A pattern's backfill phase on ``change``'s (existing) table, written as a data_migration's is."""
    def write(b: BackfillStep) -> list[str]:
        return _backfill(change.model_copy(update={"set": b.set, "where": b.where}), qname(change.table), False,
                         changes or [], catalog)
    return write


def change_sql(change: Change, new_tables: set[str], pg_major: int, changes: list[Change] | None = None,
               catalog: SchemaSnapshot | None = None) -> list[str]:
    """The plain statements for one change (``changes`` and ``catalog`` tell whether a foreign key has its index);
    :func:`change_steps` is what a change list runs."""
    _check_fragments(change)
    t = qname(change.table)
    new = change.table in new_tables
    cc = "" if new else " CONCURRENTLY"
    c = change.column
    match change.type:
        case "create_table":
            _need(change, "columns", change.columns)
            return [f"CREATE TABLE {t} (\n    " + ",\n    ".join(_column_sql(x) for x in change.columns) + "\n)"]
        case "add_column":
            _need(change, "column", c)
            assert c is not None
            if new or c.nullable or c.default is not None:
                return [f"ALTER TABLE {t} ADD COLUMN {_column_sql(c)}"]
            # NOT NULL without a default would fail on a populated table: add it nullable; the NOT NULL
            # follows as an add_not_null change (see _deferred_not_null), after any data migration
            return [f"ALTER TABLE {t} ADD COLUMN {_column_sql(c.model_copy(update={'nullable': True}))}"]
        case "modify_column":
            _need(change, "column.name", c)
            assert c is not None
            out = []
            if change.new_type:
                out.append(f"ALTER TABLE {t} ALTER COLUMN {ident(c.name)} TYPE {change.new_type}")
            if c.default is not None:
                out.append(f"ALTER TABLE {t} ALTER COLUMN {ident(c.name)} SET DEFAULT {c.default}")
            if not c.nullable and new:
                out.append(f"ALTER TABLE {t} ALTER COLUMN {ident(c.name)} SET NOT NULL")
            # on an existing table the NOT NULL is a deferred add_not_null change (see _deferred_not_null)
            _need(change, "new_type, default or nullable=false", out or not c.nullable)
            return out
        case "drop_column":
            _need(change, "column.name", c)
            assert c is not None
            return [f"ALTER TABLE {t} DROP COLUMN {ident(c.name)}"]
        case "add_index":
            _need(change, "index_columns", change.index_columns)
            name = change.index_name or _free(f"{_base(change.table)}_{'_'.join(change.index_columns)}", "_idx",
                                              _relation_names(catalog, change.table))
            where = f" WHERE {change.where}" if change.where else ""
            unique = "UNIQUE " if change.unique else ""
            cols = ", ".join(ident(x) for x in change.index_columns)
            return [f"CREATE {unique}INDEX{cc} {ident(name)} ON {t} ({cols}){where}"]
        case "rename":
            _need(change, "new_name", change.new_name)
            if c is not None:
                return [f"ALTER TABLE {t} RENAME COLUMN {ident(c.name)} TO {ident(change.new_name or '')}"]
            return [f"ALTER TABLE {t} RENAME TO {ident(change.new_name or '')}"]
        case "add_foreign_key":
            _need(change, "index_columns and references_table", change.index_columns and change.references_table)
            if (same := existing_foreign_key(change, catalog)) is not None:
                # adding it again would make a second, identical constraint (and validate it again)
                return [] if same.validated else [f"ALTER TABLE {t} VALIDATE CONSTRAINT {ident(same.name)}"]
            cols = change.index_columns
            ref_cols = change.references_columns or ["id"]
            name = ident(_free(f"{_base(change.table)}_{'_'.join(cols)}", "_fkey", _constraint_names(catalog,
                                                                                                   change.table)))
            on_delete = f" ON DELETE {change.on_delete.upper()}" if change.on_delete else ""
            fk = (f"ALTER TABLE {t} ADD CONSTRAINT {name} FOREIGN KEY ({', '.join(ident(x) for x in cols)}) "
                  f"REFERENCES {qname(change.references_table or '')} ({', '.join(ident(x) for x in ref_cols)})"
                  f"{on_delete}")
            # the referencing side needs an index (deletes on the referenced table scan it otherwise)
            ix_name = _free(_base(change.table) + '_' + '_'.join(cols), '_idx', _relation_names(catalog, change.table))
            index = [] if _has_index(change, changes or [], catalog) else [
                f"CREATE INDEX{cc} {ident(ix_name)} ON {t} "
                f"({', '.join(ident(x) for x in cols)})"]
            if new:
                return [*index, fk]
            return [*index, fk + " NOT VALID", f"ALTER TABLE {t} VALIDATE CONSTRAINT {name}"]
        case "add_not_null":
            _need(change, "column.name", c)
            assert c is not None
            if new:
                return [f"ALTER TABLE {t} ALTER COLUMN {ident(c.name)} SET NOT NULL"]
            return [step.sql for phase in not_null_phases(change.table, c.name, pg_major) for step in phase.operations]
        case "data_migration":
            _need(change, "set", change.set)
            return _backfill(change, t, new, changes or [], catalog)
    raise InputError(f"unknown change type {change.type!r}")  # pragma: no cover  (Literal validated)


def existing_foreign_key(change: Change, catalog: SchemaSnapshot | None) -> Constraint | None:
    """The live foreign key an ``add_foreign_key`` change asks for again: same columns, same referenced table and
    columns, same ON DELETE, and otherwise what the generated one would be (ON UPDATE NO ACTION, MATCH SIMPLE, not
    deferrable: one that cascades updates or defers its check is a different constraint). None without a catalog or
    when there is none."""
    table = find_table(catalog, change.table)
    if table is None or change.type != "add_foreign_key" or not change.references_table:
        return None
    ref = find_table(catalog, change.references_table)
    ref_schema, ref_name = split_name(change.references_table)
    target = ref.qualified_name if ref is not None else f"{ref_schema or 'public'}.{ref_name}"
    on_delete = (change.on_delete or "no action").replace(" ", "_")
    return next((c for c in table.constraints if c.type == "foreign_key" and c.columns == change.index_columns
                 and c.references_table == target and c.references_columns == (change.references_columns or ["id"])
                 and (c.on_delete or "no_action") == on_delete and (c.on_update or "no_action") == "no_action"
                 and not c.deferrable and " MATCH FULL" not in c.definition), None)


def already_there(changes: list[Change], catalog: SchemaSnapshot | None) -> list[str]:
    """What the change list asks for that the live database already has (nothing is generated for it)."""
    out = []
    for c in changes:
        if (same := existing_foreign_key(c, catalog)) is not None:
            out.append(f"add_foreign_key {c.table} ({', '.join(c.index_columns)}) -> {c.references_table}: already "
                       f"exists as {same.name}" + ("; nothing to add" if same.validated else
                                                    " (NOT VALID): only VALIDATE CONSTRAINT is run"))
    return out


def _free(base: str, suffix: str, taken: set[str]) -> str:
    """``base`` + ``suffix`` (63 bytes at most), numbered as PostgreSQL numbers a name it chooses
    (``child_order_id_fkey1``) while the live catalog already has it: the generated SQL must not fail with
    "already exists"."""
    name, n = short(base, suffix), 0
    while name in taken:
        n += 1
        name = short(base, f"{suffix}{n}")
    return name


def _constraint_names(catalog: SchemaSnapshot | None, table: str) -> set[str]:
    known = find_table(catalog, table)
    return {c.name for c in known.constraints} if known is not None else set()


def _relation_names(catalog: SchemaSnapshot | None, table: str) -> set[str]:
    """Names of the tables and indexes in ``table``'s schema (an index name is unique within its schema)."""
    known = find_table(catalog, table)
    if catalog is None or known is None:
        return set()
    same = [t for t in catalog.tables if t.schema_name == known.schema_name]
    return {t.name for t in same} | {i.name for t in same for i in t.indexes}


def _key(change: Change, changes: list[Change], catalog: SchemaSnapshot | None) -> tuple[str, str] | None:
    """(column, type) of the table's single-column primary key: from the catalog or a create_table change."""
    table = find_table(catalog, change.table)
    if table is not None:
        return single_key(table)
    keys = [(col.name, col.type) for c in changes if c.type == "create_table" and c.table == change.table
            for col in c.columns if col.primary_key]
    return keys[0] if len(keys) == 1 else None


def _backfill(change: Change, t: str, new: bool, changes: list[Change], catalog: SchemaSnapshot | None) -> list[str]:
    """``change.set`` where ``change.where``: a keyset-batched backfill (the procedure agent19 backfill also
    resumes), or one UPDATE where that is safe (a new table) or the key is unknown (said in a comment)."""
    where = f" WHERE {change.where}" if change.where else ""
    key = None if new else _key(change, changes, catalog)
    if key is None:
        plain = f"UPDATE {t} SET {change.set}{where}"
        if new:
            return [plain]
        return [f"-- one UPDATE: the primary key of {change.table} is unknown here (no database, or not a single "
                f"column), so it cannot be walked in batches. On a big table run instead:\n-- agent19 backfill "
                f"{shlex.quote(t)} --set {shlex.quote(change.set or '')}"
                + (f" --where {shlex.quote(change.where)}" if change.where else "") + " --mode execute\n" + plain]
    spec = BackfillSpec(table=t, set=change.set or "", where=change.where, key=[key[0]],
                        batch_size=change.batch_size, max_batch_size=max(change.batch_size, 50_000))
    create, call = procedure_parts(spec, key[0], key[1])
    return [create, call]


def _deferred_not_null(changes: list[Change], new_tables: set[str]) -> list[Change]:
    """The NOT NULL of add_column / modify_column on existing tables, as add_not_null changes (after backfills)."""
    out = []
    for c in changes:
        col = c.column
        if c.table in new_tables or col is None or col.nullable:
            continue
        if c.type == "modify_column" and c.new_type:
            continue  # the type change's pattern makes the new column NOT NULL (a validated CHECK before the swap)
        if (c.type == "add_column" and col.default is None) or c.type == "modify_column":
            out.append(Change(type="add_not_null", table=c.table, column=ColumnSpec(name=col.name, type=col.type),
                              description=f"{c.description or c.type + ' ' + c.table}: NOT NULL"))
    return out


def _references(change: Change) -> set[str]:
    refs = {c.references.partition("(")[0].strip() for c in change.columns if c.references}
    return {r for r in refs if r}


def order_changes(changes: list[Change]) -> list[Change]:
    """Topological order: steps as in :data:`STEP`; created tables after the created tables they reference."""
    creates = [c for c in changes if c.type == "create_table"]
    names = {c.table for c in creates}
    graph = {c.table: {r for r in _references(c) if r in names and r != c.table} for c in creates}
    try:
        created_order = list(TopologicalSorter(graph).static_order())
    except CycleError as exc:
        raise InputError(f"create_table changes reference each other in a cycle: {exc.args[1]}",
                         "create the tables without the foreign keys, then add_foreign_key changes") from None
    rank = {name: i for i, name in enumerate(created_order)}
    indexed = list(enumerate(changes))
    indexed.sort(key=lambda p: (STEP[p[1].type], rank.get(p[1].table, 0) if p[1].type == "create_table" else 0, p[0]))
    return [c for _, c in indexed]


def changes_to_steps(changes: list[Change], pg_major: int,
                     catalog: SchemaSnapshot | None = None) -> tuple[list[Change], list[ChangeSteps]]:
    """The changes in execution order, and the steps of each (:func:`change_steps`)."""
    new_tables = {c.table for c in changes if c.type == "create_table"}
    check_patterns(changes, new_tables, catalog)
    changes = [*changes, *_deferred_not_null(changes, new_tables)]
    ordered = order_changes(changes)
    return ordered, [change_steps(c, new_tables, pg_major, changes, catalog) for c in ordered]


def changes_to_sql(changes: list[Change], pg_major: int,
                   catalog: SchemaSnapshot | None = None) -> tuple[list[Change], list[list[str]]]:
    """The changes in execution order, and the statements of each (a pattern's contract phases after its others)."""
    ordered, steps = changes_to_steps(changes, pg_major, catalog)
    return ordered, [[g.sql for g in (*s.now, *s.after_deploy)] for s in steps]
