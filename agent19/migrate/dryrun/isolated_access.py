"""The target's owners, privileges and settings in an isolated copy (:mod:`agent19.migrate.dryrun.isolated`).

The copy's schema is restored by the target's login (``--no-owner --no-privileges``): it would own every object there
and hold every privilege, so an ``ALTER TABLE`` on a table another role owns, or an ``INSERT`` the login may not do,
would pass there and fail on the target. And ``pg_dump`` does not dump ``ALTER DATABASE/ROLE … SET``
(``pg_db_role_setting``): an unqualified name resolved through the target's ``search_path`` would not resolve there.
So, once the schema is restored, the copy's bootstrap superuser makes the copy decide as the target does:

* **owners** — every schema, relation (tables, views, materialized views, sequences not owned by a column, foreign
  tables), function/procedure/aggregate, type/domain, collation, conversion, operator (class, family), text search
  dictionary/configuration, statistics object and foreign server, and the database itself, gets its owner on the
  target: ``ALTER … OWNER TO``;
* **privileges** — each object's ACL (and each column's) is made the target's: what the target's ACL has beyond the
  owner's default is granted, what it lacks of that default is revoked (as the owner: a superuser's GRANT/REVOKE acts
  for the owner); default privileges (``pg_default_acl``) likewise;
* **settings** — the ``pg_db_role_setting`` rows that apply to the login in the target's database (database-wide,
  the login's, the login's in that database) are set there for the login only (``ALTER ROLE … [IN DATABASE …] SET``,
  a database-wide one too: ``ALTER DATABASE … SET`` would reach the copy's superuser sessions, a ``search_path``
  through the login's schemas making them run its code); one the copy refuses is said in the result.

No object gets an owner more powerful in the copy than on the target: one owned there by a predefined role
(``pg_execute_server_program``, ``pg_write_server_files``, …: in the copy, their power is over agent19's machine) or
by a role named as the copy's superuser stays the login's, said in the result; no ``pg_*`` membership is granted
(:func:`agent19.migrate.dryrun.isolated._roles`); a target's superuser is a NOLOGIN role without attributes there.

All of it is computed from the **target's catalog** (:data:`Q_OWNERS`, :data:`Q_SETTINGS`, and the ACLs'
:mod:`agent19.migrate.dryrun.isolated_acl`), never from the dump's text, which a table comment or a function body can
shape: the catalog's rows (a keyword, ``pg_identify_object``'s quoted identity, role names, a privilege) are composed
into statements here and there, names quoted, keywords and privileges from fixed lists, identities checked to be names
and argument lists only (:func:`owner_statement`, :func:`agent19.migrate.dryrun.isolated_acl.acl_statement`): not even
a server that answers with crafted rows makes the copy's superuser run another statement. The ACLs are read from the
catalog (``aclexplode``) rather than from a second, custom-format ``pg_dump`` restored with ``pg_restore -L``: the copy
already has one plain dump (kept by a running server while the catalogs are unchanged, which it may be across a
GRANT), a second dump would read the target again and take its locks again, and the catalog gives the same rows
without parsing any archive.

Running these statements as the copy's superuser is safe: ``ALTER … OWNER TO``, ``GRANT``/``REVOKE``, ``ALTER DEFAULT
PRIVILEGES`` and ``ALTER ROLE … SET`` change catalog rows only and run no user code (no trigger, no function, no
expression of the restored schema), unlike the restore itself, which the login runs; and the superuser's sessions
pin their search_path (:data:`agent19.migrate.dryrun.isolated.PINNED`).
"""

from __future__ import annotations

import dataclasses
from typing import Any

import psycopg
from psycopg import sql
from psycopg.rows import tuple_row

from agent19.db import catalog_first
from agent19.db.catalog import EQ, NE
from agent19.db.connection import Database
from agent19.migrate.dryrun.isolated_acl import (
    KEYWORDS,
    Q_ACL,
    Q_DEFAULT_ACL,
    USER_OBJECTS,
    Unexpected,
    _identity,
    _word,
    acl_statement,
    default_acl_statement,
)

QUALIFIED_SQL = True  # its statements name functions, operators, types, catalog relations pg_catalog.-qualified

Q_OWNERS = f"""
SELECT u.kw, u.identity, r.rolname::pg_catalog.text
  FROM ({USER_OBJECTS}) u JOIN pg_catalog.pg_roles r ON r.oid {EQ} u.owner
 ORDER BY u.cat {EQ} 'pg_database'::pg_catalog.regclass, u.cat {EQ} 'pg_namespace'::pg_catalog.regclass, u.kw,
          u.identity"""
"""(keyword, identity, owner) of each object: ``ALTER … OWNER TO`` (the database last: the login keeps it till then)."""

