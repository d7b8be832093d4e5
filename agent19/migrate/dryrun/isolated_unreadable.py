"""What an isolated copy (:mod:`agent19.migrate.dryrun.isolated`) leaves out: the tables the target's login cannot
read.

``pg_dump --schema-only`` reads the catalogs, which any login may, but takes ``LOCK TABLE … IN ACCESS SHARE MODE`` on
every table it dumps (plain and partitioned tables: views, sequences, functions are not locked), which needs USAGE on
the table's schema and SELECT on the table (PostgreSQL 15's LOCK): one such table the login cannot read made every
isolated run fail ("permission denied for schema hidden", review j06). So those tables are found in the target's
catalog (:data:`Q_UNREADABLE`: ``has_schema_privilege``, ``has_table_privilege``; not an extension's, not the
system's) and left out of the dump (``--exclude-table``, names quoted as pg_dump's patterns read them,
:func:`pattern`). In the copy each becomes an empty table without columns of that name (:func:`stand_ins`), which
then gets its owner and privileges on the target (:mod:`agent19.migrate.dryrun.isolated_access`): a statement that
touches it is refused there as on the target (permission denied: "could not test: this login lacks a privilege"),
rather than failing on a table that does not exist. The result says which tables were left out (:func:`note`).
What depends on them (a view over one, a foreign key to one) cannot be restored: said with the restore's errors.
"""

from __future__ import annotations

from typing import Any

import psycopg
from psycopg import sql
from psycopg.rows import tuple_row

Q_UNREADABLE = """
SELECT n.nspname::text, c.relname::text
  FROM pg_catalog.pg_class c JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace
 WHERE c.relkind IN ('r', 'p') AND n.nspname !~ '^pg_' AND n.nspname <> 'information_schema'
   AND NOT EXISTS (SELECT 1 FROM pg_catalog.pg_depend d WHERE d.classid = 'pg_class'::regclass
                   AND d.objid = c.oid AND d.deptype = 'e')
   AND NOT (pg_catalog.has_schema_privilege(n.oid, 'USAGE') AND pg_catalog.has_table_privilege(c.oid, 'SELECT'))
 ORDER BY 1, 2"""
"""(schema, table) of each table pg_dump would lock and this login cannot."""
SHOWN = 10
"""How many of them the result names."""


def read_unreadable(conn: psycopg.Connection[Any]) -> list[tuple[str, str]]:
    """The tables of :data:`Q_UNREADABLE` (a catalog read on the target)."""
    return [(str(s), str(t)) for s, t in conn.cursor(row_factory=tuple_row).execute(Q_UNREADABLE).fetchall()]


def _quoted(name: str) -> str:
    return '"' + name.replace('"', '""') + '"'


def pattern(schema: str, table: str) -> str:
    """pg_dump's pattern matching exactly ``schema.table``: each part double-quoted (inside quotes ``*``, ``?`` and
    ``.`` are literal, a doubled quote is one)."""
    return f"{_quoted(schema)}.{_quoted(table)}"


def stand_ins(admin_dsn: str, tables: list[tuple[str, str]]) -> list[str]:
    """As the copy's superuser, an empty table without columns for each of ``tables`` (left out of the dump); what
    could not be made (its schema not restored), as notes."""
    failed = []
    with psycopg.connect(admin_dsn, autocommit=True) as conn:
        for schema, table in tables:
            try:
                conn.execute(sql.SQL("CREATE TABLE {} ()").format(sql.Identifier(schema, table)))
            except psycopg.Error as exc:
                failed.append(f"{schema}.{table} ({str(exc).strip().splitlines()[0] if str(exc).strip() else exc})")
    if not failed:
        return []
    return [f"{len(failed)} table(s) left out could not be stood in for, e.g. " + "; ".join(failed[:3])]


def note(tables: list[tuple[str, str]]) -> list[str]:
    """The result's note of the tables left out (at most :data:`SHOWN` named)."""
    if not tables:
        return []
    names = ", ".join(f"{s}.{t}" for s, t in tables[:SHOWN]) + (f" and {len(tables) - SHOWN} more"
                                                                 if len(tables) > SHOWN else "")
    return [f"{len(tables)} table(s) this login cannot read on the target (no USAGE on the schema or no SELECT: "
            f"pg_dump cannot lock them) are left out of the copy: {names}; each is an empty table without columns "
            "there, with its owner and privileges on the target (a statement touching it is refused as on the "
            "target)"]
