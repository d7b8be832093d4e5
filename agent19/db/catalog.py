"""Catalog introspection: :func:`snapshot` describes a database in one pass.

A fixed handful of queries (one per kind of object, each over all tables at once, sent together in one
round trip), never one query per table, so a database with thousands of tables is described in seconds
(``tools/bench/bench_catalog.py`` measures it).
"""

from __future__ import annotations

from collections import defaultdict
from typing import TYPE_CHECKING, Any

from agent19.db.catalog_first import SEARCH_PATH
from agent19.db.models import (
    Column,
    Constraint,
    EnumType,
    Extension,
    Index,
    SchemaSnapshot,
    Sequence,
    Table,
    Trigger,
    View,
)
from agent19.sqltree import function_names

if TYPE_CHECKING:  # the driver loads where a snapshot is read: relation_key_sql is used without it (agent19 lint)
    from psycopg import Connection

SYSTEM_SCHEMA_FILTER = """
    n.nspname NOT IN ('pg_catalog', 'information_schema', 'pg_toast')
    AND n.nspname NOT LIKE 'pg_temp_%%' AND n.nspname NOT LIKE 'pg_toast_temp_%%'
    AND (%(schema)s::text IS NULL OR n.nspname = %(schema)s)
"""
TABLE_FILTER = "(%(table)s::text IS NULL OR c.relname = %(table)s)"


def relation_key_sql(nsp: str, rel: str) -> str:
    """SQL writing a relation as :func:`agent19.migrate.patterns.sqlnames.relation_key` does: ``s.t`` as stored,
    both parts double-quoted when either holds a dot or a double quote (``"public"."we.ird"``)."""
    return (f"""CASE WHEN {nsp} ~ '[."]' OR {rel} ~ '[."]' THEN '"' || replace({nsp}, '"', '""') || '"."' """
            f"""|| replace({rel}, '"', '""') || '"' ELSE {nsp} || '.' || {rel} END""")


