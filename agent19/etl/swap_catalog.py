"""The catalog reads of a replace by swap (:mod:`agent19.etl.swap`): what the destination is made of, and
what depends on it that cannot follow it to a new table."""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

from psycopg import sql

from agent19.errors import InputError

Q_TABLE = """
SELECT c.oid, n.nspname AS schema, c.relname AS name, c.relkind, c.relpersistence, c.relispartition,
       c.reloftype <> 0 AS typed, pg_get_userbyid(c.relowner) AS owner, t.spcname AS tablespace,
       c.reloptions || ARRAY(SELECT 'toast.' || o FROM pg_class x, unnest(x.reloptions) o
                             WHERE x.oid = c.reltoastrelid) AS reloptions,
       c.relreplident, c.relrowsecurity, c.relforcerowsecurity, obj_description(c.oid, 'pg_class') AS comment,
       pg_has_role(c.relowner, 'USAGE') AS may_own, c.relowner = (SELECT oid FROM pg_roles
                                                                  WHERE rolname = current_user) AS owned,
       EXISTS (SELECT FROM pg_inherits i WHERE i.inhrelid = c.oid) AS inherits
  FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace LEFT JOIN pg_tablespace t ON t.oid = c.reltablespace
 WHERE c.oid = to_regclass(%s)
"""
Q_BLOCKERS = """
WITH t AS (SELECT c.oid, c.reltype FROM pg_class c WHERE c.oid = %(oid)s)
SELECT DISTINCT what FROM (
  SELECT CASE
    WHEN d.classid = 'pg_rewrite'::regclass THEN
      (SELECT CASE v.relkind WHEN 'm' THEN 'materialized view ' WHEN 'v' THEN 'view ' ELSE 'rule on ' END
              || r.ev_class::regclass::text
         FROM pg_rewrite r JOIN pg_class v ON v.oid = r.ev_class WHERE r.oid = d.objid)
    WHEN d.classid = 'pg_constraint'::regclass THEN
      (SELECT 'foreign key ' || quote_ident(k.conname) || ' of table ' || k.conrelid::regclass::text
         FROM pg_constraint k WHERE k.oid = d.objid)
    WHEN d.classid = 'pg_class'::regclass THEN
      (SELECT CASE WHEN EXISTS (SELECT FROM pg_inherits i WHERE i.inhrelid = x.oid AND i.inhparent = t.oid)
                   THEN 'table ' || x.oid::regclass::text || ' (inherits from it)'
                   ELSE pg_describe_object(d.classid, d.objid, d.objsubid) END FROM pg_class x WHERE x.oid = d.objid)
    ELSE pg_describe_object(d.classid, d.objid, d.objsubid) END AS what
    FROM pg_depend d, t
   WHERE ((d.refclassid = 'pg_class'::regclass AND d.refobjid = t.oid)
          OR (d.refclassid = 'pg_type'::regclass AND d.refobjid = t.reltype))
     AND d.deptype = 'n'
     -- its own objects (a CHECK constraint or an index expression depends on its columns) are carried; a foreign
     -- key of the table to itself is not (it would reference the old table)
     AND NOT (d.classid = 'pg_constraint'::regclass AND EXISTS (
              SELECT FROM pg_constraint k WHERE k.oid = d.objid AND k.conrelid = t.oid AND k.confrelid <> t.oid))
     AND NOT (d.classid = 'pg_attrdef'::regclass AND EXISTS (
              SELECT FROM pg_attrdef a WHERE a.oid = d.objid AND a.adrelid = t.oid))
     AND NOT (d.classid = 'pg_class'::regclass AND EXISTS (
              SELECT FROM pg_index i WHERE i.indexrelid = d.objid AND i.indrelid = t.oid))
     AND NOT (d.classid = 'pg_statistic_ext'::regclass AND EXISTS (
              SELECT FROM pg_statistic_ext x WHERE x.oid = d.objid AND x.stxrelid = t.oid))
     AND NOT (d.classid IN ('pg_trigger'::regclass, 'pg_policy'::regclass))  -- listed below
     AND NOT (d.classid = 'pg_rewrite'::regclass AND EXISTS (
              SELECT FROM pg_rewrite r WHERE r.oid = d.objid AND r.ev_class = t.oid))
  UNION ALL
  SELECT 'rule ' || quote_ident(r.rulename) FROM pg_rewrite r, t WHERE r.ev_class = t.oid
  UNION ALL
  SELECT 'publication ' || quote_ident(p.pubname) FROM pg_publication_rel pr
    JOIN pg_publication p ON p.oid = pr.prpubid, t WHERE pr.prrelid = t.oid
  UNION ALL
  SELECT 'extension ' || quote_ident(e.extname) FROM pg_depend d JOIN pg_extension e ON e.oid = d.refobjid, t
   WHERE d.classid = 'pg_class'::regclass AND d.objid = t.oid AND d.deptype = 'e'
) x WHERE what IS NOT NULL ORDER BY what
"""
Q_INDEXES = """
SELECT i.indexrelid AS oid, x.relname AS name, pg_get_indexdef(i.indexrelid) AS def, i.indisvalid AS valid,
       k.contype, pg_get_constraintdef(k.oid) AS condef, obj_description(i.indexrelid, 'pg_class') AS comment,
       obj_description(k.oid, 'pg_constraint') AS con_comment, i.indisreplident AS replident,
       i.indisclustered AS clustered,
       format('INDEX %%s ON %%s.%%s USING ', quote_ident(x.relname), quote_ident(n.nspname), quote_ident(c.relname))
         AS prefix
  FROM pg_index i JOIN pg_class x ON x.oid = i.indexrelid JOIN pg_class c ON c.oid = i.indrelid
  JOIN pg_namespace n ON n.oid = c.relnamespace
  LEFT JOIN pg_constraint k ON k.conindid = i.indexrelid AND k.conrelid = i.indrelid AND k.contype IN ('p', 'u', 'x')
 WHERE i.indrelid = %s ORDER BY x.relname
"""
Q_FOREIGN_KEYS = """
SELECT conname AS name, pg_get_constraintdef(oid) AS def, obj_description(oid, 'pg_constraint') AS comment
  FROM pg_constraint WHERE conrelid = %s AND contype = 'f' ORDER BY conname
"""
Q_GRANTS = """
SELECT NULL::name AS col, CASE WHEN a.grantee = 0 THEN 'PUBLIC' ELSE quote_ident(r.rolname) END AS grantee,
       a.privilege_type AS privilege, a.is_grantable AS grantable
  FROM pg_class c, aclexplode(c.relacl) a LEFT JOIN pg_roles r ON r.oid = a.grantee
 WHERE c.oid = %(oid)s AND a.grantee <> c.relowner
UNION ALL
SELECT t.attname, CASE WHEN a.grantee = 0 THEN 'PUBLIC' ELSE quote_ident(r.rolname) END, a.privilege_type,
       a.is_grantable
  FROM pg_attribute t, aclexplode(t.attacl) a LEFT JOIN pg_roles r ON r.oid = a.grantee
 WHERE t.attrelid = %(oid)s AND t.attnum > 0 AND NOT t.attisdropped
ORDER BY 1 NULLS FIRST, 2, 3
"""
Q_COLUMN_SETTINGS = """
SELECT attname AS col, attstattarget AS stattarget, attoptions AS options FROM pg_attribute
 WHERE attrelid = %s AND attnum > 0 AND NOT attisdropped AND (attstattarget > 0 OR attoptions IS NOT NULL)
 ORDER BY attnum
"""
Q_SEQUENCES = """
SELECT s.oid::regclass::text AS seq, s.relname AS name, a.attname AS col, d.deptype = 'i' AS identity
  FROM pg_depend d JOIN pg_class s ON s.oid = d.objid AND s.relkind = 'S'
  JOIN pg_attribute a ON a.attrelid = d.refobjid AND a.attnum = d.refobjsubid
 WHERE d.classid = 'pg_class'::regclass AND d.refclassid = 'pg_class'::regclass AND d.refobjid = %s
   AND d.deptype IN ('a', 'i')
 ORDER BY a.attnum
"""
Q_TRIGGERS = """
SELECT g.tgname AS name, g.tgenabled::text AS enabled, obj_description(g.oid, 'pg_trigger') AS comment,
       pg_get_triggerdef(g.oid) AS def,
       format(' ON %%s.%%s ', quote_ident(n.nspname), quote_ident(c.relname)) AS on_table
  FROM pg_trigger g JOIN pg_class c ON c.oid = g.tgrelid JOIN pg_namespace n ON n.oid = c.relnamespace
 WHERE g.tgrelid = %s AND NOT g.tgisinternal ORDER BY g.tgname
"""
Q_POLICIES = """
SELECT p.polname AS name, p.polpermissive AS permissive, p.polcmd::text AS cmd,
       ARRAY(SELECT CASE WHEN r = 0 THEN 'PUBLIC' ELSE quote_ident(pg_get_userbyid(r)) END FROM unnest(p.polroles) r
             ORDER BY 1) AS roles,
       pg_get_expr(p.polqual, p.polrelid) AS qual, pg_get_expr(p.polwithcheck, p.polrelid) AS with_check,
       obj_description(p.oid, 'pg_policy') AS comment
  FROM pg_policy p WHERE p.polrelid = %s ORDER BY p.polname
"""
Q_STATISTICS = """
SELECT x.stxname AS name, n.nspname AS schema, x.stxkeys::text AS keys, x.stxkind::text AS kinds
  FROM pg_statistic_ext x JOIN pg_namespace n ON n.oid = x.stxnamespace WHERE x.stxrelid = %s ORDER BY x.stxname
"""
_OPTION = re.compile(r"^([a-z_][a-z0-9_.]*)=(.*)$", re.S)
DEFINITION_QUERIES = {"indexes": Q_INDEXES, "foreign keys": Q_FOREIGN_KEYS, "sequences": Q_SEQUENCES,
                      "column settings": Q_COLUMN_SETTINGS, "statistics": Q_STATISTICS,
                      "triggers": Q_TRIGGERS, "policies": Q_POLICIES}


