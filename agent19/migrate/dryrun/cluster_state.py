"""A fingerprint of the cluster-wide state a dry run must leave as it found it.

What is read (each part as far as the login may read it; a part it may not read is listed in
:attr:`ClusterFingerprint.unreadable` and cannot be compared):

* roles and their attributes (``pg_authid``: the password hash is compared as an md5 digest and
  never leaves the server; ``pg_roles`` when ``pg_authid`` is not readable — a password change is
  then invisible), role memberships (``pg_auth_members``), role and database settings
  (``pg_db_role_setting``);
* databases (owner, encoding, template, connections, tablespace, privileges; agent19's own scratch
  databases excluded), tablespaces, parameter privileges (``pg_parameter_acl``), comments on
  shared objects (``pg_shdescription``);
* replication slots that are not temporary (type, plugin, database; positions of inactive slots),
  subscriptions;
* what ``ALTER SYSTEM`` wrote: ``postgresql.auto.conf`` through ``pg_file_settings``.
"""

from __future__ import annotations

from typing import Any

import psycopg
from pydantic import BaseModel, Field

from agent19.db.catalog import CAT, EQ, NOT_LIKE
from agent19.migrate.dryrun.schema_diff import Difference

QUALIFIED_SQL = True  # its statements name functions, operators, types, catalog relations pg_catalog.-qualified
LIKE = "OPERATOR(pg_catalog.~~)"  # what LIKE is (its escape is the backslash, as ~~'s)

_PARTS: dict[str, str] = {
    "role": f"""SELECT rolname AS key, pg_catalog.concat_ws(' ', 'super=' {CAT} rolsuper,
                   'inherit=' {CAT} rolinherit, 'createrole=' {CAT} rolcreaterole, 'createdb=' {CAT} rolcreatedb,
                   'login=' {CAT} rolcanlogin, 'replication=' {CAT} rolreplication,
                   'bypassrls=' {CAT} rolbypassrls, 'connlimit=' {CAT} rolconnlimit,
                   'valid_until=' {CAT} coalesce(rolvaliduntil::pg_catalog.text, '-'),
                   'password=' {CAT} coalesce(pg_catalog.md5(rolpassword), '-')) AS value
                   FROM pg_catalog.pg_authid""",
    "membership": f"""SELECT m.rolname {CAT} ' in ' {CAT} r.rolname AS key,
                            'admin=' {CAT} a.admin_option {CAT} ' grantor=' {CAT} coalesce(g.rolname, '?') AS value
                       FROM pg_catalog.pg_auth_members a JOIN pg_catalog.pg_roles r ON r.oid {EQ} a.roleid
                       JOIN pg_catalog.pg_roles m ON m.oid {EQ} a.member
                       LEFT JOIN pg_catalog.pg_roles g ON g.oid {EQ} a.grantor""",
    "role_setting": f"""SELECT coalesce(r.rolname, 'ALL') {CAT} ' in database ' {CAT} coalesce(d.datname, 'ALL')
                                AS key, pg_catalog.array_to_string(s.setconfig, ', ') AS value
                         FROM pg_catalog.pg_db_role_setting s
                         LEFT JOIN pg_catalog.pg_roles r ON r.oid {EQ} s.setrole
                         LEFT JOIN pg_catalog.pg_database d ON d.oid {EQ} s.setdatabase""",
    "database": rf"""SELECT d.datname AS key, pg_catalog.concat_ws(' ',
                           'owner=' {CAT} pg_catalog.pg_get_userbyid(d.datdba),
                           'encoding=' {CAT} pg_catalog.pg_encoding_to_char(d.encoding),
                           'template=' {CAT} d.datistemplate, 'allowconn=' {CAT} d.datallowconn,
                           'connlimit=' {CAT} d.datconnlimit, 'tablespace=' {CAT} t.spcname,
                           'acl=' {CAT} coalesce(d.datacl::pg_catalog.text, '-')) AS value
                      FROM pg_catalog.pg_database d JOIN pg_catalog.pg_tablespace t ON t.oid {EQ} d.dattablespace
                     WHERE d.datname {NOT_LIKE} 'agent19\_scratch\_%'""",
    "tablespace": f"""SELECT spcname AS key, pg_catalog.concat_ws(' ',
                            'owner=' {CAT} pg_catalog.pg_get_userbyid(spcowner),
                            'location=' {CAT} pg_catalog.pg_tablespace_location(oid),
                            'acl=' {CAT} coalesce(spcacl::pg_catalog.text, '-'),
                            'options=' {CAT} coalesce(spcoptions::pg_catalog.text, '-')) AS value
                       FROM pg_catalog.pg_tablespace""",
    "replication_slot": f"""SELECT slot_name AS key, pg_catalog.concat_ws(' ', slot_type,
                                  'plugin=' {CAT} coalesce(plugin, '-'), 'database=' {CAT} coalesce(database, '-'),
                                  CASE WHEN NOT active THEN 'restart=' {CAT} coalesce(restart_lsn::pg_catalog.text, '-')
                                       {CAT} ' flushed=' {CAT} coalesce(confirmed_flush_lsn::pg_catalog.text, '-')
                                  END) AS value
                             FROM pg_catalog.pg_replication_slots WHERE NOT temporary""",
    "subscription": f"""SELECT subname AS key, pg_catalog.concat_ws(' ', 'enabled=' {CAT} subenabled,
                              'owner=' {CAT} pg_catalog.pg_get_userbyid(subowner),
                              'slot=' {CAT} coalesce(subslotname::pg_catalog.text, '-'),
                              'publications=' {CAT} pg_catalog.array_to_string(subpublications, ',')) AS value
                         FROM pg_catalog.pg_subscription""",
    "parameter_privilege": "SELECT parname AS key, coalesce(paracl::pg_catalog.text, '-') AS value "
                           "FROM pg_catalog.pg_parameter_acl",
    "shared_comment": f"""SELECT classoid::pg_catalog.regclass::pg_catalog.text {CAT} ' ' {CAT} objoid AS key,
                                description AS value FROM pg_catalog.pg_shdescription""",
    "server_setting": f"""SELECT name AS key, setting {CAT} CASE WHEN applied THEN '' ELSE ' (not applied)' END
                                AS value
                           FROM pg_catalog.pg_file_settings WHERE sourcefile {LIKE} '%postgresql.auto.conf'""",
}
_ROLE_FALLBACK = _PARTS["role"].replace("coalesce(pg_catalog.md5(rolpassword), '-')", "'(not readable)'").replace(
    "FROM pg_catalog.pg_authid", "FROM pg_catalog.pg_roles")


