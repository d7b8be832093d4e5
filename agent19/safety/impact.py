"""What a destructive statement would cost, read from the live database.

For each target: whether it exists, its rows (always an exact ``count(*)``: an estimate would let
rows added between the challenge and the confirmation go unnoticed; tables over
:data:`CHUNK_BYTES` are counted in block ranges with progress reported), its size, and what
depends on it: foreign keys pointing at it (and the rows ``CASCADE`` would also remove), views,
triggers, publications. Plus whether the server knows of a recent backup (WAL archiving),
and the database's identity, which the confirmation token is bound to.

Row-level security: TRUNCATE, DROP TABLE, DROP COLUMN and a rewriting type change remove every row, while a
``count(*)`` through a policy that applies to the login shows only some of them. A table whose rows a policy may
hide from this login (:func:`agent19.db.rls.hidden`) is counted as the login sees it and its figure is marked a
lower bound ("at least N", :attr:`TargetImpact.rows_hidden`); every other count runs with ``row_security = off``
(:func:`agent19.db.rls.every_row`), so a filtered read errors instead of giving a smaller number.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from psycopg import sql
from pydantic import BaseModel, Field

from agent19.db import rls
from agent19.errors import InputError
from agent19.safety.detect import Finding
from agent19.safety.facts import quote_written
from agent19.tool_names import tool

CHUNK_BYTES = 64 * 1024 * 1024
"""Tables larger than this are counted in ranges of this many bytes of heap (a TID range scan each,
PostgreSQL 14+), reporting progress after each range."""

Progress = Callable[[float, float | None, str | None], None]


class DatabaseIdentity(BaseModel):
    system_identifier: str | None = Field(description="pg_control_system(); None when not readable")
    name: str
    oid: int


class Dependent(BaseModel):
    kind: str = Field(description="foreign key, view, materialized view, trigger, publication, object")
    name: str
    detail: str = ""


class TargetImpact(BaseModel):
    kind: str
    name: str = Field(description="schema-qualified when resolved")
    column: str | None = None
    exists: bool = True
    rows: int | None = Field(default=None, description="rows at stake")
    rows_exact: bool = Field(default=False, description="true: count(*); false: the planner's estimate")
    rows_touched: int | None = Field(default=None, description="rows the statement updated or deleted, measured "
                                     "by running it in a savepoint that was rolled back")
    size_bytes: int | None = None
    dependents: list[Dependent] = []
    cascade_rows: int = Field(default=0, description="rows in other tables that CASCADE would also remove")
    rows_hidden: list[str] = Field(default=[], description="tables counted here (this one, or a referencing table "
                                   "in cascade_rows) whose rows a row-level security policy may hide from this "
                                   "login: their figures are lower bounds")

    @property
    def rows_lower_bound(self) -> bool:
        return self.name in self.rows_hidden

    @property
    def cascade_lower_bound(self) -> bool:
        return any(t != self.name for t in self.rows_hidden)

    @property
    def rows_text(self) -> str:
        if self.rows is None:
            return "an unknown number of"
        if self.rows_lower_bound:
            return f"at least {self.rows}"
        return f"{self.rows}" if self.rows_exact else f"about {self.rows}"

    @property
    def hidden_notes(self) -> list[str]:
        """One sentence per table whose count a policy may have filtered."""
        return [f"{rls.message(t)}; its count is a lower bound (TRUNCATE, DROP and rewrites remove the rows a policy "
                "hides too)" for t in self.rows_hidden]


class Backup(BaseModel):
    known: bool
    detail: str


class Impact(BaseModel):
    database: DatabaseIdentity
    targets: list[TargetImpact]
    backup: Backup

    def figures(self) -> dict[str, Any]:
        """What the confirmation token binds: rows and dependents of every target."""
        return {
            "targets": [
                {"name": t.name, "column": t.column, "exists": t.exists, "rows": t.rows, "touched": t.rows_touched,
                 "cascade_rows": t.cascade_rows, "dependents": sorted(f"{d.kind}:{d.name}" for d in t.dependents),
                 "rows_hidden": t.rows_hidden}
                for t in self.targets
            ]
        }


QUALIFIED_SQL = True
"""Every statement here names its functions, operators, types and catalog relations ``pg_catalog.``-qualified: the
login's own overload (``public.=(oid, regclass)``, ``public.||(text, name)``) cannot forge what a human confirms
(review r27b k07; tests/test_qualified_sql.py reads them). User names still resolve through the session's path
(``to_regclass``), and ``::regclass::text`` names relations as the user's sessions see them."""
EQ, NE = "OPERATOR(pg_catalog.=)", "OPERATOR(pg_catalog.<>)"
TABLE_KINDS = "'{r,p,m}'::pg_catalog.\"char\"[]"

