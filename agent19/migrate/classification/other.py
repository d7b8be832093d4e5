"""Choose the knowledge-table form of every statement other than ``ALTER TABLE`` sub-commands."""

from __future__ import annotations

import json
from typing import Any

import pglast

from agent19.migrate.classification.session_path import set_config_calls, set_statement, transaction
from agent19.migrate.classification.state import (
    DEFAULT_SCHEMA,
    Context,
    Decision,
    default_schema,
    if_not_exists,
    range_name,
)
from agent19.migrate.parse import Statement
from agent19.migrate.patterns.sqlnames import ident, qname, qualified, relation_key, split_name
from agent19.sqltree import walk

LOCK_MODES = {
    1: "AccessShareLock", 2: "RowShareLock", 3: "RowExclusiveLock", 4: "ShareUpdateExclusiveLock", 5: "ShareLock",
    6: "ShareRowExclusiveLock", 7: "ExclusiveLock", 8: "AccessExclusiveLock",
}
CREATE_OBJECTS = {
    "CreateEnumStmt", "CreateFunctionStmt", "CreateSchemaStmt", "CreateExtensionStmt", "CreateDomainStmt",
    "CompositeTypeStmt", "DefineStmt", "CreateRangeStmt", "AlterFunctionStmt", "AlterExtensionStmt",
    "CreateCastStmt", "CreateRoleStmt", "AlterRoleStmt", "CreateEventTrigStmt", "AlterDomainStmt",
}
DROP_FORMS = {
    "OBJECT_TABLE": "drop_table", "OBJECT_FOREIGN_TABLE": "drop_foreign_table", "OBJECT_INDEX": "drop_index",
    "OBJECT_VIEW": "drop_view", "OBJECT_MATVIEW": "drop_materialized_view", "OBJECT_SEQUENCE": "drop_sequence",
    "OBJECT_SCHEMA": "drop_schema", "OBJECT_EXTENSION": "drop_extension", "OBJECT_TYPE": "drop_type",
    "OBJECT_DOMAIN": "drop_domain", "OBJECT_TRIGGER": "drop_trigger",
}
"""DROP's object type → its knowledge-table form (every other object type: ``drop_object``)."""
RELATION_DROPS = {"drop_foreign_table", "drop_view", "drop_materialized_view", "drop_sequence"}
"""Forms whose objects are relations: they are the statement's targets (their locks are observed)."""


def _sources(tree: Any) -> list[str]:
    return list(dict.fromkeys(range_name(f) for node, f in walk(tree) if node == "RangeVar"))


def _names(items: list[dict[str, Any]]) -> list[str]:
    return [i.get("String", {}).get("sval", "") for i in items]


def _object_name(obj: dict[str, Any]) -> str:
    if "String" in obj:  # a schema, extension or other unqualified object
        return str(obj["String"].get("sval", ""))
    names = _names(obj.get("List", {}).get("items", []) or obj.get("TypeName", {}).get("names", [])
                    or obj.get("ObjectWithArgs", {}).get("objname", []))
    if len(names) > 1:
        return relation_key(*names[-2:])
    return relation_key(default_schema(names[0]), names[0]) if names else ""


def render_subcommands(sql: str, count: int) -> list[str]:
    """Each sub-command of a multi-command ALTER TABLE as its own statement (pglast's deparser).

    Falls back to the original text for every sub-command when deparsing fails.
    """
    try:
        from pglast import ast, parse_sql
        from pglast.stream import RawStream

        stmt = parse_sql(sql)[0].stmt
        return [
            RawStream()(ast.AlterTableStmt(relation=stmt.relation, cmds=(cmd,), objtype=stmt.objtype,
                                           missing_ok=stmt.missing_ok))
            for cmd in stmt.cmds
        ]
    except Exception:  # noqa: BLE001 - the deparser is best effort; the original text is always right
        return [sql] * count


