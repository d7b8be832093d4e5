"""The user code a statement agent19 cannot measure will run, judged before it runs (execute mode).

A write runs in a savepoint and is measured (:mod:`agent19.safety.measure`) before it is kept. Some kinds cannot
run in a transaction block (:func:`agent19.safety.kinds.runs_outside_transaction`: CREATE INDEX / REINDEX …
CONCURRENTLY, VACUUM, REINDEX SCHEMA/SYSTEM/DATABASE, CLUSTER without a table) or run unmeasured by choice (REFRESH
MATERIALIZED VIEW CONCURRENTLY), so nothing can be tried and rolled back. They still run user code: an index build
evaluates the index's expressions and predicate for every row and its operator classes' functions; VACUUM FULL,
CLUSTER and REINDEX rebuild every index of their tables, plain VACUUM summarizes BRIN ranges and VACUUM ANALYZE
samples expression indexes and extended statistics; a refresh runs the view's query. A function declared
IMMUTABLE may call a VOLATILE one that deletes a table (review r27 k13).

So such a statement runs without a confirmation only when the code it will run passes the read guard's catalog
walk (:class:`agent19.safety.readonly_catalog.Resolver`): every function reached, through PL/pgSQL and SQL bodies,
operators, casts and views, is stable or immutable (or a known harmless built-in), none is deny-listed (side
effects: server files, large objects, sessions, settings, locks, other servers, SQL run from a string), none is in
a language agent19 cannot read, runs ``EXECUTE``, or is SECURITY DEFINER — and no C function outside the
extensions agent19 knows. Otherwise :func:`finding` returns an ``unverifiable`` finding: the confirmation
protocol, which runs it (outside a transaction block) only once a human confirms. The walk is the read-only
question on purpose: the trial closure (:mod:`agent19.safety.closure`) asks what escapes a rollback, and a DELETE
does not — here nothing is rolled back.

The code is followed from the catalog, not guessed from the statement's text: ``pg_get_indexdef`` of every
expression or partial index of the tables the statement processes (with partitions and inheritance children; for
VACUUM/CLUSTER without a table, every table the login may process, for REINDEX SCHEMA/DATABASE/SYSTEM every table
there), the user functions of their operator classes and extended statistics, ``pg_get_viewdef`` of a materialized
view. A new index (CREATE INDEX CONCURRENTLY) is read from the statement itself, as the server resolves its names.
"""

from __future__ import annotations

from typing import Any

from agent19.migrate.parse import Statement
from agent19.safety import kinds
from agent19.safety.detect import Finding, Risk
from agent19.safety.function_facts import KNOWN_EXTENSIONS, denied_in_reads
from agent19.safety.readonly import DENIED_COLUMNS, DENIED_RELATIONS, HARMLESS_VOLATILE
from agent19.safety.readonly_catalog import FIRST_NORMAL_OID, Resolver
from agent19.sqltree import parse_json

QUALIFIED_SQL = True
"""Every statement here names its functions, operators, types and catalog relations ``pg_catalog.``-qualified: an
overload the login owns is not what it calls (tests/test_qualified_sql.py)."""
EQ, NE = "OPERATOR(pg_catalog.=)", "OPERATOR(pg_catalog.<>)"
_TABLES = f"""c.relkind {EQ} ANY ('{{r,m,p}}'::pg_catalog."char"[])"""
_PROCESSABLE = f"""({_TABLES} AND (pg_catalog.pg_has_role(c.relowner, 'USAGE')
  OR (NOT c.relisshared AND pg_catalog.pg_has_role((SELECT datdba FROM pg_catalog.pg_database
                                                     WHERE datname {EQ} pg_catalog.current_database()), 'USAGE'))))"""
Q_EVERY_TABLE = f"SELECT c.oid::bigint AS oid FROM pg_catalog.pg_class c WHERE {_PROCESSABLE}"
"""Every table VACUUM, ANALYZE or CLUSTER without a table may process: the login's own (and every one when it
owns the database), a superset of what the server processes."""
Q_SCHEMA_TABLES = f"""SELECT c.oid::bigint AS oid FROM pg_catalog.pg_class c
 WHERE {_TABLES} AND c.relnamespace {EQ} pg_catalog.to_regnamespace(%s)"""