Q_IDENTITY = f"""
SELECT d.oid, d.datname,
       CASE WHEN pg_catalog.has_function_privilege('pg_catalog.pg_control_system()', 'EXECUTE')
            THEN (SELECT s.system_identifier::pg_catalog.text FROM pg_catalog.pg_control_system() s) END AS sysid
  FROM pg_catalog.pg_database d WHERE d.datname {EQ} pg_catalog.current_database()
"""
Q_BACKUP = """
SELECT archived_count, last_archived_time,
       last_archived_time OPERATOR(pg_catalog.>) (pg_catalog.now() OPERATOR(pg_catalog.-) interval '24 hours') AS recent
  FROM pg_catalog.pg_stat_archiver
"""
Q_REL = f"""
SELECT c.oid, pg_catalog.concat(n.nspname, '.', c.relname) AS name, n.nspname AS nsp, c.relname AS rel, c.relkind,
       pg_catalog.pg_relation_size(c.oid) AS heap,
       pg_catalog.pg_total_relation_size(c.oid) AS total,
       CASE WHEN c.reltuples OPERATOR(pg_catalog.<) 0 THEN NULL ELSE c.reltuples::bigint END AS estimate
  FROM pg_catalog.pg_class c JOIN pg_catalog.pg_namespace n ON n.oid {EQ} c.relnamespace
 WHERE c.oid {EQ} pg_catalog.to_regclass(%s)
"""
Q_FKS = f"""
SELECT con.conname, con.conrelid::pg_catalog.regclass::pg_catalog.text AS tbl, con.confdeltype, con.conrelid
  FROM pg_catalog.pg_constraint con
 WHERE con.confrelid {EQ} %(oid)s AND con.contype {EQ} 'f' AND con.conrelid {NE} %(oid)s
"""
Q_VIEWS = f"""
SELECT DISTINCT v.oid::pg_catalog.regclass::pg_catalog.text AS name, v.relkind
  FROM pg_catalog.pg_depend d JOIN pg_catalog.pg_rewrite r ON r.oid {EQ} d.objid
  JOIN pg_catalog.pg_class v ON v.oid {EQ} r.ev_class
 WHERE d.classid {EQ} 'pg_catalog.pg_rewrite'::pg_catalog.regclass AND d.refobjid {EQ} %(oid)s AND v.oid {NE} %(oid)s
"""
Q_TRIGGERS = f"SELECT t.tgname FROM pg_catalog.pg_trigger t WHERE t.tgrelid {EQ} %(oid)s AND NOT t.tgisinternal"
Q_PUBLICATIONS = f"""
SELECT p.pubname FROM pg_catalog.pg_publication p
 WHERE p.puballtables
    OR EXISTS (SELECT 1 FROM pg_catalog.pg_publication_rel r WHERE r.prpubid {EQ} p.oid AND r.prrelid {EQ} %(oid)s)
"""
Q_SCHEMA = f"""
SELECT n.oid, pg_catalog.count(c.oid) FILTER (WHERE c.relkind {EQ} ANY ({TABLE_KINDS})) AS tables,
       COALESCE(pg_catalog.sum(GREATEST(c.reltuples, 0)) FILTER (WHERE c.relkind {EQ} ANY ({TABLE_KINDS})),
                0)::bigint AS rows,
       COALESCE(pg_catalog.sum(pg_catalog.pg_total_relation_size(c.oid))
                  FILTER (WHERE c.relkind {EQ} ANY ({TABLE_KINDS})), 0)::bigint AS size
  FROM pg_catalog.pg_namespace n LEFT JOIN pg_catalog.pg_class c ON c.relnamespace {EQ} n.oid
 WHERE n.nspname {EQ} %s GROUP BY n.oid
"""
Q_DEPENDS = f"""
SELECT DISTINCT pg_catalog.pg_describe_object(d.classid, d.objid, d.objsubid) AS name
  FROM pg_catalog.pg_depend d WHERE d.refobjid {EQ} %s AND d.deptype {EQ} 'n' LIMIT 50
"""
Q_DATABASE = f"""SELECT pg_catalog.pg_database_size(d.oid) AS size FROM pg_catalog.pg_database d
 WHERE d.datname {EQ} %s"""
Q_COLUMN = f"""SELECT 1 FROM pg_catalog.pg_attribute a
 WHERE a.attrelid {EQ} %s AND a.attname {EQ} %s AND a.attnum OPERATOR(pg_catalog.>) 0 AND NOT a.attisdropped"""
