"""A19025 fk-without-index: a foreign key whose referencing columns have no index."""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from typing import Any

from agent19.migrate.lint.rules._base import (
    Hit,
    Rule,
    StatementContext,
    column_constraints,
    ident,
    index_name_for,
    norm,
    rel_name,
    short,
)
from agent19.migrate.parse import Statement


def _names(items: list[dict[str, Any]]) -> list[str]:
    return [i.get("String", {}).get("sval", "") for i in items]


def foreign_keys(ctx: StatementContext) -> Iterator[tuple[str, list[str], str]]:
    """(table, referencing columns, referenced table) of every FK this statement adds."""
    table = ctx.relation or ""
    if ctx.node == "CreateStmt":
        for e in ctx.fields.get("tableElts", []):
            if "ColumnDef" in e:
                for c in column_constraints(e["ColumnDef"]):
                    if c.get("contype") == "CONSTR_FOREIGN":
                        yield table, [e["ColumnDef"].get("colname", "")], rel_name(c.get("pktable", {}))
            con = e.get("Constraint", {})
            if con.get("contype") == "CONSTR_FOREIGN":
                yield table, _names(con.get("fk_attrs", [])), rel_name(con.get("pktable", {}))
    for _, subtype, cmd in ctx.alter_cmds():
        d = cmd.get("def", {})
        if subtype == "AT_AddConstraint" and d.get("Constraint", {}).get("contype") == "CONSTR_FOREIGN":
            con = d["Constraint"]
            yield table, _names(con.get("fk_attrs", [])), rel_name(con.get("pktable", {}))
        if subtype == "AT_AddColumn":
            for c in column_constraints(d.get("ColumnDef", {})):
                if c.get("contype") == "CONSTR_FOREIGN":
                    yield table, [d["ColumnDef"].get("colname", "")], rel_name(c.get("pktable", {}))


def _leading(columns: list[str], index_columns: list[str]) -> bool:
    return index_columns[: len(columns)] == columns or set(index_columns[: len(columns)]) == set(columns)


_RELATION = re.compile(r'"relation":\{(?:"catalogname":"(?:[^"\\]|\\.)*",)?(?:"schemaname":"((?:[^"\\]|\\.)*)",)?'
                       r'"relname":"((?:[^"\\]|\\.)*)"')


def _table_of(s: Statement) -> str | None:
    """The table an IndexStmt, CreateStmt or AlterTableStmt names, as :func:`norm` writes it; read from the tree's
    JSON text when the tree is not decoded: these nodes' first field holding a node is their ``relation``, so its
    ``"relation":{`` (a quote unescaped: outside any string) is the first in the text. None when there is none or
    it is not written as expected: then the tree is read."""
    text = s.tree_text
    if text is not None and s.__dict__.get("_tree") is None:
        at = text.find('"relation":{')
        found = _RELATION.match(text, at) if at >= 0 else None
        if found is not None:
            schema, name = (json.loads(f'"{g}"') if g and "\\" in g else g for g in found.groups())
            return norm(rel_name({"schemaname": schema, "relname": name}))
    rel = s.fields.get("relation")
    return norm(rel_name(rel)) if isinstance(rel, dict) else None


def _keys(s: Statement) -> list[list[str]]:
    """Key column lists of the index, PKs and UNIQUEs one statement makes."""
    f = s.fields
    keys: list[list[str]] = []
    if s.node == "IndexStmt":
        keys.append([p.get("IndexElem", {}).get("name") or "" for p in f.get("indexParams", [])])
    cons: list[dict[str, Any]] = []
    if s.node == "CreateStmt":
        for e in f.get("tableElts", []):
            cons.append(e.get("Constraint", {}))
            if "ColumnDef" in e:
                cons += [dict(c, keys=[{"String": {"sval": e["ColumnDef"].get("colname")}}])
                         for c in column_constraints(e["ColumnDef"])]
    if s.node == "AlterTableStmt":
        cons += [c.get("AlterTableCmd", {}).get("def", {}).get("Constraint", {}) for c in f.get("cmds", [])]
    return keys + [_names(c.get("keys", [])) for c in cons if c.get("contype") in ("CONSTR_PRIMARY", "CONSTR_UNIQUE")]


def _migration_indexes(ctx: StatementContext, table: str) -> list[list[str]]:
    """Key column lists of every index, PK and UNIQUE on ``table`` (:func:`norm`) in the linted set, any file. The
    statements that may make one are grouped by table once, their trees read only when their table is asked for
    (in a large file a tree not held is decoded from its text for each read)."""
    cache = ctx.state.cache.get("fk_without_index")
    if cache is None:
        pending: dict[str, list[Statement]] = {}
        for s in ctx.state.set_statements or ctx.migration.statements:
            if s.node not in ("IndexStmt", "CreateStmt", "AlterTableStmt") or (
                    s.node != "IndexStmt" and not s.may_contain("CONSTR_PRIMARY")
                    and not s.may_contain("CONSTR_UNIQUE")):
                continue  # no key here: its tree is not read at all
            of = _table_of(s)
            if of is not None:
                pending.setdefault(of, []).append(s)
        cache = ctx.state.cache["fk_without_index"] = ({}, pending)
    done, pending = cache
    keys = done.get(table)
    if keys is None:
        keys = done[table] = [k for s in pending.pop(table, []) for k in _keys(s)]
    return keys  # type: ignore[no-any-return]


def indexed(ctx: StatementContext, table: str, columns: list[str]) -> bool:
    """An index leads with ``columns``: in the live catalog, or anywhere in the linted set (before or after)."""
    t = ctx.table(table)
    if t is not None and any(_leading(columns, ix.key_names()) for ix in t.indexes):
        return True
    return any(_leading(columns, keys) for keys in _migration_indexes(ctx, norm(table)))


def check(ctx: StatementContext) -> Iterator[Hit]:
    for table, columns, referenced in foreign_keys(ctx):
        if not columns or indexed(ctx, table, columns):
            continue
        cols = ", ".join(ident(c) for c in columns)
        concurrently = "" if ctx.is_new(table) or ctx.node == "CreateStmt" else " CONCURRENTLY"
        yield Hit(
            f"no index on {short(table)} ({cols}): every DELETE or key UPDATE on {short(referenced)} scans "
            f"{short(table)} to check this foreign key, and joins on it cannot use an index",
            f"CREATE INDEX{concurrently} {index_name_for(table, columns)} ON {short(table)} ({cols});",
        )


RULE = Rule(
    code="A19025",
    name="fk-without-index",
    title="Foreign key without an index on its referencing columns",
    severity="warning",
    why="PostgreSQL indexes the referenced side of a foreign key (it must be unique) but not the referencing "
    "side. Without one, each delete or key update of a referenced row scans the whole referencing table, "
    "under locks, and ON DELETE CASCADE becomes very slow.",
    alternative="Create an index whose leading columns are the foreign key's columns (CONCURRENTLY on an "
    "existing table). Only skip it for tiny tables whose referenced rows never change.",
    bad="CREATE TABLE order_lines (id bigint PRIMARY KEY, order_id bigint REFERENCES orders (id));",
    good="CREATE TABLE order_lines (id bigint PRIMARY KEY, order_id bigint REFERENCES orders (id));\n"
    "CREATE INDEX order_lines_order_id_idx ON order_lines (order_id);",
    check=check,
    nodes=("CreateStmt", "AlterTableStmt"),
    subcommands=("AT_AddConstraint", "AT_AddColumn"),
)
