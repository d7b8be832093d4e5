"""Catalog introspection: :func:`snapshot` describes a database in one pass.

A fixed handful of queries (one per kind of object, each over all tables at once, sent together in one
round trip), never one query per table, so a database with thousands of tables is described in seconds
(``tools/bench/bench_catalog.py`` measures it).

Every statement names its functions, operators, types and catalog relations ``pg_catalog.``-qualified
(``QUALIFIED_SQL``, ``tests/test_qualified_sql.py``), so no overload on the login's path is what the snapshot calls,
not even one the login owns (trusted by :mod:`agent19.db.captures`); each is the operator the unqualified text chose
on a database without overloads, so the snapshot reads the same rows and text (``tests/test_snapshot_qualified.py``).
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

QUALIFIED_SQL = True  # its statements name functions, operators, types, catalog relations pg_catalog.-qualified

# the operators the unqualified text chose (same argument types): same rows, same text
EQ, NE, CAT = "OPERATOR(pg_catalog.=)", "OPERATOR(pg_catalog.<>)", "OPERATOR(pg_catalog.||)"
GT, LT, MATCHES = "OPERATOR(pg_catalog.>)", "OPERATOR(pg_catalog.<)", "OPERATOR(pg_catalog.~)"
NOT_LIKE = "OPERATOR(pg_catalog.!~~)"


def _chars(*codes: str) -> str:
    """``"char"`` codes (``relkind``, ``contype``…) for ``x = ANY (…)``: compared as ``"char"``, as ``x IN ('r', 'p')``
    compares them."""
    return f"""'{{{",".join(codes)}}}'::pg_catalog."char"[]"""


SYSTEM_SCHEMA_FILTER = f"""
    n.nspname {NE} ALL ('{{pg_catalog,information_schema,pg_toast}}'::pg_catalog.name[])
    AND n.nspname {NOT_LIKE} 'pg_temp_%%' AND n.nspname {NOT_LIKE} 'pg_toast_temp_%%'
    AND (%(schema)s::pg_catalog.text IS NULL OR n.nspname {EQ} %(schema)s::pg_catalog.text)
"""
TABLE_FILTER = f"(%(table)s::pg_catalog.text IS NULL OR c.relname {EQ} %(table)s::pg_catalog.text)"
TABLE_KINDS = _chars("r", "p", "f")


def relation_key_sql(nsp: str, rel: str) -> str:
    """SQL writing a relation as :func:`agent19.migrate.patterns.sqlnames.relation_key` does: ``s.t`` as stored,
    both parts double-quoted when either holds a dot or a double quote (``"public"."we.ird"``); every function and
    operator ``pg_catalog.``-qualified."""
    def quoted(part: str) -> str:
        return f"""pg_catalog.replace({part}, '"', '""')"""

    return (f"""CASE WHEN {nsp} {MATCHES} '[."]' OR {rel} {MATCHES} '[."]' """
            f"""THEN '"' {CAT} {quoted(nsp)} {CAT} '"."' {CAT} {quoted(rel)} {CAT} '"' """
            f"""ELSE {nsp} {CAT} '.' {CAT} {rel} END""")


Q_SERVER = """
SELECT pg_catalog.current_setting('server_version_num')::int AS num,
       pg_catalog.current_setting('server_version') AS text,
       pg_catalog.current_database() AS db,
       pg_catalog.current_schemas(false)::pg_catalog.text[] AS search_path, current_user AS role,
       ARRAY(SELECT nspname FROM pg_catalog.pg_namespace
              WHERE pg_catalog.has_schema_privilege(oid, 'USAGE'))::pg_catalog.text[] AS usable_schemas
