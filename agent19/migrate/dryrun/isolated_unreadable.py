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
from agent19.db.catalog import EQ, NE, _chars
from agent19.migrate.dryrun import isolated_access, isolated_acl
from agent19.migrate.patterns.sqlnames import relation_key

QUALIFIED_SQL = True  # its statements name functions, operators, types, catalog relations pg_catalog.-qualified

Q_UNREADABLE = f"""
SELECT n.nspname::pg_catalog.text, c.relname::pg_catalog.text,
       array(SELECT ARRAY[a.attname::pg_catalog.text, pg_catalog.format_type(a.atttypid, a.atttypmod),
                          a.attnotnull::pg_catalog.text,
                          coalesce(pg_catalog.pg_get_expr(d.adbin, d.adrelid), ''), a.attidentity::pg_catalog.text,
                          a.attgenerated::pg_catalog.text]
               FROM pg_catalog.pg_attribute a LEFT JOIN pg_catalog.pg_attrdef d
                 ON d.adrelid OPERATOR(pg_catalog.=) a.attrelid AND d.adnum OPERATOR(pg_catalog.=) a.attnum
              WHERE a.attrelid OPERATOR(pg_catalog.=) c.oid AND a.attnum OPERATOR(pg_catalog.>) 0
                AND NOT a.attisdropped
              ORDER BY a.attnum),
       array(SELECT ARRAY[co.conname::pg_catalog.text, co.contype::pg_catalog.text,
                          pg_catalog.pg_get_constraintdef(co.oid)]
               FROM pg_catalog.pg_constraint co
              WHERE co.conrelid {EQ} c.oid AND co.contype {EQ} ANY ({_chars('c', 'p', 'u', 'x', 'f')})
                AND (co.contype OPERATOR(pg_catalog.=) 'c' OR co.conparentid OPERATOR(pg_catalog.=) 0)
              ORDER BY co.contype OPERATOR(pg_catalog.=) 'f', co.conname),
       array(SELECT w FROM (VALUES
               (CASE WHEN c.relrowsecurity THEN 'row level security policies' END),
               (CASE WHEN EXISTS (SELECT 1 FROM pg_catalog.pg_trigger t WHERE t.tgrelid OPERATOR(pg_catalog.=) c.oid
                                     AND NOT t.tgisinternal AND t.tgparentid OPERATOR(pg_catalog.=) 0)
                     THEN 'triggers' END),
               (CASE WHEN EXISTS (SELECT 1 FROM pg_catalog.pg_rewrite r WHERE r.ev_class OPERATOR(pg_catalog.=) c.oid)
                     THEN 'rules' END),
               (CASE WHEN EXISTS (SELECT 1 FROM pg_catalog.pg_index i WHERE i.indrelid OPERATOR(pg_catalog.=) c.oid
                                     AND i.indisunique AND NOT EXISTS (
                                         SELECT 1 FROM pg_catalog.pg_constraint k
                                          WHERE k.conrelid OPERATOR(pg_catalog.=) c.oid
                                            AND k.conindid OPERATOR(pg_catalog.=) i.indexrelid))
                     THEN 'unique indexes' END),
               (CASE WHEN EXISTS (SELECT 1 FROM pg_catalog.pg_attribute a WHERE a.attrelid OPERATOR(pg_catalog.=) c.oid
                                     AND a.attgenerated OPERATOR(pg_catalog.<>) '' AND NOT a.attisdropped)
                     THEN 'generated columns' END)) v(w) WHERE w IS NOT NULL),
       array(SELECT ARRAY[pn.nspname::pg_catalog.text, pc.relname::pg_catalog.text]
               FROM pg_catalog.pg_inherits i JOIN pg_catalog.pg_class pc ON pc.oid OPERATOR(pg_catalog.=) i.inhparent
               JOIN pg_catalog.pg_namespace pn ON pn.oid OPERATOR(pg_catalog.=) pc.relnamespace
              WHERE i.inhrelid OPERATOR(pg_catalog.=) c.oid ORDER BY i.inhseqno),
       CASE WHEN c.relispartition THEN pg_catalog.pg_get_expr(c.relpartbound, c.oid) ELSE '' END
  FROM pg_catalog.pg_class c JOIN pg_catalog.pg_namespace n ON n.oid {EQ} c.relnamespace
 WHERE c.relkind {EQ} ANY ({_chars('r', 'p')}) AND n.nspname OPERATOR(pg_catalog.!~) '^pg_'
   AND n.nspname {NE} 'information_schema'
   AND NOT EXISTS (SELECT 1 FROM pg_catalog.pg_depend d WHERE d.classid {EQ} 'pg_class'::pg_catalog.regclass
                   AND d.objid {EQ} c.oid AND d.deptype {EQ} 'e')
   AND NOT (pg_catalog.has_schema_privilege(n.oid, 'USAGE') AND pg_catalog.has_table_privilege(c.oid, 'SELECT'))
 ORDER BY 1, 2"""
