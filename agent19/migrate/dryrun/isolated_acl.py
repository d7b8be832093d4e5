"""The target's privileges in an isolated copy (:mod:`agent19.migrate.dryrun.isolated_access`): each object's ACL
(and each column's) and the default privileges (``pg_default_acl``), read from the target's catalog (:data:`Q_ACL`,
:data:`Q_DEFAULT_ACL`) and composed into ``GRANT``/``REVOKE`` and ``ALTER DEFAULT PRIVILEGES`` for the copy's superuser
(:func:`acl_statement`, :func:`default_acl_statement`).

What the target's objects are (:data:`USER_OBJECTS`: its own, not the system's nor an extension's) is read here for the
owners too (:data:`agent19.migrate.dryrun.isolated_access.Q_OWNERS`), and so are the checks every catalog row passes
before it is composed into a statement (:func:`_word`, :func:`checked_identity`; :class:`Unexpected` otherwise): a
keyword or a privilege from a fixed list, names quoted here, identities made of names and argument lists only.
"""

from __future__ import annotations

import re
from typing import Any

from psycopg import sql

from agent19.db.catalog import EQ, NE, _chars

QUALIFIED_SQL = True  # its statements name functions, operators, types, catalog relations pg_catalog.-qualified

# the operators the unqualified text chose (same argument types): same rows
_CAT = "'pg_class'::pg_catalog.regclass"
_RELKINDS = _chars("r", "p", "v", "m", "S", "f")
# the objects whose owner and ACL are copied: (catalog, oid, owner, acl, acldefault's kind, SQL keyword)
_OBJECTS = f"""
SELECT 'pg_namespace'::pg_catalog.regclass AS cat, n.oid, n.nspowner AS owner, n.nspacl AS acl, 'n' AS kind,
       'SCHEMA' AS kw, n.oid AS nsp
  FROM pg_catalog.pg_namespace n
UNION ALL
SELECT {_CAT}, c.oid, c.relowner, c.relacl, CASE WHEN c.relkind {EQ} 'S' THEN 's' ELSE 'r' END,
       CASE WHEN c.relkind {EQ} 'v' THEN 'VIEW' WHEN c.relkind {EQ} 'm' THEN 'MATERIALIZED VIEW'
            WHEN c.relkind {EQ} 'S' THEN 'SEQUENCE' WHEN c.relkind {EQ} 'f' THEN 'FOREIGN TABLE' ELSE 'TABLE' END,
       c.relnamespace
  FROM pg_catalog.pg_class c WHERE c.relkind {EQ} ANY ({_RELKINDS})
   AND NOT (c.relkind {EQ} 'S' AND EXISTS (SELECT 1 FROM pg_catalog.pg_depend d WHERE d.classid {EQ} {_CAT}
            AND d.objid {EQ} c.oid AND d.refclassid {EQ} {_CAT} AND d.deptype {EQ} ANY ({_chars("a", "i")})))
UNION ALL
SELECT 'pg_proc'::pg_catalog.regclass, p.oid, p.proowner, p.proacl, 'f',
       CASE WHEN p.prokind {EQ} 'p' THEN 'PROCEDURE' WHEN p.prokind {EQ} 'a' THEN 'AGGREGATE' ELSE 'FUNCTION' END,
       p.pronamespace FROM pg_catalog.pg_proc p
UNION ALL
SELECT 'pg_type'::pg_catalog.regclass, t.oid, t.typowner, t.typacl, 'T',
       CASE WHEN t.typtype {EQ} 'd' THEN 'DOMAIN' ELSE 'TYPE' END,
       t.typnamespace FROM pg_catalog.pg_type t WHERE t.typtype {EQ} ANY ({_chars("d", "e", "r")})
    OR (t.typtype {EQ} 'c' AND (SELECT r.relkind FROM pg_catalog.pg_class r WHERE r.oid {EQ} t.typrelid) {EQ} 'c')
UNION ALL
SELECT 'pg_foreign_server'::pg_catalog.regclass, s.oid, s.srvowner, s.srvacl, 'S', 'SERVER', NULL
  FROM pg_catalog.pg_foreign_server s
UNION ALL
SELECT 'pg_database'::pg_catalog.regclass, d.oid, d.datdba, d.datacl, 'd', 'DATABASE', NULL
  FROM pg_catalog.pg_database d WHERE d.datname {EQ} pg_catalog.current_database()
UNION ALL SELECT 'pg_collation'::pg_catalog.regclass, oid, collowner, NULL, NULL, 'COLLATION', collnamespace
  FROM pg_catalog.pg_collation
UNION ALL SELECT 'pg_conversion'::pg_catalog.regclass, oid, conowner, NULL, NULL, 'CONVERSION', connamespace
  FROM pg_catalog.pg_conversion
UNION ALL SELECT 'pg_operator'::pg_catalog.regclass, oid, oprowner, NULL, NULL, 'OPERATOR', oprnamespace
  FROM pg_catalog.pg_operator
UNION ALL SELECT 'pg_opclass'::pg_catalog.regclass, oid, opcowner, NULL, NULL, 'OPERATOR CLASS', opcnamespace
  FROM pg_catalog.pg_opclass
UNION ALL SELECT 'pg_opfamily'::pg_catalog.regclass, oid, opfowner, NULL, NULL, 'OPERATOR FAMILY', opfnamespace
  FROM pg_catalog.pg_opfamily
UNION ALL SELECT 'pg_ts_dict'::pg_catalog.regclass, oid, dictowner, NULL, NULL, 'TEXT SEARCH DICTIONARY',
                 dictnamespace
  FROM pg_catalog.pg_ts_dict
UNION ALL SELECT 'pg_ts_config'::pg_catalog.regclass, oid, cfgowner, NULL, NULL, 'TEXT SEARCH CONFIGURATION',
                 cfgnamespace
  FROM pg_catalog.pg_ts_config
UNION ALL SELECT 'pg_statistic_ext'::pg_catalog.regclass, oid, stxowner, NULL, NULL, 'STATISTICS', stxnamespace
  FROM pg_catalog.pg_statistic_ext
"""
# the schema's own objects: not the system's, not an extension's (the extension made them, as on the target)
USER_OBJECTS = f"""
SELECT o.*, i.identity FROM ({_OBJECTS}) o, pg_catalog.pg_identify_object(o.cat, o.oid, 0) i
 WHERE coalesce((SELECT n.nspname OPERATOR(pg_catalog.!~) '^pg_' AND n.nspname {NE} 'information_schema'
                   FROM pg_catalog.pg_namespace n WHERE n.oid {EQ} o.nsp), true)
   AND NOT EXISTS (SELECT 1 FROM pg_catalog.pg_depend d WHERE d.classid {EQ} o.cat AND d.objid {EQ} o.oid
                      AND d.deptype {EQ} 'e')"""
