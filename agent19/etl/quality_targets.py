"""What a name in a checks file means, and how that relation's failing rows are named.

A name is ``table`` or ``schema.table`` as the catalog spells it (no SQL quoting: ``order`` means
the table called order). Tables come first; then views and materialized views, so the models a
data team builds (dbt's views, say) can be checked too. Failing rows are named by the primary key,
else a unique key whose columns are NOT NULL (a unique index for a materialized view), else
``ctid`` — except for a plain view, which has no row address: its failing rows are counted but
named only when the checks file gives ``key:``.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Literal

from agent19.db.catalog import snapshot
from agent19.db.models import Column, Constraint, Table
from agent19.errors import Agent19Error

Q_VIEW = """
SELECT c.oid, n.nspname AS schema, c.relname AS name, c.relkind = 'm' AS materialized
  FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
 WHERE c.relkind IN ('v', 'm') AND c.relname = %(name)s
   AND (CASE WHEN %(schema)s::text IS NULL THEN n.nspname = ANY(current_schemas(false))
             ELSE n.nspname = %(schema)s END)
 ORDER BY array_position(current_schemas(false), n.nspname::name)
 LIMIT 1
"""
Q_VIEW_COLUMNS = """
SELECT a.attname AS name, a.attnum AS position, format_type(a.atttypid, a.atttypmod) AS type,
       NOT a.attnotnull AS nullable
  FROM pg_attribute a WHERE a.attrelid = %s AND a.attnum > 0 AND NOT a.attisdropped ORDER BY a.attnum
"""
Q_UNIQUE_INDEXES = """
SELECT i.relname AS name, pg_get_indexdef(x.indexrelid) AS definition,
       ARRAY(SELECT a.attname FROM unnest(x.indkey) WITH ORDINALITY k(num, ord)
               JOIN pg_attribute a ON a.attrelid = x.indrelid AND a.attnum = k.num ORDER BY k.ord)::text[] AS columns
  FROM pg_index x JOIN pg_class i ON i.oid = x.indexrelid
 WHERE x.indrelid = %s AND x.indisunique AND x.indisvalid AND x.indpred IS NULL AND x.indexprs IS NULL
 ORDER BY x.indnatts, i.relname
"""


@dataclass(frozen=True)
class Relation:
    table: Table
    """The relation's name, columns and keys (a view is described with the same model as a table)."""
    kind: Literal["table", "view", "materialized view"] = "table"


def find_relation(conn: Any, name: str) -> Relation | None:
    """The table, view or materialized view ``name`` means, or None. Only that relation's catalog rows
    are read, so a database with thousands of tables costs no more than one with three. An unqualified
    name is looked up as the server would (tables: public first; views: the search_path)."""
    table = snapshot(conn, table=name).table(name)
    if table is not None:
        return Relation(table)
    schema, _, rel = name.rpartition(".")
    view = conn.execute(Q_VIEW, {"name": rel, "schema": schema or None}).fetchone()
    if view is None:
        return None
    columns = [Column(**r) for r in conn.execute(Q_VIEW_COLUMNS, (view["oid"],)).fetchall()]
    constraints = [Constraint(name=r["name"], type="unique", columns=r["columns"], definition=r["definition"])
                   for r in conn.execute(Q_UNIQUE_INDEXES, (view["oid"],)).fetchall()]
    table = Table(schema=view["schema"], name=view["name"], kind="table", persistence="permanent",
                  row_estimate=None, heap_bytes=0, index_bytes=0, total_bytes=0, columns=columns,
                  constraints=constraints)
    return Relation(table, "materialized view" if view["materialized"] else "view")


def resolve_key(relation: Relation | Table, wanted: list[str] | None) -> tuple[list[str], str | None]:
    """The columns naming a row: given, else the primary key, else a NOT NULL unique key, else ctid
    (nothing for a plain view: ``[]``, with a note saying how to name its rows)."""
    rel = relation if isinstance(relation, Relation) else Relation(relation)
    table = rel.table
    if wanted:
        missing = [k for k in wanted if table.column(k) is None]
        if missing:
            raise Agent19Error(f"key column {', '.join(missing)} is not in {table.qualified_name}")
        return wanted, None
    pk = next((c for c in table.constraints if c.type == "primary_key"), None)
    if pk:
        return pk.columns, None
    for c in table.constraints:
        # a materialized view's columns are never NOT NULL; its unique index (REFRESH … CONCURRENTLY needs one)
        # is the best name its rows have
        if c.type == "unique" and (rel.kind == "materialized view" or all(
                (col := table.column(n)) is not None and not col.nullable for n in c.columns)):
            return c.columns, f"no primary key: rows are named by the unique key {c.name}"
    if rel.kind == "view":
        return [], ("a view has no primary key or row address: failing rows are counted, not named; set key: "
                    "(columns that identify a row) in the checks file to list them")
    return ["ctid"], ("no primary key or NOT NULL unique key: rows are named by ctid (their physical place, which "
                      "changes when a row is updated); declare a key or set key: in the checks file")