"""(schema, table, columns, constraints, what a stand-in cannot have, parents, partition bound or '') of each table
pg_dump would lock and this login cannot; each column (name, type, NOT NULL, default expression or '', attidentity,
attgenerated); each constraint (name, contype, definition): the catalog, which any login reads, has them —
``pg_get_expr`` and ``pg_get_constraintdef`` need no privilege on the table (read with search_path pg_catalog:
``format_type`` and they then qualify every other schema's name)."""
SHOWN = 10
"""How many of them the result names."""
PIN_PATH = ("SELECT pg_catalog.current_setting('search_path'), "
            "pg_catalog.set_config('search_path', 'pg_catalog', true)")
SET_PATH = "SELECT pg_catalog.set_config('search_path', %s, true)"
"""The path :data:`Q_UNREADABLE` is read under (``format_type`` then qualifies every other schema's name), and the
session's given back (local to the target's open transaction)."""
Q_NO_SCHEMA = f"SELECT NOT EXISTS (SELECT 1 FROM pg_catalog.pg_namespace WHERE nspname {EQ} %s)"
CREATE_SCHEMA = "CREATE SCHEMA {} AUTHORIZATION {}"
CREATE_STAND_IN = "CREATE TABLE {} ({})"
"""A stand-in: its columns composed by :func:`stand_in` (tests/test_qualified_sql.py: DELIBERATE)."""
Q_RELATIONS = (f"SELECT n.nspname, c.relname FROM pg_catalog.pg_class c "
               f"JOIN pg_catalog.pg_namespace n ON n.oid {EQ} c.relnamespace")
"""Every relation of the copy, by schema and name (which stand-ins were made)."""


@dataclasses.dataclass(frozen=True)
class Unreadable:
    schema: str
    table: str
    columns: list[list[str]]
    """(name, type, "true" when NOT NULL, default expression or "", attidentity, attgenerated) each."""
    constraints: list[list[str]] = dataclasses.field(default_factory=list)
    """(name, contype, ``pg_get_constraintdef``) each: CHECK, PRIMARY KEY, UNIQUE, EXCLUDE, FOREIGN KEY (last)."""
    missing: list[str] = dataclasses.field(default_factory=list)
    """What its stand-in cannot have (triggers, rules, row level security policies, generated columns)."""
    parents: list[list[str]] = dataclasses.field(default_factory=list)
    """(schema, table) of each table it inherits from, or its partitioned table (a partition left out whose parent
    the login may read: PostgreSQL checks the parent's privileges for a row inserted through it)."""
    bound: str = ""
    """A partition's bound (``FOR VALUES …``, ``DEFAULT``: ``pg_get_expr(relpartbound)``); '' for another table."""

    @property
    def key(self) -> str:
        """Its name as the dry run's observed locks write it (sqlnames.relation_key)."""
        return relation_key(self.schema, self.table)