Q_SETTINGS = f"""
SELECT CASE WHEN s.setrole {EQ} 0 THEN 'database' WHEN s.setdatabase {EQ} 0 THEN 'role' ELSE 'role in database' END,
       s.setconfig
  FROM pg_catalog.pg_db_role_setting s
 WHERE (s.setdatabase {EQ} (SELECT oid FROM pg_catalog.pg_database WHERE datname {EQ} pg_catalog.current_database())
        OR s.setdatabase {EQ} 0)
   AND (s.setrole {EQ} (SELECT oid FROM pg_catalog.pg_roles WHERE rolname {EQ} session_user)
        OR (s.setrole {EQ} 0 AND s.setdatabase {NE} 0))
 ORDER BY 1"""
"""The settings that apply to the login's sessions in the target database: database-wide, the login's (the role it
logs in as: ``session_user``), the login's in this database."""

LIST_QUOTE = ("local_preload_libraries", "search_path", "session_preload_libraries", "shared_preload_libraries",
              "temp_tablespaces", "unix_socket_directories")
"""Settings whose value is a list stored with its elements quoted (``"$user", public``): set element by element."""
REFUSED = {"agent19.": "agent19's own: agent19.isolated_copy is the copy's guard token, the target's would replace it",
           "session_preload_libraries": "libraries of the target's server, loaded at every connection (one missing "
                                        "here would refuse every connection)",
           "local_preload_libraries": "libraries of the target's server, loaded at every connection (one missing "
                                      "here would refuse every connection)"}
"""Settings never copied (a name, or a prefix ending in a dot), and why."""


@dataclasses.dataclass
class Access:
    """What the copy is given of the target: the rows of :data:`Q_OWNERS`, :data:`Q_ACL`, :data:`Q_DEFAULT_ACL` and
    :data:`Q_SETTINGS` (composed into statements by :func:`apply`)."""

    owners: list[tuple[Any, ...]]
    acl: list[tuple[Any, ...]]
    default_acl: list[tuple[Any, ...]]
    settings: list[tuple[str, list[str]]]
    inherit: bool = True
    """The login's INHERIT: a NOINHERIT login has no privileges of the roles it is a member of until SET ROLE."""


Q_INHERIT = f"SELECT rolinherit FROM pg_catalog.pg_roles WHERE rolname {EQ} current_user"
"""The login's INHERIT (:attr:`Access.inherit`)."""


def read_target(conn: psycopg.Connection[Any]) -> Access:
    """The target's owners, ACLs, default privileges and settings for this login (catalog reads only)."""
    cur = conn.cursor(row_factory=tuple_row)
    inherit = cur.execute(Q_INHERIT).fetchone()
    return Access(*(list(cur.execute(q).fetchall()) for q in (Q_OWNERS, Q_ACL, Q_DEFAULT_ACL)),
                  [(str(r[0]), list(r[1] or [])) for r in cur.execute(Q_SETTINGS).fetchall()],
                  inherit=bool(inherit[0]) if inherit else True)


def owner_statement(row: tuple[Any, ...]) -> sql.Composed:
    kw, identity, owner = row
    return sql.SQL("ALTER {} {} OWNER TO {}").format(_word(kw, KEYWORDS), _identity(identity), sql.Identifier(owner))




def read_access(db: Database) -> Access:
    """:func:`read_target` on a read-only transaction of ``db`` (the target)."""
    with db.read() as conn:
        return read_target(conn)


def split_list(value: str) -> list[str]:
    """The elements of a list setting as the server stores it (``"$user", public``), as the server splits it: a
    double-quoted element (``""`` is one quote) or an unquoted one up to a space or comma; spaces between dropped."""
    out: list[str] = []
    i, n = 0, len(value)
    while i < n:
        while i < n and value[i].isspace():
            i += 1
        if i >= n:
            break
        item: list[str] = []
        if value[i] == '"':
            i += 1
            while i < n:
                if value[i] == '"':
                    if value[i + 1:i + 2] != '"':
                        i += 1
                        break
                    i += 1
                item.append(value[i])
                i += 1
        else:
            while i < n and value[i] != "," and not value[i].isspace():
                item.append(value[i])
                i += 1
        out.append("".join(item))
        while i < n and value[i] != ",":
            i += 1
        i += 1
    return out


def set_statement(level: str, login: str, dbname: str, entry: str) -> sql.Composed:
    """``ALTER ROLE … [IN DATABASE …] SET name = value`` of one ``name=value`` entry of ``pg_db_role_setting``: the
    login's, a database-wide entry too (never ``ALTER DATABASE``: the copy's superuser sessions would follow it)."""
    name, _, value = entry.partition("=")
    # a database-wide row is set for the login only: ALTER DATABASE … SET would reach the copy's superuser too
    in_db = sql.SQL("ROLE {} IN DATABASE {}").format(sql.Identifier(login), sql.Identifier(dbname))
    target = {"database": in_db, "role": sql.SQL("ROLE {}").format(sql.Identifier(login)),
              "role in database": in_db}[level]
    values = split_list(value) if name.lower() in LIST_QUOTE else [value]
    rhs = sql.SQL(", ").join(sql.Literal(v) for v in values) if values else sql.Literal("")
    return sql.SQL("ALTER {} SET {} = {}").format(target, sql.Identifier(*name.split(".")), rhs)


