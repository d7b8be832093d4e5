"""Statements pg_stat_statements shows that wrote, but not through an UPDATE whose SET list can be read.

"No UPDATE sets this column" is read from the UPDATE statements' SET lists. A statement that writes through a
function (``SELECT app.ship($1)`` whose PL/pgSQL body UPDATEs, a ``CALL``, a ``DO`` block) or a ``MERGE`` shows
only its own text (``pg_stat_statements.track = top``, the default): which columns it sets cannot be read, so
when it wrote (WAL records or dirtied blocks, as for hidden statements: :mod:`agent19.db.hidden_statements`)
the conclusion is unknown, said with the statements and why. ``INSERT … ON CONFLICT DO UPDATE`` sets the
columns of its ``DO UPDATE SET`` list, read like an UPDATE's. Plain SELECTs, INSERTs, DELETEs, COPY and DDL
set no column of an existing row (a SELECT's writes are hint bits and page pruning) unless they call a function
outside ``pg_catalog``/``information_schema`` written in SQL or a procedural language. Not seen:
triggers and foreign-key actions (``ON DELETE SET NULL``), whose UPDATEs run inside another statement.

The statement texts are data from the server: they are only parsed, never run.
"""

from __future__ import annotations

from typing import Any

from agent19.db.hidden_statements import WROTE
from agent19.sqltree import ParseError, parse_json, walk

QUALIFIED_SQL = True  # its statements name functions, operators, types, catalog relations pg_catalog.-qualified

EQ = "OPERATOR(pg_catalog.=)"  # the operators the unqualified text chose (same argument types): same rows
Q_USER_FUNCTIONS = (
    "SELECT n.nspname, p.proname FROM pg_catalog.pg_proc p "
    f"JOIN pg_catalog.pg_namespace n ON n.oid {EQ} p.pronamespace "
    f"JOIN pg_catalog.pg_language l ON l.oid {EQ} p.prolang "
    "WHERE l.lanname OPERATOR(pg_catalog.<>) ALL ('{c,internal}'::pg_catalog.name[]) "
    "AND n.nspname OPERATOR(pg_catalog.<>) ALL ('{pg_catalog,information_schema}'::pg_catalog.name[])")
Q_VERSION = "SELECT pg_catalog.current_setting('server_version_num')::int AS v"
Q_WROTE = (f"SELECT query, calls FROM {{view}} WHERE dbid {EQ} (SELECT oid FROM pg_catalog.pg_database WHERE datname "
           f"{EQ} pg_catalog.current_database()) AND query OPERATOR(pg_catalog.<>) '<insufficient privilege>' "
           "AND ({wrote}) AND query OPERATOR(pg_catalog.!~*) '^\\s*(with\\s.*)?update\\s' ORDER BY calls DESC")
"""The visible statements of ``{view}`` (pg_stat_statements, schema-qualified) that wrote (``{wrote}``) and are not
UPDATEs."""
WROTE_BEFORE_13 = "shared_blks_dirtied OPERATOR(pg_catalog.>) 0"

OPAQUE_KINDS = {"DoStmt": "a DO block", "CallStmt": "a CALL", "MergeStmt": "a MERGE"}


def _user_functions(conn: Any) -> set[tuple[str, ...]]:
    """(name,) and (schema, name) of every function outside the system schemas written in SQL or a procedural
    language (a C function, such as pgcrypto's, runs no UPDATE of its own)."""
    out: set[tuple[str, ...]] = set()
    for r in conn.execute(Q_USER_FUNCTIONS).fetchall():
        out |= {(r["proname"],), (r["nspname"], r["proname"])}
    return out


def _classify(text: str, user_functions: set[tuple[str, ...]]) -> tuple[str | None, dict[str, set[str]]]:
    """(why its columns cannot be read, or None; table -> columns of its ON CONFLICT DO UPDATE SET lists)."""
    try:
        stmts = parse_json(text)
    except ParseError:
        return "a text agent19 cannot parse", {}
    sets: dict[str, set[str]] = {}
    for raw in stmts:
        stmt = raw.get("stmt", {})
        kind = next(iter(stmt), "")
        if kind in OPAQUE_KINDS:
            return OPAQUE_KINDS[kind], {}
        for key, value in walk(stmt):
            if key == "FuncCall":
                name = tuple(p.get("String", {}).get("sval", "") for p in value.get("funcname", []))
                if name in user_functions or name[-1:] in user_functions:
                    return f"calls {'.'.join(name)}, whose body may UPDATE", {}
            elif key == "InsertStmt" and (value.get("onConflictClause") or {}).get("action") == "ONCONFLICT_UPDATE":
                rel = value.get("relation", {})
                cols = {t["ResTarget"]["name"] for t in value["onConflictClause"].get("targetList", [])}
                sets.setdefault(f"{rel.get('schemaname') or 'public'}.{rel.get('relname')}", set()).update(cols)
    return None, sets


def opaque_writes(conn: Any, view: str) -> tuple[dict[str, dict[str, int]], str | None]:
    """Visible statements in ``view`` (pg_stat_statements, schema-qualified) that wrote and are not UPDATEs:
    table -> column -> calls of the ``ON CONFLICT DO UPDATE`` lists, and the ``cannot_see`` sentence for those
    whose columns cannot be read (None: none)."""
    new = int(conn.execute(Q_VERSION).fetchone()["v"]) >= 130000
    rows = conn.execute(Q_WROTE.format(view=view, wrote=WROTE if new else WROTE_BEFORE_13)).fetchall()
    if not rows:
        return {}, None
    functions = _user_functions(conn)
    columns: dict[str, dict[str, int]] = {}
    opaque: list[tuple[str, int, str]] = []
    for r in rows:
        why, sets = _classify(r["query"] or "", functions)
        if why:
            opaque.append((" ".join((r["query"] or "").split())[:120], int(r["calls"]), why))
        for table, cols in sets.items():
            for c in cols:
                columns.setdefault(table, {})[c] = columns.get(table, {}).get(c, 0) + int(r["calls"])
    if not opaque:
        return columns, None
    shown = "; ".join(f"`{q}` ({why}, {n:,} calls)" for q, n, why in opaque[:3])
    more = f" and {len(opaque) - 3} more" if len(opaque) > 3 else ""
    return columns, (f"which columns statements that write through a function set is unknown: pg_stat_statements "
                     f"shows {len(opaque):,} statement(s) that wrote but are not an UPDATE whose SET list can be "
                     f"read: {shown}{more}")
