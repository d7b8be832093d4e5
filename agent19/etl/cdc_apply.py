"""Applying decoded changes (wal2json, format version 2) to destination tables.

Values travel as JSON and become rows of the destination's own type with ``json_populate_record(NULL::dest,
…)``, so every column is cast by the destination's input functions (numeric stays exact). An UPDATE sets only
the columns the change carries: wal2json leaves out unchanged TOASTed values, which the destination keeps.
Rows are found by the destination's primary key, read from the change's ``identity`` (the old key — the key
itself may change); a destination table without a primary key is matched on every identity column (the
source needs REPLICA IDENTITY FULL for that, and one matching row is changed).
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any

from psycopg import sql

from agent19.db.connection import Connection
from agent19.errors import InputError
from agent19.migrate.patterns.sqlnames import ident, split_name

Q_TABLE = """
SELECT a.attname AS name, coalesce(a.attnum = ANY(i.indkey), false) AS is_key,
       format_type(a.atttypid, NULL) AS type
  FROM pg_attribute a LEFT JOIN pg_index i ON i.indrelid = a.attrelid AND i.indisprimary
 WHERE a.attrelid = to_regclass(%s) AND a.attnum > 0 AND NOT a.attisdropped ORDER BY a.attnum
"""


@dataclass
class Target:
    name: str
    ident: sql.Identifier
    columns: list[str]
    key: list[str]
    json_columns: dict[str, str] = field(default_factory=dict)  # column → json or jsonb


@dataclass
class Applied:
    inserts: int = 0
    updates: int = 0
    deletes: int = 0
    transactions: int = 0
    missing: list[str] = field(default_factory=list)
    unknown: dict[str, set[str]] = field(default_factory=dict)
    """table → columns its changes carried that the destination table lacks (not applied)."""


def split_table(name: str) -> tuple[str, str]:
    """``schema.table``, or ``table`` in public, as (schema, table); quotes are not interpreted."""
    schema, _, table = name.rpartition(".")
    return schema or "public", table


def qualified(name: str) -> str:
    """A table as a user names it → ``schema.table`` as the catalog spells it (public when it names no schema).

    Written raw (``My Schema.Order Items``) or as SQL with double quotes (``"My Schema"."Order Items"``, ``s."a.b"``),
    as every agent19 tool reads a table name (:func:`agent19.migrate.patterns.sqlnames.split_name`)."""
    if '"' in name:
        schema, table = split_name(name)
        return f"{schema or 'public'}.{table}"
    return ".".join(split_table(name))


def quoted(name: str) -> str:
    """``schema.table`` as SQL text, each part quoted where PostgreSQL needs it (for SQL shown to people)."""
    schema, table = split_table(name)
    return f"{ident(schema)}.{ident(table)}"


def target(conn: Connection, name: str) -> Target:
    ident = sql.Identifier(*split_table(name))
    rows = conn.execute(Q_TABLE, (ident.as_string(conn),)).fetchall()
    if not rows:
        raise InputError(f"the destination has no table {name}",
                         "create it with the source's columns (pg_dump --schema-only -t TABLE | psql DEST)")
    return Target(name=name, ident=ident, columns=[r["name"] for r in rows],
                  key=[r["name"] for r in rows if r["is_key"]],
                  json_columns={r["name"]: r["type"] for r in rows if r["type"] in ("json", "jsonb")})


def _values(items: list[dict[str, Any]] | None) -> dict[str, Any]:
    return {c["name"]: c.get("value") for c in items or []}


def _col(t: Target, rec: str, c: str) -> sql.Composable:
    """Column ``c`` of the change ``rec`` (n: new, o: identity), of the destination's type. Both plugins hand a json
    or jsonb value over as its text, which json_populate_record would store as a JSON *string*: that text is cast
    instead (json keeps it verbatim: spacing, duplicate keys, \\u0000)."""
    if c in t.json_columns:
        doc = sql.Identifier(rec + "_doc")
        return sql.SQL("({}.doc ->> {})::{}").format(doc, sql.Literal(c), sql.SQL(t.json_columns[c]))
    return sql.SQL("{}.{}").format(sql.Identifier(rec), sql.Identifier(c))


def _rec(rec: str) -> sql.Composable:
    """``(SELECT %s::json) n_doc, json_populate_record(NULL::t, n_doc) n`` for one change document."""
    return sql.SQL("(SELECT %s::json) {d}(doc), json_populate_record(NULL::{{t}}, {d}.doc) {r}").format(
        d=sql.Identifier(rec + "_doc"), r=sql.Identifier(rec))


def _match(t: Target, identity: dict[str, Any]) -> sql.Composable:
    """``WHERE`` for the destination row an identity names."""
    if t.key:
        missing = [k for k in t.key if k not in identity]
        if missing:
            raise InputError(f"a change of {t.name} does not carry its key column(s) {missing}",
                             f"ALTER TABLE {t.ident.as_string()} REPLICA IDENTITY FULL on the source, or give it a "
                             "primary key")
        return sql.SQL(" AND ").join(sql.SQL("d.{} = {}").format(sql.Identifier(k), _col(t, "o", k)) for k in t.key)
    cols = [c for c in identity if c in t.columns]
    cond = sql.SQL(" AND ").join(  # as text: json, xml, point… have no equality operator
        sql.SQL("x.{}::text IS NOT DISTINCT FROM {}::text").format(sql.Identifier(c), _col(t, "o", c)) for c in cols)
    return sql.SQL("d.ctid = (SELECT x.ctid FROM {t} x WHERE {cond} LIMIT 1)").format(t=t.ident, cond=cond)


def _json(values: dict[str, Any]) -> str:
    return json.dumps(values)


def apply_change(conn: Connection, t: Target, change: dict[str, Any], counts: Applied) -> None:
    action = change["action"]
    carried = _values(change.get("columns"))
    new = {k: v for k, v in carried.items() if k in t.columns}
    if len(new) < len(carried):  # a column added at the source since, or left out of the destination on purpose
        counts.unknown.setdefault(t.name, set()).update(k for k in carried if k not in t.columns)
    ident = sql.Identifier
    if action == "I":
        cols = sql.SQL(", ").join(ident(c) for c in new)
        vals = sql.SQL(", ").join(_col(t, "n", c) for c in new)
        conn.execute(sql.SQL("INSERT INTO {t} ({cols}) SELECT {vals} FROM " + _rec("n").as_string(conn)).format(
            t=t.ident, cols=cols, vals=vals), (_json(new),))
        counts.inserts += 1
        return
    identity = _values(change.get("identity"))
    if not identity:
        raise InputError(f"an {('update' if action == 'U' else 'delete')} of {t.name} carries no old key (REPLICA "
                         "IDENTITY NOTHING, or no primary key)",
                         f"ALTER TABLE {t.ident.as_string()} REPLICA IDENTITY FULL on the source (agent19 cdc check "
                         "lists them)")
    where = _match(t, identity)
    if action == "U":
        sets = sql.SQL(", ").join(sql.SQL("{} = {}").format(ident(c), _col(t, "n", c)) for c in new)
        recs = _rec("n").as_string(conn) + ", " + _rec("o").as_string(conn)
        cur = conn.execute(sql.SQL("UPDATE {t} d SET {sets} FROM " + recs + " WHERE {where}").format(
            t=t.ident, sets=sets, where=where), (_json(new), _json(identity)))
        counts.updates += 1
    elif action == "D":
        cur = conn.execute(sql.SQL("DELETE FROM {t} d USING " + _rec("o").as_string(conn) + " WHERE {where}"
                                   ).format(t=t.ident, where=where), (_json(identity),))
        counts.deletes += 1
    else:
        return
    if cur.rowcount == 0:
        counts.missing.append(f"{t.name} {identity}")