Q_SERVER = """
SELECT current_setting('server_version_num')::int AS num,
       current_setting('server_version') AS text,
       current_database() AS db,
       current_schemas(false)::text[] AS search_path, current_user AS role,
       ARRAY(SELECT nspname FROM pg_namespace WHERE has_schema_privilege(oid, 'USAGE'))::text[] AS usable_schemas
"""
Q_EXTENSIONS = """
SELECT name, default_version, installed_version FROM pg_available_extensions ORDER BY name
"""
Q_SCHEMAS = f"""
SELECT n.nspname FROM pg_namespace n WHERE {SYSTEM_SCHEMA_FILTER} ORDER BY 1
"""
Q_TABLES = f"""
SELECT c.oid, n.nspname AS schema, c.relname AS name, c.relkind, c.relpersistence,
       CASE WHEN c.reltuples < 0 OR (c.reltuples = 0 AND c.relpages = 0) THEN NULL
            ELSE c.reltuples::bigint END AS row_estimate,
       pg_relation_size(c.oid) AS heap_bytes,
       pg_indexes_size(c.oid) AS index_bytes,
       pg_total_relation_size(c.oid) AS total_bytes,
       (SELECT {relation_key_sql('pn.nspname', 'pc.relname')} FROM pg_inherits i
          JOIN pg_class pc ON pc.oid = i.inhparent JOIN pg_namespace pn ON pn.oid = pc.relnamespace
         WHERE i.inhrelid = c.oid AND c.relispartition) AS partition_of,
       CASE WHEN c.relkind = 'p' THEN pg_get_partkeydef(c.oid) END AS partition_key,
       obj_description(c.oid, 'pg_class') AS comment
  FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
 WHERE c.relkind IN ('r', 'p', 'f') AND {SYSTEM_SCHEMA_FILTER} AND {TABLE_FILTER}
 ORDER BY n.nspname, c.relname
"""
Q_COLUMNS = f"""
SELECT a.attrelid AS oid, a.attname AS name, a.attnum AS position,
       format_type(a.atttypid, a.atttypmod) AS type, NOT a.attnotnull AS nullable,
       pg_get_expr(d.adbin, d.adrelid) AS default, a.attidentity, a.attgenerated,
       CASE WHEN a.attcollation <> t.typcollation THEN co.collname END AS collation
  FROM pg_attribute a
  JOIN pg_class c ON c.oid = a.attrelid JOIN pg_namespace n ON n.oid = c.relnamespace
  JOIN pg_type t ON t.oid = a.atttypid
  LEFT JOIN pg_attrdef d ON d.adrelid = a.attrelid AND d.adnum = a.attnum
  LEFT JOIN pg_collation co ON co.oid = a.attcollation
 WHERE a.attnum > 0 AND NOT a.attisdropped AND c.relkind IN ('r', 'p', 'f')
   AND {SYSTEM_SCHEMA_FILTER} AND {TABLE_FILTER}
 ORDER BY a.attrelid, a.attnum
"""
Q_CONSTRAINTS = f"""
SELECT con.conrelid AS oid, con.conname AS name, con.contype, con.convalidated, con.condeferrable,
       pg_get_constraintdef(con.oid, true) AS definition,
       ARRAY(SELECT att.attname FROM unnest(con.conkey) WITH ORDINALITY k(num, ord)
               JOIN pg_attribute att ON att.attrelid = con.conrelid AND att.attnum = k.num
              ORDER BY k.ord)::text[] AS columns,
       ic.relname AS index_name,
       CASE WHEN con.contype = 'f' THEN {relation_key_sql('fn.nspname', 'fc.relname')} END AS references_table,
       ARRAY(SELECT att.attname FROM unnest(con.confkey) WITH ORDINALITY k(num, ord)
               JOIN pg_attribute att ON att.attrelid = con.confrelid AND att.attnum = k.num
              ORDER BY k.ord)::text[] AS references_columns,
       con.confupdtype, con.confdeltype
  FROM pg_constraint con
  JOIN pg_class c ON c.oid = con.conrelid JOIN pg_namespace n ON n.oid = c.relnamespace
  LEFT JOIN pg_class ic ON ic.oid = con.conindid AND con.contype IN ('p', 'u', 'x')
  LEFT JOIN pg_class fc ON fc.oid = con.confrelid
  LEFT JOIN pg_namespace fn ON fn.oid = fc.relnamespace
 WHERE con.contype IN ('p', 'u', 'c', 'f', 'x') AND {SYSTEM_SCHEMA_FILTER} AND {TABLE_FILTER}
 ORDER BY con.conrelid, con.conname
"""
Q_INDEXES = f"""
SELECT i.indrelid AS oid, ic.relname AS name, {relation_key_sql('n.nspname', 'c.relname')} AS table,
       pg_get_indexdef(i.indexrelid) AS definition, am.amname AS method,
       i.indisunique AS unique, i.indisprimary AS primary, i.indpred IS NOT NULL AS partial,
       pg_get_expr(i.indpred, i.indrelid, true) AS predicate,
       i.indisvalid AS valid, i.indisready AS ready,
       pg_relation_size(i.indexrelid) AS size_bytes, s.idx_scan AS scans,
       ARRAY(SELECT pg_get_indexdef(i.indexrelid, k, true)
               FROM generate_series(1, i.indnkeyatts) AS k ORDER BY k)::text[] AS columns,
       ARRAY(SELECT a.attname FROM generate_series(1, i.indnkeyatts) AS k
               LEFT JOIN pg_attribute a ON a.attrelid = i.indrelid AND a.attnum = i.indkey[k - 1] AND a.attnum > 0
              ORDER BY k)::text[] AS column_names
  FROM pg_index i
  JOIN pg_class ic ON ic.oid = i.indexrelid
  JOIN pg_class c ON c.oid = i.indrelid JOIN pg_namespace n ON n.oid = c.relnamespace
  JOIN pg_am am ON am.oid = ic.relam
  LEFT JOIN pg_stat_all_indexes s ON s.indexrelid = i.indexrelid
 WHERE {SYSTEM_SCHEMA_FILTER} AND {TABLE_FILTER}
 ORDER BY i.indrelid, ic.relname
"""
Q_TRIGGERS = f"""
SELECT t.tgrelid AS oid, t.tgname AS name, pg_get_triggerdef(t.oid, true) AS definition,
       t.tgenabled <> 'D' AS enabled, pn.nspname || '.' || p.proname AS function
  FROM pg_trigger t
  JOIN pg_class c ON c.oid = t.tgrelid JOIN pg_namespace n ON n.oid = c.relnamespace
  JOIN pg_proc p ON p.oid = t.tgfoid JOIN pg_namespace pn ON pn.oid = p.pronamespace
 WHERE NOT t.tgisinternal AND {SYSTEM_SCHEMA_FILTER} AND {TABLE_FILTER}
 ORDER BY t.tgrelid, t.tgname
"""
Q_VIEWS = f"""
SELECT c.oid, n.nspname AS schema, c.relname AS name, c.relkind = 'm' AS materialized,
       pg_get_viewdef(c.oid, true) AS definition, c.relispopulated AS populated,
       ARRAY(SELECT DISTINCT {relation_key_sql('dn.nspname', 'dc.relname')}
               FROM pg_rewrite r
               JOIN pg_depend d ON d.classid = 'pg_rewrite'::regclass AND d.objid = r.oid
                               AND d.refclassid = 'pg_class'::regclass
               JOIN pg_class dc ON dc.oid = d.refobjid JOIN pg_namespace dn ON dn.oid = dc.relnamespace
              WHERE r.ev_class = c.oid AND d.refobjid <> c.oid)::text[] AS depends_on
  FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
 WHERE c.relkind IN ('v', 'm') AND {SYSTEM_SCHEMA_FILTER}
 ORDER BY n.nspname, c.relname
"""
Q_SEQUENCES = """
SELECT s.schemaname AS schema, s.sequencename AS name, s.data_type::text AS data_type,
       s.last_value, s.max_value, s.increment_by AS increment,
       (SELECT tn.nspname || '.' || tc.relname || '.' || a.attname
          FROM pg_depend d
          JOIN pg_class tc ON tc.oid = d.refobjid JOIN pg_namespace tn ON tn.oid = tc.relnamespace
          JOIN pg_attribute a ON a.attrelid = d.refobjid AND a.attnum = d.refobjsubid
         WHERE d.classid = 'pg_class'::regclass AND d.objid = sc.oid
           AND d.refclassid = 'pg_class'::regclass AND d.deptype IN ('a', 'i')
         LIMIT 1) AS owned_by
  FROM pg_sequences s
  JOIN pg_namespace n ON n.nspname = s.schemaname
  JOIN pg_class sc ON sc.relname = s.sequencename AND sc.relnamespace = n.oid
 WHERE %(schema)s::text IS NULL OR s.schemaname = %(schema)s
 ORDER BY 1, 2
"""
Q_ENUMS = f"""
SELECT n.nspname AS schema, t.typname AS name,
       ARRAY(SELECT e.enumlabel FROM pg_enum e WHERE e.enumtypid = t.oid ORDER BY e.enumsortorder)::text[]
         AS values
  FROM pg_type t JOIN pg_namespace n ON n.oid = t.typnamespace
 WHERE t.typtype = 'e' AND {SYSTEM_SCHEMA_FILTER}
 ORDER BY 1, 2
"""
Q_VOLATILE_FUNCTIONS = """
SELECT DISTINCT proname FROM pg_proc WHERE provolatile = 'v' AND proname = ANY(%(names)s)
"""

