"""The one catalog read of :mod:`agent19.safety.closure` (:data:`Q_CLOSURE`)."""

from __future__ import annotations

from agent19.safety.function_facts import ESCAPING, KNOWN_EXTENSIONS, SEQUENCE_FORWARD, SQL_FROM_STRING
from agent19.safety.readonly_catalog import FIRST_NORMAL_OID

SEEDS = sorted((ESCAPING - SEQUENCE_FORWARD) | SQL_FROM_STRING)
_KNOWN = ", ".join(f"'{name}'" for name in sorted(KNOWN_EXTENSIONS))  # constants: [a-z_-] names
assert all(name.replace("_", "").replace("-", "").isalnum() for name in KNOWN_EXTENSIONS)

# one round trip: functions that may be members (every non-built-in one, and built-ins named as seeds), user
# operators, foreign tables, and what depends on any of them (with the relation it belongs to, if any)
Q_CLOSURE = f"""
WITH fn AS (
  SELECT p.oid, p.proname::text AS name, n.nspname::text AS schema, n.nspname || '.' || p.proname AS qualified,
         l.lanname::text AS lang, l.lanpltrusted AS trusted,
         -- C code agent19 knows: built-ins, and members of the extensions it knows (function_facts); another
         -- extension's C code is unreadable like any C code
         p.oid < {FIRST_NORMAL_OID} OR coalesce(x.extname::text = ANY(ARRAY[{_KNOWN}]), false) AS known,
         x.extname::text AS extension,
         CASE WHEN p.prokind = 'a' THEN '' WHEN p.oid < {FIRST_NORMAL_OID} THEN NULL
              WHEN p.prosqlbody IS NOT NULL THEN pg_get_functiondef(p.oid)  -- BEGIN ATOMIC: the server's text
              WHEN l.lanname IN ('sql', 'plpgsql') THEN p.prosrc
                   -- SET standard_conforming_strings on the function: its body is read otherwise (unscannable)
                   || CASE WHEN array_to_string(p.proconfig, ' ') ~* 'standard_conforming_strings'
                           THEN E'\n-- standard_conforming_strings' ELSE '' END END AS src
    FROM pg_proc p JOIN pg_language l ON l.oid = p.prolang JOIN pg_namespace n ON n.oid = p.pronamespace
         LEFT JOIN (SELECT e.objid, x.extname FROM pg_depend e JOIN pg_extension x ON x.oid = e.refobjid
                     WHERE e.classid = 'pg_proc'::regclass AND e.refclassid = 'pg_extension'::regclass
                       AND e.deptype = 'e') x ON x.objid = p.oid
   WHERE p.oid >= {FIRST_NORMAL_OID} OR p.proname = ANY(%(seeds)s)),  -- dblink, postgres_fdw: >= FIRST_NORMAL_OID
op AS (SELECT o.oid, o.oprname::text AS name, o.oprcode::oid AS code FROM pg_operator o
        WHERE o.oid >= {FIRST_NORMAL_OID}),
ft AS (SELECT c.oid, c.relname::text AS name FROM pg_class c WHERE c.relkind = 'f'),
-- relations built on pg_settings (a view over it, a rule that writes it; over such a view too): pg_settings' rule
-- calls set_config with each updated row's name, so code that writes one may change how strings are read
sv AS (WITH RECURSIVE v(oid) AS (
         SELECT 'pg_catalog.pg_settings'::regclass::oid
         UNION SELECT r.ev_class FROM v JOIN pg_depend d ON d.refclassid = 'pg_class'::regclass AND d.refobjid = v.oid
                 AND d.classid = 'pg_rewrite'::regclass JOIN pg_rewrite r ON r.oid = d.objid)
       SELECT c.oid, c.relname::text AS name FROM v JOIN pg_class c ON c.oid = v.oid WHERE c.oid >= {FIRST_NORMAL_OID}),
-- what the server evaluates, by object (cls, oid), with the relation it belongs to (rel) and its stored tree (t).
-- Built-ins are pinned: no pg_depend row says an expression calls one; the tree does. Every pg_node_tree column of
-- the catalog (PG15) that the server evaluates: defaults (column, domain, a function's argument — that function's
-- own code), constraints, policies, rules and views, trigger conditions, index expressions and predicates,
-- partition keys, extended statistics (ANALYZE). Left out: pg_proc.prosqlbody (read as text: src),
-- pg_class.relpartbound (constants, evaluated when the partition was made), pg_publication_rel.prqual (immutable
-- built-ins only, evaluated by a walsender for committed changes: a trial commits nothing), rules of system views.
tree AS (
  SELECT 'pg_attrdef'::regclass AS cls, oid, adrelid AS rel, adbin::text AS t FROM pg_attrdef
  UNION ALL SELECT 'pg_constraint'::regclass, oid, nullif(conrelid, 0), conbin::text FROM pg_constraint
  UNION ALL SELECT 'pg_policy'::regclass, oid, polrelid, concat(polqual::text, polwithcheck::text) FROM pg_policy
  UNION ALL SELECT 'pg_rewrite'::regclass, oid, ev_class, ev_action::text || coalesce(ev_qual::text, '')
    FROM pg_rewrite WHERE ev_class >= {FIRST_NORMAL_OID}
  UNION ALL SELECT 'pg_trigger'::regclass, oid, tgrelid, tgqual::text FROM pg_trigger
  UNION ALL SELECT 'pg_class'::regclass, indexrelid, indrelid, concat(indexprs::text, indpred::text) FROM pg_index
  UNION ALL SELECT 'pg_class'::regclass, partrelid, partrelid, partexprs::text FROM pg_partitioned_table
    WHERE partexprs IS NOT NULL
  UNION ALL SELECT 'pg_type'::regclass, oid, NULL, typdefaultbin::text FROM pg_type WHERE typdefaultbin IS NOT NULL
  UNION ALL SELECT 'pg_statistic_ext'::regclass, oid, stxrelid, stxexprs::text FROM pg_statistic_ext
  UNION ALL SELECT 'pg_proc'::regclass, oid, NULL, proargdefaults::text FROM pg_proc
    WHERE proargdefaults IS NOT NULL AND oid >= {FIRST_NORMAL_OID}),
-- edges the extension's own: both ends belong to one extension and the used end is its compiled code (C,
-- internal), or an operator over it (postgres_fdw's FDW and its handler, hstore's operator classes): its package,
-- judged as installed. Any other edge is kept: a role that owns an extension (a trusted one, which it may create)
-- can add its own casts, aggregates and functions to it (ALTER EXTENSION ... ADD), which must not hide them
own AS (
  SELECT e.classid, e.objid, r.classid AS refclassid, r.objid AS refobjid
    FROM pg_depend e JOIN pg_depend r ON r.refclassid = e.refclassid AND r.refobjid = e.refobjid AND r.deptype = 'e'
   WHERE e.refclassid = 'pg_extension'::regclass AND e.deptype = 'e'
     AND ((r.classid = 'pg_proc'::regclass AND r.objid IN (SELECT oid FROM fn WHERE lang NOT IN ('sql', 'plpgsql')))
       OR (r.classid = 'pg_operator'::regclass  -- its operators over that code (hstore's, in its operator classes)
           AND r.objid IN (SELECT op.oid FROM op JOIN fn ON fn.oid = op.code
                            WHERE fn.lang NOT IN ('sql', 'plpgsql'))))),
dep AS (
  SELECT d.classid = 'pg_proc'::regclass AS is_fn, d.objid, d.refclassid::regclass::text AS refcls, d.refobjid,
         CASE WHEN d.classid <> 'pg_proc'::regclass THEN pg_describe_object(d.classid, d.objid, d.objsubid) END
           AS what, c.relname::text AS rel, d.classid = 'pg_event_trigger'::regclass AS event
    FROM pg_depend d LEFT JOIN tree o ON o.cls = d.classid AND o.oid = d.objid LEFT JOIN pg_class c ON c.oid = o.rel
   WHERE d.classid <> 'pg_extension'::regclass AND d.deptype <> 'e'
     -- a relation's row type is part of it (a foreign table's is no code: every statement stopped, review r34 FR1)
     AND NOT (d.classid = 'pg_type'::regclass AND d.refclassid = 'pg_class'::regclass AND d.deptype = 'i')
     AND NOT EXISTS (SELECT 1 FROM own WHERE own.classid = d.classid AND own.objid = d.objid
                        AND own.refclassid = d.refclassid AND own.refobjid = d.refobjid)
     AND ((d.refclassid = 'pg_proc'::regclass AND d.refobjid IN (SELECT oid FROM fn))
       OR (d.refclassid = 'pg_operator'::regclass AND d.refobjid IN (SELECT oid FROM op))
       OR (d.refclassid = 'pg_class'::regclass AND d.refobjid IN (SELECT oid FROM ft)))),
pinned AS (
  SELECT DISTINCT tree.cls = 'pg_proc'::regclass AS is_fn, tree.oid,
         pg_describe_object(tree.cls, tree.oid, 0) AS what, c.relname::text AS rel, m[1]::oid AS refobjid
    FROM tree CROSS JOIN regexp_matches(tree.t, ':(?:op)?funcid ([0-9]+) ', 'g') m
         LEFT JOIN pg_class c ON c.oid = tree.rel
   WHERE m[1]::oid IN (SELECT oid FROM fn WHERE oid < {FIRST_NORMAL_OID})
  -- an aggregate's support functions and a cast's function, when built in (pinned: no pg_depend row either)
  UNION ALL SELECT true, a.aggfnoid::oid, NULL, NULL, s.f
    FROM pg_aggregate a CROSS JOIN unnest(ARRAY[a.aggtransfn, a.aggfinalfn, a.aggcombinefn, a.aggserialfn,
                                                a.aggdeserialfn, a.aggmtransfn, a.aggminvtransfn,
                                                a.aggmfinalfn]::oid[]) s(f)
   WHERE a.aggfnoid >= {FIRST_NORMAL_OID} AND s.f IN (SELECT oid FROM fn WHERE oid < {FIRST_NORMAL_OID})
  UNION ALL SELECT false, k.oid, pg_describe_object('pg_cast'::regclass, k.oid, 0), NULL, k.castfunc FROM pg_cast k
   WHERE k.oid >= {FIRST_NORMAL_OID} AND k.castfunc IN (SELECT oid FROM fn WHERE oid < {FIRST_NORMAL_OID})
     -- a cast from or to a domain is never used by the server (CREATE CAST warns so)
     AND NOT EXISTS (SELECT 1 FROM pg_type t WHERE t.oid IN (k.castsource, k.casttarget) AND t.typtype = 'd'))
SELECT ARRAY(SELECT nspname::text FROM pg_namespace) AS schemas,
       (SELECT coalesce(json_agg(fn), '[]') FROM fn) AS fn, (SELECT coalesce(json_agg(op), '[]') FROM op) AS op,
       (SELECT coalesce(json_agg(ft), '[]') FROM ft) AS ft, (SELECT coalesce(json_agg(sv), '[]') FROM sv) AS sv,
       (SELECT coalesce(json_agg(x), '[]') FROM (SELECT is_fn, oid AS objid, 'pg_proc' AS refcls, refobjid,
                                                      what, rel, false AS event FROM pinned
                                                UNION ALL SELECT * FROM dep) x) AS dep
"""