_GRANTEE = f"(SELECT rolname::pg_catalog.text FROM pg_catalog.pg_roles WHERE oid {EQ} a.grantee)"  # NULL: PUBLIC
Q_ACL = f"""
WITH u AS (SELECT o.*, CASE WHEN o.kw {EQ} ANY ('{{VIEW,MATERIALIZED VIEW,FOREIGN TABLE}}'::pg_catalog.text[])
                            THEN 'TABLE'
                            WHEN o.kw {EQ} 'AGGREGATE' THEN 'FUNCTION' WHEN o.kw {EQ} 'SERVER' THEN 'FOREIGN SERVER'
                            ELSE o.kw END AS on_kw  -- GRANT's word for the kind
              FROM ({USER_OBJECTS}) o),
 want AS (SELECT u.on_kw AS kw, u.identity, a.grantee, a.privilege_type, a.is_grantable
            FROM u, pg_catalog.aclexplode(u.acl) a WHERE u.acl IS NOT NULL),
 dflt AS (SELECT u.on_kw AS kw, u.identity, a.grantee, a.privilege_type, a.is_grantable
            FROM u, pg_catalog.aclexplode(pg_catalog.acldefault(u.kind::pg_catalog."char", u.owner)) a
           WHERE u.acl IS NOT NULL)
SELECT 'REVOKE', a.privilege_type, a.kw, a.identity, NULL::pg_catalog.text, {_GRANTEE}, false FROM dflt a
 WHERE NOT EXISTS (SELECT 1 FROM want w WHERE (w.kw, w.identity, w.grantee, w.privilege_type)
                                            {EQ} (a.kw, a.identity, a.grantee, a.privilege_type))
UNION ALL
SELECT 'GRANT', a.privilege_type, a.kw, a.identity, NULL, {_GRANTEE}, a.is_grantable FROM want a
 WHERE NOT EXISTS (SELECT 1 FROM dflt d WHERE (d.kw, d.identity, d.grantee, d.privilege_type, d.is_grantable)
                                            {EQ} (a.kw, a.identity, a.grantee, a.privilege_type, a.is_grantable))
UNION ALL  -- a column's privileges (its default ACL is empty)
SELECT 'GRANT', a.privilege_type, 'TABLE', u.identity, att.attname::pg_catalog.text, {_GRANTEE}, a.is_grantable
  FROM u JOIN pg_catalog.pg_attribute att ON u.cat {EQ} {_CAT} AND att.attrelid {EQ} u.oid
   AND att.attnum OPERATOR(pg_catalog.>) 0 AND NOT att.attisdropped AND att.attacl IS NOT NULL,
       pg_catalog.aclexplode(att.attacl) a"""