_FK_ACTIONS = {"a": "no_action", "r": "restrict", "c": "cascade", "n": "set_null", "d": "set_default"}
_CONTYPES = {"p": "primary_key", "u": "unique", "c": "check", "f": "foreign_key", "x": "exclusion"}
_KINDS = {"r": "table", "p": "partitioned_table", "f": "foreign_table"}
_PERSISTENCE = {"p": "permanent", "u": "unlogged", "t": "temporary"}


def snapshot(conn: Connection[Any], *, schema: str | None = None, table: str | None = None,
             also: list[str] | None = None) -> SchemaSnapshot:
    """Describe the database ``conn`` is connected to (optionally one schema, or one table).

    ``also``: more queries (constants, no parameters) to send in the same round trip; their rows are put in
    that list in place of each query, in order.

    ``table`` may be ``name`` or ``schema.name``. Runs only catalog reads, with pg_catalog first on the
    search_path (a database owner's ``public.format_type()`` never runs here), then gives the transaction
    its path back (a dry run's migration keeps creating objects where it would).
    """
    import psycopg

    from agent19.db import captures
    from agent19.migrate.classification.session_path import split_path

    # what ran on this session before (a migration under test, replayed or in this transaction) may have made an
    # overload these reads would call (agent19.db.captures): checked first
    captures.guard(conn)
    in_transaction = conn.info.transaction_status == psycopg.pq.TransactionStatus.INTRANS
    # the path's own read and switch name nothing through the path (a function, or the || operator, could be a
    # schema's before pg_catalog's: agent19.db.catalog_first)
    saved = conn.execute(f"SELECT {SEARCH_PATH} AS p").fetchone() if in_transaction else None
    if saved is not None:
        # pg_temp listed (last, unless the path lists it): unlisted, it is searched first for types and relations,
        # and a migration's `CREATE DOMAIN pg_temp.regclass` would be what these reads cast to (review r28 F6)
        path = _value(saved)
        temp = "" if "pg_temp" in split_path(path) else ", pg_temp"
        conn.execute("SELECT pg_catalog.set_config('search_path', %s, true)",
                     (", ".join(p for p in ("pg_catalog", path.strip(), temp.lstrip(", ")) if p),))
    try:
        return _snapshot(conn, schema=schema, table=table, also=also)
    finally:
        if saved is not None and conn.info.transaction_status == psycopg.pq.TransactionStatus.INTRANS:
            conn.execute("SELECT pg_catalog.set_config('search_path', %s, true)", (_value(saved),))