def decide_statement(stmt: Statement, ctx: Context) -> Decision:  # noqa: C901 - one dispatch over node types
    node, f = stmt.node, stmt.fields
    state = ctx.state
    if node == "CreateStmt":
        table = range_name(f.get("relation", {}), create=True)
        if ctx.table(table) is None:  # already in the live catalog (IF NOT EXISTS, a set partly applied): not new
            state.created.add(table)
        exists = ctx.relation_exists(table)
        state.dropped.discard(table)  # dropped earlier, made again: later statements find it
        refs = [range_name(c["pktable"]) for n, c in walk(f.get("tableElts", [])) if n == "Constraint"
                and c.get("contype") == "CONSTR_FOREIGN" and "pktable" in c
                ] if stmt.may_contain("CONSTR_FOREIGN") else []  # no walk of a table without a foreign key
        from agent19.migrate.classification.alter import type_of

        for elt in f.get("tableElts", []):
            if "ColumnDef" in elt:
                coldef = elt["ColumnDef"]
                state.add_column(table, coldef.get("colname", ""), type_of(coldef.get("typeName", {})))
        spec = f.get("partspec", {})
        if spec:
            state.partition_keys[table] = [p["PartitionElem"].get("name", "") for p in spec.get("partParams", [])
                                           if "PartitionElem" in p]
        others = [r for r in refs if r != table]
        notes = []
        if "partbound" in f and f.get("inhRelations"):
            notes.append("PARTITION OF also locks the parent table (AccessExclusiveLock before 12 for attach)")
        form = "create_table.with_foreign_key" if others else "create_table"
        inverse = f"DROP TABLE {qname(table)}"
        return Decision(form, [table], others, **if_not_exists(table, exists, inverse, notes,
                                                               guarded=bool(f.get("if_not_exists"))))
    if node == "CreateTableAsStmt":
        into = range_name(f.get("into", {}).get("rel", {}), create=True)
        if ctx.table(into) is None:
            state.created.add(into)
        exists = ctx.relation_exists(into)
        state.dropped.discard(into)
        matview = f.get("objtype") == "OBJECT_MATVIEW"
        form = "create_materialized_view" if matview else "create_table_as"
        inverse = f"DROP {'MATERIALIZED VIEW' if matview else 'TABLE'} {qname(into)}"
        return Decision(form, [into], _sources(f.get("query", {})),
                        **if_not_exists(into, exists, inverse, [],
                                        guarded=bool(f.get("if_not_exists"))))
    if node == "IndexStmt":
        return _index(f, ctx)
    if node == "DropStmt":
        return _drop(f, ctx)
    if node == "TruncateStmt":
        return Decision("truncate", [range_name(r["RangeVar"]) for r in f.get("relations", []) if "RangeVar" in r])
    if node == "RenameStmt":
        return _rename(f, ctx)
    if node == "AlterObjectSchemaStmt" and f.get("objectType") == "OBJECT_TABLE":
        table = range_name(f.get("relation", {}))
        schema = f.get("newschema", "")
        old_schema, rel = split_name(table)
        back = ident(old_schema or DEFAULT_SCHEMA)
        return Decision("alter_table.set_schema", [table],
                        inverse=f"ALTER TABLE {qualified(schema, rel)} SET SCHEMA {back}")
    if node == "ReindexStmt":
        conc = any(p.get("DefElem", {}).get("defname") == "concurrently" for p in f.get("params", []))
        rel = range_name(f.get("relation", {})) if f.get("relation") else ""
        targets, others = [rel], []
        if f.get("kind") == "REINDEX_OBJECT_INDEX":
            owner = _index_table(rel, ctx)
            targets, others = ([owner] if owner else []), [rel]
        return Decision("reindex.concurrently" if conc else "reindex", [t for t in targets if t], others,
                        reversible=True, notes=["rebuilding an index changes no data"])
    if node == "VacuumStmt":
        rels = [range_name(r["VacuumRelation"]["relation"]) for r in f.get("rels", []) if "VacuumRelation" in r]
        opts = {d.get("DefElem", {}).get("defname") for d in f.get("options", [])}
        if not f.get("is_vacuumcmd"):
            return Decision("analyze", rels, reversible=True)
        return Decision("vacuum.full" if "full" in opts else "vacuum", rels, reversible=True)
    if node == "ClusterStmt":
        rels = [range_name(f["relation"])] if f.get("relation") else []
        return Decision("cluster", rels, reversible=True, notes=["CLUSTER changes no data, only its physical order"])
    if node == "RefreshMatViewStmt":
        form = "refresh_materialized_view.concurrently" if f.get("concurrent") else "refresh_materialized_view"
        return Decision(form, [range_name(f.get("relation", {}))], reversible=True)
    if node == "ViewStmt":
        view = range_name(f.get("view", {}), create=True)
        if not f.get("replace") and ctx.table(view) is None:
            state.created.add(view)  # a new view: nobody can be queued on it
        sources = [s for s in _sources(f.get("query", {})) if s != view]
        if f.get("replace"):
            return Decision("create_view", [view], sources, reversible=False)
        return Decision("create_view", [view], sources,
                        **if_not_exists(view, ctx.relation_exists(view), f"DROP VIEW {qname(view)}", [], guarded=False))
    if node == "CreateTrigStmt":
        table = range_name(f.get("relation", {}))
        return Decision("create_trigger", [table], inverse=f"DROP TRIGGER {ident(f.get('trigname'))} ON {qname(table)}")
    if node == "CreatePolicyStmt":
        table = range_name(f.get("table", {}))
        return Decision("create_policy", [table],
                        inverse=f"DROP POLICY {ident(f.get('policy_name'))} ON {qname(table)}")
    if node == "CommentStmt":
        objtype = f.get("objtype")
        if objtype in ("OBJECT_TABLE", "OBJECT_COLUMN"):
            names = _names(f.get("object", {}).get("List", {}).get("items", []))
            names = names[:-1] if objtype == "OBJECT_COLUMN" else names
            table = relation_key(*names[-2:]) if len(names) > 1 else relation_key(default_schema(names[0]), names[0])
            return Decision("comment", [table], reversible=True)
        return Decision("create_object", [], reversible=True, notes=["a comment on a non-table object"])
    if node == "CreateStatsStmt":
        return Decision("create_statistics", _sources(f.get("relations", [])), reversible=True)
    if node == "GrantStmt":
        return Decision("grant", [], reversible=True)
    if node == "LockStmt":
        rels = [range_name(r["RangeVar"]) for r in f.get("relations", []) if "RangeVar" in r]
        return Decision("lock_table", rels, lock=LOCK_MODES.get(f.get("mode", 8), "AccessExclusiveLock"),
                        reversible=True)
    if node == "AlterEnumStmt":
        if f.get("oldVal"):
            return Decision("create_object", [], notes=["RENAME VALUE of an enum type"], reversible=True)
        return Decision("alter_type.add_value", [], reversible=False,
                        notes=["an enum value cannot be dropped; only the whole type can be recreated"])
    if node == "CreateSeqStmt":
        seq = range_name(f.get("sequence", {}), create=True)
        inverse = f"DROP SEQUENCE {qname(seq)}"
        return Decision("create_sequence", [seq], **if_not_exists(seq, ctx.relation_exists(seq), inverse, [],
                                                                  guarded=bool(f.get("if_not_exists"))))
    if node == "AlterSeqStmt":
        return Decision("alter_sequence", [range_name(f.get("sequence", {}))], reversible=False)
    if node == "AlterSystemStmt":
        return Decision("alter_system", [])
    if node == "CreatedbStmt":
        return Decision("create_database", [])
    if node == "DropdbStmt":
        return Decision("drop_database", [])
    if node in ("UpdateStmt", "DeleteStmt", "InsertStmt"):
        return _data(node, f, ctx)
    if node == "TransactionStmt":
        kind = f.get("kind", "")
        transaction(ctx, f)
        if kind in ("TRANS_STMT_BEGIN", "TRANS_STMT_START"):
            state.explicit_transaction = True
        elif kind in ("TRANS_STMT_COMMIT", "TRANS_STMT_ROLLBACK", "TRANS_STMT_PREPARE", "TRANS_STMT_COMMIT_PREPARED"):
            state.explicit_transaction = False
        return Decision("transaction", [], reversible=True, notes=[kind.removeprefix("TRANS_STMT_")])
    if node == "VariableSetStmt":
        return _set(f, ctx)
    if node == "DoStmt":
        return Decision("do_block", [])
    if node == "SelectStmt" and stmt.may_contain("FuncCall"):  # set_config('search_path', …)
        set_config_calls(ctx, f)
    if node == "CreateSchemaStmt" and f.get("schemaname"):
        state.schemas_created.add(f["schemaname"])
    if node == "CreateFunctionStmt" and f.get("is_procedure") and (written := committing_writes(stmt.sql)) is not None:
        state.committing_procedures[_routine_name(f.get("funcname", []))] = written
    if node == "CallStmt":
        name = _routine_name(f.get("funccall", {}).get("funcname", []))
        if name in state.committing_procedures:
            return Decision("call.commits", state.committing_procedures[name])
        return Decision("call", [])
    if node in CREATE_OBJECTS:
        return Decision("create_object", [], reversible=False, notes=[f"{node}: no table lock"])
    return Decision("unknown", [], notes=[f"{node or 'empty statement'} is not in the knowledge table"])