def read_unreadable(conn: psycopg.Connection[Any]) -> list[Unreadable]:
    """The tables of :data:`Q_UNREADABLE` (a catalog read on the target, in its open transaction)."""
    cur = conn.cursor(row_factory=tuple_row)
    row = cur.execute(PIN_PATH).fetchone()
    try:
        return [Unreadable(str(s), str(t), [[str(v) for v in col] for col in cols or []],
                           [[str(v) for v in con] for con in cons or []], [str(w) for w in missing or []],
                           [[str(v) for v in parent] for parent in parents or []], str(bound or ""))
                for s, t, cols, cons, missing, parents, bound in cur.execute(Q_UNREADABLE).fetchall()]
    finally:
        cur.execute(SET_PATH, (row[0] if row else "",))


def _quoted(name: str) -> str:
    return '"' + name.replace('"', '""') + '"'


def pattern(schema: str, table: str) -> str:
    """pg_dump's pattern matching exactly ``schema.table``: each part double-quoted (inside quotes ``*``, ``?`` and
    ``.`` are literal, a doubled quote is one)."""
    return f"{_quoted(schema)}.{_quoted(table)}"


def stand_in(table: Unreadable) -> sql.Composed:
    """``CREATE TABLE`` of ``table``'s stand-in: its columns' names, types and NOT NULL (names quoted here, types
    checked to be what ``format_type`` makes: quoted names and no ``;`` nor comment,
    :func:`agent19.migrate.dryrun.isolated_acl.checked_identity`)."""
    columns = [sql.SQL("{} {}{}").format(sql.Identifier(name), isolated_acl.checked_identity(kind),
                                         sql.SQL(" NOT NULL" if notnull == "true" else ""))
               for name, kind, notnull, *_ in table.columns]
    return sql.SQL(CREATE_STAND_IN).format(sql.Identifier(table.schema, table.table),
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
            # not public, nor an extension's made already
            if table.schema not in schemas and conn.execute(Q_NO_SCHEMA, (table.schema,)).fetchone() == (True,):
                conn.execute(sql.SQL(CREATE_SCHEMA).format(sql.Identifier(table.schema), sql.Identifier(login)))
                schemas.append(table.schema)
            try:
                _make(conn, table, login)
            except (psycopg.Error, isolated_acl.Unexpected):  # a type the dump makes: after the load
                later.append(table)
    return later, schemas


def _make(conn: psycopg.Connection[Any], table: Unreadable, login: str) -> None:
    """The stand-in of ``table``, owned by ``login`` until the target's owner is given (:func:`complete` adds its
    defaults and constraints as the login)."""
    with conn.transaction():
        conn.execute(stand_in(table))
        conn.execute(sql.SQL("ALTER TABLE {} OWNER TO {}").format(sql.Identifier(table.schema, table.table),
                                                                 sql.Identifier(login)))


def stand_ins(admin_dsn: str, tables: list[Unreadable], login: str) -> list[str]:
    """After the dump is loaded, as the copy's superuser, an empty table for each of ``tables`` (left out of the dump):
    its columns (names, types, NOT NULL), owned by ``login`` (:func:`complete` adds the rest); what could not be made
    (a type not restored), as notes."""
    failed = []
    with catalog_first.connect(admin_dsn, autocommit=True) as conn:
        for table in tables:
            try:
                _make(conn, table, login)
            except (psycopg.Error, isolated_acl.Unexpected) as exc:
                failed.append(f"{table.schema}.{table.table} ({isolated_access.first_line(exc)})")
    if not failed:
        return []
    return [f"{len(failed)} table(s) left out could not be stood in for, e.g. " + "; ".join(failed[:3])]


def _additions(table: Unreadable) -> list[tuple[int, str, sql.Composable]]:
    """(order, what, statement) that give ``table``'s stand-in the target's defaults, identity, CHECK constraints, its
    place under its parent (``ATTACH PARTITION`` with its bound, or ``INHERIT``), then its keys and foreign keys: the
    expressions as the target's catalog prints them (``pg_get_expr``, ``pg_get_constraintdef``). A partition's
    constraints cloned from its parent's come with the ``ATTACH``."""
    name = sql.Identifier(table.schema, table.table)
    out: list[tuple[int, str, sql.Composable]] = []
    for schema, parent in table.parents:
        under = sql.Identifier(schema, parent)
        if table.bound:
            out.append((2, f"its place in partitioned table {relation_key(schema, parent)}", sql.SQL(
                "ALTER TABLE {} ATTACH PARTITION {} ").format(under, name) + sql.SQL(table.bound)))
        else:
            out.append((2, f"its parent {relation_key(schema, parent)}",
                        sql.SQL("ALTER TABLE {} INHERIT {}").format(name, under)))
    for column, _kind, _notnull, default, identity, generated, *_ in table.columns:
        col = sql.Identifier(column)
        if identity in ("a", "d"):
            out.append((0, f"the identity of column {column}", sql.SQL("ALTER TABLE {} ALTER COLUMN {} ADD GENERATED "
                        "{} AS IDENTITY").format(name, col, sql.SQL("ALWAYS" if identity == "a" else "BY DEFAULT"))))
        elif default and not generated:
            out.append((0, f"the default of column {column}", sql.SQL("ALTER TABLE {} ALTER COLUMN {} SET DEFAULT ")
                        .format(name, col) + sql.SQL(default)))
    for conname, contype, definition in table.constraints:  # CHECK before ATTACH (it requires the parent's)
        out.append((1 if contype == "c" else 4 if contype == "f" else 3, f"constraint {conname}", sql.SQL(
            "ALTER TABLE {} ADD CONSTRAINT {} ").format(name, sql.Identifier(conname)) + sql.SQL(definition)))
    return out


def complete(login_dsn: str, tables: list[Unreadable]) -> tuple[list[str], dict[str, str]]:
    """As the copy's login (the stand-ins' owner until the target's owners are given: what runs here can do no more
    than the dump's load, which it runs too), each stand-in's defaults, identity and constraints from the target's
    catalog (:func:`_additions`): an INSERT the target refuses for a CHECK, a key or a NOT NULL without default is
    refused there too, one it accepts is accepted. Returns (notes, the stand-ins the copy could not make as the
    target has them: their :attr:`Unreadable.key` and what they lack). A statement touching one of those is not
    testable there (:func:`agent19.migrate.dryrun.isolated.label`)."""
    lacking: dict[str, list[str]] = {t.key: list(t.missing) for t in tables if t.missing}
    failed: list[str] = []
    with catalog_first.connect(login_dsn, autocommit=True, options="-c search_path=pg_catalog,pg_temp") as conn:
        exists = {(str(row[0]), str(row[1])) for row in conn.execute(Q_RELATIONS).fetchall()}
        made = [t for t in tables if (t.schema, t.table) in exists]
        # by order over all stand-ins: a foreign key after the keys it references, on other stand-ins too
        steps = sorted(((order, t, what, statement) for t in made for order, what, statement in _additions(t)),
                       key=lambda step: step[0])
        for _order, table, what, statement in steps:
            try:
                conn.execute(statement)
            except psycopg.Error as exc:
                lacking.setdefault(table.key, []).append(what)
                failed.append(f"{table.key}: {what} ({isolated_access.first_line(exc)})")
    for table in tables:
        if table not in made:
            lacking.setdefault(table.key, []).append("its table (not stood in for)")
    notes = []
    if failed:
        notes.append(f"{len(failed)} default(s) or constraint(s) of tables left out could not be made on their "
                     "stand-ins, e.g. " + "; ".join(failed[:3]))
    return notes, {key: ", ".join(what) for key, what in lacking.items()}


def note(tables: list[Unreadable]) -> list[str]:
    """The result's note of the tables left out (at most :data:`SHOWN` named)."""
    if not tables:
        return []
    names = ", ".join(f"{t.schema}.{t.table}" for t in tables[:SHOWN]) + (f" and {len(tables) - SHOWN} more"
                                                                 if len(tables) > SHOWN else "")
    return [f"{len(tables)} table(s) this login cannot read on the target (no USAGE on the schema or no SELECT: "
            f"pg_dump cannot lock them) are left out of the copy: {names}; each is an empty table there with its "
            "columns, defaults and constraints (no triggers, rules, policies nor other indexes: a statement touching "
            "one that has them on the target is not testable), its owner and privileges on the target (a statement "
            "touching it is refused as on the target)"]