def _value(row: Any) -> str:
    return str(row["p"] if isinstance(row, dict) else row[0])


def _snapshot(conn: Connection[Any], *, schema: str | None, table: str | None,
              also: list[str] | None = None) -> SchemaSnapshot:
    if table and "." in table and schema is None:
        schema, table = table.split(".", 1)
    params: dict[str, Any] = {"schema": schema, "table": table}
    extra = tuple(also or ())
    fetched = _read_all(conn, _QUERIES, params, plain=extra)
    if also is not None:
        also[:] = [fetched[q] for q in extra]

    def rows(query: str) -> list[dict[str, Any]]:
        return fetched[query]

    server = rows(Q_SERVER)[0]
    extension_rows = rows(Q_EXTENSIONS)
    columns_by_oid: dict[int, list[dict[str, Any]]] = defaultdict(list)
    for row in rows(Q_COLUMNS):
        columns_by_oid[row["oid"]].append(row)
    volatile = _volatile_functions(conn.cursor(), [c["default"] for cs in columns_by_oid.values() for c in cs])

    constraints = _group(rows(Q_CONSTRAINTS), _constraint)
    indexes = _group(rows(Q_INDEXES), lambda r: Index(**_without(r, "oid")))
    triggers = _group(rows(Q_TRIGGERS), lambda r: Trigger(**_without(r, "oid")))

    tables = [
        Table(
            schema=r["schema"],
            name=r["name"],
            kind=_KINDS[r["relkind"]],
            persistence=_PERSISTENCE[r["relpersistence"]],
            row_estimate=r["row_estimate"],
            heap_bytes=r["heap_bytes"],
            index_bytes=r["index_bytes"],
            total_bytes=r["total_bytes"],
            partition_of=r["partition_of"],
            partition_key=r["partition_key"],
            comment=r["comment"],
            columns=[_column(c, volatile) for c in columns_by_oid.get(r["oid"], [])],
            constraints=constraints.get(r["oid"], []),
            indexes=indexes.get(r["oid"], []),
            triggers=triggers.get(r["oid"], []),
        )
        for r in rows(Q_TABLES)
    ]
    all_indexes = indexes
    views = [
        View(**_without(r, "oid"), indexes=all_indexes.get(r["oid"], []))
        for r in rows(Q_VIEWS)
    ]
    sequences = [Sequence(**r) for r in rows(Q_SEQUENCES)]
    if table:
        names = {t.qualified_name for t in tables}
        views = [v for v in views if names.intersection(v.depends_on)]
        sequences = [s for s in sequences if s.owned_by and s.owned_by.rsplit(".", 1)[0] in names]
    return SchemaSnapshot(
        server_version=server["num"],
        server_version_text=server["text"],
        database=server["db"],
        extensions=[
            Extension(
                name=e["name"], installed_version=e["installed_version"], default_version=e["default_version"]
            )
            for e in extension_rows
            if e["installed_version"]
        ],
        available_extensions=[e["name"] for e in extension_rows if not e["installed_version"]],
        schemas=[r["nspname"] for r in rows(Q_SCHEMAS)],
        tables=tables,
        views=views,
        sequences=sequences,
        enums=[EnumType(**r) for r in rows(Q_ENUMS)],
        filtered=bool(schema or table),
        search_path=[s for s in server["search_path"] or [] if not s.startswith(("pg_catalog", "pg_temp", "pg_toast"))],
        role=server["role"],
        usable_schemas=server["usable_schemas"],
    )