def _routine_name(funcname: list[dict[str, Any]]) -> str:
    """A function's or procedure's own name (without its schema)."""
    names = _names(funcname)
    return names[-1] if names else ""


def committing_writes(create_sql: str) -> list[str] | None:
    """For a CREATE PROCEDURE whose PL/pgSQL body runs COMMIT or ROLLBACK (a CALL of it cannot run inside a
    transaction block): the tables its statements insert into, update or delete from; else None. Read from
    pglast's PL/pgSQL parse and each embedded statement's parse tree; a body it cannot parse is not assumed to
    commit."""
    try:
        parsed = pglast.parse_plpgsql(create_sql)
    except (pglast.parser.ParseError, ValueError):
        return None
    nodes = list(walk(parsed))
    if not any(n in ("PLpgSQL_stmt_commit", "PLpgSQL_stmt_rollback") for n, _ in nodes):
        return None
    written: list[str] = []
    for n, fields in nodes:
        query = fields.get("sqlstmt", {}).get("PLpgSQL_expr", {}).get("query") if n == "PLpgSQL_stmt_execsql" else None
        try:
            trees = pglast.parser.parse_sql_json(query) if query else None
        except pglast.parser.ParseError:
            continue
        for kind, stmt in walk(json.loads(trees)) if trees else ():
            if kind in ("InsertStmt", "UpdateStmt", "DeleteStmt") and isinstance(stmt.get("relation"), dict):
                written.append(range_name(stmt["relation"]))
    return list(dict.fromkeys(written))


