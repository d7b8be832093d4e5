"""Facts from the live catalog that detection needs and the parse tree cannot give.

A ``WHERE id IS NOT NULL`` deletes every row only if ``id`` is NOT NULL; an ``ALTER COLUMN TYPE``
narrows only relative to the column's current type; a function call has side effects only if the
function is volatile; the type ``ALTER COLUMN … TYPE`` converts to is the one the server resolves
(:mod:`agent19.safety.type_facts`), not its name. :func:`load_facts` reads exactly those facts for the
names a statement uses, in one READ ONLY transaction. Detection works without facts too, and is then more cautious.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from agent19.migrate.parse import Statement
from agent19.migrate.patterns.sqlnames import quoted
from agent19.safety import type_facts
from agent19.safety import types as sqltypes
from agent19.sqltree import qualified_name, walk


@dataclass(frozen=True)
class ColumnFacts:
    type_name: str
    """``pg_type.typname``: int4, varchar, numeric…"""
    typmod: int
    not_null: bool
    formatted: str
    """``format_type``: ``character varying(20)``."""
    type_oid: int = 0
    """``pg_attribute.atttypid``."""


@dataclass
class TableFacts:
    oid: int
    schema_name: str
    name: str
    kind: str
    columns: dict[str, ColumnFacts] = field(default_factory=dict)

    @property
    def qualified(self) -> str:
        return f"{self.schema_name}.{self.name}"

    def not_null(self) -> set[str]:
        return {c for c, f in self.columns.items() if f.not_null}


@dataclass
class FunctionFacts:
    name: str
    volatilities: set[str]
    """``pg_proc.provolatile`` of every overload visible by that name: i, s, v."""
    schemas: set[str]

    @property
    def volatile(self) -> bool:
        return "v" in self.volatilities


@dataclass
class Facts:
    tables: dict[str, TableFacts | None] = field(default_factory=dict)
    """By the name as written (``t`` or ``s.t``); None when it does not exist."""
    functions: dict[str, FunctionFacts] = field(default_factory=dict)
    """By the name as written (``f`` or ``s.f``); absent when no such function exists."""
    types: dict[str, type_facts.ResolvedType | None] = field(default_factory=dict)
    """The types ``ALTER COLUMN … TYPE`` names, by :func:`type_facts.key`; None: the server knows no such type."""
    column_types: dict[tuple[str, str], type_facts.ResolvedType] = field(default_factory=dict)
    """The current type of each column such a command converts, by (table as written, column)."""
    changed: dict[tuple[str, str, str], tuple[int, int]] = field(default_factory=dict)
    """Measured (rows whose value the conversion changes, rows read), by (table as written, column, type key)."""

    def table(self, written: str) -> TableFacts | None:
        return self.tables.get(written)


def range_var_name(rv: dict[str, Any]) -> str:
    """``{"schemaname": "s", "relname": "t"}`` → ``s.t`` (``t`` when unqualified)."""
    rv = rv.get("RangeVar", rv)
    return f"{rv['schemaname']}.{rv['relname']}" if rv.get("schemaname") else str(rv.get("relname", ""))


def names_used(statements: list[Statement]) -> tuple[set[str], set[str]]:
    """Relation names (as written) and function names (as written) anywhere in ``statements``."""
    tables: set[str] = set()
    functions: set[str] = set()
    for st in statements:
        for node, fields in walk(st.tree):
            if node == "RangeVar":
                tables.add(range_var_name(fields))
            elif node == "FuncCall":
                functions.add(qualified_name(fields.get("funcname", [])))
    return tables, functions


QUALIFIED_SQL = True
"""Every statement here names its functions, operators, types and catalog relations ``pg_catalog.``-qualified: an
overload the login owns is not what it calls (tests/test_qualified_sql.py)."""
EQ = "OPERATOR(pg_catalog.=)"
Q_TABLE = f"""
SELECT c.oid, n.nspname AS schema, c.relname AS name, c.relkind AS kind
  FROM pg_catalog.pg_class c JOIN pg_catalog.pg_namespace n ON n.oid {EQ} c.relnamespace
 WHERE c.oid {EQ} pg_catalog.to_regclass(%s)
"""
Q_COLUMNS = f"""
SELECT a.attname, t.typname, a.atttypmod, a.attnotnull,
       pg_catalog.format_type(a.atttypid, a.atttypmod) AS formatted, a.atttypid
  FROM pg_catalog.pg_attribute a JOIN pg_catalog.pg_type t ON t.oid {EQ} a.atttypid
 WHERE a.attrelid {EQ} %s AND a.attnum OPERATOR(pg_catalog.>) 0 AND NOT a.attisdropped
