"""The schema-only copy of a scratch database (:mod:`agent19.migrate.dryrun.scratch`): ``pg_dump --schema-only``
of the target piped into ``psql``, without the extensions this login cannot create (and what it depended on, for a
copy made earlier: :func:`login_now`), and optionally a sample of rows."""

from __future__ import annotations

import os
import re
from collections.abc import Sequence
from typing import Any

import psycopg
from psycopg import sql

from agent19 import children
from agent19.db import catalog_first
from agent19.db.binaries import pg_binary
from agent19.db.child_env import child_connection
from agent19.migrate.patterns.sqlnames import from_server

QUALIFIED_SQL = True  # its statements name functions, operators, types, catalog relations pg_catalog.-qualified
EQ = "OPERATOR(pg_catalog.=)"  # the operator the unqualified text chose (same argument types): same rows
Q_EXTENSIONS = (
    "SELECT e.extname, coalesce(v.trusted, false) OR (SELECT rolsuper FROM pg_catalog.pg_roles "
    f"WHERE rolname {EQ} current_user) FROM pg_catalog.pg_extension e "
    "LEFT JOIN pg_catalog.pg_available_extension_versions v "
    f"ON v.name {EQ} e.extname AND v.version {EQ} e.extversion WHERE e.extname OPERATOR(pg_catalog.<>) 'plpgsql' "
    "ORDER BY 1")
"""The target's extensions, and whether this login can create each (trusted, or a superuser)."""
SET_HOLDERS_TIMEOUT = "SET statement_timeout = 5000"
Q_HOLDERS = (
    f"SELECT DISTINCT l.pid FROM pg_catalog.pg_locks l WHERE l.granted AND l.mode {EQ} 'AccessExclusiveLock' "
    f"AND l.relation {EQ} ANY (SELECT pg_catalog.to_regclass(t) FROM pg_catalog.unnest(%s::pg_catalog.text[]) t) "
    "ORDER BY 1")
"""The sessions holding ACCESS EXCLUSIVE on any of the tables ``%s`` (names as pg_dump prints them)."""
SET_REPLICA = "SET session_replication_role = replica"
Q_COLUMNS = ("SELECT pg_catalog.array_agg(attname::pg_catalog.text ORDER BY attnum) FROM pg_catalog.pg_attribute "
             f"WHERE attrelid {EQ} %s::pg_catalog.regclass AND attnum OPERATOR(pg_catalog.>) 0 "
             f"AND NOT attisdropped AND attgenerated {EQ} ''")
"""A table's columns a sample copies (not dropped, not generated), in order."""
COPY_OUT = "COPY (SELECT {} FROM {} LIMIT {}) TO STDOUT (FORMAT binary)"
COPY_IN = "COPY {} ({}) FROM STDIN (FORMAT binary)"
Q_COUNT, ANALYZE = "SELECT pg_catalog.count(*) FROM {}", "ANALYZE {}"


def extensions(source_dsn: str) -> tuple[list[str], list[str]]:
    """The target's extensions: (those this role can create in a new database, those it cannot)."""
    with catalog_first.connect(source_dsn, autocommit=True, connect_timeout=5) as conn:
        rows = conn.execute(Q_EXTENSIONS).fetchall()
    return [r[0] for r in rows if r[1]], [r[0] for r in rows if not r[1]]


Q_LOGIN = """SELECT EXISTS (SELECT 1 FROM pg_catalog.pg_database WHERE datname OPERATOR(pg_catalog.=) %(name)s),
       r.rolsuper, r.rolcreatedb
 FROM pg_catalog.pg_roles r WHERE r.rolname OPERATOR(pg_catalog.=) current_user"""
"""Whether the database ``name`` exists, and the login's SUPERUSER and CREATEDB: what a copy made earlier is checked
against when it is about to be used (catalog reads only, not the extensions' control files)."""


def login_now(conn: psycopg.Connection[Any], name: str) -> tuple[bool, tuple[bool, bool]]:
    """(whether the database ``name`` exists, (the login's SUPERUSER, CREATEDB)): :data:`Q_LOGIN`."""
    row = conn.execute(Q_LOGIN, {"name": name}).fetchone()
    if row is None:
        return False, (False, False)
    values = list(row.values()) if isinstance(row, dict) else list(row)
    return bool(values[0]), (bool(values[1]), bool(values[2]))


def _without_extensions(dump: bytes, names: list[str]) -> bytes:
    """The dump without the CREATE/COMMENT ON EXTENSION lines of ``names``."""
    if not names:
        return dump
    alternatives = "|".join(re.escape(n) + "|" + re.escape(f'"{n}"') for n in names)
    pattern = re.compile(rf"^(CREATE EXTENSION IF NOT EXISTS|COMMENT ON EXTENSION) ({alternatives})\b.*$\n?",
                         re.MULTILINE)
    return pattern.sub("", dump.decode()).encode()


_LOCKED = re.compile(r"LOCK TABLE (.+?) IN ACCESS SHARE MODE")


