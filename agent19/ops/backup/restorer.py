"""Who runs a dump's SQL when a backup is verified: never a superuser.

A dump is the source database's objects as SQL, and restoring it runs code its owners wrote: a CHECK
constraint, a column default, an index expression or a trigger calls their functions for every row
loaded. Run as a superuser, such a function can ``COPY … TO PROGRAM`` (a shell command as the
server's OS user) or write files. ``SET ROLE`` (what ``pg_restore --role`` does) is no boundary:
the session user stays a superuser, so the planted function can ``RESET ROLE`` first.

So the restore *logs in* as a role without those powers:

* **throwaway cluster** — :data:`RESTORER` (LOGIN, BYPASSRLS only), which owns the database it
  restores into and every object in it (``--no-owner``). Extensions a non-superuser may not create
  (untrusted ones) are created first by the cluster's superuser — by name, from a strict parse of
  the dump's ``CREATE EXTENSION`` entries, never the dump's text — and their entries (with their
  comments and schemas) are left out of what the restorer runs. Event triggers need a superuser
  and would run code during the restore: they are left out, and said so. Extensions such as dblink
  and postgres_fdw refuse a non-superuser a connection that used no password, so the cluster's
  trust authentication gives the restorer no way back in as the superuser.
* **scratch database** — the restore runs as agent19's own login *on the target's server*, where
  even a plain role can change its own password and role settings (``ALTER ROLE CURRENT_USER``).
  So only the target's own objects, written by roles that already hold the login's privileges, are
  restored there: :func:`scratch_objection` refuses a dump file (SQL from outside), functions
  owned by any other role, and a login that is a superuser, has CREATEROLE (which can grant itself
  the roles below) or is a member of ``pg_execute_server_program`` / ``pg_write_server_files`` /
  ``pg_read_server_files``. The caller then refuses, or (``auto``) restores into a cluster.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import psycopg
from psycopg import sql
from psycopg.rows import tuple_row

from agent19.db import catalog_first
from agent19.errors import InputError
from agent19.ops.backup.workdir import run

RESTORER = "agent19_restorer"
OS_ROLES = ("pg_execute_server_program", "pg_write_server_files", "pg_read_server_files")
QUALIFIED_SQL = True  # its statements name functions, operators, types, catalog relations pg_catalog.-qualified
# the operators the unqualified text chose (same argument types): same rows
EQ, NE, NOT_LIKE = "OPERATOR(pg_catalog.=)", "OPERATOR(pg_catalog.<>)", "OPERATOR(pg_catalog.!~~)"

Q_LOGIN_POWERS = f"""
SELECT r.rolsuper, r.rolcreaterole,
       array(SELECT b.rolname::pg_catalog.text FROM pg_catalog.pg_roles b
              WHERE b.rolname {EQ} ANY(%s) AND pg_catalog.pg_has_role(r.oid, b.oid, 'MEMBER') ORDER BY 1) AS os_roles
  FROM pg_catalog.pg_roles r WHERE r.rolname {EQ} current_user"""


def unsafe_login(conn: psycopg.Connection[Any]) -> str | None:
    """Why this login must not run a dump's SQL (its functions would run with its powers), or None."""
    row = conn.cursor(row_factory=tuple_row).execute(Q_LOGIN_POWERS, (list(OS_ROLES),)).fetchone()
    if row is None:
        return None
    superuser, createrole, os_roles = row
    if superuser:
        return "it is a superuser"
    if createrole:
        return "it has CREATEROLE (it can grant itself pg_execute_server_program)"
    if os_roles:
        return f"it is a member of {', '.join(os_roles)}"
    return None


_USER = (f"n.nspname {NE} 'information_schema' AND n.nspname {NOT_LIKE} 'pg\\_%'"
         f" AND NOT EXISTS (SELECT 1 FROM pg_catalog.pg_depend d WHERE d.classid {EQ} "
         f"'pg_catalog.{{cat}}'::pg_catalog.regclass AND d.objid {EQ} {{oid}} AND d.deptype {EQ} 'e')")
