"""Breaking-change evidence for drops the lint rules do not cover: views, functions and procedures, primary keys
and unique constraints.

What running clients lose, and how it is known:

* a view (or materialized view): queries that read it fail. With the catalog: whether it exists and which views
  read it (``DROP`` then fails without ``CASCADE``, and ``CASCADE`` drops them too).
* a function or procedure: callers fail. PostgreSQL records some of them (views, triggers, defaults, constraints,
  SQL-standard function bodies — ``pg_depend``, read live by :func:`live_function_evidence`); calls from
  application code and from PL/pgSQL bodies are never recorded, so they are named as unknown.
* a primary key or unique constraint: the uniqueness clients rely on (``ON CONFLICT``, lookups that expect one
  row) and the foreign keys that reference it (``DROP`` fails without ``CASCADE``; ``CASCADE`` drops them). A
  CHECK or foreign-key constraint breaks no client and raises nothing.

Without a database none of this can be checked: the evidence says so, and that a database (``--dsn``) decides.
A drop of an object the catalog does not hold raises nothing (``IF EXISTS`` makes it a no-op; otherwise the
statement fails). A drop followed later in the same migration by a create of the same view, function (same
argument types) or key (same name on the same table) is a replacement — the way to change a view's columns
or a function's return type — and raises nothing either.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any, Literal

import psycopg
from pglast.parser import ParseError
from psycopg.rows import tuple_row

from agent19.db.models import SchemaSnapshot
from agent19.migrate.classification.state import Context, default_schema, one_session
from agent19.migrate.lint.rules._base import norm, rel_name
from agent19.migrate.patterns.sqlnames import relation_key
from agent19.migrate.planning.model import PlannedOperation
from agent19.sqltree import parse_json, qualified_name

FUNCTION_KINDS = {"OBJECT_FUNCTION": "function", "OBJECT_PROCEDURE": "procedure", "OBJECT_ROUTINE": "routine"}
VIEW_KINDS = {"OBJECT_VIEW": "view", "OBJECT_MATVIEW": "materialized view"}
NO_DATABASE = "cannot check without a database (pass --dsn)"


@dataclass(frozen=True)
class Drop:
    kind: Literal["view", "materialized view", "function", "procedure", "routine", "constraint"]
    name: str
    """schema.name of a view; the signature of a function as written; a constraint's name"""
    table: str | None = None
    """the constraint's table"""


def _type_name(t: dict[str, Any]) -> str:
    return qualified_name(t.get("names", [])).removeprefix("pg_catalog.") + ("[]" if t.get("arrayBounds") else "")


def _family(kind: str) -> str:
    return "view" if kind in VIEW_KINDS.values() else "function" if kind in FUNCTION_KINDS.values() else kind


def _signature(funcname: list[dict[str, Any]], params: list[dict[str, Any]]) -> str:
    types = [_type_name(p["FunctionParameter"].get("argType", {})) for p in params if "FunctionParameter" in p
             and p["FunctionParameter"].get("mode", "FUNC_PARAM_DEFAULT") in ("FUNC_PARAM_DEFAULT", "FUNC_PARAM_IN",
                                                                             "FUNC_PARAM_VARIADIC")]
    return f"{qualified_name(funcname)}({', '.join(types)})"


def _statements(sql: str) -> list[dict[str, Any]]:
    """The top-level statement nodes of ``sql`` (none when it does not parse: the plan reports that elsewhere)."""
    try:
        return [s.get("stmt", {}) for s in parse_json(sql)]
    except ParseError:
        return []


_MAY_CREATE = re.compile(r"view|function|procedure|primary|unique", re.IGNORECASE)
"""A keyword each statement :func:`creates_of` reads is written with (CREATE VIEW, CREATE MATERIALIZED VIEW, CREATE
FUNCTION / PROCEDURE, ADD PRIMARY KEY / UNIQUE): a text without any creates none of them and is not parsed (most of
a plan's operations; each was parsed again, twice per plan)."""


def creates_of(sql: str) -> list[Drop]:
    """What ``sql`` creates that :func:`drops_of` could have dropped (same keys): views, functions, keys."""
    out: list[Drop] = []
    if not _MAY_CREATE.search(sql):
        return out
    for stmt in _statements(sql):
        node, f = next(iter(stmt.items()), ("", {}))
        if node == "ViewStmt" or (node == "CreateTableAsStmt" and f.get("objtype") == "OBJECT_MATVIEW"):
            rel = f.get("view") or f.get("into", {}).get("rel", {})
            out.append(Drop("view", rel_name(rel, create=True)))
        elif node == "CreateFunctionStmt":
            out.append(Drop("function", _signature(f.get("funcname", []), f.get("parameters", []))))
        elif node == "AlterTableStmt":
            rel = f.get("relation", {})
            table = rel_name(rel)
            for c in f.get("cmds", []):
                con = c.get("AlterTableCmd", {}).get("def", {}).get("Constraint", {})
                if con.get("contype") in ("CONSTR_PRIMARY", "CONSTR_UNIQUE") and con.get("conname"):
                    out.append(Drop("constraint", con["conname"], table))
    return out


