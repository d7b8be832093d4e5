"""What an isolated copy (:mod:`agent19.migrate.dryrun.isolated`) leaves out: the tables the target's login cannot
read.

``pg_dump --schema-only`` reads the catalogs, which any login may, but takes ``LOCK TABLE … IN ACCESS SHARE MODE`` on
every table it dumps (plain and partitioned tables: views, sequences, functions are not locked), which needs USAGE on
the table's schema and SELECT on the table (PostgreSQL 15's LOCK): one such table the login cannot read made every
isolated run fail ("permission denied for schema hidden", review j06). So those tables are found in the target's
catalog (:data:`Q_UNREADABLE`: ``has_schema_privilege``, ``has_table_privilege``; not an extension's, not the
system's) and left out of the dump (``--exclude-table``, names quoted as pg_dump's patterns read them,
:func:`pattern`). In the copy each becomes an empty table of that name with its columns from the catalog (names,
types, NOT NULL: code that writes it, a superuser's function on the target, finds them), made before the dump is
loaded when its types exist then (so a view over it is restored too: :func:`stand_ins_first`), else after
(:func:`stand_ins`); it then gets its owner and privileges on the target
(:mod:`agent19.migrate.dryrun.isolated_access`): a statement that touches it is refused there as on the target
(permission denied: "could not test: this login lacks a privilege"), rather than failing on a table that does not
exist. The result says which tables were left out (:func:`note`). What needs more of them than their columns (a
foreign key to one: no constraints there) cannot be restored: said with the restore's errors.
"""

from __future__ import annotations

import dataclasses
from typing import Any

import psycopg
from psycopg import sql
from psycopg.rows import tuple_row

from agent19.db import catalog_first
from agent19.migrate.dryrun import isolated_access

Q_UNREADABLE = """
SELECT n.nspname::text, c.relname::text,
       array(SELECT ARRAY[a.attname::text, pg_catalog.format_type(a.atttypid, a.atttypmod), a.attnotnull::text]
               FROM pg_catalog.pg_attribute a WHERE a.attrelid = c.oid AND a.attnum > 0 AND NOT a.attisdropped
              ORDER BY a.attnum)
  FROM pg_catalog.pg_class c JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace
 WHERE c.relkind IN ('r', 'p') AND n.nspname !~ '^pg_' AND n.nspname <> 'information_schema'
   AND NOT EXISTS (SELECT 1 FROM pg_catalog.pg_depend d WHERE d.classid = 'pg_class'::regclass
                   AND d.objid = c.oid AND d.deptype = 'e')
   AND NOT (pg_catalog.has_schema_privilege(n.oid, 'USAGE') AND pg_catalog.has_table_privilege(c.oid, 'SELECT'))
 ORDER BY 1, 2"""
"""(schema, table, columns) of each table pg_dump would lock and this login cannot; each column (name, type, NOT
NULL): the catalog, which any login reads, has them (read with search_path pg_catalog: ``format_type`` then qualifies
every other schema's type)."""
SHOWN = 10
"""How many of them the result names."""


@dataclasses.dataclass(frozen=True)
class Unreadable:
    schema: str
    table: str
    columns: list[list[str]]
    """(name, type, "true" when NOT NULL) each."""


def read_unreadable(conn: psycopg.Connection[Any]) -> list[Unreadable]:
    """The tables of :data:`Q_UNREADABLE` (a catalog read on the target, in its open transaction)."""
    cur = conn.cursor(row_factory=tuple_row)
    row = cur.execute("SELECT pg_catalog.current_setting('search_path'), "
                      "pg_catalog.set_config('search_path', 'pg_catalog', true)").fetchone()
    try:
        return [Unreadable(str(s), str(t), [[str(v) for v in col] for col in cols or []])
                for s, t, cols in cur.execute(Q_UNREADABLE).fetchall()]
    finally:
        cur.execute("SELECT pg_catalog.set_config('search_path', %s, true)", (row[0] if row else "",))


def _quoted(name: str) -> str:
    return '"' + name.replace('"', '""') + '"'