"""
Q_EXTENSIONS = """
SELECT name, default_version, installed_version FROM pg_catalog.pg_available_extensions ORDER BY name
"""
Q_SCHEMAS = f"""
SELECT n.nspname FROM pg_catalog.pg_namespace n WHERE {SYSTEM_SCHEMA_FILTER} ORDER BY 1
"""
Q_TABLES = f"""
SELECT c.oid, n.nspname AS schema, c.relname AS name, c.relkind, c.relpersistence,
       CASE WHEN c.reltuples {LT} 0 OR (c.reltuples {EQ} 0 AND c.relpages {EQ} 0) THEN NULL
            ELSE c.reltuples::bigint END AS row_estimate,
       pg_catalog.pg_relation_size(c.oid) AS heap_bytes,
       pg_catalog.pg_indexes_size(c.oid) AS index_bytes,
       pg_catalog.pg_total_relation_size(c.oid) AS total_bytes,
       (SELECT {relation_key_sql('pn.nspname', 'pc.relname')} FROM pg_catalog.pg_inherits i
          JOIN pg_catalog.pg_class pc ON pc.oid {EQ} i.inhparent
          JOIN pg_catalog.pg_namespace pn ON pn.oid {EQ} pc.relnamespace
         WHERE i.inhrelid {EQ} c.oid AND c.relispartition) AS partition_of,
       CASE WHEN c.relkind {EQ} 'p' THEN pg_catalog.pg_get_partkeydef(c.oid) END AS partition_key,
       pg_catalog.obj_description(c.oid, 'pg_class') AS comment
  FROM pg_catalog.pg_class c JOIN pg_catalog.pg_namespace n ON n.oid {EQ} c.relnamespace
 WHERE c.relkind {EQ} ANY ({TABLE_KINDS}) AND {SYSTEM_SCHEMA_FILTER} AND {TABLE_FILTER}
 ORDER BY n.nspname, c.relname
"""
Q_COLUMNS = f"""
SELECT a.attrelid AS oid, a.attname AS name, a.attnum AS position,
       pg_catalog.format_type(a.atttypid, a.atttypmod) AS type, NOT a.attnotnull AS nullable,
       pg_catalog.pg_get_expr(d.adbin, d.adrelid) AS default, a.attidentity, a.attgenerated,
       CASE WHEN a.attcollation {NE} t.typcollation THEN co.collname END AS collation
  FROM pg_catalog.pg_attribute a
  JOIN pg_catalog.pg_class c ON c.oid {EQ} a.attrelid JOIN pg_catalog.pg_namespace n ON n.oid {EQ} c.relnamespace
  JOIN pg_catalog.pg_type t ON t.oid {EQ} a.atttypid
  LEFT JOIN pg_catalog.pg_attrdef d ON d.adrelid {EQ} a.attrelid AND d.adnum {EQ} a.attnum
  LEFT JOIN pg_catalog.pg_collation co ON co.oid {EQ} a.attcollation
 WHERE a.attnum {GT} 0 AND NOT a.attisdropped AND c.relkind {EQ} ANY ({TABLE_KINDS})
   AND {SYSTEM_SCHEMA_FILTER} AND {TABLE_FILTER}
 ORDER BY a.attrelid, a.attnum
"""


def _attnames(rel: str, keys: str) -> str:
    """The names of ``rel``'s columns numbered in ``keys`` (an ``int2[]``), in its order, as ``text[]``."""
    return (f"ARRAY(SELECT att.attname FROM pg_catalog.unnest({keys}) WITH ORDINALITY k(num, ord)\n"
            f"               JOIN pg_catalog.pg_attribute att ON att.attrelid {EQ} {rel} AND att.attnum {EQ} k.num\n"
            f"              ORDER BY k.ord)::pg_catalog.text[]")