Q_CATALOG_TABLES = f"SELECT c.oid::bigint AS oid FROM pg_catalog.pg_class c WHERE {_TABLES}"
Q_RELATION = "SELECT pg_catalog.to_regclass(%s)::pg_catalog.oid::bigint AS oid"
_FAMILY_FUNCS = f"""ARRAY(SELECT f::bigint FROM (
    SELECT p.amproc AS f FROM pg_catalog.pg_amproc p WHERE p.amprocfamily {EQ} ANY (SELECT opcfamily FROM opc)
    UNION SELECT o.oprcode FROM pg_catalog.pg_amop a JOIN pg_catalog.pg_operator o ON o.oid {EQ} a.amopopr
     WHERE a.amopfamily {EQ} ANY (SELECT opcfamily FROM opc)
    UNION SELECT d.refobjid FROM pg_catalog.pg_depend d
     WHERE d.classid {EQ} 'pg_catalog.pg_statistic_ext'::pg_catalog.regclass AND d.objid {EQ} ANY (SELECT oid FROM stx)
       AND d.refclassid {EQ} 'pg_catalog.pg_proc'::pg_catalog.regclass
    UNION SELECT o.oprcode FROM pg_catalog.pg_depend d JOIN pg_catalog.pg_operator o ON o.oid {EQ} d.refobjid
     WHERE d.classid {EQ} 'pg_catalog.pg_statistic_ext'::pg_catalog.regclass AND d.objid {EQ} ANY (SELECT oid FROM stx)
       AND d.refclassid {EQ} 'pg_catalog.pg_operator'::pg_catalog.regclass) x
   WHERE f OPERATOR(pg_catalog.>=) {FIRST_NORMAL_OID}) AS funcs"""
# the indexes of the relations (an index named itself), partitions and inheritance children included: their
# definitions when they have expressions or a predicate, and the user functions their operator classes and the
# tables' extended statistics use (built-ins among them are immutable C code)
Q_CODE = f"""
WITH RECURSIVE rel(oid) AS (
    SELECT pg_catalog.unnest(%(rels)s::pg_catalog.oid[])
  UNION SELECT i.inhrelid FROM pg_catalog.pg_inherits i JOIN rel ON i.inhparent {EQ} rel.oid),
idx AS (SELECT x.indexrelid, x.indclass, x.indexprs IS NOT NULL OR x.indpred IS NOT NULL AS code
          FROM pg_catalog.pg_index x
         WHERE x.indexrelid {EQ} ANY (SELECT oid FROM rel) OR x.indrelid {EQ} ANY (SELECT oid FROM rel)),
opc AS (SELECT DISTINCT oc.opcfamily FROM idx CROSS JOIN pg_catalog.unnest(idx.indclass::pg_catalog.oid[]) u(c)
          JOIN pg_catalog.pg_opclass oc ON oc.oid {EQ} u.c),
stx AS (SELECT s.oid FROM pg_catalog.pg_statistic_ext s WHERE s.stxrelid {EQ} ANY (SELECT oid FROM rel))
SELECT ARRAY(SELECT pg_catalog.pg_get_indexdef(indexrelid) FROM idx WHERE code ORDER BY indexrelid) AS defs,
       {_FAMILY_FUNCS},
       ARRAY(SELECT 'SELECT * FROM (' OPERATOR(pg_catalog.||) pg_catalog.rtrim(pg_catalog.pg_get_viewdef(oid), ';')
                    OPERATOR(pg_catalog.||) ') q'
               FROM rel WHERE oid {EQ} ANY (SELECT c.oid FROM pg_catalog.pg_class c WHERE c.relkind {EQ} 'm')) AS views
"""
# a new index's operator classes: those it names (any schema), and the access method's default ones for the types of
# the plain columns it indexes (an expression's type is the server's to infer: not followed)
Q_NEW_INDEX = f"""
WITH opc AS (SELECT oc.opcfamily FROM pg_catalog.pg_opclass oc JOIN pg_catalog.pg_am am ON am.oid {EQ} oc.opcmethod
              WHERE am.amname {EQ} %(am)s
                AND (oc.opcname {EQ} ANY (%(named)s) OR (oc.opcdefault AND oc.opcintype {EQ} ANY (
                    SELECT COALESCE(CASE WHEN t.typbasetype {EQ} 0 THEN NULL ELSE t.typbasetype END, t.oid)
                      FROM pg_catalog.pg_attribute a JOIN pg_catalog.pg_type t ON t.oid {EQ} a.atttypid
                     WHERE a.attrelid {EQ} %(rel)s AND a.attname {EQ} ANY (%(cols)s))))),
     stx AS (SELECT 0::pg_catalog.oid AS oid WHERE false)
SELECT {_FAMILY_FUNCS}
"""
# C code agent19 cannot read among the functions reached: not built in, not of an extension it knows
Q_UNKNOWN_C = f"""
SELECT p.oid::pg_catalog.regprocedure::pg_catalog.text AS what FROM pg_catalog.pg_proc p
  JOIN pg_catalog.pg_language l ON l.oid {EQ} p.prolang
 WHERE p.oid {EQ} ANY (%s::pg_catalog.oid[]) AND p.oid OPERATOR(pg_catalog.>=) {FIRST_NORMAL_OID}
   AND l.lanname {NE} ALL ('{{sql,plpgsql}}'::pg_catalog.name[])
   AND NOT EXISTS (SELECT 1 FROM pg_catalog.pg_depend e JOIN pg_catalog.pg_extension x ON x.oid {EQ} e.refobjid
                    WHERE e.classid {EQ} 'pg_catalog.pg_proc'::pg_catalog.regclass AND e.objid {EQ} p.oid
                      AND e.deptype {EQ} 'e' AND x.extname {EQ} ANY (%s))
 ORDER BY 1 LIMIT 1
"""


