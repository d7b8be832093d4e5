"""The live column's indexes and UNIQUE constraints, built again on the column that replaces it.

A pattern that replaces a column (a rename through a new column, a type change through a shadow column) ends
with ``DROP COLUMN`` of the old one, which drops every index and constraint on it. The indexes and UNIQUE
constraints are carried over: each is built on the new column ``CONCURRENTLY`` (written from the index's own
definition, its column references renamed in the syntax tree) before the deploy, and after the old column is
dropped the new index takes the old index's name, or becomes the UNIQUE constraint again (``ADD CONSTRAINT …
UNIQUE USING INDEX``). What cannot be carried this way (primary keys, CHECKs, foreign keys, exclusion
constraints, views…) stays in the pattern's notes with what to do.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field

from pglast import ast, parse_sql
from pglast.parser import ParseError
from pglast.stream import RawStream
from pglast.visitors import Visitor

from agent19.migrate.patterns.live import Dependent, LiveColumn
from agent19.migrate.patterns.model import Phase, Step
from agent19.migrate.patterns.sqlnames import NAMEDATALEN, ident, qname, qualified, short, split_name

CARRIED = ("index", "unique")
"""Dependent kinds :func:`carry_indexes` builds again on the new column."""

PARTITIONED = ("CREATE INDEX CONCURRENTLY cannot build on a partitioned table: before the contract phase create it on "
               "ONLY the table, build it CONCURRENTLY on each partition and ALTER INDEX ... ATTACH PARTITION each (a "
               "UNIQUE constraint: ADD CONSTRAINT on the table, which locks every partition while it builds)")


def carries(live: LiveColumn, dep: Dependent) -> bool:
    """Whether :func:`carry_indexes` builds ``dep`` again on the new column."""
    return dep.kind in CARRIED and bool(dep.definition) and not live.partitioned


@dataclass
class Carried:
    build: list[Step] = field(default_factory=list)
    """CREATE [UNIQUE] INDEX CONCURRENTLY on the new column: before the deploy (each alone, outside a transaction)"""
    restore: list[Step] = field(default_factory=list)
    """after the old column's DROP COLUMN: the old names back, the UNIQUE constraints attached"""
    attach: list[Step] = field(default_factory=list)
    """DEFERRABLE UNIQUE constraints' copies attached under the temporary name: after the build, one transaction"""
    detach: list[str] = field(default_factory=list)
    """drops what ``attach`` made"""
    undo: list[str] = field(default_factory=list)
    """drops what ``build`` made (the build phase's rollback)"""
    swap: list[Step] = field(default_factory=list)
    """a type change's swap: the replica identity moves to the new column's index (the old column loses NOT NULL)"""
    unswap: list[str] = field(default_factory=list)
    """the swap's rollback: the replica identity back on the old index"""
    notes: list[str] = field(default_factory=list)


class _Renamer(Visitor):  # type: ignore[misc]
    def __init__(self, old: str, new: str) -> None:
        super().__init__()
        self.old, self.new = old, new

    def visit_ColumnRef(self, ancestors: object, node: ast.ColumnRef) -> ast.ColumnRef | None:
        last = node.fields[-1] if node.fields else None
        if isinstance(last, ast.String) and last.sval == self.old:
            return ast.ColumnRef(fields=(*node.fields[:-1], ast.String(sval=self.new)))
        return None

    def visit_IndexElem(self, ancestors: object, node: ast.IndexElem) -> None:
        if node.name == self.old:
            node.name = self.new


def _index_on(definition: str, old: str, new: str, name: str) -> str | None:
    """``definition`` (pg_get_indexdef) as CREATE INDEX CONCURRENTLY ``name`` on column ``new``."""
    try:
        stmt = parse_sql(definition)[0].stmt
    except ParseError:
        return None
    if not isinstance(stmt, ast.IndexStmt):
        return None
    stmt.idxname, stmt.concurrent = name, True
    _Renamer(old, new)(stmt)
    return str(RawStream()(stmt))


def _unique_on(table: str, definition: str, old: str, new: str, name: str) -> tuple[str, str] | None:
    """(the unique index on ``new`` for a UNIQUE constraint's ``definition``, the USING INDEX clause's tail)."""
    try:
        con = parse_sql(f"ALTER TABLE t ADD CONSTRAINT c {definition}")[0].stmt.cmds[0].def_
    except (ParseError, AttributeError, IndexError):
        return None
    if not isinstance(con, ast.Constraint) or not con.keys:
        return None
    cols = ", ".join(ident(new if k.sval == old else k.sval) for k in con.keys)
    include = f" INCLUDE ({', '.join(ident(new if k.sval == old else k.sval) for k in con.including)})" \
        if con.including else ""
    nulls = " NULLS NOT DISTINCT" if con.nulls_not_distinct else ""
    tail = (" DEFERRABLE" if con.deferrable else "") + (" INITIALLY DEFERRED" if con.initdeferred else "")
    return f"CREATE UNIQUE INDEX CONCURRENTLY {ident(name)} ON {qname(table)} ({cols}){include}{nulls}", \
        tail


