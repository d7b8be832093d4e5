"""The read guard's relation walk (:meth:`agent19.safety.readonly_catalog.Resolver.check_relations`): what reading a
relation runs besides its rows.

A view runs its ``ON SELECT`` rule and a table with row-level security its policies. Planning a read runs more, as
the login that plans it, even for ``EXPLAIN`` without ``ANALYZE`` (observed on PostgreSQL 15: a function declared
IMMUTABLE with constant arguments is called while the planner loads the definition and folds its constants):

* the expressions and predicates of the relation's indexes (``pg_index.indexprs``/``indpred``);
* the expressions of its extended statistics objects (``pg_statistic_ext``, PostgreSQL 14+);
* the partition key expressions of a partitioned table, and of a partition's ancestors (its partition constraint
  repeats them; used under ``constraint_exclusion = on``);
* the CHECK constraints of inheritance children (constraint exclusion, on by default for them) and of any table read
  under ``constraint_exclusion = on`` (a database owner can set it for every session: ALTER DATABASE … SET);
* the same for every partition and inheritance child a read of the parent scans (they are walked as relations read).

So a table's owner can put code in any of them that runs with the reading login's powers. Each is followed like a
policy: its deparsed text is read for denied built-ins (they are pinned: no ``pg_depend`` rows), and the functions,
operators and domains it depends on are judged as code that runs. A refusal names the definition.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from agent19.safety.readonly_catalog import Resolver

ALLOWED_FDWS = {"postgres_fdw"}
Q_RELATION = """
SELECT c.oid::bigint AS oid, n.nspname AS schema, c.relname AS name, c.relkind AS kind,
       c.relrowsecurity  -- policies apply to the login (check_enable_rls): not a superuser nor BYPASSRLS, and not
         AND NOT (SELECT r.rolsuper OR r.rolbypassrls FROM pg_roles r WHERE r.rolname = current_user)  -- the owner
         AND (c.relforcerowsecurity OR NOT pg_has_role(current_user, c.relowner, 'USAGE')) AS rls,  -- unless FORCE
       (SELECT w.fdwname FROM pg_foreign_table ft JOIN pg_foreign_server s ON s.oid = ft.ftserver
          JOIN pg_foreign_data_wrapper w ON w.oid = s.srvfdw WHERE ft.ftrelid = c.oid) AS fdw,
       (SELECT s.srvname FROM pg_foreign_table ft JOIN pg_foreign_server s ON s.oid = ft.ftserver
         WHERE ft.ftrelid = c.oid AND (SELECT r.rolsuper FROM pg_roles r WHERE r.rolname = current_user)) AS lent_by
  FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace WHERE c.oid = ANY(%s::oid[])
"""
Q_RULES = "SELECT oid::bigint AS oid FROM pg_rewrite WHERE ev_class = ANY(%s::oid[])"
Q_POLICIES = "SELECT oid::bigint AS oid FROM pg_policy WHERE polrelid = ANY(%s::oid[])"
# what planning a read of the relations runs (see the module's docstring): (Q_TEXTS key, object, how to name it);
# and the children a read of them scans
Q_PLANNED_CODE = """
SELECT 'pg_index' AS kind, x.indexrelid::pg_catalog.int8 AS oid,
       'index ' OPERATOR(pg_catalog.||) x.indexrelid::pg_catalog.regclass::pg_catalog.text OPERATOR(pg_catalog.||)
       ' of ' OPERATOR(pg_catalog.||) x.indrelid::pg_catalog.regclass::pg_catalog.text AS what
  FROM pg_catalog.pg_index x
 WHERE x.indrelid OPERATOR(pg_catalog.=) ANY(%(rels)s::pg_catalog.oid[])
   AND (x.indexprs IS NOT NULL OR x.indpred IS NOT NULL)
UNION ALL
SELECT 'pg_statistic_ext', s.oid::pg_catalog.int8,
       'statistics object ' OPERATOR(pg_catalog.||) pg_catalog.quote_ident(s.stxname) OPERATOR(pg_catalog.||)
       ' of ' OPERATOR(pg_catalog.||) s.stxrelid::pg_catalog.regclass::pg_catalog.text
  FROM pg_catalog.pg_statistic_ext s WHERE s.stxrelid OPERATOR(pg_catalog.=) ANY(%(rels)s::pg_catalog.oid[])