def _replaced(d: Drop, later: list[Drop]) -> bool:
    for c in later:
        if _family(c.kind) != _family(d.kind) or c.table != d.table:
            continue
        if c.name == d.name or (_family(d.kind) == "function" and "(" not in d.name
                                and c.name.split("(", 1)[0] == d.name):
            return True
    return False


def drops_of(sql: str) -> list[Drop]:
    """The views, functions and constraints ``sql`` (one operation's statement) drops."""
    out: list[Drop] = []
    for stmt in _statements(sql):
        if "DropStmt" in stmt:
            f = stmt["DropStmt"]
            kind = f.get("removeType", "")
            for obj in f.get("objects", []):
                if kind in VIEW_KINDS:
                    items = [i.get("String", {}).get("sval", "") for i in obj.get("List", {}).get("items", [])]
                    schema = items[-2] if len(items) > 1 else default_schema(items[-1])
                    name = relation_key(schema, items[-1])
                    out.append(Drop(VIEW_KINDS[kind], name))  # type: ignore[arg-type]
                elif kind in FUNCTION_KINDS and "ObjectWithArgs" in obj:
                    o = obj["ObjectWithArgs"]
                    name = qualified_name(o.get("objname", []))
                    if not o.get("args_unspecified"):
                        name += "(" + ", ".join(_type_name(a.get("TypeName", {})) for a in o.get("objargs", [])) + ")"
                    out.append(Drop(FUNCTION_KINDS[kind], name))  # type: ignore[arg-type]
        elif "AlterTableStmt" in stmt:
            rel = stmt["AlterTableStmt"].get("relation", {})
            table = rel_name(rel)
            for c in stmt["AlterTableStmt"].get("cmds", []):
                cmd = c.get("AlterTableCmd", {})
                if cmd.get("subtype") == "AT_DropConstraint":
                    out.append(Drop("constraint", cmd.get("name", ""), table))
    return out


def _view(o: int, d: Drop, catalog: SchemaSnapshot | None) -> str | None:
    what = f"operation {o} drops {d.kind} {d.name}: queries and clients that read it fail"
    if catalog is None:
        return f"{what}; {NO_DATABASE} whether it exists or what depends on it"
    if not any(relation_key(v.schema_name, v.name) == d.name for v in catalog.views):
        return None
    readers = sorted(f"{v.schema_name}.{v.name}" for v in catalog.views
                     if d.name in {norm(x) for x in v.depends_on})
    return f"{what}; it exists (catalog)" + (
        f"; views that read it: {', '.join(readers)} (DROP fails without CASCADE; CASCADE drops them too)"
        if readers else "; no other view reads it")


def _function(o: int, d: Drop, catalog: SchemaSnapshot | None) -> str:
    what = (f"operation {o} drops {d.kind} {d.name}: its callers fail - application code and PL/pgSQL bodies are "
            "never recorded by PostgreSQL, so they cannot be listed")
    return f"{what}; {NO_DATABASE} whether it exists or what depends on it" if catalog is None else what


def _constraint(o: int, d: Drop, catalog: SchemaSnapshot | None) -> str | None:
    if catalog is None:
        return (f"operation {o} drops constraint {d.name} of {d.table}: {NO_DATABASE} whether it is a primary key "
                "or unique constraint that clients (ON CONFLICT, single-row lookups) and foreign keys rely on")
    table = catalog.table(d.table or "")
    con = next((c for c in table.constraints if c.name == d.name), None) if table else None
    if table is None or con is None or con.type not in ("primary_key", "unique"):
        return None
    cols = sorted(con.columns)
    refs = sorted(f"{t.schema_name}.{t.name}.{c.name}" for t in catalog.tables for c in t.constraints
                  if c.type == "foreign_key" and c.references_table
                  and norm(c.references_table) == table.qualified_name
                  and sorted(c.references_columns) == cols)
    kind = "primary key" if con.type == "primary_key" else "unique constraint"
    return (f"operation {o} drops the {kind} {d.name} of {d.table} ({', '.join(con.columns)}): duplicates become "
            "possible and ON CONFLICT on these columns fails" + (
                f"; foreign keys that reference it: {', '.join(refs)} (DROP fails without CASCADE; CASCADE drops "
                "them, and with them the integrity they enforce)" if refs else "; no foreign key references it"))