Q_FOREIGN_CODE = f"""
SELECT DISTINCT owner::pg_catalog.regrole::pg_catalog.text FROM (
    SELECT p.proowner AS owner FROM pg_catalog.pg_proc p JOIN pg_catalog.pg_namespace n ON n.oid {EQ} p.pronamespace
     WHERE {_USER.format(cat='pg_proc', oid='p.oid')}
    UNION ALL  -- CHECK constraints, defaults, generated columns, index expressions, materialized view queries
    SELECT c.relowner FROM pg_catalog.pg_class c JOIN pg_catalog.pg_namespace n ON n.oid {EQ} c.relnamespace
     WHERE c.relkind {EQ} ANY ('{{r,p,m}}'::pg_catalog."char"[]) AND {_USER.format(cat='pg_class', oid='c.oid')}
    UNION ALL  -- a domain's CHECK runs for every value loaded
    SELECT t.typowner FROM pg_catalog.pg_type t JOIN pg_catalog.pg_namespace n ON n.oid {EQ} t.typnamespace
     WHERE t.typtype {EQ} 'd' AND {_USER.format(cat='pg_type', oid='t.oid')}
) AS o WHERE NOT pg_catalog.pg_has_role(owner, current_user, 'USAGE')
 ORDER BY 1 LIMIT 5"""


def scratch_objection(conn: psycopg.Connection[Any], from_file: bool) -> str | None:
    """Why the dump must not be restored by this login in a scratch database on the target's server, or None."""
    why = unsafe_login(conn)
    if why:
        return why
    if from_file:
        return ("a dump file is SQL from outside this database: restored here it would run as this login on the "
                "target's server, where a role may change its own password and settings")
    owners = [r[0] for r in conn.cursor(row_factory=tuple_row).execute(Q_FOREIGN_CODE).fetchall()]
    if owners:
        return (f"functions and expressions (CHECK, defaults, index expressions) of objects owned by "
                f"{', '.join(owners)} would run as this login, with privileges those roles do not have")
    return None


def unsafe_scratch(why: str) -> InputError:
    return InputError(
        f"refusing to restore into a scratch database as this login: {why}. The dump's CHECK constraints, "
        "defaults, index expressions and triggers call functions that the database's owners wrote; restored as "
        "this login they would run with its powers (a shell command through COPY ... TO PROGRAM, files written "
        "on the server)",
        "use --restore-into cluster (a throwaway cluster here, restored by a role without privileges); a scratch "
        "database suits the live database verified as its own owner role (no SUPERUSER, no CREATEROLE, CREATEDB)")


Q_MAY_CREATE = f"SELECT current_user, rolcreatedb OR rolsuper FROM pg_catalog.pg_roles WHERE rolname {EQ} current_user"


def may_create_databases(conn: psycopg.Connection[Any]) -> tuple[str, bool]:
    """(this login, whether it may create a scratch database: CREATEDB or superuser)."""
    row = conn.cursor(row_factory=tuple_row).execute(Q_MAY_CREATE).fetchone()
    return (str(row[0]), bool(row[1])) if row else ("?", False)


def no_createdb(login: str, major: int, binaries: bool) -> InputError:
    cluster = ("or --restore-into cluster (a throwaway cluster in --work-dir, restored by a role without "
               "privileges; read-only mode does the same)" if binaries else
               f"or install postgresql-{major} server binaries here for --restore-into cluster (a throwaway cluster)")
    return InputError(f"could not verify: a scratch database needs CREATEDB, and login {login} lacks it",
                      f"ALTER ROLE {login} CREATEDB (as a superuser or a CREATEROLE role), {cluster}")


_IDENT = r'(?:"(?:[^"]|"")+"|[A-Za-z_][A-Za-z0-9_$]*)'
_CREATE_EXT = re.compile(rf"^CREATE EXTENSION IF NOT EXISTS ({_IDENT}) WITH SCHEMA ({_IDENT});$")


def _unquote(ident: str) -> str:
    return ident[1:-1].replace('""', '"') if ident.startswith('"') else ident.lower()