def _index_table(index: str, ctx: Context) -> str | None:
    if ctx.catalog is None:
        return None
    schema, name = split_name(index)
    found = ctx.catalog.table_index(schema, name) if schema else None
    return found[0].qualified_name if found else None


def _index(f: dict[str, Any], ctx: Context) -> Decision:
    table = range_name(f.get("relation", {}))
    conc = bool(f.get("concurrent"))
    name = f.get("idxname")
    schema = split_name(table)[0]
    inverse = f"DROP INDEX {'CONCURRENTLY ' if conc else ''}{qualified(schema, name)}" if name else None
    notes = [] if name else ["unnamed index: the server names it, so the inverse cannot be generated"]
    if conc and ctx.pg_major == 14:
        notes.append("CREATE INDEX CONCURRENTLY on 14.0-14.3 could silently corrupt indexes: use 14.4 or later")
    form = "create_index.concurrently" if conc else ("create_index.unique" if f.get("unique") else "create_index")
    if inverse:
        key = relation_key(schema or DEFAULT_SCHEMA, name)
        return Decision(form, [table], **if_not_exists(key, ctx.relation_exists(key), inverse, notes,
                                                       guarded=bool(f.get("if_not_exists"))))
    return Decision(form, [table], notes=notes, inverse=inverse, reversible=inverse is not None)