class _Reaches(Exception):
    """The code reached may change something (or cannot be read): what, in the read guard's words."""


def _refuse(what: str, _hint: str = "") -> _Reaches:
    return _Reaches(what)


def _word(st: Statement) -> str:
    """The statement's kind as written, e.g. ``CREATE INDEX CONCURRENTLY``."""
    words = st.sql.split()
    n = {"IndexStmt": 4 if len(words) > 3 and words[1].upper() == "UNIQUE" else 3,
         "RefreshMatViewStmt": 4,
         "ReindexStmt": 3 if len(words) > 2 and words[2].upper() == "CONCURRENTLY" else 2}.get(st.node, 1)
    return " ".join(words[:n]).upper() if st.node != "VacuumStmt" else "VACUUM"


def _quoted(rv: dict[str, Any]) -> str:
    return ".".join('"' + p.replace('"', '""') + '"' for p in (rv.get("schemaname"), rv.get("relname")) if p)


def _relations(conn: Any, st: Statement) -> tuple[list[int], str]:
    """The relations whose indexes (and views) ``st`` runs, and how to say which."""
    f = st.fields
    named: list[dict[str, Any]] = []
    if st.node == "VacuumStmt":
        named = [r.get("VacuumRelation", {}).get("relation") or {} for r in f.get("rels") or []]
    elif st.node == "ReindexStmt" and f.get("kind") == "REINDEX_OBJECT_SCHEMA":
        rows = conn.execute(Q_SCHEMA_TABLES, (f.get("name") or "",)).fetchall()
        return [r["oid"] for r in rows], f"the indexes of every table in schema {f.get('name')}"
    elif st.node == "ReindexStmt" and f.get("kind") in ("REINDEX_OBJECT_SYSTEM", "REINDEX_OBJECT_DATABASE"):
        return [r["oid"] for r in conn.execute(Q_CATALOG_TABLES).fetchall()], "the indexes of every table"
    elif f.get("relation"):
        named = [f["relation"]]
    if not named:
        rows = conn.execute(Q_EVERY_TABLE).fetchall()
        return [r["oid"] for r in rows], "the indexes of every table it may process"
    oids = []
    for rv in named:
        row = conn.execute(Q_RELATION, (_quoted(rv),)).fetchone()
        if row and row["oid"] is not None:  # else the server refuses the statement itself
            oids.append(row["oid"])
    what = "the query and indexes of" if st.node == "RefreshMatViewStmt" else "the indexes of"
    return oids, f"{what} {', '.join(_quoted(rv).replace(chr(34), '') for rv in named)}"