"""(GRANT or REVOKE, privilege, keyword, identity, column, grantee or NULL: PUBLIC, with grant option): what makes
each object's (and column's) ACL on the copy the target's (the copy's is the owner's default)."""

_DEFACL_KIND = f"CASE WHEN x.defaclobjtype {EQ} 'S' THEN 's' ELSE x.defaclobjtype END"
_DEFACL_ON = (f"CASE WHEN x.defaclobjtype {EQ} 'r' THEN 'TABLES' WHEN x.defaclobjtype {EQ} 'S' THEN 'SEQUENCES' "
              f"WHEN x.defaclobjtype {EQ} 'f' THEN 'FUNCTIONS' WHEN x.defaclobjtype {EQ} 'T' THEN 'TYPES' "
              "ELSE 'SCHEMAS' END")
Q_DEFAULT_ACL = f"""
WITH x AS (SELECT d.oid, d.defaclrole, d.defaclnamespace, d.defaclobjtype, d.defaclacl,
                  (SELECT rolname FROM pg_catalog.pg_roles WHERE oid {EQ} d.defaclrole) AS role,
                  (SELECT nspname FROM pg_catalog.pg_namespace WHERE oid {EQ} d.defaclnamespace) AS nsp
             FROM pg_catalog.pg_default_acl d),
 want AS (SELECT x.oid, a.* FROM x, pg_catalog.aclexplode(x.defaclacl) a),
 dflt AS (SELECT x.oid, a.* FROM x,
                 pg_catalog.aclexplode(pg_catalog.acldefault(({_DEFACL_KIND})::pg_catalog."char", x.defaclrole)) a
           WHERE x.defaclnamespace {EQ} 0)
SELECT 'REVOKE', a.privilege_type, {_DEFACL_ON}, x.role::pg_catalog.text, x.nsp::pg_catalog.text, {_GRANTEE}, false
  FROM x JOIN dflt a ON a.oid {EQ} x.oid
 WHERE NOT EXISTS (SELECT 1 FROM want w WHERE (w.oid, w.grantee, w.privilege_type) {EQ} (a.oid, a.grantee,
                                                                                     a.privilege_type))
UNION ALL
SELECT 'GRANT', a.privilege_type, {_DEFACL_ON}, x.role::pg_catalog.text, x.nsp::pg_catalog.text, {_GRANTEE},
       a.is_grantable
  FROM x JOIN want a ON a.oid {EQ} x.oid
 WHERE NOT EXISTS (SELECT 1 FROM dflt d WHERE (d.oid, d.grantee, d.privilege_type, d.is_grantable)
                                            {EQ} (a.oid, a.grantee, a.privilege_type, a.is_grantable))"""
"""(GRANT or REVOKE, privilege, TABLES/SEQUENCES/…, role, schema or NULL, grantee or NULL, with grant option):
``ALTER DEFAULT PRIVILEGES`` making the copy's ``pg_default_acl`` the target's."""