def parse_extensions(script: str) -> list[tuple[str, str]]:
    """``(extension, schema)`` of each ``CREATE EXTENSION IF NOT EXISTS x WITH SCHEMA s;`` line (pg_dump's form)."""
    out = []
    for line in script.splitlines():
        m = _CREATE_EXT.match(line.strip())
        if m:
            out.append((_unquote(m.group(1)), _unquote(m.group(2))))
    return out


def archive_listing(pg_restore: str, path: Path) -> list[str]:
    """``pg_restore -l`` of a custom or directory archive (its table of contents)."""
    done = run([pg_restore, "-l", path])
    return done.stdout.decode(errors="replace").splitlines() if done.returncode == 0 else []


_TOC = re.compile(r"^\d+; \d+ \d+ ")


def archive_extensions(pg_restore: str, path: Path, listing: list[str], work: Path) -> list[tuple[str, str]]:
    """The extensions an archive creates, read from the SQL pg_restore prints for its EXTENSION entries."""
    entries = [ln for ln in listing if _TOC.match(ln) and ln.split(" ", 3)[3].startswith("EXTENSION ")]
    if not entries:
        return []
    only = work / "extensions.list"
    only.write_text("\n".join(entries) + "\n")
    done = run([pg_restore, "-L", only, "-f", "-", path])
    return parse_extensions(done.stdout.decode(errors="replace"))


Q_SOURCE_EXTENSIONS = (
    "SELECT e.extname::pg_catalog.text, n.nspname::pg_catalog.text FROM pg_catalog.pg_extension e "
    f"JOIN pg_catalog.pg_namespace n ON n.oid {EQ} e.extnamespace WHERE e.extname {NE} 'plpgsql' ORDER BY e.oid")
Q_EVENT_TRIGGERS = "SELECT EXISTS (SELECT 1 FROM pg_catalog.pg_event_trigger)"


def source_extensions(conn: psycopg.Connection[Any]) -> list[tuple[str, str]]:
    cur = conn.cursor(row_factory=tuple_row)
    return [(r[0], r[1]) for r in cur.execute(Q_SOURCE_EXTENSIONS).fetchall()]


def source_has_event_triggers(conn: psycopg.Connection[Any]) -> bool:
    row = conn.cursor(row_factory=tuple_row).execute(Q_EVENT_TRIGGERS).fetchone()
    return bool(row and row[0])


CREATE_RESTORER = "CREATE ROLE {} LOGIN NOSUPERUSER NOCREATEDB NOCREATEROLE NOREPLICATION BYPASSRLS"
CREATE_DATABASE = "CREATE DATABASE {} OWNER {}"


def create_restorer(admin_dsn: str, dbname: str) -> None:
    """In a throwaway cluster: the restoring role and the empty database it owns."""
    with catalog_first.connect(admin_dsn, autocommit=True) as conn:
        conn.execute(sql.SQL(CREATE_RESTORER).format(sql.Identifier(RESTORER)))
        conn.execute(sql.SQL(CREATE_DATABASE).format(sql.Identifier(dbname), sql.Identifier(RESTORER)))


Q_NEEDS_SUPERUSER = (
    "SELECT v.superuser AND NOT v.trusted FROM pg_catalog.pg_available_extensions a "
    f"JOIN pg_catalog.pg_available_extension_versions v ON v.name {EQ} a.name AND v.version {EQ} a.default_version "
    f"WHERE a.name {EQ} %s")


def needs_superuser(conn: psycopg.Connection[Any], extension: str) -> bool:
    """The extension's default version may be created only by a superuser (not trusted)."""
    row = conn.cursor(row_factory=tuple_row).execute(Q_NEEDS_SUPERUSER, (extension,)).fetchone()
    return bool(row and row[0])


CREATE_SCHEMA = "CREATE SCHEMA IF NOT EXISTS {} AUTHORIZATION {}"
CREATE_EXTENSION = "CREATE EXTENSION IF NOT EXISTS {} WITH SCHEMA {}"