UNION ALL
SELECT DISTINCT 'pg_partitioned_table', p.partrelid::pg_catalog.int8,
       'partition key of ' OPERATOR(pg_catalog.||) p.partrelid::pg_catalog.regclass::pg_catalog.text
  FROM pg_catalog.unnest(%(rels)s::pg_catalog.oid[]) r(oid)
 CROSS JOIN LATERAL pg_catalog.pg_partition_ancestors(r.oid) a
  JOIN pg_catalog.pg_partitioned_table p ON p.partrelid OPERATOR(pg_catalog.=) a.relid
 WHERE p.partexprs IS NOT NULL
UNION ALL
SELECT 'pg_constraint', c.oid::pg_catalog.int8,
       'CHECK constraint ' OPERATOR(pg_catalog.||) pg_catalog.quote_ident(c.conname) OPERATOR(pg_catalog.||)
       ' of ' OPERATOR(pg_catalog.||) c.conrelid::pg_catalog.regclass::pg_catalog.text
  FROM pg_catalog.pg_constraint c
 WHERE c.conrelid OPERATOR(pg_catalog.=) ANY(%(rels)s::pg_catalog.oid[]) AND c.contype OPERATOR(pg_catalog.=) 'c'
UNION ALL
SELECT 'child', i.inhrelid::pg_catalog.int8, NULL
  FROM pg_catalog.pg_inherits i WHERE i.inhparent OPERATOR(pg_catalog.=) ANY(%(rels)s::pg_catalog.oid[])
 ORDER BY 1, 2
"""
Q_IMMUTABLE = "SELECT oid::bigint AS oid FROM pg_proc WHERE oid = ANY(%s::oid[]) AND provolatile = 'i'"
Q_NOT_VOLATILE = "SELECT oid::bigint AS oid FROM pg_proc WHERE oid = ANY(%s::oid[]) AND provolatile <> 'v'"
Q_RANGE_FUNCTIONS = """
WITH RECURSIVE reach(t) AS (
    SELECT a.atttypid FROM pg_attribute a WHERE a.attrelid = ANY(%s::oid[]) AND a.attnum > 0 AND NOT a.attisdropped
  UNION
    SELECT s.x FROM reach r JOIN pg_type ty ON ty.oid = r.t
      CROSS JOIN LATERAL (SELECT ty.typbasetype UNION ALL SELECT ty.typelem
                          UNION ALL SELECT g.rngtypid FROM pg_range g WHERE g.rngmultitypid = ty.oid
                          UNION ALL SELECT a.atttypid FROM pg_attribute a
                           WHERE a.attrelid = ty.typrelid AND a.attnum > 0 AND NOT a.attisdropped) s(x)
     WHERE s.x <> 0
)
SELECT g.rngtypid::regtype::text AS what, f::oid::bigint AS oid
  FROM pg_range g CROSS JOIN LATERAL unnest(ARRAY[g.rngsubdiff::oid, g.rngcanonical::oid]) f
 WHERE g.rngtypid IN (SELECT t FROM reach) AND f <> 0