"""
Q_FUNCTIONS = f"""
SELECT p.provolatile AS v, n.nspname AS schema
  FROM pg_catalog.pg_proc p JOIN pg_catalog.pg_namespace n ON n.oid {EQ} p.pronamespace
 WHERE p.proname {EQ} %(name)s
   AND (CASE WHEN %(schema)s::pg_catalog.text IS NULL THEN n.nspname {EQ} ANY (pg_catalog.current_schemas(true))
             ELSE n.nspname {EQ} %(schema)s END)
"""


def load_facts(conn: Any, statements: list[Statement]) -> Facts:
    """Facts for every relation and function ``statements`` name (``conn``: a dict-row connection)."""
    tables, functions = names_used(statements)
    facts = Facts()
    for written in sorted(tables):
        facts.tables[written] = load_table(conn, written)
    for written in sorted(functions):
        schema, _, name = written.rpartition(".")
        rows = conn.execute(Q_FUNCTIONS, {"name": name, "schema": schema or None}).fetchall()
        if rows:
            facts.functions[written] = FunctionFacts(
                name=written, volatilities={r["v"] for r in rows}, schemas={r["schema"] for r in rows}
            )
    for st in statements:
        _load_type_changes(conn, st, facts)
    return facts


def _load_type_changes(conn: Any, st: Statement, facts: Facts) -> None:
    """Both sides of every ``ALTER COLUMN … TYPE`` in ``st``, resolved by the server: the written type through
    the session's search path, the column's type from the catalog, each down to the scalar type converted."""
    if st.node != "AlterTableStmt":
        return
    table = range_var_name(st.fields.get("relation", {}))
    for item in st.fields.get("cmds", []):
        cmd = item.get("AlterTableCmd", {})
        if cmd.get("subtype") != "AT_AlterColumnType":
            continue
        type_name = cmd.get("def", {}).get("ColumnDef", {}).get("typeName", {})
        k = type_facts.key(type_name)
        if k not in facts.types:
            facts.types[k] = type_facts.resolve(conn, type_name)
        tfacts = facts.tables.get(table)
        column = tfacts.columns.get(cmd.get("name") or "") if tfacts else None
        if column is None:
            continue
        if (table, cmd["name"]) not in facts.column_types:
            facts.column_types[(table, cmd["name"])] = type_facts.base_of(conn, column.type_oid, column.typmod)
        old, new = facts.column_types[(table, cmd["name"])], facts.types[k]
        using = cmd.get("def", {}).get("ColumnDef", {}).get("raw_default") is not None  # USING: not a plain cast
        if tfacts is not None and new is not None and not using and sqltypes.loses_data(old.sql_type, new.sql_type):
            measured = type_facts.measure_change(conn, tfacts.oid, cmd["name"], old, new)
            if measured is not None:
                facts.changed[(table, cmd["name"], k)] = measured


def load_table(conn: Any, written: str) -> TableFacts | None:
    """The relation named ``written`` (resolved like the server would), or None."""
    # a dot inside a quoted part ("we.ird".t) is indistinguishable in ``written``: try each reading, each in
    # a savepoint (to_regclass raises on three parts, which would otherwise abort the caller's transaction)
    import psycopg  # here: the read-only guard imports this module on paths that never reach a database

    schema, _, rel = written.rpartition(".")
    first, _, rest = written.partition(".")
    readings = list(dict.fromkeys([quote_written(written), ".".join(quoted(p) for p in (schema, rel) if p),
                                   ".".join(quoted(p) for p in (first, rest) if p)]))
    # one reading of one or two quoted parts (most names): to_regclass answers NULL for what does not exist and
    # raises on nothing, so no savepoint (two round trips) is needed
    alone = len(readings) == 1 and written.count(".") <= 1
    row = None
    for text in readings:
        if alone:
            row = conn.execute(Q_TABLE, (text,)).fetchone()
            break
        try:
            with conn.transaction():
                row = conn.execute(Q_TABLE, (text,)).fetchone()
        except psycopg.Error:  # not a name the server reads: no such table under this reading
            continue
        if row is not None:
            break
    if row is None:
        return None
    t = TableFacts(oid=row["oid"], schema_name=row["schema"], name=row["name"], kind=row["kind"])
    for c in conn.execute(Q_COLUMNS, (row["oid"],)).fetchall():
        t.columns[c["attname"]] = ColumnFacts(
            type_name=c["typname"], typmod=c["atttypmod"], not_null=c["attnotnull"], formatted=c["formatted"],
            type_oid=c["atttypid"])
    return t


def quote_written(written: str) -> str:
    """A name as the parser gave it (already case-folded) → text ``to_regclass`` reads back exactly."""
    return ".".join(quoted(part) for part in written.split("."))