_QUERIES = (Q_SERVER, Q_EXTENSIONS, Q_COLUMNS, Q_CONSTRAINTS, Q_INDEXES, Q_TRIGGERS, Q_TABLES, Q_VIEWS, Q_SEQUENCES,
            Q_SCHEMAS, Q_ENUMS)


def _read_all(conn: Connection[Any], queries: tuple[str, ...], params: dict[str, Any],
              plain: tuple[str, ...] = ()) -> dict[str, list[Any]]:
    """Each query's rows (``queries`` with ``params``, then ``plain`` without), all sent at once and read in one
    round trip (pipeline mode: the server runs them one after the other, without waiting for the client in
    between); one by one where libpq has no pipeline mode."""
    import psycopg

    todo = [(q, params) for q in queries] + [(q, None) for q in plain]
    if not psycopg.Pipeline.is_supported():
        cur = conn.cursor()
        return {q: cur.execute(q, p).fetchall() for q, p in todo}
    with conn.pipeline():
        cursors = {q: conn.cursor().execute(q, p) for q, p in todo}
    return {q: c.fetchall() for q, c in cursors.items()}


def _without(row: dict[str, Any], *keys: str) -> dict[str, Any]:
    return {k: v for k, v in row.items() if k not in keys}


def _group(rows: list[dict[str, Any]], build: Any) -> dict[int, list[Any]]:
    out: dict[int, list[Any]] = defaultdict(list)
    for row in rows:
        out[row["oid"]].append(build(row))
    return out


def _constraint(r: dict[str, Any]) -> Constraint:
    fk = r["contype"] == "f"
    return Constraint(
        name=r["name"],
        type=_CONTYPES[r["contype"]],
        columns=r["columns"] or [],
        definition=r["definition"],
        validated=r["convalidated"],
        deferrable=r["condeferrable"],
        index=r["index_name"],
        references_table=r["references_table"],
        references_columns=(r["references_columns"] or []) if fk else [],
        on_update=_FK_ACTIONS.get(r["confupdtype"]) if fk else None,
        on_delete=_FK_ACTIONS.get(r["confdeltype"]) if fk else None,
    )


def _column(r: dict[str, Any], volatile: set[str]) -> Column:
    default = r["default"]
    return Column(
        name=r["name"],
        position=r["position"],
        type=r["type"],
        nullable=r["nullable"],
        default=default,
        default_volatile=None if default is None else bool(function_names(default) & volatile),
        identity={"a": "always", "d": "by_default"}.get(r["attidentity"] or ""),
        generated={"s": "stored", "v": "virtual"}.get(r["attgenerated"] or ""),
        collation=r["collation"],
    )


def _volatile_functions(cur: Any, defaults: list[str | None]) -> set[str]:
    names: set[str] = set()
    for d in defaults:
        if d:
            names |= function_names(d)
    if not names:
        return set()
    found = cur.execute(Q_VOLATILE_FUNCTIONS, {"names": sorted(names)}).fetchall()
    return {r["proname"] for r in found}
