"""The runbook's "Safer alternative" for one step: one coherent alternative, never several fixes pasted together.

When the step is a change a zero-downtime pattern makes safely (rename, type change, SET NOT NULL, a
constraint, an index, a column with a volatile default), the alternative is that pattern's phases
(:mod:`agent19.migrate.patterns`), filled with what the catalog knows (the column's type, NOT NULL,
default). Otherwise it is the fix of the step's most severe finding alone. Pasting each finding's fix
gave a rename block that added the new column *and* still ran the RENAME, a column dropped twice, a
shadow column added and the table rewritten anyway.
"""

from __future__ import annotations

from pglast import parse_sql
from pglast.enums import ConstrType
from pglast.parser import ParseError
from pglast.stream import RawStream

from agent19.db.models import SchemaSnapshot
from agent19.errors import InputError
from agent19.migrate import patterns
from agent19.migrate.backfill.scripts import keyset_backfill
from agent19.migrate.patterns.live import find_table, live_from_snapshot, single_key
from agent19.migrate.patterns.model import Pattern, comment, fix_script
from agent19.migrate.patterns.sqlnames import parse_name, qualified
from agent19.migrate.planning.model import PlanFinding, PlannedOperation
from agent19.report.sqlfacts import StatementFact

SEVERITY_RANK = {"error": 0, "warning": 1, "info": 2}
FK_ACTION = {"c": "cascade", "n": "set null", "d": "set default", "r": "restrict"}


def _raw(sql_name: str | None) -> str:
    """A name as SQL text (``s."Order"``, ``"a.b"``) → the form the patterns read back exactly (sqlnames.qualified
    of its parts): joining the raw parts with a dot would read a table named ``a.b`` as schema a, table b."""
    return qualified(*parse_name(sql_name or ""))


def _constraint_pattern(op: PlannedOperation, table: str, pg: int | None) -> Pattern | None:
    try:
        stmt = parse_sql(op.sql)[0].stmt
    except ParseError:
        return None
    cmds = [c for c in getattr(stmt, "cmds", None) or () if getattr(c, "def_", None) is not None]
    if len(cmds) != 1 or type(cmds[0].def_).__name__ != "Constraint":
        return None
    con = cmds[0].def_
    if con.skip_validation:
        return None  # already the safe form
    keys = [k.sval for k in con.keys or ()]
    if con.contype == ConstrType.CONSTR_CHECK and con.conname:
        return patterns.add_check(table, con.conname, RawStream()(con.raw_expr), pg_version=pg)
    if con.contype == ConstrType.CONSTR_FOREIGN and con.pk_attrs:
        ref = con.pktable
        return patterns.add_foreign_key(
            table, [k.sval for k in con.fk_attrs or ()], qualified(ref.schemaname or None, ref.relname),
            [k.sval for k in con.pk_attrs], name=con.conname, on_delete=FK_ACTION.get(con.fk_del_action or ""),
            on_update=FK_ACTION.get(con.fk_upd_action or ""), pg_version=pg)
    if con.contype in (ConstrType.CONSTR_UNIQUE, ConstrType.CONSTR_PRIMARY) and keys and not con.indexname:
        make = patterns.add_unique if con.contype == ConstrType.CONSTR_UNIQUE else patterns.add_primary_key
        return make(table, keys, name=con.conname, pg_version=pg)
    return None


def _index_pattern(op: PlannedOperation, f: StatementFact, table: str, pg: int | None) -> Pattern | None:
    try:
        stmt = parse_sql(op.sql)[0].stmt
    except ParseError:
        return None
    params = list(stmt.indexParams or ())
    plain = all(p.name and p.expr is None and not p.opclass and p.ordering == 0 for p in params)
    if stmt.concurrent or not plain or stmt.indexIncludingParams or stmt.accessMethod not in (None, "btree"):
        return None
    where = RawStream()(stmt.whereClause) if stmt.whereClause is not None else None
    return patterns.create_index(table, [p.name for p in params], name=stmt.idxname, unique=bool(stmt.unique),
                                 where=where, pg_version=pg)


def _pattern(op: PlannedOperation, facts: list[StatementFact], catalog: SchemaSnapshot | None,
             pg: int | None) -> Pattern | None:
    try:
        return _pattern_for(op, facts, catalog, pg)
    except InputError:  # a column the patterns cannot move (primary key, generated…): the finding's fix says why
        return None


def _pattern_for(op: PlannedOperation, facts: list[StatementFact], catalog: SchemaSnapshot | None,
                 pg: int | None) -> Pattern | None:
    if len(facts) != 1:
        return None
    f = facts[0]
    table = _raw(f.table) if f.table else ""
    known = find_table(catalog, table) if table else None
    col = f.column.name if f.column else None
    live = live_from_snapshot(catalog, known, col) if catalog and known and col else None
    if f.kind == "rename_column" and col and f.name and live is not None:
        return patterns.rename_column(table, col, f.name, pg_version=pg, live=live)
    if f.kind == "rename_table" and f.name:
        return patterns.rename_table(table, f.name, pg_version=pg)
    if f.kind == "alter_type" and col and f.column:
        return patterns.change_column_type(table, col, f.column.type, pg_version=pg, live=live)
    if f.kind == "set_not_null" and col:
        return patterns.set_not_null(table, col, pg_version=pg)
    if f.kind == "add_constraint":
        return _constraint_pattern(op, table, pg)
    if f.kind == "create_index":
        return _index_pattern(op, f, table, pg)
    if f.kind == "drop_index" and f.name:
        return patterns.drop_index(_raw(f.name), pg_version=pg)
    if f.kind == "add_column" and f.column and f.column.default and op.rewrite:
        return patterns.add_column_volatile_default(table, f.column.name, f.column.type, f.column.default,
                                                    not_null=not f.column.nullable, pg_version=pg)
    return None


def safer_alternative(op: PlannedOperation, facts: list[StatementFact], findings: list[PlanFinding],
                      catalog: SchemaSnapshot | None, pg_version: int | None) -> str | None:
    """One alternative for the step, or None when no finding of it (above info) offers one."""
    fixes = sorted((f for f in findings if f.fix and f.severity != "info"), key=lambda f: SEVERITY_RANK[f.severity])
    if not fixes:
        return None
    pattern = _pattern(op, facts, catalog, pg_version)
    if pattern is None:
        return fixes[0].fix
    title = pattern.title[:1].lower() + pattern.title[1:]  # only the verb: the names keep their case
    head = [comment(f"instead of this step: {title} in phases ({pattern.summary})")]
    head += [comment(f"note: {n}") for n in pattern.notes]  # notes quote catalog text (defaults): one line each
    key = single_key(find_table(catalog, pattern.table))  # a backfill phase: the keyset procedure when it is known
    return "\n".join(head) + "\n" + fix_script(pattern.phases, keyset_backfill(*key) if key else None)

