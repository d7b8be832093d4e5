"""Connected: the relations a statement needs that will not be there when it runs.

``ALTER TABLE nosuch …`` against a database without ``nosuch`` fails; a lint or plan with the catalog read can say
so before the migration runs (rule A19049 ``missing-relation``). A statement's required relations are the ones it
fails without (ALTER / DROP / RENAME without IF EXISTS, CREATE INDEX ON, TRUNCATE, INSERT / UPDATE / DELETE, a
foreign key's REFERENCES, INHERITS and PARTITION OF), looked up as the server does: a qualified name in its schema,
an unqualified one on the search path in force (:meth:`~.state.Context.search_path`: the migration's SET
search_path, else the login's). A relation exists when an earlier statement of the migration made it (CREATE,
RENAME TO, SET SCHEMA) or the catalog has it and no earlier statement dropped or renamed it away.

Offline (no catalog), with a catalog read for one schema or table only, without the login's search_path (for an
unqualified name), or after a statement that runs code or makes relations it does not name (DO, CALL, ``SELECT
f()``, CREATE EXTENSION, IMPORT FOREIGN SCHEMA, CREATE SCHEMA … CREATE TABLE), nothing is known: nothing is
reported. Names starting with ``pg_`` unqualified are left alone (the system catalog, searched first, is not in
the snapshot), and indexes and sequences are not checked (a CREATE TABLE makes them without naming them).
"""

from __future__ import annotations

from typing import Any, NamedTuple

from agent19.migrate.classification.knowledge import NON_VOLATILE_FUNCTIONS, VOLATILE_FUNCTIONS
from agent19.migrate.classification.state import DEFAULT_SCHEMA, Context
from agent19.migrate.patterns.sqlnames import relation_key
from agent19.sqltree import qualified_name, walk

_KINDS = {"OBJECT_TABLE": "table", "OBJECT_VIEW": "view", "OBJECT_MATVIEW": "materialized view",
          "OBJECT_FOREIGN_TABLE": "foreign table"}
"""the object types checked, and how a message names them"""
_RENAMED_ON = {**_KINDS, "OBJECT_COLUMN": "", "OBJECT_TABCONSTRAINT": "table"}
"""RENAME of these needs its relation (a column's: of the relation type the statement names)"""
_KNOWN = VOLATILE_FUNCTIONS | NON_VOLATILE_FUNCTIONS
"""built-ins whose effect is known: calling them makes no relation"""


class Missing(NamedTuple):
    kind: str
    """"table", "view", …"""
    name: str
    """``schema.name``: an unqualified name in the first schema of the search path (where the migration's CREATE
    would put it)"""
    path: tuple[str, ...] | None
    """the search path it was looked up on; None for a qualified name"""
    gone: bool
    """it exists in the catalog, but an earlier statement of the migration dropped or renamed it away"""


def _names(items: list[dict[str, Any]]) -> dict[str, Any]:
    """A DROP's ``List`` of String name parts → a RangeVar's fields."""
    parts = [n.get("String", {}).get("sval", "") for n in items]
    return {"schemaname": parts[-2], "relname": parts[-1]} if len(parts) > 1 else {"relname": parts[-1]}


def _required(node: str, f: dict[str, Any]) -> list[tuple[str, dict[str, Any]]]:
    """``(kind, RangeVar fields)`` the statement fails without."""
    out: list[tuple[str, dict[str, Any]]] = []
    if node == "AlterTableStmt" and not f.get("missing_ok") and f.get("objtype", "OBJECT_TABLE") in _KINDS:
        out.append((_KINDS[f.get("objtype", "OBJECT_TABLE")], f.get("relation", {})))
    elif node == "AlterObjectSchemaStmt" and not f.get("missing_ok") and f.get("objectType") in _KINDS:
        out.append((_KINDS[f["objectType"]], f.get("relation", {})))
    elif node == "RenameStmt" and not f.get("missing_ok") and f.get("renameType") in _RENAMED_ON and f.get("relation"):
        kind = _RENAMED_ON[f["renameType"]] or _KINDS.get(f.get("relationType", ""), "")
        if kind:
            out.append((kind, f["relation"]))
    elif node == "DropStmt" and not f.get("missing_ok") and f.get("removeType") in _KINDS:
        out += [(_KINDS[f["removeType"]], _names(o.get("List", {}).get("items", []))) for o in f.get("objects", [])]
    elif node in ("IndexStmt", "InsertStmt", "UpdateStmt", "DeleteStmt") and f.get("relation"):
        out.append(("table", f["relation"]))
    elif node == "TruncateStmt":
        out += [("table", r.get("RangeVar", {})) for r in f.get("relations", [])]
    if node == "CreateStmt":
        out += [("table", r.get("RangeVar", {})) for r in f.get("inhRelations", [])]
    if node in ("CreateStmt", "AlterTableStmt"):  # REFERENCES: in a column's or the table's constraints
        out += [("table", con["pktable"]) for kind, con in walk([f.get("tableElts", []), f.get("cmds", [])])
                if kind == "Constraint" and con.get("contype") == "CONSTR_FOREIGN" and con.get("pktable")]
    return [(k, rv) for k, rv in out if rv.get("relname")]