ACL = "{} {} ON {} {} {} {}"
DEFAULT_ACL = "ALTER DEFAULT PRIVILEGES FOR ROLE {}{} {} {} ON {} {} {}"
ACL_OPTION, DEFAULT_ACL_OPTION = ACL + " WITH GRANT OPTION", DEFAULT_ACL + " WITH GRANT OPTION"
"""GRANT/REVOKE and ALTER DEFAULT PRIVILEGES (composed by :func:`acl_statement`, :func:`default_acl_statement`)."""

KEYWORDS = frozenset({
    "SCHEMA", "TABLE", "VIEW", "MATERIALIZED VIEW", "SEQUENCE", "FOREIGN TABLE", "FUNCTION", "PROCEDURE", "AGGREGATE",
    "TYPE", "DOMAIN", "SERVER", "FOREIGN SERVER", "DATABASE", "COLLATION", "CONVERSION", "OPERATOR", "OPERATOR CLASS",
    "OPERATOR FAMILY", "TEXT SEARCH DICTIONARY", "TEXT SEARCH CONFIGURATION", "STATISTICS",
    "TABLES", "SEQUENCES", "FUNCTIONS", "TYPES", "SCHEMAS"})
PRIVILEGES = frozenset({"SELECT", "INSERT", "UPDATE", "DELETE", "TRUNCATE", "REFERENCES", "TRIGGER", "EXECUTE", "USAGE",
                        "CREATE", "CONNECT", "TEMPORARY", "MAINTAIN"})
_QUOTED = re.compile(r'"(?:[^"]|"")*"')
_BARE = re.compile(r"[A-Za-z0-9_$.,()\[\] +\-*/<>=~!@#%^&|`?]*")


class Unexpected(ValueError):
    """A row of the target's catalog that is not what the queries above produce (a statement is not made of it)."""


def _word(value: Any, allowed: frozenset[str]) -> sql.SQL:
    if value not in allowed:
        raise Unexpected(f"unexpected {value!r} from the target's catalog")
    return sql.SQL(value)


def _identity(value: Any) -> sql.SQL:
    """``pg_identify_object``'s identity (``public.f(integer)``, ``s."Odd name"``, ``s.cls USING btree``): quoted
    names, and outside them only what names, argument lists and operators are made of — no ``;``, no comment."""
    bare = _QUOTED.sub("", str(value))
    # an identity made only of quoted names ("Billing"."Invoices": pg_identify_object quotes as quote_ident does) has
    # no bare text at all: what is checked is that the bare text holds nothing else, and that there is a name
    if not _BARE.fullmatch(bare) or "--" in bare or "/*" in bare or not str(value).strip(" ."):
        raise Unexpected(f"unexpected identity {value!r} from the target's catalog")
    return sql.SQL(str(value))


checked_identity = _identity
"""An identity or type name from the target's catalog, checked (:func:`_identity`), as SQL."""


def _grantee(name: Any) -> sql.Composable:
    return sql.SQL("PUBLIC") if name is None else sql.Identifier(name)


def acl_statement(row: tuple[Any, ...]) -> sql.Composed:
    action, privilege, kw, identity, column, grantee, grantable = row
    what = _word(privilege, PRIVILEGES)
    if column is not None:
        what = sql.SQL("{} ({})").format(what, sql.Identifier(column))
    return sql.SQL(ACL_OPTION if grantable else ACL).format(
        _word(action, frozenset({"GRANT", "REVOKE"})), what, _word(kw, KEYWORDS), _identity(identity),
        sql.SQL("TO" if action == "GRANT" else "FROM"), _grantee(grantee))


def default_acl_statement(row: tuple[Any, ...]) -> sql.Composed:
    action, privilege, on, role, schema, grantee, grantable = row
    return sql.SQL(DEFAULT_ACL_OPTION if grantable else DEFAULT_ACL).format(
        sql.Identifier(role), sql.SQL(" IN SCHEMA {}").format(sql.Identifier(schema)) if schema else sql.SQL(""),
        _word(action, frozenset({"GRANT", "REVOKE"})), _word(privilege, PRIVILEGES), _word(on, KEYWORDS),
        sql.SQL("TO" if action == "GRANT" else "FROM"), _grantee(grantee))

