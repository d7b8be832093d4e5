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

from agent19.migrate.dryrun.schema_diff import Difference

_PARTS: dict[str, str] = {
    "role": """SELECT rolname AS key, concat_ws(' ', 'super=' || rolsuper, 'inherit=' || rolinherit,
                   'createrole=' || rolcreaterole, 'createdb=' || rolcreatedb, 'login=' || rolcanlogin,
                   'replication=' || rolreplication, 'bypassrls=' || rolbypassrls,
                   'connlimit=' || rolconnlimit, 'valid_until=' || coalesce(rolvaliduntil::text, '-'),
                   'password=' || coalesce(md5(rolpassword), '-')) AS value FROM pg_authid""",
    "membership": """SELECT m.rolname || ' in ' || r.rolname AS key,
                            'admin=' || a.admin_option || ' grantor=' || coalesce(g.rolname, '?') AS value
                       FROM pg_auth_members a JOIN pg_roles r ON r.oid = a.roleid
                       JOIN pg_roles m ON m.oid = a.member LEFT JOIN pg_roles g ON g.oid = a.grantor""",
    "role_setting": """SELECT coalesce(r.rolname, 'ALL') || ' in database ' || coalesce(d.datname, 'ALL') AS key,
                              array_to_string(s.setconfig, ', ') AS value
                         FROM pg_db_role_setting s LEFT JOIN pg_roles r ON r.oid = s.setrole
                         LEFT JOIN pg_database d ON d.oid = s.setdatabase""",
    "database": r"""SELECT d.datname AS key, concat_ws(' ', 'owner=' || pg_get_userbyid(d.datdba),
                           'encoding=' || pg_encoding_to_char(d.encoding), 'template=' || d.datistemplate,
                           'allowconn=' || d.datallowconn, 'connlimit=' || d.datconnlimit,
                           'tablespace=' || t.spcname, 'acl=' || coalesce(d.datacl::text, '-')) AS value
                      FROM pg_database d JOIN pg_tablespace t ON t.oid = d.dattablespace
                     WHERE d.datname NOT LIKE 'agent19\_scratch\_%'""",
    "tablespace": """SELECT spcname AS key, concat_ws(' ', 'owner=' || pg_get_userbyid(spcowner),
                            'location=' || pg_tablespace_location(oid), 'acl=' || coalesce(spcacl::text, '-'),
                            'options=' || coalesce(spcoptions::text, '-')) AS value FROM pg_tablespace""",
    "replication_slot": """SELECT slot_name AS key, concat_ws(' ', slot_type, 'plugin=' || coalesce(plugin, '-'),
                                  'database=' || coalesce(database, '-'),
                                  CASE WHEN NOT active THEN 'restart=' || coalesce(restart_lsn::text, '-')
                                       || ' flushed=' || coalesce(confirmed_flush_lsn::text, '-') END) AS value
                             FROM pg_replication_slots WHERE NOT temporary""",
    "subscription": """SELECT subname AS key, concat_ws(' ', 'enabled=' || subenabled,
                              'owner=' || pg_get_userbyid(subowner), 'slot=' || coalesce(subslotname::text, '-'),
                              'publications=' || array_to_string(subpublications, ',')) AS value
                         FROM pg_subscription""",
    "parameter_privilege": "SELECT parname AS key, coalesce(paracl::text, '-') AS value FROM pg_parameter_acl",
    "shared_comment": """SELECT classoid::regclass::text || ' ' || objoid AS key, description AS value
                           FROM pg_shdescription""",
    "server_setting": """SELECT name AS key, setting || CASE WHEN applied THEN '' ELSE ' (not applied)' END AS value
                           FROM pg_file_settings WHERE sourcefile LIKE '%postgresql.auto.conf'""",
}
_ROLE_FALLBACK = _PARTS["role"].replace("coalesce(md5(rolpassword), '-')", "'(not readable)'").replace(
    "FROM pg_authid", "FROM pg_roles")


class ClusterFingerprint(BaseModel):
    parts: dict[str, dict[str, str]] = Field(default={}, description="kind -> object -> its state in words")
    unreadable: list[str] = Field(default=[], description="parts this login may not read (not compared)")


def _all_at_once(server_version: int) -> tuple[list[str], str]:
    """The parts this server has, and one query reading them all (kind, key, value): one round trip and one
    plan instead of ten, for a login that may read every part (a superuser; the others fall back part by part)."""
    kinds = [k for k in _PARTS if k != "parameter_privilege" or server_version >= 150000]
    union = "\nUNION ALL\n".join(f"SELECT '{k}' AS kind, p.key::text, p.value::text FROM ({_PARTS[k]}) p"
                                  for k in kinds)
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