Q_VERSION = "SELECT pg_catalog.current_setting('server_version_num')::int AS v"
Q_BLOCK_SIZE = "SELECT pg_catalog.current_setting('block_size')::int AS b"
# psycopg.sql templates: {} is the table's quoted name
Q_COUNT = "SELECT pg_catalog.count(*) AS n FROM {}"
_FIRST_PAGE = "pg_catalog.concat('(', %s::bigint, ',0)')::pg_catalog.tid"
Q_COUNT_RANGE = (f"SELECT pg_catalog.count(*) AS n FROM {{}} WHERE ctid OPERATOR(pg_catalog.>=) {_FIRST_PAGE} "
                 f"AND ctid OPERATOR(pg_catalog.<) {_FIRST_PAGE}")
Q_COUNT_TAIL = f"SELECT pg_catalog.count(*) AS n FROM {{}} WHERE ctid OPERATOR(pg_catalog.>=) {_FIRST_PAGE}"
REGFUNCS = {"type": "to_regtype", "domain": "to_regtype", "function": "to_regproc", "procedure": "to_regproc",
            "routine": "to_regproc", "sequence": "to_regclass", "view": "to_regclass",
            "materialized view": "to_regclass", "index": "to_regclass", "foreign table": "to_regclass"}
Q_OBJECT = {f: f"SELECT pg_catalog.{f}(%s)::pg_catalog.oid AS oid" for f in sorted(set(REGFUNCS.values()))}
"""The oid of an object by its name (a bound parameter), per ``to_reg*`` function."""


def database_identity(conn: Any) -> DatabaseIdentity:
    row = conn.execute(Q_IDENTITY).fetchone()
    return DatabaseIdentity(system_identifier=row["sysid"], name=row["datname"], oid=row["oid"])


def backup_status(conn: Any) -> Backup:
    row = conn.execute(Q_BACKUP).fetchone()
    if row and row["recent"]:
        return Backup(known=True, detail=f"WAL archiving is active (last segment archived {row['last_archived_time']})")
    return Backup(known=False, detail="the server knows of no recent backup (no WAL archived in 24 hours); "
                  "agent19 cannot see backups taken elsewhere - check yours before confirming")


def measure(conn: Any, findings: list[Finding], missing_ok: bool = False, progress: Progress | None = None) -> Impact:
    """The impact of ``findings`` (inside a READ ONLY transaction on ``conn``, or under the lock of
    the confirming transaction).

    A target that does not exist is an :class:`InputError`, unless ``missing_ok`` (``IF EXISTS``).
    """
    targets: list[TargetImpact] = []
    for f in findings:
        for t in f.targets:
            if t.kind == "function" and f.kind == "unverifiable":
                continue
            impact = _target(conn, t.kind, t.name, t.column, f.kind, f.cascade, progress)
            if not impact.exists and not missing_ok:
                raise InputError(f"{t.kind} {t.name!r} does not exist",
                                 f"check the name ({tool('describe_database')} lists tables); nothing was changed")
            targets.append(impact)
    return Impact(database=database_identity(conn), targets=targets, backup=backup_status(conn))


def _target(conn: Any, kind: str, name: str, column: str | None, finding: str, cascade: bool,
            progress: Progress | None = None) -> TargetImpact:
    if kind in {"table", "column"}:
        return _table(conn, name, column, finding, cascade, progress)
    if kind == "database":
        row = conn.execute(Q_DATABASE, (name,)).fetchone()
        return TargetImpact(kind=kind, name=name, exists=row is not None, size_bytes=row["size"] if row else None)
    if kind == "schema":
        row = conn.execute(Q_SCHEMA, (name,)).fetchone()
        if row is None:
            return TargetImpact(kind=kind, name=name, exists=False)
        deps = [Dependent(kind="object", name=r["name"]) for r in conn.execute(Q_DEPENDS, (row["oid"],)).fetchall()]
        return TargetImpact(kind=kind, name=name, rows=row["rows"], size_bytes=row["size"], dependents=deps)
    regfunc = REGFUNCS.get(kind)
    if regfunc is None:
        return TargetImpact(kind=kind, name=name)
    oid = conn.execute(Q_OBJECT[regfunc], (quote_written(name),)).fetchone()["oid"]
    if oid is None:
        return TargetImpact(kind=kind, name=name, exists=False)
    impact = TargetImpact(kind=kind, name=name)
    if regfunc == "to_regclass":
        rel = conn.execute(Q_REL, (quote_written(name),)).fetchone()
        impact.name, impact.size_bytes = rel["name"], rel["total"]
        if rel["relkind"] == "m":
            impact.rows, impact.rows_exact = _rows(conn, rel, progress)[:2]
        impact.dependents = _views(conn, oid)
    deps = conn.execute(Q_DEPENDS, (oid,)).fetchall()
    impact.dependents += [Dependent(kind="object", name=r["name"]) for r in deps
                          if not any(d.name in r["name"] for d in impact.dependents)]
    return impact