def _powerful(role: Any, superuser: str) -> bool:
    """``role`` is the copy's superuser or a predefined role (``pg_execute_server_program``, …: on this machine)."""
    return role == superuser or str(role).startswith("pg_")


ABSENT = frozenset({"42704", "42P01", "42883", "3F000"})
"""SQLSTATEs of an owner or privilege statement whose object is not in the copy (not restored there: said apart, and a
statement using it fails there): undefined object, table, function, schema."""


@dataclasses.dataclass
class Applied:
    """What :func:`apply` could not make as on the target."""

    notes: list[str]
    """One note per kind, a few examples each (for the result's restore errors)."""
    unmade: list[str]
    """Owner and privilege statements refused for an object the copy has: the copy may then allow what the target
    refuses (an object left the login's, a privilege not revoked), so no statement that ran there may pass on it
    (:func:`agent19.migrate.dryrun.isolated.label`)."""


def apply(admin_dsn: str, access: Access, login: str, dbname: str, superuser: str) -> Applied:
    """As the copy's superuser ``superuser`` (on its copy of the database), the target's owners, ACLs and settings;
    returns what could not be made as the target has it. An object the target's predefined role (or a role named as
    the copy's superuser) owns stays the login's: in the copy, such a role's power is over this machine."""
    failed: dict[str, list[str]] = {}
    unmade: list[str] = []
    notes: list[str] = []
    kept = [f"{row[0]} {row[1]} (owned by {row[2]})" for row in access.owners if _powerful(row[2], superuser)]
    if kept:
        notes.append(f"{len(kept)} object(s) owned on the target by a predefined role stay owned by {login} in the "
                     "copy (that role's power there would be over agent19's machine): " + "; ".join(kept[:5]))
    owners = [row for row in access.owners if not _powerful(row[2], superuser)]
    acl = [row for row in access.acl if row[5] != superuser]
    default_acl = [row for row in access.default_acl if superuser not in (row[3], row[5])]
    # a database-wide setting the login's own setting overrides on the target is not set (both are the login's here)
    own = {e.partition("=")[0].lower() for level, entries in access.settings if level != "database" for e in entries}
    settings = [(level, [e for e in entries if level != "database" or e.partition("=")[0].lower() not in own])
                for level, entries in access.settings]
    with catalog_first.connect(admin_dsn, autocommit=True) as conn:
        if not access.inherit:  # its memberships (isolated._roles) then give it nothing without SET ROLE, as there
            conn.execute(sql.SQL("ALTER ROLE {} NOINHERIT").format(sql.Identifier(login)))
        for kind, make, rows in (("owner", owner_statement, owners), ("privilege", acl_statement, acl),
                                 ("default privilege", default_acl_statement, default_acl)):
            for row in rows:
                try:  # composed from the target's catalog rows (names quoted here), never from the dump's text
                    statement = make(row)
                    conn.execute(statement)
                except (psycopg.Error, Unexpected) as exc:
                    failed.setdefault(kind, []).append(f"{row} ({first_line(exc)})")
                    if not (isinstance(exc, psycopg.Error) and exc.sqlstate in ABSENT):
                        unmade.append(f"{kind} {row}: {first_line(exc)}")
        notices: list[str] = []  # what the server says of a setting it accepts (a name that does not exist here)
        conn.add_notice_handler(lambda diagnostic: notices.append(str(diagnostic.message_primary)))
        for level, entries in settings:
            for entry in entries:
                name = entry.partition("=")[0].lower()
                why = [w for prefix, w in REFUSED.items() if name == prefix or prefix.endswith(".")
                       and name.startswith(prefix)]
                if why:
                    notes.append(f"the target's {level} setting {entry} is not copied: {why[0]}")
                    continue
                notices.clear()
                try:
                    conn.execute(set_statement(level, login, dbname, entry))
                except psycopg.Error as exc:
                    notes.append(f"the target's {level} setting {entry} is not set in the copy: {first_line(exc)}")
                notes += [f"the target's {level} setting {entry}: {n}" for n in notices]
    for kind, items in failed.items():
        if items:
            notes.append(f"{len(items)} {kind} statement(s) could not be made as on the target, e.g. "
                         + "; ".join(items[:3]))
    return Applied(notes, unmade)


def first_line(exc: Exception) -> str:
    return str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