def dump_schema(source_dsn: str, major: int, snapshot: str | None = None, *,
                lock_timeout_ms: int, exclude_tables: Sequence[str] = ()) -> tuple[bytes | None, str | None]:
    """The target's schema as SQL (``pg_dump --schema-only``): (the dump, None) or (None, why it failed).
    ``snapshot``: a snapshot exported by an open transaction (``pg_export_snapshot()``) to dump as of.
    ``exclude_tables``: pg_dump patterns (``--exclude-table``) of tables left out.

    pg_dump takes ACCESS SHARE on every table it dumps, and holds them until it ends: run it before the dry run's
    transaction locks them. ``lock_timeout_ms`` (the session's ``lock_timeout``) bounds its wait for each lock
    (``--lock-wait-timeout``): pg_dump waiting behind another session's lock would hold the locks it has, and an
    application's ALTER queued behind them would make every later query on those tables wait too."""
    pg_dump = pg_binary("pg_dump", major)
    if not pg_dump or not pg_binary("psql", major):
        return None, "pg_dump/psql not found"
    # the password travels in PGPASSWORD, never on the command line (readable by every local user)
    source, source_env = child_connection(source_dsn, {**os.environ, "PGCONNECT_TIMEOUT": "5"})
    dump = children.run(  # stopped first by an exit or signal cleanup: see agent19.children
        [pg_dump, "--schema-only", "--no-owner", "--no-privileges", "--no-publications", "--no-subscriptions",
         f"--lock-wait-timeout={int(lock_timeout_ms)}", *([f"--snapshot={snapshot}"] if snapshot else []),
         *(f"--exclude-table={pattern}" for pattern in exclude_tables),
         "-d", source], env=source_env, timeout=600,
    )
    if dump.returncode != 0:
        stderr = dump.stderr.decode(errors="replace").strip()
        if (waited := _LOCKED.search(stderr)) and "timeout" in stderr:
            tables = waited.group(1)
            return None, (f"pg_dump waited more than {int(lock_timeout_ms)} ms for a lock on {tables}"
                          f"{_holders(source_dsn, tables)}: {stderr[-300:]} (another session holds a lock on it: "
                          "retry when it is released, or raise lock_timeout)")
        return None, "pg_dump failed: " + stderr[-500:]
    return dump.stdout, None


def _holders(source_dsn: str, tables: str) -> str:
    """`` held by pid …`` for the sessions holding a lock on ``tables`` (pg_dump's text: names, comma-separated)
    that ACCESS SHARE conflicts with, now; empty when none is (any more) or they cannot be read."""
    try:
        with catalog_first.connect(source_dsn, autocommit=True, connect_timeout=5) as conn:
            conn.execute(SET_HOLDERS_TIMEOUT)
            rows = conn.execute(Q_HOLDERS, ([t.strip() for t in tables.split(",")],)).fetchall()
    except psycopg.Error as exc:  # the failure is still said, without the holders
        return f" (its holder could not be read: {str(exc).strip().splitlines()[0] if str(exc).strip() else exc})"
    return f" held by pid {', '.join(str(r[0]) for r in rows)}" if rows else ""


def load_schema(dest_dsn: str, major: int, dump: tuple[bytes | None, str | None],
                skip_extensions: list[str] | None = None, stop_on_error: bool = True) -> str | None:
    """Load ``dump`` (a :func:`dump_schema`) with psql; returns why it failed, or None on success. Extensions in
    ``skip_extensions`` (the role cannot create them) are left out; without ``stop_on_error`` every
    object that can be made is made and the errors are returned."""
    schema, failure = dump
    psql = pg_binary("psql", major)
    if schema is None or not psql:
        return failure or "pg_dump/psql not found"
    dest, dest_env = child_connection(dest_dsn, {**os.environ, "PGCONNECT_TIMEOUT": "5"})
    load = children.run(
        [psql, "-X", "-q", "-v", f"ON_ERROR_STOP={int(stop_on_error)}", "-d", dest],
        input=_without_extensions(schema, skip_extensions or []), env=dest_env, timeout=600,
    )
    errors = [ln.strip() for ln in load.stderr.decode(errors="replace").splitlines() if "ERROR:" in ln]
    if load.returncode != 0 or (errors and not stop_on_error):
        return "psql failed loading the schema: " + ("; ".join(errors[:5]) or load.stderr.decode()[-500:])[-500:]
    return None


def copy_sample(source_dsn: str, dest_dsn: str, tables: list[str], rows: int) -> tuple[dict[str, int], list[str]]:
    """Copy up to ``rows`` rows of each table (foreign keys and triggers off when permitted)."""
    copied: dict[str, int] = {}
    notes: list[str] = []
    with (catalog_first.connect(source_dsn, autocommit=True) as src,
          catalog_first.connect(dest_dsn, autocommit=True) as dst):
        try:
            dst.execute(SET_REPLICA)
        except psycopg.Error:
            notes.append("sample copied with foreign keys and triggers active (not a superuser)")
        for table in tables:
            cols = src.execute(Q_COLUMNS, (table,)).fetchone()  # quoted here (never SQL text the server wrote)
            if not cols or not cols[0]:
                continue
            col_list = sql.SQL(", ").join(sql.Identifier(c) for c in cols[0])
            rel = from_server(table)  # a regclass text from the server, quoted again here
            out_q = sql.SQL(COPY_OUT).format(col_list, rel, sql.Literal(rows))
            in_q = sql.SQL(COPY_IN).format(rel, col_list)
            try:
                with dst.transaction():
                    with src.cursor().copy(out_q) as reader, dst.cursor().copy(in_q) as writer:
                        for block in reader:
                            writer.write(block)
                count = dst.execute(sql.SQL(Q_COUNT).format(rel)).fetchone()
                copied[table] = int(count[0]) if count else 0
                dst.execute(sql.SQL(ANALYZE).format(rel))
            except psycopg.Error as exc:
                notes.append(f"no sample for {table}: {str(exc).strip().splitlines()[0]}")
    return copied, notes