def _rows(conn: Any, rel: dict[str, Any], progress: Progress | None = None) -> tuple[int | None, bool, bool]:
    """(rows, exact, hidden): hidden — a policy may hide rows of the relation from this login, so ``rows`` is what
    the login sees (a lower bound); otherwise every row, counted with ``row_security = off``."""
    if rls.hidden(conn, [(rel["nsp"], rel["rel"])]):
        return exact_count(conn, rel["nsp"], rel["rel"], rel["heap"], progress), True, True
    with rls.every_row(conn):
        return exact_count(conn, rel["nsp"], rel["rel"], rel["heap"], progress), True, False


def exact_count(conn: Any, schema: str, table: str, heap_bytes: int, progress: Progress | None = None) -> int:
    """``count(*)`` of ``schema.table``; over :data:`CHUNK_BYTES`, in block ranges with progress."""
    name = sql.Identifier(schema, table)
    version = conn.execute(Q_VERSION).fetchone()["v"]
    if heap_bytes <= CHUNK_BYTES or version < 140000:
        return int(conn.execute(sql.SQL(Q_COUNT).format(name)).fetchone()["n"])
    block = conn.execute(Q_BLOCK_SIZE).fetchone()["b"]
    pages, step = -(-heap_bytes // block), CHUNK_BYTES // block
    total = 0
    query = sql.SQL(Q_COUNT_RANGE).format(name)
    for start in range(0, pages, step):
        total += conn.execute(query, (start, start + step)).fetchone()["n"]
        if progress is not None:
            progress(min(start + step, pages), pages, f"counting {schema}.{table} exactly: {total:,} rows so far")
    # rows on pages added while counting (only possible without a lock): the tail past the last range
    tail = sql.SQL(Q_COUNT_TAIL).format(name)
    return total + int(conn.execute(tail, (pages,)).fetchone()["n"])


def _views(conn: Any, oid: int) -> list[Dependent]:
    return [Dependent(kind="materialized view" if r["relkind"] == "m" else "view", name=r["name"])
            for r in conn.execute(Q_VIEWS, {"oid": oid}).fetchall()]


def _table(conn: Any, name: str, column: str | None, finding: str, cascade: bool,
           progress: Progress | None = None) -> TargetImpact:
    rel = conn.execute(Q_REL, (quote_written(name),)).fetchone()
    if rel is None:
        return TargetImpact(kind="table" if column is None else "column", name=name, column=column, exists=False)
    oid = rel["oid"]
    rows, exact, hidden = _rows(conn, rel, progress)
    impact = TargetImpact(kind="table" if column is None else "column", name=rel["name"], column=column,
                          rows=rows, rows_exact=exact, size_bytes=rel["total"],
                          rows_hidden=[rel["name"]] if hidden else [])
    if column is not None:
        found = conn.execute(Q_COLUMN, (oid, column)).fetchone()
        impact.exists = found is not None
    deps = impact.dependents
    for fk in conn.execute(Q_FKS, {"oid": oid}).fetchall():
        action = {"c": "ON DELETE CASCADE", "n": "ON DELETE SET NULL", "d": "ON DELETE SET DEFAULT"}.get(
            fk["confdeltype"], "")
        deps.append(Dependent(kind="foreign key", name=f"{fk['tbl']}.{fk['conname']}", detail=action))
        removes = (finding == "truncate" and cascade) or (finding == "delete_all" and fk["confdeltype"] == "c")
        if removes:
            ref = conn.execute(Q_REL, (fk["tbl"],)).fetchone()
            if ref is not None:
                rows, _, hidden = _rows(conn, ref, progress)
                impact.cascade_rows += rows or 0
                if hidden and ref["name"] not in impact.rows_hidden:
                    impact.rows_hidden.append(ref["name"])
    deps.extend(_views(conn, oid))
    deps.extend(Dependent(kind="trigger", name=r["tgname"]) for r in conn.execute(Q_TRIGGERS, {"oid": oid}))
    deps.extend(Dependent(kind="publication", name=r["pubname"]) for r in conn.execute(Q_PUBLICATIONS, {"oid": oid}))
    return impact