class ClusterFingerprint(BaseModel):
    parts: dict[str, dict[str, str]] = Field(default={}, description="kind -> object -> its state in words")
    unreadable: list[str] = Field(default=[], description="parts this login may not read (not compared)")


def _all_at_once(server_version: int) -> tuple[list[str], str]:
    """The parts this server has, and one query reading them all (kind, key, value): one round trip and one
    plan instead of ten, for a login that may read every part (a superuser; the others fall back part by part)."""
    kinds = [k for k in _PARTS if k != "parameter_privilege" or server_version >= 150000]
    union = "\nUNION ALL\n".join(f"SELECT '{k}' AS kind, p.key::pg_catalog.text, p.value::pg_catalog.text "
                                  f"FROM ({_PARTS[k]}) p" for k in kinds)  # read as built: tests/test_qualified_sql
    return kinds, union


def fingerprint(conn: psycopg.Connection[Any]) -> ClusterFingerprint:
    """Read the cluster-wide state (``conn`` in autocommit, outside any transaction)."""
    kinds, query = _all_at_once(conn.info.server_version)
    try:
        with conn.transaction():
            rows = conn.execute(query).fetchall()
    except psycopg.OperationalError:  # the session is gone (ended by code the dry run ran): nothing read here,
        raise                         # not every part unreadable (which would read as the whole cluster removed)
    except psycopg.Error:  # a part this login may not read: each part alone, as far as it may
        return _part_by_part(conn)
    out = ClusterFingerprint(parts={k: {} for k in kinds})
    if len(kinds) < len(_PARTS):
        out.unreadable.append("parameter_privilege")  # not in this version (pg_parameter_acl is new in 15)
    for r in rows:
        kind, key, value = (r["kind"], r["key"], r["value"]) if isinstance(r, dict) else r
        out.parts[kind][str(key)] = str(value)
    return out


def _part_by_part(conn: psycopg.Connection[Any]) -> ClusterFingerprint:
    out = ClusterFingerprint()
    for kind, query in _PARTS.items():
        rows = _read(conn, query)
        if rows is None and kind == "role":
            rows = _read(conn, _ROLE_FALLBACK)
            out.unreadable.append("role passwords (pg_authid)")
        if rows is None:
            out.unreadable.append(kind)
            continue
        out.parts[kind] = {str(k): str(v) for k, v in rows}
    return out


def _read(conn: psycopg.Connection[Any], query: str) -> list[tuple[Any, Any]] | None:
    try:
        with conn.transaction():
            rows = conn.execute(query).fetchall()
    except psycopg.Error:  # not readable by this login, or not in this version (pg_parameter_acl < 15)
        return None
    return [(r["key"], r["value"]) if isinstance(r, dict) else (r[0], r[1]) for r in rows]


def diff_cluster(before: ClusterFingerprint, after: ClusterFingerprint) -> list[Difference]:
    """Every object of the cluster-wide state that was added, removed or changed (all errors)."""
    out: list[Difference] = []
    for kind in sorted(set(before.parts) | set(after.parts)):
        b, a = before.parts.get(kind, {}), after.parts.get(kind, {})
        for name in sorted(set(b) | set(a)):
            if name not in a:
                out.append(Difference(kind=kind, object=name, change="removed", detail=f"was: {b[name]}"))
            elif name not in b:
                out.append(Difference(kind=kind, object=name, change="added", detail=f"now: {a[name]}"))
            elif a[name] != b[name]:
                out.append(Difference(kind=kind, object=name, change="changed", detail=f"{b[name]} -> {a[name]}"))
    return out