def pattern(schema: str, table: str) -> str:
    """pg_dump's pattern matching exactly ``schema.table``: each part double-quoted (inside quotes ``*``, ``?`` and
    ``.`` are literal, a doubled quote is one)."""
    return f"{_quoted(schema)}.{_quoted(table)}"


def stand_in(table: Unreadable) -> sql.Composed:
    """``CREATE TABLE`` of ``table``'s stand-in: its columns' names, types and NOT NULL (names quoted here, types
    checked to be what ``format_type`` makes: quoted names and no ``;`` nor comment,
    :func:`agent19.migrate.dryrun.isolated_access.checked_identity`)."""
    columns = [sql.SQL("{} {}{}").format(sql.Identifier(name), isolated_access.checked_identity(kind),
                                         sql.SQL(" NOT NULL" if notnull == "true" else ""))
               for name, kind, notnull in table.columns]
    return sql.SQL("CREATE TABLE {} ({})").format(sql.Identifier(table.schema, table.table),
                                                  sql.SQL(", ").join(columns))


def stand_ins_first(admin_dsn: str, tables: list[Unreadable], login: str) -> tuple[list[Unreadable], list[str]]:
    """Before the dump is loaded, as the copy's superuser: the stand-ins of ``tables`` whose column types exist
    already (the system's), so that what the dump makes over them (a view, a function whose body names them)
    is made; their schemas too, owned by ``login`` (who loads the dump into them; the target's owner comes after).
    Returns (the tables still to stand in for, after the load: :func:`stand_ins`; the schemas made: the dump's
    ``CREATE SCHEMA`` of each is left out)."""
    later: list[Unreadable] = []
    schemas: list[str] = []
    with catalog_first.connect(admin_dsn, autocommit=True) as conn:
        for table in tables:
            if table.schema not in schemas and conn.execute(
                    "SELECT NOT EXISTS (SELECT 1 FROM pg_catalog.pg_namespace WHERE nspname OPERATOR(pg_catalog.=) "
                    "%s)", (table.schema,)).fetchone() == (True,):  # not public, nor an extension's made already
                conn.execute(sql.SQL("CREATE SCHEMA {} AUTHORIZATION {}").format(sql.Identifier(table.schema),
                                                                                 sql.Identifier(login)))
                schemas.append(table.schema)
            try:
                conn.execute(stand_in(table))
            except (psycopg.Error, isolated_access.Unexpected):  # a type the dump makes: after the load
                later.append(table)
    return later, schemas


def stand_ins(admin_dsn: str, tables: list[Unreadable]) -> list[str]:
    """After the dump is loaded, as the copy's superuser, an empty table for each of ``tables`` (left out of the dump):
    its columns (names, types, NOT NULL), no defaults, constraints, indexes or triggers; what could not be made (a
    type not restored), as notes."""
    failed = []
    with catalog_first.connect(admin_dsn, autocommit=True) as conn:
        for table in tables:
            try:
                conn.execute(stand_in(table))
            except (psycopg.Error, isolated_access.Unexpected) as exc:
                failed.append(f"{table.schema}.{table.table} "
                              f"({str(exc).strip().splitlines()[0] if str(exc).strip() else exc})")
    if not failed:
        return []
    return [f"{len(failed)} table(s) left out could not be stood in for, e.g. " + "; ".join(failed[:3])]


def note(tables: list[Unreadable]) -> list[str]:
    """The result's note of the tables left out (at most :data:`SHOWN` named)."""
    if not tables:
        return []
    names = ", ".join(f"{t.schema}.{t.table}" for t in tables[:SHOWN]) + (f" and {len(tables) - SHOWN} more"
                                                                 if len(tables) > SHOWN else "")
    return [f"{len(tables)} table(s) this login cannot read on the target (no USAGE on the schema or no SELECT: "
            f"pg_dump cannot lock them) are left out of the copy: {names}; each is an empty table there with its "
            "columns (no defaults, constraints, indexes or triggers), its owner and privileges on the target (a "
            "statement touching it is refused as on the target)"]