class SwapRefused(InputError):
    """The destination cannot be replaced by a swap (nothing was written)."""


@dataclass
class Definition:
    """What the swap carries from the old table to the new one, as read from the catalog."""

    table: dict[str, Any]
    indexes: list[dict[str, Any]]
    foreign_keys: list[dict[str, Any]]
    grants: list[dict[str, Any]]
    column_settings: list[dict[str, Any]]
    sequences: list[dict[str, Any]]
    statistics: list[dict[str, Any]]
    triggers: list[dict[str, Any]]
    policies: list[dict[str, Any]]

    def fingerprint(self) -> Any:
        t = {k: v for k, v in self.table.items() if k not in ("may_own", "owned")}
        return (t, [{k: v for k, v in i.items() if k != "oid"} for i in self.indexes], self.foreign_keys,
                self.grants, self.column_settings, self.sequences, self.statistics,
                self.triggers, self.policies)


def options(values: list[str] | None) -> sql.Composable | None:
    """Storage parameters as read from the catalog (``name=value``) as a ``(name = 'value', …)`` list."""
    if not values:
        return None
    parts = []
    for v in values:
        m = _OPTION.match(v)
        if not m:
            raise InputError(f"cannot read the storage parameter {v!r} of the destination", "report this as a bug")
        parts.append(sql.SQL("{} = {}").format(sql.SQL(m.group(1)), sql.Literal(m.group(2))))
    return sql.SQL("({})").format(sql.SQL(", ").join(parts))