def _temporary(name: str) -> str:
    """The temporary index's name: ``name_a19new``; trimmed to 63 bytes, with a hash of the whole name so that two
    long names sharing their first bytes get two temporary indexes."""
    if len((name + "_a19new").encode()) <= NAMEDATALEN - 1:
        return name + "_a19new"
    return short(name, f"_{hashlib.sha1(name.encode()).hexdigest()[:8]}_a19new")


def carry_indexes(table: str, live: LiveColumn | None, old: str, new: str) -> Carried:
    """The steps that give column ``new`` of ``table`` the indexes and UNIQUE constraints ``live`` (column ``old``)
    has; none without a live column (the pattern's notes say what to check)."""
    out = Carried()
    if live is None:
        return out
    schema, _ = split_name(table)
    t = qname(table)
    for dep in live.dependents:
        if not carries(live, dep):
            continue
        temp = _temporary(dep.name)
        index = qualified(schema, temp)
        attach = None
        if dep.kind == "index":
            sql = _index_on(dep.definition, old, new, temp)
            restore = f"ALTER INDEX {index} RENAME TO {ident(dep.name)}"
        else:
            made = _unique_on(table, dep.definition, old, new, temp)
            sql, tail = made if made else (None, "")
            restore = f"ALTER TABLE {t} ADD CONSTRAINT {ident(dep.name)} UNIQUE USING INDEX {ident(temp)}{tail}"
            if tail:  # a plain unique index checks each row at once: old code relying on the deferral would fail
                attach = Step(sql=f"ALTER TABLE {t} ADD CONSTRAINT {ident(temp)} UNIQUE USING INDEX {ident(temp)}"
                                  f"{tail}", lock="AccessExclusiveLock",
                              note=f"{dep.name} is{tail}: so is its copy on {new}, from now on (brief, catalog only)")
                restore = f"ALTER TABLE {t} RENAME CONSTRAINT {ident(temp)} TO {ident(dep.name)}"
                out.detach.append(f"ALTER TABLE {t} DROP CONSTRAINT IF EXISTS {ident(temp)}")
        if sql is None:
            out.notes.append(f"{dep.kind} {dep.name} could not be rebuilt from its definition: create it on {new} "
                             "before the contract phase")
            continue
        out.build.append(Step(sql=sql, lock="ShareUpdateExclusiveLock", in_transaction=False,
                              note=f"{dep.kind} {dep.name}, on {new}: the contract's DROP COLUMN drops the old one"))
        out.attach += [attach] if attach else []
        out.restore.append(Step(sql=restore, lock="AccessExclusiveLock",
                                note=f"{dep.name} again, now on {new}"))
        if dep.replica_identity:  # DROP COLUMN took the role with the old index: logical replication needs it back
            out.swap.append(Step(sql=f"ALTER TABLE {t} REPLICA IDENTITY USING INDEX {ident(temp)}",
                                 lock="AccessExclusiveLock", note=f"the replica identity moves with {dep.name}"))
            out.unswap.append(f"ALTER TABLE {t} REPLICA IDENTITY USING INDEX {ident(dep.name)}")
            out.restore.append(Step(sql=f"ALTER TABLE {t} REPLICA IDENTITY USING INDEX {ident(dep.name)}",
                                    lock="AccessExclusiveLock", note=f"{dep.name} is the replica identity again"))
        out.undo.append(f"DROP INDEX CONCURRENTLY IF EXISTS {index}")
    return out


def build_phases(carried: Carried, column: str, order: int) -> list[Phase]:
    """The phase that builds the live column's indexes and UNIQUE constraints on ``column`` (each CONCURRENTLY), and
    the one that attaches the copies of DEFERRABLE constraints (a brief lock, under a lock_timeout)."""
    attach = [Phase(name=f"attach the deferrable unique indexes on {column}", order=order + 1,
                    operations=carried.attach, lock_timeout="2s", rollback=carried.detach,
                    rollback_point="the new column's copies are deferrable like the old column's constraints")]
    return [Phase(name=f"build the old column's indexes on {column}", order=order, operations=carried.build,
                 transactional=False, rollback=carried.undo,
                 rollback_point="the new column has its indexes; the old one keeps its own",
                 notes=["each CREATE INDEX CONCURRENTLY runs alone; a failed one leaves an INVALID index: drop it "
                        "(DROP INDEX CONCURRENTLY) and run that statement again, not the ones that succeeded (no IF "
                        "NOT EXISTS: a relation that already has the temporary name must stop the build, not be "
                        "taken for the new index)", *carried.notes]), *(attach if carried.attach else [])]