"""
DEPENDING_AS = {"pg_index": "pg_class", "pg_partitioned_table": "pg_class"}
"""The ``pg_depend.classid`` of an object whose Q_TEXTS key is not its catalog: an index and a partition key
(recorded on the partitioned table) are ``pg_class`` objects."""


def check_relations(resolver: Resolver, oids: set[int]) -> None:
    """Refuse relations that hold credentials or reach outside, and follow what reading them runs: level by level,
    not by recursion (a chain of 400 inheritance children exhausted Python's stack: review r31 F9)."""
    pending = set(oids)
    while pending:
        pending = _check_level(resolver, pending)


def _check_level(resolver: Resolver, oids: set[int]) -> set[int]:
    """One level of the walk; returns the relations the next reads (children, relations views and policies read)."""
    todo = sorted(oids - resolver.seen_relations)
    if not todo:
        return set()
    resolver.seen_relations |= set(todo)
    refuse = resolver.refuse
    views: list[int] = []
    secured: list[int] = []
    for r in resolver._read(Q_RELATION, (todo,)).fetchall():
        name = f"{r['schema']}.{r['name']}"
        if r["name"] in resolver.denied_relations:
            raise refuse(f"{name} holds credentials or server internals (read through a view)",
                         "read pg_roles for roles; password hashes are never returned")
        if r["kind"] == "f" and r["fdw"] not in ALLOWED_FDWS:
            raise refuse(f"{name} is a foreign table of {r['fdw']}: reading it may run a program or read "
                         "server files", "read-only mode reads foreign tables of postgres_fdw only")
        if r["kind"] == "f" and r["lent_by"] is not None:  # review r31 F10, r32 F4
            raise refuse(f"{name} is a foreign table of server {r['lent_by']}: read as a superuser, postgres_fdw "
                         "connects with the superuser's user mapping (a server's owner may create one pointing "
                         "anywhere, and no password is asked of a superuser), and the remote object's code - which "
                         "agent19 cannot see - runs with those powers",
                         "read it as a login that is not a superuser (--read-dsn)")
        if r["kind"] == "v":
            views.append(int(r["oid"]))
        if r["rls"]:
            secured.append(int(r["oid"]))
    funcs: set[int] = set()
    rels: set[int] = set()
    for catalog, query, owners in (("pg_rewrite", Q_RULES, views), ("pg_policy", Q_POLICIES, secured)):
        if owners:
            objs = [int(x["oid"]) for x in resolver._read(query, (owners,)).fetchall()]
            resolver._check_text(catalog, objs)
            f, r = resolver._dependencies(catalog, objs)
            funcs |= f
            rels |= r
    resolver.check_functions(funcs, top_level=False, planning_only=False)
    _check_range_functions(resolver, todo)
    return _check_planned_code(resolver, todo) | rels


def planner_callable(resolver: Resolver, funcs: set[int], *, estimated: bool = True) -> set[int]:
    """Of ``funcs``, those the planner may call when it folds a definition it loads: eval_const_expressions folds
    IMMUTABLE calls (STABLE ones when estimating a qual's selectivity, kept unless ``estimated`` is false: a
    default in a target list is never estimated, review r32 F2); a VOLATILE function is never called then (review
    r31 F6: CREATE FUNCTION's default volatility, a validator in a CHECK). Its arguments are dependencies of their
    own."""
    if not funcs or resolver.rows_written:
        return funcs
    return resolver._oids(Q_NOT_VOLATILE if estimated else Q_IMMUTABLE, (sorted(funcs),))


def _check_range_functions(resolver: Resolver, rels: list[int]) -> None:
    """The subtype_diff and canonical functions of range types the relations' columns hold (through domains,
    arrays, multiranges and composite fields): rangesel calls subtype_diff on the column's histogram when a range
    clause is planned, whatever the function's volatility (review r31 F1)."""
    rows = resolver._read(Q_RANGE_FUNCTIONS, (rels,)).fetchall()
    for r in rows:
        with resolver.within(f"range type {r['what']} of a column read, whose functions the planner calls"):
            resolver.check_functions({int(r["oid"])}, top_level=False, planning_only=False)


def _check_planned_code(resolver: Resolver, rels: list[int]) -> set[int]:
    """The code planning a read of ``rels`` runs (indexes, statistics, partition keys, CHECKs): a few round trips a
    kind, however many partitions; a refusal names the definition. Returns the children a read of them scans."""
    children: set[int] = set()
    found: dict[str, dict[int, str]] = {}
    for r in resolver._read(Q_PLANNED_CODE, {"rels": rels}).fetchall():
        if r["kind"] == "child":
            children.add(int(r["oid"]))
        else:
            found.setdefault(r["kind"], {})[int(r["oid"])] = r["what"]
    for kind, objects in found.items():
        with resolver.within(_where(kind, ", ".join(objects.values()))):
            resolver._check_text(kind, sorted(objects))  # (its message names the object too)
            own: dict[int, set[int]] = {}
            # expressions without subqueries: the relations they depend on are their own tables
            funcs, _ = resolver._dependencies(DEPENDING_AS.get(kind, kind), sorted(objects), own)
            callable_ = planner_callable(resolver, funcs | {f for fs in own.values() for f in fs})
        for oid, what in objects.items():
            with resolver.within(_where(kind, what)):
                resolver.check_functions(own.get(oid, set()) & callable_, top_level=False, planning_only=False)
        with resolver.within(_where(kind, ", ".join(objects.values()))):  # domains' CHECKs, of any of them
            resolver.check_functions(funcs & callable_, top_level=False, planning_only=False)
    return children


def _where(kind: str, what: str) -> str:
    if kind == "pg_constraint":  # (under constraint exclusion)
        return f"{what}, which the planner may evaluate when it plans a read of the table"
    return f"{what}, which the planner runs when it plans a read of the table"