def _made(node: str, f: dict[str, Any]) -> list[tuple[str, str]]:
    """``(schema or None, name)`` of the relations the statement makes under a new name."""
    rv: dict[str, Any] | None = None
    if node == "CreateStmt":
        rv = f.get("relation")
    elif node == "CreateTableAsStmt":
        rv = f.get("into", {}).get("IntoClause", {}).get("rel") or f.get("into", {}).get("rel")
    elif node == "ViewStmt":
        rv = f.get("view")
    elif node == "RenameStmt" and f.get("renameType") in _KINDS and f.get("relation"):
        return [(f["relation"].get("schemaname") or "", f.get("newname", ""))]  # "": where the old name is
    elif node == "AlterObjectSchemaStmt" and f.get("objectType") in _KINDS and f.get("relation"):
        return [(f.get("newschema"), f["relation"].get("relname", ""))]
    if not rv:
        return []
    return [("pg_temp" if rv.get("relpersistence") == "t" else rv.get("schemaname"), rv.get("relname", ""))]


def _opaque(node: str, f: dict[str, Any]) -> bool:
    """The statement runs code, or makes relations it does not name: later names may be its."""
    if node in ("DoStmt", "CallStmt", "CreateExtensionStmt", "ImportForeignSchemaStmt", "ExecuteStmt"):
        return True
    if node == "CreateSchemaStmt":
        return bool(f.get("schemaElts"))
    if node != "SelectStmt" or f.get("fromClause"):  # SELECT f(): called for what it does
        return False
    for kind, call in walk(f):  # a built-in whose effect is known (setval, pg_advisory_lock…) makes nothing
        if kind == "FuncCall":
            name = qualified_name(call.get("funcname", []))
            if name.removeprefix("pg_catalog.") not in _KNOWN and not name.startswith("pg_"):
                return True
    return False


def missing_relations(node: str, f: dict[str, Any], ctx: Context) -> list[Missing]:
    """The relations the statement (``node`` type, parse-tree ``f``ields) needs that do not exist when it runs, as
    far as ``ctx`` (the catalog and the migration so far) knows; records what it makes for the statements after
    it. Call it before the statement is classified (which records its drops)."""
    catalog, state = ctx.catalog, ctx.state
    if catalog is None or catalog.filtered:
        return []
    if state.opaque or _opaque(node, f):
        state.opaque = True  # from here on, which relations exist is not known
        return []
    path = ctx.search_path()
    first = path[0] if path else DEFAULT_SCHEMA  # none usable: a CREATE fails, every unqualified look-up too
    for schema, name in _made(node, f):
        if schema == "":  # renamed in the schema the old name resolves to
            old = f["relation"]["relname"]
            schema = next((s for s in path if _exists(ctx, s, old)), None)
        state.made.add(relation_key(schema or first, name))
    known_path = state.path is not None or catalog.search_path is not None
    missing: list[Missing] = []
    for kind, rv in _required(node, f):
        rel, schema = rv["relname"], rv.get("schemaname")
        if schema:
            if schema.startswith("pg_") or schema == "information_schema" or _exists(ctx, schema, rel):
                continue
            missing.append(Missing(kind, relation_key(schema, rel), None, relation_key(schema, rel) in state.dropped))
            continue
        if not known_path or rel.startswith("pg_") or relation_key("pg_temp", rel) in state.made or any(
                _exists(ctx, s, rel) for s in path):
            continue
        gone = any(relation_key(s, rel) in state.dropped for s in path)
        missing.append(Missing(kind, relation_key(first, rel), tuple(path), gone))
    return missing


def _exists(ctx: Context, schema: str, name: str) -> bool:
    key = relation_key(schema, name)
    if key in ctx.state.made:
        return True
    return ctx.catalog is not None and ctx.catalog.has_relation(schema, name) and key not in ctx.state.dropped
