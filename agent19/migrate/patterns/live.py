"""What a live column is and what depends on it: read from the catalog for the patterns that replace a column.

A type change through a shadow column (:func:`~agent19.migrate.patterns.columns.change_column_type`)
swaps names; everything PostgreSQL attaches to a column by its number stays on the old column:
indexes, CHECK/UNIQUE/PRIMARY KEY/exclusion constraints, foreign keys in either direction, views,
``UPDATE OF`` triggers, policies, extended statistics, generated columns. :func:`read_column`
reads the column (type, NOT NULL, default, identity, owned sequence) and every object ``pg_depend``
records on it, so the pattern carries what it can and names the rest. Catalog reads only.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from pglast import parse_sql
from pglast.parser import ParseError, parse_sql_json

from agent19.errors import InputError
from agent19.migrate.patterns.sqlnames import qname, split_name
from agent19.sqltree import walk

if TYPE_CHECKING:  # annotations only: the lint rules find tables here without loading the catalog models
    from agent19.db.models import SchemaSnapshot, Table

Q_COLUMN = """
SELECT a.attnum, (SELECT relkind = 'p' FROM pg_class WHERE oid = a.attrelid) AS partitioned,
       format_type(a.atttypid, a.atttypmod) AS type, a.attnotnull AS not_null,
       pg_get_expr(d.adbin, d.adrelid) AS "default", a.attidentity <> '' AS identity,
       a.attgenerated <> '' AS generated, pg_get_serial_sequence(%(rel)s, a.attname) AS sequence
  FROM pg_attribute a LEFT JOIN pg_attrdef d ON d.adrelid = a.attrelid AND d.adnum = a.attnum
 WHERE a.attrelid = to_regclass(%(rel)s) AND a.attname = %(col)s AND a.attnum > 0 AND NOT a.attisdropped
"""

Q_DEPENDENTS = """
SELECT DISTINCT
       CASE WHEN d.classid = 'pg_class'::regclass THEN
                 CASE c.relkind WHEN 'i' THEN 'index' WHEN 'I' THEN 'index' WHEN 'S' THEN 'sequence' ELSE 'relation' END
            WHEN d.classid = 'pg_constraint'::regclass THEN
                 CASE WHEN con.conrelid <> d.refobjid THEN 'foreign key from ' || con.conrelid::regclass::text
                      ELSE CASE con.contype WHEN 'c' THEN 'check' WHEN 'f' THEN 'foreign key'
                           WHEN 'p' THEN 'primary key' WHEN 'u' THEN 'unique'
                           WHEN 'x' THEN 'exclusion' ELSE 'constraint' END END
            WHEN d.classid = 'pg_rewrite'::regclass THEN
                 CASE WHEN v.relkind = 'm' THEN 'materialized view' ELSE 'view' END
            WHEN d.classid = 'pg_trigger'::regclass THEN 'trigger'
            WHEN d.classid = 'pg_policy'::regclass THEN 'policy'
            WHEN d.classid = 'pg_statistic_ext'::regclass THEN 'statistics'
            WHEN d.classid = 'pg_attrdef'::regclass THEN 'generated column'
            ELSE 'object' END AS kind,
       COALESCE(c.relname, con.conname, v.oid::regclass::text, t.tgname, p.polname,
                pg_describe_object(d.classid, d.objid, d.objsubid)) AS name,
       COALESCE(pg_get_indexdef(c.oid), pg_get_constraintdef(con.oid), pg_get_triggerdef(t.oid),
                pg_get_expr(ad.adbin, ad.adrelid)) AS definition,
       c.oid IS NOT NULL AND EXISTS (SELECT 1 FROM pg_constraint k WHERE k.conindid = c.oid) AS backs_constraint,
       COALESCE((SELECT x.indisreplident FROM pg_index x WHERE x.indexrelid = COALESCE(c.oid, con.conindid)), false)
         AS replica_identity
  FROM pg_depend d
  LEFT JOIN pg_class c ON d.classid = 'pg_class'::regclass AND c.oid = d.objid
  LEFT JOIN pg_constraint con ON d.classid = 'pg_constraint'::regclass AND con.oid = d.objid
  LEFT JOIN pg_rewrite r ON d.classid = 'pg_rewrite'::regclass AND r.oid = d.objid
  LEFT JOIN pg_class v ON v.oid = r.ev_class
  LEFT JOIN pg_trigger t ON d.classid = 'pg_trigger'::regclass AND t.oid = d.objid
  LEFT JOIN pg_policy p ON d.classid = 'pg_policy'::regclass AND p.oid = d.objid
  LEFT JOIN pg_attrdef ad ON d.classid = 'pg_attrdef'::regclass AND ad.oid = d.objid
 WHERE d.refclassid = 'pg_class'::regclass AND d.refobjid = to_regclass(%(rel)s) AND d.refobjsubid = %(attnum)s
   AND d.deptype IN ('n', 'a')
   AND NOT (d.classid = 'pg_attrdef'::regclass AND ad.adnum = %(attnum)s AND ad.adrelid = d.refobjid)
   AND NOT (d.classid = 'pg_rewrite'::regclass AND v.oid = d.refobjid)
 ORDER BY 1, 2