def reaches(conn: Any, st: Statement) -> str | None:
    """Why the user code ``st`` will run may change something (or cannot be read), with where it is; None when it
    passes (or ``st`` runs in a measured transaction). ``conn``: a session on the target (catalog reads only)."""
    if not kinds.runs_outside_transaction(st) or st.node in ("CreatedbStmt", "DropdbStmt", "DropStmt"):
        return None  # DROP INDEX CONCURRENTLY and DROP DATABASE run no user code, and only once confirmed
    resolver = Resolver(conn, _refuse, denied_function=denied_in_reads, denied_relations=DENIED_RELATIONS,
                        denied_columns=DENIED_COLUMNS, harmless_volatile=HARMLESS_VOLATILE)
    try:
        if st.node == "IndexStmt":
            where = "the expressions and predicate of the index it builds"
            resolver.check_statement(st.tree, planning_only=False)
            _check_new_index(conn, resolver, st.fields)
        else:
            rels, where = _relations(conn, st)
            _check_code(conn, resolver, rels)
        if row := conn.execute(Q_UNKNOWN_C, (sorted(resolver.seen_functions), sorted(KNOWN_EXTENSIONS))).fetchone():
            raise _Reaches(f"{row['what']} is C code outside the extensions agent19 knows: it cannot see what it does")
    except _Reaches as exc:
        return f"the code in {where} does not: {exc}"
    return None


def _check_new_index(conn: Any, resolver: Resolver, f: dict[str, Any]) -> None:
    """The user functions of the operator classes a new index uses (its expressions are in the statement)."""
    row = conn.execute(Q_RELATION, (_quoted(f.get("relation") or {}),)).fetchone()
    if row is None or row["oid"] is None:
        return  # the server refuses the statement itself
    elems = [p.get("IndexElem", {}) for p in (f.get("indexParams") or []) + (f.get("indexIncludingParams") or [])]
    named = [str(n.get("String", {}).get("sval", "")) for e in elems for n in (e.get("opclass") or [])[-1:]]
    cols = [str(e["name"]) for e in elems if e.get("name")]
    row = conn.execute(Q_NEW_INDEX, {"am": f.get("accessMethod") or "btree", "named": named, "rel": row["oid"],
                                     "cols": cols}).fetchone()
    resolver.check_functions({int(x) for x in row["funcs"] or []}, top_level=True, planning_only=False)


def _check_code(conn: Any, resolver: Resolver, rels: list[int]) -> None:
    """The code of the relations' indexes, extended statistics and materialized views."""
    row = conn.execute(Q_CODE, {"rels": rels}).fetchone()
    resolver.check_functions({int(x) for x in row["funcs"] or []}, top_level=True, planning_only=False)
    for text in [*(row["defs"] or []), *(row["views"] or [])]:
        for tree in parse_json(text):
            resolver.check_statement(tree, planning_only=False)


def finding(conn: Any, st: Statement) -> Finding | None:
    """An ``unverifiable`` finding when ``st`` cannot be measured and the code it runs may change something."""
    why = reaches(conn, st)
    if why is None:
        return None
    kind = _word(st)
    instead = (" (or build it without CONCURRENTLY: measured like any write, but it blocks writes to the table while "
               "it builds)" if st.node == "IndexStmt" else
               " (ANALYZE alone runs in a transaction and is measured)" if st.node == "VacuumStmt" else "")
    return Finding(statement=st.index, line=st.line, kind="unverifiable", risk=Risk.HIGH, data_loss=True,
                   reason=f"{kind} cannot run inside a transaction, so agent19 cannot try it and measure what it "
                   "changes; without a confirmation it runs only code that passes the read-only guard's checks, "
                   f"and {why}. Confirm it only if that code is meant to run{instead}")