def _drop(f: dict[str, Any], ctx: Context) -> Decision:
    remove = f.get("removeType", "")
    objects = [_object_name(o) for o in f.get("objects", [])]
    if remove == "OBJECT_TRIGGER":
        items = _names(f["objects"][0].get("List", {}).get("items", [])) if f.get("objects") else []
        table = (relation_key(*items[-3:-1]) if len(items) > 2
                 else relation_key(default_schema(items[0]), items[0]) if items else "")
        return Decision("drop_trigger", [table], reversible=False, notes=["the trigger's definition is needed to "
                                                                          "recreate it"])
    kind = DROP_FORMS.get(remove, "drop_object")
    if kind in ("drop_index", "drop_table") or kind in RELATION_DROPS:
        ctx.state.dropped.update(objects)  # the names are free for a CREATE later in the migration
    if kind == "drop_index":
        conc = bool(f.get("concurrent"))
        tables = [t for t in (_index_table(o, ctx) for o in objects) if t]
        notes = [] if tables else ["the index's table is unknown without a catalog"]
        found = [ctx.catalog.table_index(*split_name(o)) if ctx.catalog else None for o in objects]
        defs = [f[1].definition for f in found if f]
        inverse = "; ".join(defs) if defs and len(defs) == len(objects) else None
        return Decision("drop_index.concurrently" if conc else "drop_index", tables or objects, notes=notes,
                        inverse=inverse, reversible=inverse is not None)
    if kind == "drop_table":
        refs = []
        for name in objects:
            t = ctx.table(name)
            refs += [c.references_table for c in (t.constraints if t else []) if c.type == "foreign_key"
                     and c.references_table and c.references_table not in objects]
            refs += [r for (tab, _), r in ctx.state.foreign_keys.items() if tab == name and r not in objects]
        notes = [] if ctx.catalog else ["without a catalog, tables it references by foreign key (also locked "
                                        "AccessExclusive) are unknown"]
        made = bool(objects) and ctx.state.created.issuperset(objects)  # a scratch table: nothing predates it
        return Decision("drop_table", objects, list(dict.fromkeys(refs)), notes=notes, created_here=made)
    if kind in RELATION_DROPS:
        return Decision(kind, objects)
    return Decision(kind, [], notes=[f"DROP {remove.removeprefix('OBJECT_')} {', '.join(objects)}"])


def _rename(f: dict[str, Any], ctx: Context) -> Decision:
    rtype = f.get("renameType")
    new = f.get("newname", "")
    rel = range_name(f.get("relation", {})) if f.get("relation") else ""
    if rtype == "OBJECT_COLUMN":
        old = f.get("subname", "")
        return Decision("alter_table.rename_column", [rel],
                        inverse=f"ALTER TABLE {qname(rel)} RENAME COLUMN {ident(new)} TO {ident(old)}")
    if rtype in ("OBJECT_TABLE", "OBJECT_INDEX"):
        ctx.state.dropped.add(rel)  # the old name is free again
    if rtype == "OBJECT_TABLE":
        schema, old = split_name(rel)
        return Decision("alter_table.rename_table", [rel],
                        inverse=f"ALTER TABLE {qualified(schema, new)} RENAME TO {ident(old)}")
    if rtype == "OBJECT_TABCONSTRAINT":
        old = f.get("subname", "")
        return Decision("alter_table.rename_constraint", [rel],
                        inverse=f"ALTER TABLE {qname(rel)} RENAME CONSTRAINT {ident(new)} TO {ident(old)}")
    if rtype == "OBJECT_INDEX":
        schema, old = split_name(rel)
        return Decision("alter_index.rename", [rel],
                        inverse=f"ALTER INDEX {qualified(schema, new)} RENAME TO {ident(old)}")
    return Decision("create_object", [], reversible=False, notes=[f"rename of {rtype}"])


def _data(node: str, f: dict[str, Any], ctx: Context) -> Decision:
    table = range_name(f.get("relation", {}))
    if node == "InsertStmt":
        select = f.get("selectStmt", {}).get("SelectStmt", {})
        sources = [s for s in _sources(select) if s != table]
        if select.get("valuesLists") is not None and not sources:
            return Decision("insert", [table], reversible=False, notes=["delete the inserted rows to undo"])
        return Decision("insert_select", [table], sources, notes=["INSERT ... SELECT: a data migration; batch it"])
    where = f.get("whereClause") is not None
    notes = ["no WHERE: every row" if not where else "a WHERE clause limits it"]
    kind = "update" if node == "UpdateStmt" else "delete"
    return Decision(kind, [table], notes=notes, risk=None if not where else "high", reversible=False)


def _set(f: dict[str, Any], ctx: Context) -> Decision:
    name = f.get("name", "")
    if name == "lock_timeout":
        kind = f.get("kind")
        if kind in ("VAR_SET_DEFAULT", "VAR_RESET"):
            ctx.state.lock_timeout = "default"
        else:
            args = f.get("args", [])
            const = args[0].get("A_Const", {}) if args else {}
            value = const.get("sval", {}).get("sval") if "sval" in const else const.get("ival", {}).get("ival", 0)
            ctx.state.lock_timeout = str(value)
        return Decision("set", [], reversible=True, notes=[f"lock_timeout = {ctx.state.lock_timeout}"])
    if name == "search_path":
        set_statement(ctx, f)
    return Decision("set", [], reversible=True, notes=[f"SET {name}"] if name else [])