def precreate(admin_dsn: str, extensions: list[tuple[str, str]],
              owner: str = RESTORER) -> tuple[list[str], list[str], list[str]]:
    """As the cluster's superuser, create the extensions the restorer may not (and their schemas, owned by
    the restorer, or ``owner``). Returns (extensions created, schemas created, errors)."""
    made: list[str] = []
    schemas: list[str] = []
    errors: list[str] = []
    with catalog_first.connect(admin_dsn, autocommit=True) as conn:
        for name, schema in extensions:
            if not needs_superuser(conn, name):
                continue  # trusted (the restorer creates it) or not installed here (the restore says so)
            try:
                if schema not in ("public", "pg_catalog") and schema not in schemas:
                    conn.execute(sql.SQL(CREATE_SCHEMA).format(sql.Identifier(schema), sql.Identifier(owner)))
                    schemas.append(schema)
                conn.execute(sql.SQL(CREATE_EXTENSION).format(sql.Identifier(name), sql.Identifier(schema)))
                made.append(name)
            except psycopg.Error as exc:
                errors.append(f"extension {name}: {str(exc).strip().splitlines()[0]}")
    return made, schemas, errors


def restore_list(listing: list[str], extensions: list[str], schemas: list[str]) -> tuple[list[str], list[str]]:
    """The archive's table of contents with what the restorer must not run commented out: the pre-created
    extensions (and their comments and schemas) and event triggers. Returns (list, notes)."""
    out, notes = [], []
    for line in listing:
        rest = line.split(" ", 3)[3] if _TOC.match(line) else ""
        drop = any(rest.startswith(f"EXTENSION - {e} ") or rest.startswith(f"COMMENT - EXTENSION {e} ")
                   for e in extensions) or any(rest.startswith(f"SCHEMA - {s} ") for s in schemas)
        if rest.startswith("EVENT TRIGGER ") or rest.startswith("COMMENT - EVENT TRIGGER "):
            drop = True
            if rest.startswith("EVENT TRIGGER "):
                notes.append(f"event trigger {rest.split(' ')[3]} not restored: creating one needs a superuser, "
                             "and it would run its function during the restore")
        out.append(";" + line if drop else line)
    return out, notes


_OWNERSHIP = re.compile(r"^(ALTER [A-Z ]+ .* OWNER TO .*;|GRANT .*;|REVOKE .*;|ALTER DEFAULT PRIVILEGES .*;)$")
_COPY_START = re.compile(rb"^COPY .* FROM stdin;$")


class PlainFilter:
    """Line by line, what a plain dump's psql script may run as the restorer: ownership and privilege lines
    (``--no-owner --no-privileges``, as for pg_restore), and the pre-created extensions' comments and schemas,
    are dropped; COPY data passes untouched."""

    def __init__(self, extensions: list[str], schemas: list[str]) -> None:
        self.in_copy = False
        self.skip = {f"COMMENT ON EXTENSION {sql_ident(e)} IS" for e in extensions}
        self.schemas = {f"CREATE SCHEMA {sql_ident(s)};" for s in schemas}

    def keep(self, line: bytes) -> bool:
        stripped = line.rstrip(b"\r\n")
        if self.in_copy:
            self.in_copy = stripped != b"\\."
            return True
        if _COPY_START.match(stripped):
            self.in_copy = True
            return True
        text = stripped.decode(errors="replace")
        if _OWNERSHIP.match(text) or text in self.schemas:
            return False
        return not any(text.startswith(s) for s in self.skip)


def sql_ident(name: str) -> str:
    """How pg_dump writes an identifier: bare when it is a plain lower-case name, else double-quoted."""
    return name if re.fullmatch(r"[a-z_][a-z0-9_]*", name) else '"' + name.replace('"', '""') + '"'


def plain_extensions(path: Path) -> list[tuple[str, str]]:
    """The extensions a plain dump creates (its top-level ``CREATE EXTENSION IF NOT EXISTS`` lines)."""
    found: list[tuple[str, str]] = []
    in_copy = False
    with open(path, "rb") as f:
        for raw in f:
            line = raw.rstrip(b"\r\n")
            if in_copy:
                in_copy = line != b"\\."
            elif _COPY_START.match(line):
                in_copy = True
            elif line.startswith(b"CREATE EXTENSION "):
                found += parse_extensions(line.decode(errors="replace"))
    return found
