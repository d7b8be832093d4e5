"""A fingerprint of the code the server may run, to see whether another session changed it during a trial.

The trial's guard (:mod:`agent19.safety.trial`) judges the code a statement can reach from one catalog read. The
server does not run what the guard read: each statement looks the code up again, as last committed. Another
session that replaces a trigger's function while the trial waits on a lock (or between the guard's read and
the trial) makes the server run a body nobody checked, and nothing can stop that from the trial's side. What can
be done is to notice it: :data:`CODE` is read in the same statement (so the same snapshot) as the guard's catalog
read, and again after the trial's rollback (:mod:`agent19.safety.aftermath`); a difference means what ran is not
what was checked. The trial's own changes are rolled back before the second read, so they do not count.

``CODE`` is an md5 over (catalog, oid, xmin) of the user rows that are code or lead to it: functions (body,
language, configuration), triggers, constraints (CHECK, domain), column defaults, policies, rules (views),
index expressions and predicates, partition keys, extended statistics (``ANALYZE`` evaluates their expressions),
operators, casts, aggregates, domains and types with a default, event triggers, schemas (names resolve through
them), extension membership (``pg_depend`` rows of kind ``e``: which objects are an extension's): every source
of stored expressions the guard reads (:mod:`agent19.safety.closure_query`'s ``tree``).
Any change to such a row, committed by anyone, gives it a new ``xmin``. Temporary schemas are left out: another
session's temporary objects cannot be reached from this one.
"""

from __future__ import annotations

# the server's FirstNormalObjectId, as agent19.safety.readonly_catalog.FIRST_NORMAL_OID (not imported from there:
# this module loads with agent19.safety.aftermath at start-up, and that one brings the SQL parser)
FIRST_NORMAL_OID = 16384
_TEMP = "(SELECT oid FROM pg_namespace WHERE nspname ~ '^pg_(toast_)?temp_')"


def _rows(tag: str, key: str, table: str, where: str, rel: str | None = None) -> str:
    join = f" JOIN pg_class r ON r.oid = x.{rel}" if rel else ""
    return f"SELECT '{tag}' || x.{key} || ':' || x.xmin FROM {table} x{join} WHERE {where}"


_PARTS = [
    _rows("p", "oid", "pg_proc", f"x.oid >= {FIRST_NORMAL_OID} AND x.pronamespace NOT IN {_TEMP}"),
    _rows("t", "oid", "pg_trigger", f"r.relnamespace NOT IN {_TEMP}", "tgrelid"),
    _rows("c", "oid", "pg_constraint", f"x.oid >= {FIRST_NORMAL_OID} AND x.connamespace NOT IN {_TEMP}"),
    _rows("d", "oid", "pg_attrdef", f"r.relnamespace NOT IN {_TEMP}", "adrelid"),
    _rows("y", "oid", "pg_policy", f"r.relnamespace NOT IN {_TEMP}", "polrelid"),
    _rows("r", "oid", "pg_rewrite", f"x.oid >= {FIRST_NORMAL_OID} AND r.relnamespace NOT IN {_TEMP}", "ev_class"),
    _rows("i", "indexrelid", "pg_index", f"(x.indexprs IS NOT NULL OR x.indpred IS NOT NULL) "
                                         f"AND r.relnamespace NOT IN {_TEMP}", "indexrelid"),
    _rows("o", "oid", "pg_operator", f"x.oid >= {FIRST_NORMAL_OID}"),
    _rows("k", "oid", "pg_cast", f"x.oid >= {FIRST_NORMAL_OID}"),
    _rows("a", "aggfnoid", "pg_aggregate", f"x.aggfnoid >= {FIRST_NORMAL_OID}"),
    _rows("T", "oid", "pg_type", f"(x.typtype = 'd' OR x.typdefaultbin IS NOT NULL) AND x.oid >= {FIRST_NORMAL_OID}"),
    _rows("s", "oid", "pg_statistic_ext", f"r.relnamespace NOT IN {_TEMP}", "stxrelid"),  # ANALYZE runs them
    _rows("P", "partrelid", "pg_partitioned_table", f"r.relnamespace NOT IN {_TEMP}", "partrelid"),
    _rows("e", "oid", "pg_event_trigger", "true"),
    _rows("n", "oid", "pg_namespace", f"x.oid >= {FIRST_NORMAL_OID} AND x.oid NOT IN {_TEMP}"),
    # extension membership (ALTER EXTENSION ... ADD/DROP writes only these rows): the guard trusts an extension's
    # members' use of its own C code, so which objects are members decides which edges it follows
    "SELECT 'x' || x.classid || '.' || x.objid || '.' || x.refobjid || ':' || x.xmin FROM pg_depend x "
    f"WHERE x.deptype = 'e' AND x.objid >= {FIRST_NORMAL_OID}",
]
CODE = f"""(SELECT md5(coalesce(string_agg(k, ',' ORDER BY k), '')) FROM (
  {' UNION ALL '.join(_PARTS)}) AS code(k))"""
"""A scalar expression: the fingerprint (text) of the code the server may run, as this statement's snapshot
sees it."""

CHANGED = ("code the server runs was changed by another session during the trial (a function, trigger, "
           "constraint, default, policy, rule or other object that leads to code, committed while the trial "
           "ran or since its code was checked): what ran is not what was checked; the result cannot be trusted; "
           "run it again when no one else is changing the schema, or on a staging copy")