Q_CONSTRAINTS = f"""
SELECT con.conrelid AS oid, con.conname AS name, con.contype, con.convalidated, con.condeferrable,
       pg_catalog.pg_get_constraintdef(con.oid, true) AS definition,
       {_attnames('con.conrelid', 'con.conkey')} AS columns,
       ic.relname AS index_name,
       CASE WHEN con.contype {EQ} 'f' THEN {relation_key_sql('fn.nspname', 'fc.relname')} END AS references_table,
       {_attnames('con.confrelid', 'con.confkey')} AS references_columns,
       con.confupdtype, con.confdeltype
  FROM pg_catalog.pg_constraint con
  JOIN pg_catalog.pg_class c ON c.oid {EQ} con.conrelid JOIN pg_catalog.pg_namespace n ON n.oid {EQ} c.relnamespace
  LEFT JOIN pg_catalog.pg_class ic ON ic.oid {EQ} con.conindid AND con.contype {EQ} ANY ({_chars('p', 'u', 'x')})
  LEFT JOIN pg_catalog.pg_class fc ON fc.oid {EQ} con.confrelid
  LEFT JOIN pg_catalog.pg_namespace fn ON fn.oid {EQ} fc.relnamespace
 WHERE con.contype {EQ} ANY ({_chars('p', 'u', 'c', 'f', 'x')}) AND {SYSTEM_SCHEMA_FILTER} AND {TABLE_FILTER}
 ORDER BY con.conrelid, con.conname
"""
Q_INDEXES = f"""
SELECT i.indrelid AS oid, ic.relname AS name, {relation_key_sql('n.nspname', 'c.relname')} AS table,
       pg_catalog.pg_get_indexdef(i.indexrelid) AS definition, am.amname AS method,
       i.indisunique AS unique, i.indisprimary AS primary, i.indpred IS NOT NULL AS partial,
       pg_catalog.pg_get_expr(i.indpred, i.indrelid, true) AS predicate,
       i.indisvalid AS valid, i.indisready AS ready,
       pg_catalog.pg_relation_size(i.indexrelid) AS size_bytes, s.idx_scan AS scans,
       ARRAY(SELECT pg_catalog.pg_get_indexdef(i.indexrelid, k, true)
               FROM pg_catalog.generate_series(1, i.indnkeyatts) AS k ORDER BY k)::pg_catalog.text[] AS columns,
       ARRAY(SELECT a.attname FROM pg_catalog.generate_series(1, i.indnkeyatts) AS k
               LEFT JOIN pg_catalog.pg_attribute a ON a.attrelid {EQ} i.indrelid
                     AND a.attnum {EQ} i.indkey[k OPERATOR(pg_catalog.-) 1] AND a.attnum {GT} 0
              ORDER BY k)::pg_catalog.text[] AS column_names
  FROM pg_catalog.pg_index i
  JOIN pg_catalog.pg_class ic ON ic.oid {EQ} i.indexrelid
  JOIN pg_catalog.pg_class c ON c.oid {EQ} i.indrelid JOIN pg_catalog.pg_namespace n ON n.oid {EQ} c.relnamespace
  JOIN pg_catalog.pg_am am ON am.oid {EQ} ic.relam
  LEFT JOIN pg_catalog.pg_stat_all_indexes s ON s.indexrelid {EQ} i.indexrelid
 WHERE {SYSTEM_SCHEMA_FILTER} AND {TABLE_FILTER}
 ORDER BY i.indrelid, ic.relname
"""
Q_TRIGGERS = f"""
SELECT t.tgrelid AS oid, t.tgname AS name, pg_catalog.pg_get_triggerdef(t.oid, true) AS definition,
       t.tgenabled {NE} 'D' AS enabled, pn.nspname {CAT} '.' {CAT} p.proname AS function
  FROM pg_catalog.pg_trigger t
  JOIN pg_catalog.pg_class c ON c.oid {EQ} t.tgrelid JOIN pg_catalog.pg_namespace n ON n.oid {EQ} c.relnamespace
  JOIN pg_catalog.pg_proc p ON p.oid {EQ} t.tgfoid JOIN pg_catalog.pg_namespace pn ON pn.oid {EQ} p.pronamespace
 WHERE NOT t.tgisinternal AND {SYSTEM_SCHEMA_FILTER} AND {TABLE_FILTER}
 ORDER BY t.tgrelid, t.tgname
"""
PG_CLASS, PG_REWRITE = "'pg_catalog.pg_class'::pg_catalog.regclass", "'pg_catalog.pg_rewrite'::pg_catalog.regclass"
Q_VIEWS = f"""
SELECT c.oid, n.nspname AS schema, c.relname AS name, c.relkind {EQ} 'm' AS materialized,
       pg_catalog.pg_get_viewdef(c.oid, true) AS definition, c.relispopulated AS populated,
       ARRAY(SELECT DISTINCT {relation_key_sql('dn.nspname', 'dc.relname')}
               FROM pg_catalog.pg_rewrite r
               JOIN pg_catalog.pg_depend d ON d.classid {EQ} {PG_REWRITE} AND d.objid {EQ} r.oid
                                          AND d.refclassid {EQ} {PG_CLASS}
               JOIN pg_catalog.pg_class dc ON dc.oid {EQ} d.refobjid
               JOIN pg_catalog.pg_namespace dn ON dn.oid {EQ} dc.relnamespace
              WHERE r.ev_class {EQ} c.oid AND d.refobjid {NE} c.oid)::pg_catalog.text[] AS depends_on
  FROM pg_catalog.pg_class c JOIN pg_catalog.pg_namespace n ON n.oid {EQ} c.relnamespace
 WHERE c.relkind {EQ} ANY ({_chars('v', 'm')}) AND {SYSTEM_SCHEMA_FILTER}
 ORDER BY n.nspname, c.relname
"""
Q_SEQUENCES = f"""
SELECT s.schemaname AS schema, s.sequencename AS name, s.data_type::pg_catalog.text AS data_type,
       s.last_value, s.max_value, s.increment_by AS increment,
       (SELECT tn.nspname {CAT} '.' {CAT} tc.relname {CAT} '.' {CAT} a.attname
          FROM pg_catalog.pg_depend d
          JOIN pg_catalog.pg_class tc ON tc.oid {EQ} d.refobjid
          JOIN pg_catalog.pg_namespace tn ON tn.oid {EQ} tc.relnamespace
          JOIN pg_catalog.pg_attribute a ON a.attrelid {EQ} d.refobjid AND a.attnum {EQ} d.refobjsubid
         WHERE d.classid {EQ} {PG_CLASS} AND d.objid {EQ} sc.oid
           AND d.refclassid {EQ} {PG_CLASS} AND d.deptype {EQ} ANY ({_chars('a', 'i')})
         LIMIT 1) AS owned_by
  FROM pg_catalog.pg_sequences s
  JOIN pg_catalog.pg_namespace n ON n.nspname {EQ} s.schemaname
  JOIN pg_catalog.pg_class sc ON sc.relname {EQ} s.sequencename AND sc.relnamespace {EQ} n.oid
 WHERE %(schema)s::pg_catalog.text IS NULL OR s.schemaname {EQ} %(schema)s::pg_catalog.text
 ORDER BY 1, 2
"""
Q_ENUMS = f"""
SELECT n.nspname AS schema, t.typname AS name,
       ARRAY(SELECT e.enumlabel FROM pg_catalog.pg_enum e WHERE e.enumtypid {EQ} t.oid
              ORDER BY e.enumsortorder)::pg_catalog.text[] AS values
  FROM pg_catalog.pg_type t JOIN pg_catalog.pg_namespace n ON n.oid {EQ} t.typnamespace
 WHERE t.typtype {EQ} 'e' AND {SYSTEM_SCHEMA_FILTER}
 ORDER BY 1, 2
"""
# the names are sent untyped (psycopg), so the unqualified `proname = ANY(%(names)s)` read them as name[]
Q_VOLATILE_FUNCTIONS = f"""
SELECT DISTINCT proname FROM pg_catalog.pg_proc
 WHERE provolatile {EQ} 'v' AND proname {EQ} ANY (%(names)s::pg_catalog.name[])
"""
Q_PATH = f"SELECT {SEARCH_PATH} AS p"
Q_SET_PATH = "SELECT pg_catalog.set_config('search_path', %s, true)"

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
    its path back (a dry run's migration keeps creating objects where it would). Its own statements name what
    they call qualified (a login's ``public.replace(name, text, text)`` is no candidate); ``also``'s are the
    caller's.
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
    saved = conn.execute(Q_PATH).fetchone() if in_transaction else None
    if saved is not None:
        # pg_temp listed (last, unless the path lists it): unlisted, it is searched first for types and relations,
        # and a migration's `CREATE DOMAIN pg_temp.regclass` would be what these reads cast to (review r28 F6)
        path = _value(saved)
        temp = "" if "pg_temp" in split_path(path) else ", pg_temp"
        conn.execute(Q_SET_PATH, (", ".join(p for p in ("pg_catalog", path.strip(), temp.lstrip(", ")) if p),))
    try:
        return _snapshot(conn, schema=schema, table=table, also=also)
    finally:
        if saved is not None and conn.info.transaction_status == psycopg.pq.TransactionStatus.INTRANS:
            conn.execute(Q_SET_PATH, (_value(saved),))


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
