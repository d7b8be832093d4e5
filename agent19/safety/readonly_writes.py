"""What planning a write adds to the read guard's walk (:meth:`.readonly_catalog.Resolver.check_statement`).

The target table of an INSERT, UPDATE, DELETE or MERGE is walked as a relation read (its indexes, CHECKs, partition
keys, policies: :mod:`agent19.safety.readonly_relations`). The rewriter adds more to a write, and the planner folds
the IMMUTABLE calls in it even for ``EXPLAIN`` without ``ANALYZE`` (observed on PostgreSQL 15, hostile review r31 F3):

* the target's column defaults and generated columns (``pg_attrdef``; a view's column defaults too, and those of
  the relations under a target view: an auto-updatable view writes them);
* the DEFAULT of the domains its columns are of (``pg_type.typdefaultbin``, domains over domains included);
* its rules (``pg_rewrite``, every event, not only a view's ``ON SELECT``): their actions are planned with the write,
  and the relations they name are targets too (an action inserting into another table gets its defaults: r32 F1).

When the write is only planned, a default is judged by its IMMUTABLE calls (the planner folds them; a target list is
never estimated) and a rule by its non-volatile ones; else both as code that runs. Each is read for denied built-ins
and followed through its dependencies, and a
refusal names it.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from agent19.safety import readonly_relations

if TYPE_CHECKING:
    from agent19.safety.readonly_catalog import Resolver

TEXTS = {
    "pg_attrdef": "SELECT 'default of ' || adrelid::regclass::text AS what, 'SELECT ' || pg_get_expr(adbin, adrelid) "
                  "AS text FROM pg_attrdef",
    "pg_type": "SELECT 'default of domain ' || oid::regtype::text AS what, 'SELECT ' || pg_get_expr(typdefaultbin, 0) "
               "AS text FROM pg_type",
    "rule": "SELECT 'rule ' || quote_ident(rulename) AS what, pg_get_ruledef(oid) AS text FROM pg_rewrite",
}
"""Deparsed texts (:data:`agent19.safety.readonly_catalog.Q_TEXTS`) of what the rewriter adds to a write."""
Q_TARGET_CODE = """
WITH RECURSIVE targets(rel) AS (  -- and the relations under a target view (an auto-updatable view writes them),
    SELECT unnest(%(rels)s::oid[])  -- and those a target's rules name (an action writing another table: r32 F1)
  UNION
    SELECT d.refobjid FROM targets t JOIN pg_rewrite r ON r.ev_class = t.rel
      JOIN pg_depend d ON d.classid = 'pg_rewrite'::regclass AND d.objid = r.oid
     WHERE d.refclassid = 'pg_class'::regclass AND d.refobjid <> t.rel
), domains(t) AS (
    SELECT a.atttypid FROM pg_attribute a
     WHERE a.attrelid IN (SELECT rel FROM targets) AND a.attnum > 0 AND NOT a.attisdropped
  UNION
    SELECT ty.typbasetype FROM domains d JOIN pg_type ty ON ty.oid = d.t WHERE ty.typbasetype <> 0
)
SELECT 'pg_attrdef' AS kind, d.oid::int8 AS oid,
       'default of ' || d.adrelid::regclass::text || '.' || quote_ident(a.attname) AS what
  FROM pg_attrdef d JOIN pg_attribute a ON a.attrelid = d.adrelid AND a.attnum = d.adnum
 WHERE d.adrelid IN (SELECT rel FROM targets)
UNION ALL
SELECT 'pg_type', ty.oid::int8, 'default of domain ' || ty.oid::regtype::text
  FROM pg_type ty WHERE ty.oid IN (SELECT t FROM domains) AND ty.typtype = 'd' AND ty.typdefaultbin IS NOT NULL
UNION ALL
SELECT 'rule', r.oid::int8, 'rule ' || quote_ident(r.rulename) || ' of ' || r.ev_class::regclass::text
  FROM pg_rewrite r WHERE r.ev_class IN (SELECT rel FROM targets) AND r.rulename <> '_RETURN'
 ORDER BY 1, 2
"""
CATALOG = {"rule": "pg_rewrite"}
"""The ``pg_depend.classid`` of a kind whose :data:`TEXTS` key is not its catalog."""


def check_targets(resolver: Resolver, rels: set[int], *, planning_only: bool) -> None:
    """Refuse a write whose target's defaults, domains' defaults or rules reach code read-only mode does not run."""
    if not rels:
        return
    found: dict[str, dict[int, str]] = {}
    for r in resolver._read(Q_TARGET_CODE, {"rels": sorted(rels)}).fetchall():
        found.setdefault(r["kind"], {})[int(r["oid"])] = r["what"]
    for kind, objects in found.items():
        how = "the rewriter adds to a write on the table"
        for oid, what in objects.items():
            with resolver.within(f"{what}, which {how}"):
                resolver._check_text(kind, [oid])
                funcs, others = resolver._dependencies(CATALOG.get(kind, kind), [oid])
                if planning_only:  # only planned: the planner folds a default's IMMUTABLE calls (a target list is
                    # never estimated), a rule action's non-volatile ones (its quals may be: review r32 F2, F6)
                    funcs = readonly_relations.planner_callable(resolver, funcs, estimated=kind == "rule")
                resolver.check_functions(funcs, top_level=False, planning_only=False)
                resolver.check_relations(others)
