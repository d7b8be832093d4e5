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
QUALIFIED_SQL = True  # its statements name functions, operators, types, catalog relations pg_catalog.-qualified
# the operators the unqualified text chose (same argument types): the same fingerprint
EQ, NE, GE = "OPERATOR(pg_catalog.=)", "OPERATOR(pg_catalog.<>)", "OPERATOR(pg_catalog.>=)"
CAT = "OPERATOR(pg_catalog.||)"
_TEMP = "(SELECT oid FROM pg_catalog.pg_namespace WHERE nspname OPERATOR(pg_catalog.~) '^pg_(toast_)?temp_')"
_USER = f"{GE} {FIRST_NORMAL_OID}"


def _rows(tag: str, key: str, table: str, where: str, rel: str | None = None) -> str:
    join = f" JOIN pg_catalog.pg_class r ON r.oid {EQ} x.{rel}" if rel else ""
    return f"SELECT '{tag}' {CAT} x.{key} {CAT} ':' {CAT} x.xmin FROM pg_catalog.{table} x{join} WHERE {where}"


_PARTS = [
    _rows("p", "oid", "pg_proc", f"x.oid {_USER} AND x.pronamespace {NE} ALL {_TEMP}"),
    _rows("t", "oid", "pg_trigger", f"r.relnamespace {NE} ALL {_TEMP}", "tgrelid"),
    _rows("c", "oid", "pg_constraint", f"x.oid {_USER} AND x.connamespace {NE} ALL {_TEMP}"),
    _rows("d", "oid", "pg_attrdef", f"r.relnamespace {NE} ALL {_TEMP}", "adrelid"),
    _rows("y", "oid", "pg_policy", f"r.relnamespace {NE} ALL {_TEMP}", "polrelid"),
    _rows("r", "oid", "pg_rewrite", f"x.oid {_USER} AND r.relnamespace {NE} ALL {_TEMP}", "ev_class"),
    _rows("i", "indexrelid", "pg_index", f"(x.indexprs IS NOT NULL OR x.indpred IS NOT NULL) "
                                         f"AND r.relnamespace {NE} ALL {_TEMP}", "indexrelid"),
    _rows("o", "oid", "pg_operator", f"x.oid {_USER}"),
    _rows("k", "oid", "pg_cast", f"x.oid {_USER}"),
    _rows("a", "aggfnoid", "pg_aggregate", f"x.aggfnoid {_USER}"),
    _rows("T", "oid", "pg_type", f"(x.typtype {EQ} 'd' OR x.typdefaultbin IS NOT NULL) AND x.oid {_USER}"),
    _rows("s", "oid", "pg_statistic_ext", f"r.relnamespace {NE} ALL {_TEMP}", "stxrelid"),  # ANALYZE runs them
    _rows("P", "partrelid", "pg_partitioned_table", f"r.relnamespace {NE} ALL {_TEMP}", "partrelid"),
    _rows("e", "oid", "pg_event_trigger", "true"),
    _rows("n", "oid", "pg_namespace", f"x.oid {_USER} AND x.oid {NE} ALL {_TEMP}"),
    # extension membership (ALTER EXTENSION ... ADD/DROP writes only these rows): the guard trusts an extension's
    # members' use of its own C code, so which objects are members decides which edges it follows
    f"SELECT 'x' {CAT} x.classid {CAT} '.' {CAT} x.objid {CAT} '.' {CAT} x.refobjid {CAT} ':' {CAT} x.xmin "
    f"FROM pg_catalog.pg_depend x WHERE x.deptype {EQ} 'e' AND x.objid {_USER}",
]
CODE = f"""(SELECT pg_catalog.md5(coalesce(pg_catalog.string_agg(k, ',' ORDER BY k), '')) FROM (
  {' UNION ALL '.join(_PARTS)}) AS code(k))"""
"""A scalar expression: the fingerprint (text) of the code the server may run, as this statement's snapshot
sees it."""

CHANGED = ("code the server runs was changed by another session during the trial (a function, trigger, "
           "constraint, default, policy, rule or other object that leads to code, committed while the trial "
           "ran or since its code was checked): what ran is not what was checked; the result cannot be trusted; "
           "run it again when no one else is changing the schema, or on a staging copy")