def breaking_drops(planned: list[PlannedOperation], catalog: SchemaSnapshot | None) -> dict[int, list[str]]:
    """Operation order → evidence that its drop of a view, function or key breaks running clients (an unqualified
    name: the one the catalog's session resolves it to)."""
    out: dict[int, list[str]] = {}
    with one_session(Context(catalog, catalog.major_version if catalog else 0, True)):
        drops = removed(planned)
    for p, d in drops:
        if d.kind == "constraint":
            why = _constraint(p.order, d, catalog)
        elif d.kind in VIEW_KINDS.values():
            why = _view(p.order, d, catalog)
        else:
            why = _function(p.order, d, catalog)
        if why:
            out.setdefault(p.order, []).append(why)
    return out


def removed(planned: list[PlannedOperation]) -> list[tuple[PlannedOperation, Drop]]:
    """The views, functions and constraints the migration drops and does not create again later — nor, for a
    function, created earlier itself (a pattern's sync trigger function: no client that predates the migration
    calls it; a compatibility view created earlier is still read by old clients until they are deployed away)."""
    created = [(p.order, c) for p in planned for c in creates_of(p.sql)]
    return [(p, d) for p in planned if p.type in ("drop_view", "drop_object", "drop_constraint")
            for d in drops_of(p.sql) if not _replaced(d, [c for o, c in created if o > p.order])
            and not (_family(d.kind) == "function" and _replaced(d, [c for o, c in created if o < p.order]))]


Q_FUNCTION = "SELECT {lookup}(%s)::oid"
Q_SAME_NAME = """SELECT count(*) FROM pg_proc p WHERE p.proname = %s
   AND (p.pronamespace::regnamespace::text = %s::text OR (%s::text IS NULL AND pg_function_is_visible(p.oid)))"""
Q_DEPENDENTS = """
SELECT DISTINCT coalesce(
         (SELECT 'view ' || r.ev_class::regclass::text FROM pg_rewrite r
           WHERE d.classid = 'pg_rewrite'::regclass AND r.oid = d.objid),
         pg_describe_object(d.classid, d.objid, d.objsubid)) AS dependent
  FROM pg_depend d
 WHERE d.refclassid = 'pg_proc'::regclass AND d.refobjid = %s AND d.deptype = 'n'
 ORDER BY 1"""


Q_VIEW_FUNCTIONS = """
SELECT DISTINCT d.objid::regprocedure::text FROM pg_depend d
 WHERE d.refclassid = 'pg_class'::regclass AND d.refobjid = to_regclass(%s) AND d.classid = 'pg_proc'::regclass
   AND d.deptype = 'n'
 ORDER BY 1"""


def live_function_evidence(conn: psycopg.Connection[Any],
                           planned: list[PlannedOperation]) -> tuple[dict[int, list[str]], set[int]]:
    """Operation order → what the live catalog records about each dropped function: whether it exists and
    what depends on it (``pg_depend``), and the operations that drop only functions that do not exist (no
    client can be calling them). Readable by any login."""
    out: dict[int, list[str]] = {}
    missing: set[int] = set()
    present: set[int] = set()
    for p, d in removed(planned):
        if d.kind in VIEW_KINDS.values():
            with conn.cursor(row_factory=tuple_row) as cur:
                callers = [r[0] for r in cur.execute(Q_VIEW_FUNCTIONS, (d.name,)).fetchall()]
            if callers:  # the snapshot's evidence names dependent views; SQL-standard function bodies only pg_depend
                out.setdefault(p.order, []).append(
                    f"operation {p.order}: functions whose SQL-standard bodies read {d.name}: {', '.join(callers)} "
                    "(DROP fails without CASCADE; CASCADE drops them too)")
            continue
        if d.kind not in FUNCTION_KINDS.values():
            continue
        lookup = "to_regprocedure" if d.name.endswith(")") else "to_regproc"
        with conn.cursor(row_factory=tuple_row) as cur:
            row = cur.execute(Q_FUNCTION.format(lookup=lookup), (d.name,)).fetchone()
            oid = row[0] if row else None
            if oid is None and lookup == "to_regproc":  # NULL also when the name is ambiguous
                schema, _, name = d.name.rpartition(".")
                same = cur.execute(Q_SAME_NAME, (name, schema or None, schema or None)).fetchone()
                if same and same[0] > 1:
                    out.setdefault(p.order, []).append(
                        f"operation {p.order}: {d.name} names {same[0]} functions (the DROP fails: give the argument "
                        "types)")
                    continue
            if oid is None:
                missing.add(p.order)
                out.setdefault(p.order, []).append(f"operation {p.order}: {d.kind} {d.name} does not exist in the live "
                                                   "catalog (IF EXISTS: nothing is dropped; otherwise the statement "
                                                   "fails)")
                continue
            deps = [r[0] for r in cur.execute(Q_DEPENDENTS, (oid,)).fetchall()]
        present.add(p.order)
        out.setdefault(p.order, []).append(
            f"operation {p.order}: {d.kind} {d.name} exists (live catalog); " + (
                f"recorded dependents: {', '.join(deps)} (DROP fails without CASCADE; CASCADE drops them too)"
                if deps else "nothing in the catalog depends on it"))
    return out, missing - present