"""

Q_ROW_TRIGGERS = """
SELECT t.tgname AS name, pg_get_triggerdef(t.oid) AS definition FROM pg_trigger t
 WHERE t.tgrelid = to_regclass(%(rel)s) AND NOT t.tgisinternal AND (t.tgtype & 1) = 1 AND t.tgattr = ''::int2vector
 ORDER BY 1
"""


@dataclass
class Dependent:
    kind: str = field(metadata={"description": "index, check, unique, primary key, foreign key, foreign key from "
                                               "<table>, view, ..."})
    name: str
    definition: str | None = None
    replica_identity: bool = field(default=False, metadata={"description": "the index (or the constraint's) is the "
                                                                          "table's REPLICA IDENTITY"})


@dataclass
class LiveColumn:
    """A column as the connected database has it, and what hangs on it."""

    table: str
    column: str
    type: str = field(metadata={"description": "format_type(), e.g. integer, character varying(40)"})
    not_null: bool
    default: str | None = None
    identity: bool = False
    generated: bool = False
    partitioned: bool = field(default=False, metadata={"description": "the table is partitioned (no CREATE INDEX "
                                                                      "CONCURRENTLY)"})
    sequence: str | None = field(default=None, metadata={"description": "the sequence the column owns (serial), if "
                                                                        "any"})
    dependents: list[Dependent] = field(default_factory=list,
                                        metadata={"description": "objects pg_depend records on the column"})
    row_triggers: list[Dependent] = field(default_factory=list, metadata={
        "description": "the table's row triggers (they may read the column by name; not column-bound)"})


def read_column(conn: Any, table: str, column: str) -> LiveColumn:
    """The live column ``table.column`` (raw names: ``schema.table``) and its dependents, from the catalog."""
    from psycopg.rows import dict_row  # here: lint's fixes import this module and never load the driver

    rel = qname(table)
    cur = conn.cursor(row_factory=dict_row)
    row = cur.execute(Q_COLUMN, {"rel": rel, "col": column}).fetchone()
    if row is None:
        raise InputError(f"column {column} of {table} not found in the connected database",
                         "check the names (raw, as the catalog stores them: Orders is not orders), or leave "
                         "out the DSN to generate the pattern offline")
    deps = [Dependent(kind=r["kind"], name=r["name"], definition=r["definition"],
                      replica_identity=r["replica_identity"])
            for r in cur.execute(Q_DEPENDENTS, {"rel": rel, "attnum": row["attnum"]}).fetchall()
            if not r["backs_constraint"] and r["kind"] != "sequence"]
    triggers = [Dependent(kind="trigger", name=r["name"], definition=r["definition"])
                for r in cur.execute(Q_ROW_TRIGGERS, {"rel": rel}).fetchall()]
    return LiveColumn(table=table, column=column, type=row["type"], not_null=row["not_null"],
                      default=row["default"], identity=row["identity"], generated=row["generated"],
                      sequence=row["sequence"], dependents=deps, row_triggers=triggers,
                      partitioned=row["partitioned"])


ADVICE = {
    "index": "recreate it on the shadow column (create_index pattern, CONCURRENTLY) before the swap; the contract "
             "phase's DROP COLUMN drops the old one",
    "check": "add it again on the shadow column (add_check pattern: NOT VALID, then VALIDATE) before the swap; "
             "DROP COLUMN drops the old one",
    "unique": "build a unique index on the shadow column CONCURRENTLY and attach it (add_unique pattern) before "
              "the swap; DROP COLUMN drops the old constraint",
    "primary key": "build a unique index on the shadow column CONCURRENTLY and swap the primary key to it "
                   "(add_primary_key pattern) in the swap transaction; DROP COLUMN would drop the old key",
    "exclusion": "recreate it on the shadow column before the swap; DROP COLUMN drops the old one",
    "foreign key": "add it again on the shadow column (add_foreign_key pattern: NOT VALID, then VALIDATE) before "
                   "the swap",
    "view": "stays bound to the old column; DROP COLUMN fails while it exists: recreate the view (CREATE OR "
            "REPLACE VIEW with the same text) right after the swap, before the contract phase",
    "materialized view": "stays bound to the old column: recreate it after the swap, before the contract phase",
    "trigger": "an UPDATE OF trigger stays on the old column: recreate it for the new column in the swap",
    "policy": "stays bound to the old column: recreate it after the swap (ALTER POLICY)",
    "statistics": "recreate the extended statistics on the new column after the swap",
    "generated column": "its expression reads the old column: recreate it (add a new generated column) after the "
                        "swap",
}


def advice(dep: Dependent) -> str:
    if dep.kind.startswith("foreign key from "):
        return ("another table's foreign key references the old column: DROP COLUMN fails until it is moved; the "
                "referenced side needs a unique index on the new column first (add_unique pattern), then the "
                "foreign key again (add_foreign_key pattern) on the referencing table")
    return ADVICE.get(dep.kind, "stays on the old column: recreate it for the new column before the contract phase")


def live_from_snapshot(snap: SchemaSnapshot, table: Table, column: str) -> LiveColumn | None:
    """The same facts from a catalog snapshot (no connection): dependents are the indexes, constraints, foreign
    keys from other tables and views the snapshot records; column-level view dependencies are not in it, so
    a view that reads the table is named as one that may read the column."""
    col = table.column(column)
    if col is None:
        return None
    qualified = table.qualified_name
    backing = {c.index for c in table.constraints if c.index}
    reading = {i.name for i in table.indexes if column in index_column_refs(i.definition)}
    deps = [Dependent(kind=c.type.replace("_", " "), name=c.name, definition=c.definition)
            for c in table.constraints if (column in c.columns or c.index in reading) and c.type != "not_null"]
    deps += [Dependent(kind="index", name=i.name, definition=i.definition) for i in table.indexes
             if i.name not in backing and i.name in reading]
    deps += [Dependent(kind=f"foreign key from {t.qualified_name}", name=c.name, definition=c.definition)
             for t in snap.tables for c in t.constraints
             if c.type == "foreign_key" and c.references_table == qualified and column in c.references_columns]
    deps += [Dependent(kind="materialized view" if v.materialized else "view", name=f"{v.schema_name}.{v.name}",
                       definition="reads the table; may read the column")
             for v in snap.views if qualified in v.depends_on]
    deps += [Dependent(kind="generated column", name=c.name, definition=c.default) for c in table.columns
             if c.generated and c.default and c.name != column and column in column_refs(c.default)]
    return LiveColumn(table=qualified, column=column, type=col.type, not_null=not col.nullable, default=col.default,
                      identity=col.identity is not None, generated=col.generated is not None,
                      sequence=_owned_sequence(col.default), dependents=deps,
                      partitioned=table.kind == "partitioned_table",
                      row_triggers=[Dependent(kind="trigger", name=t.name, definition=t.definition)
                                    for t in table.triggers])


def _owned_sequence(default: str | None) -> str | None:
    """``nextval('s'::regclass)`` → ``s`` (read from the expression's syntax tree)."""
    if not default or "nextval" not in default:
        return None
    try:
        target = parse_sql(f"SELECT {default}")[0].stmt.targetList[0].val
    except ParseError:  # a default pglast cannot read has no sequence to carry
        return None
    if type(target).__name__ != "FuncCall" or target.funcname[-1].sval != "nextval" or not target.args:
        return None
    arg = target.args[0]
    while type(arg).__name__ == "TypeCast":
        arg = arg.arg
    value = getattr(getattr(arg, "val", None), "sval", None)
    return value if isinstance(value, str) else None


def find_table(catalog: SchemaSnapshot | None, name: str) -> Table | None:
    """The catalog's table for a table name (raw or quoted SQL, read as sqlnames.split_name does;
    unqualified: the first schema of the catalog session's search_path that holds it (public first when that is not
    known), as SchemaSnapshot.table — which splits a raw name at its last dot, so it cannot find a table named a.b)."""
    if catalog is None:
        return None
    schema, rel = split_name(name)
    matches = [t for t in catalog.tables_named(rel) if schema in (None, t.schema_name)]
    path = catalog.search_path or ["public"]
    return min(matches, key=lambda t: path.index(t.schema_name) if t.schema_name in path else len(path), default=None)


def single_key(table: Table | None) -> tuple[str, str] | None:
    """(column, type) of ``table``'s single-column primary key (what the procedure walks), from a catalog snapshot."""
    pk = next((c for c in table.constraints if c.type == "primary_key"), None) if table is not None else None
    col = table.column(pk.columns[0]) if table is not None and pk is not None and len(pk.columns) == 1 else None
    return (col.name, col.type) if col is not None else None


def index_column_refs(definition: str) -> set[str]:
    """The columns an index definition (pg_get_indexdef) reads: key columns, expressions, INCLUDE, WHERE."""
    tree = _parsed(definition)
    return _column_refs(tree) | {e["name"] for n, e in walk(tree) if n == "IndexElem" and e.get("name")}


def column_refs(expression: str) -> set[str]:
    """The column names an expression reads (a generated column's)."""
    return _column_refs(_parsed(f"SELECT {expression}"))


def _parsed(sql: str) -> Any:
    try:
        return json.loads(parse_sql_json(sql))
    except ParseError:
        return {}


def _column_refs(tree: Any) -> set[str]:
    return {f["fields"][-1].get("String", {}).get("sval", "") for n, f in walk(tree) if n == "ColumnRef"}


def refuse_unmovable(live: LiveColumn, what: str) -> None:
    """Refuse a column the patterns that replace it (rename, type change) cannot move: a generated column (no
    client writes it, a BEFORE trigger reads it as NULL, its expression is no default), a primary-key column (the
    key does not move; the contract would drop it), a column a generated column is computed from (the contract's
    DROP COLUMN fails on it)."""
    if live.generated:
        raise InputError(f"{what}: it is a generated column, which the zero-downtime pattern cannot copy (clients "
                         "never write it; its expression is not a default)",
                         "add the new generated column and drop the old one after the deploy by hand (ADD COLUMN "
                         "... GENERATED ALWAYS AS (...) STORED rewrites the table), or rename it plainly in a window")
    if any(d.kind == "primary key" for d in live.dependents):
        raise InputError(f"{what}: it is in the primary key of {live.table}, which the zero-downtime pattern "
                         "does not move to the new column",
                         "build a unique index on the new column CONCURRENTLY and swap the key by hand (ALTER TABLE "
                         "... ADD CONSTRAINT ... PRIMARY KEY USING INDEX, foreign keys re-pointed), or run it in a "
                         "window")
    readers = [d.name for d in live.dependents if d.kind == "generated column"]
    if readers:
        raise InputError(f"{what}: the generated column(s) {', '.join(readers)} are computed from it, so the "
                         "pattern's contract (DROP COLUMN of the old column) fails",
                         "change the generated column(s) to read the new column first, or drop and re-add them")
