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

from psycopg import sql

from agent19.db.models import Column, Constraint, SchemaSnapshot, Table
from agent19.errors import Agent19Error

Q_COLUMNS = """
SELECT a.attname AS name, a.attnum AS position, format_type(a.atttypid, a.atttypmod) AS type,
       NOT a.attnotnull AS nullable
  FROM pg_attribute a
 WHERE a.attrelid = %s::regclass AND a.attnum > 0 AND NOT a.attisdropped
 ORDER BY a.attnum
"""


@dataclass(frozen=True)
class Relation:
    table: Table
    """The relation's name, columns and keys (a view is described with the same model as a table)."""
    kind: Literal["table", "view", "materialized view"] = "table"


def find_relation(conn: Any, snap: SchemaSnapshot, name: str) -> Relation | None:
    """The table, view or materialized view ``name`` means (unqualified: public first), or None."""
    table = snap.table(name)
    if table is not None:
        return Relation(table)
    schema, _, rel = name.rpartition(".")
    views = [v for v in snap.views if v.name == rel and (not schema or v.schema_name == schema)]
    if not schema and len(views) > 1:
        views = [v for v in views if v.schema_name == "public"] or views
    if not views:
        return None
    view = views[0]
    oid_text = sql.Identifier(view.schema_name, view.name).as_string(conn)
    columns = [Column(**r) for r in conn.execute(Q_COLUMNS, (oid_text,)).fetchall()]
    constraints = [
        Constraint(name=i.name, type="unique", columns=i.columns, definition=i.definition)
        for i in view.indexes if i.unique and not i.partial and i.valid and i.columns
        and all(any(c.name == k for c in columns) for k in i.columns)
    ]
    table = Table(schema=view.schema_name, name=view.name, kind="table", persistence="permanent", row_estimate=None,
                  heap_bytes=0, index_bytes=0, total_bytes=0, columns=columns, constraints=constraints)
    return Relation(table, "materialized view" if view.materialized else "view")


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
