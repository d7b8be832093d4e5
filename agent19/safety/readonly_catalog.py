"""Layer 3 of the read-only guard: what a statement really calls, as the server resolves it.

The text of a statement does not show everything it runs. This layer asks the catalog:

* **Names resolve as the server resolves them.** ``fn()`` is looked up in the session's search path
  (pg_catalog first), ``s.fn()`` in schema ``s``, ``db.s.fn()`` only when ``db`` is the current
  database (else refused: the server would not run it either, and a guard must not guess); longer
  names are refused. Every overload of a name counts (the argument types are not resolved here:
  the cautious reading).
* **What runs without being written.** Views are followed through their rewrite rules'
  dependencies (``pg_rewrite`` → ``pg_depend``) to the functions, operators and relations they use;
  row-level security policies of the tables read, likewise; so is the code planning a read runs (the planner folds
  constants, even for EXPLAIN): index expressions and predicates, statistics objects' expressions, partition keys
  and CHECK constraints of every relation read, its partitions and inheritance children included
  (:mod:`agent19.safety.readonly_relations`, with the relation walk); operators to their functions
  (the implicit ``=``/``<`` of joins, sorts and IN lists included); casts to their cast functions,
  the target type's input function and a domain's CHECK constraints; user-defined implicit casts;
  ``t.fn`` (a function called with attribute notation); domains reached through function arguments and
  results, composite fields, column definition lists and casts written as calls (``d(x)``); default
  arguments; domains an object depends on, to their CHECKs. Built-in functions are pinned (pg_depend records no
  dependency on them), so the deparsed text of views, policies, indexes, statistics objects, partition keys,
  CHECKs and function definitions is read for denied built-ins too. A refusal reached through a relation's
  definition names it (:meth:`Resolver.within`).
* **Function bodies.** Built-in functions are judged by name (the deny-list) and volatility. A
  user-defined function is read: a SQL-standard body (``BEGIN ATOMIC``) through ``pg_depend``; a
  ``LANGUAGE sql`` body is parsed (views it reads followed); a PL/pgSQL body is scanned — every
  identifier may be a function, a view, a cast's type or a variable's type (a domain's CHECKs run on assignment;
  ``%TYPE``/``%ROWTYPE`` reach a relation's column types), every operator token a user operator — and
  refused if it runs dynamic SQL (``EXECUTE``) or names things with ``U&"…"`` escapes; a body in
  any other language cannot be read and is refused, as is a ``SECURITY DEFINER`` function (it runs
  with its owner's privileges, across the reader's boundary). Callees are judged the same way, recursively.
* **Relations that carry credentials or reach outside.** ``pg_authid``, user mappings (also through
  ``information_schema.user_mapping_options``), subscriptions' connection strings; foreign tables
  other than ``postgres_fdw`` (``file_fdw`` runs programs and reads server files when read).

What a catalog cannot see (C code, other servers) stays the server's to enforce: the reader login
(``--read-dsn``) and the READ ONLY transaction are the boundary; this layer is the first filter.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

from pglast.parser import ParseError

from agent19.db import catalog_first
from agent19.migrate.patterns.sqlnames import quoted
from agent19.safety import readonly_relations, readonly_writes
from agent19.safety.readonly_written import _names, written
from agent19.sqltree import fold_identifier, parse_json, walk

FIRST_NORMAL_OID = 16384
"""Objects with a lower oid were created by initdb: the built-ins."""
MAX_FUNCTIONS = 500
READABLE_LANGUAGES = {"sql", "plpgsql"}
TRUSTED_CODE = {"c", "internal"}
_PLPGSQL_EXECUTE = re.compile(r"\bEXECUTE\b", re.IGNORECASE)
_PLPGSQL_QUOTED = re.compile(r'"((?:[^"]|"")+)"')
_PLPGSQL_OPERATOR = re.compile(r"[-+*/<>=~!@#%^&|`?]+")
_PLPGSQL_WORD = re.compile(r"[A-Za-z_\u0080-\U0010ffff][A-Za-z0-9_$\u0080-\U0010ffff]*")  # the server's identifier

Refuse = Callable[[str, str], Exception]


def _quoted(parts: list[str]) -> str:
    """``schema.name`` (the last two parts) quoted exactly as parsed, for ``to_regclass``/``to_regtype``."""
    return ".".join(quoted(p) for p in parts[-2:])


Q_FUNCTION_FACTS = """
SELECT p.oid::bigint AS oid, n.nspname AS schema, p.proname AS name, p.provolatile AS volatile,
       p.prosecdef AS definer, l.lanname AS language, p.prosrc AS source, p.prosqlbody IS NOT NULL AS atomic,
       (coalesce(p.proallargtypes, p.proargtypes::oid[]) || p.prorettype)::bigint[] AS types,
       ARRAY(SELECT f::oid::bigint FROM pg_aggregate a,
                    unnest(ARRAY[a.aggtransfn, a.aggfinalfn, a.aggcombinefn, a.aggserialfn, a.aggdeserialfn,
                                 a.aggmtransfn, a.aggminvtransfn, a.aggmfinalfn]) f
              WHERE a.aggfnoid = p.oid AND f <> 0) AS aggregate_parts
  FROM pg_proc p JOIN pg_namespace n ON n.oid = p.pronamespace JOIN pg_language l ON l.oid = p.prolang
 WHERE p.oid = ANY(%s::oid[])
"""
Q_FUNCS_IN_PATH = """
SELECT p.oid::bigint AS oid FROM pg_catalog.pg_proc p
 WHERE p.proname OPERATOR(pg_catalog.=) %(name)s::pg_catalog.name
   AND p.pronamespace OPERATOR(pg_catalog.=) ANY(
       SELECT s::pg_catalog.regnamespace::pg_catalog.oid FROM pg_catalog.unnest(pg_catalog.current_schemas(true)) s)
"""
Q_FUNCS_IN_SCHEMA = """
SELECT p.oid::bigint AS oid FROM pg_proc p JOIN pg_namespace n ON n.oid = p.pronamespace
 WHERE p.proname = %(name)s AND n.nspname = %(schema)s
"""
Q_FUNCS_ANYWHERE = "SELECT oid::bigint AS oid FROM pg_proc WHERE proname = ANY(%s)"
Q_ATTRIBUTE_FUNCS = f"""
SELECT oid::bigint AS oid FROM pg_proc WHERE proname = ANY(%s) AND pronargs = 1 AND oid >= {FIRST_NORMAL_OID}
"""
# an operator's commutator and negator too: the planner commutes and negates clauses, then calls their functions
Q_OPERATOR_FUNCS = f"""
SELECT x.fn::oid::bigint AS oid FROM pg_operator o CROSS JOIN LATERAL (
       SELECT o.oid, o.oprcode
        UNION ALL SELECT c.oid, c.oprcode FROM pg_operator c WHERE c.oid IN (o.oprcom, o.oprnegate)
       ) x(op, fn)
 WHERE o.oprname = ANY(%s) AND x.fn <> 0 AND (x.op >= {FIRST_NORMAL_OID} OR x.fn::oid >= {FIRST_NORMAL_OID})
"""
Q_IMPLICIT_CASTS = f"""
SELECT castfunc::bigint AS oid FROM pg_cast
 WHERE castfunc <> 0 AND castcontext IN ('i', 'a') AND (oid >= {FIRST_NORMAL_OID} OR castfunc >= {FIRST_NORMAL_OID})
"""
Q_CAST_TARGET = """
SELECT t.oid::bigint AS type, t.typinput::pg_catalog.oid::bigint AS input,
       ARRAY(SELECT k.castfunc::bigint FROM pg_catalog.pg_cast k
              WHERE k.casttarget OPERATOR(pg_catalog.=) t.oid AND k.castfunc OPERATOR(pg_catalog.<>) 0) AS casts
  FROM pg_catalog.pg_type t
 WHERE t.oid OPERATOR(pg_catalog.=) pg_catalog.to_regtype(%s::pg_catalog.text)::pg_catalog.oid
"""
Q_DEPENDENCIES = """
SELECT d.refclassid::regclass::text AS class, d.refobjid::bigint AS oid, d.objid::bigint AS obj,
       CASE WHEN d.refclassid = 'pg_operator'::regclass
            THEN ARRAY(SELECT x.oprcode::oid::bigint FROM pg_operator o JOIN pg_operator x ON x.oid IN (o.oid, o.oprcom,
                       o.oprnegate) WHERE o.oid = d.refobjid AND x.oprcode <> 0) END AS opfuncs
  FROM pg_depend d
 WHERE d.classid = %(class)s::regclass AND d.objid = ANY(%(oids)s::oid[])
   AND d.refclassid IN ('pg_proc'::regclass, 'pg_class'::regclass, 'pg_operator'::regclass, 'pg_type'::regclass)
"""
Q_DOMAIN_CONSTRAINTS = """
WITH RECURSIVE reach(t) AS (
    SELECT unnest(%s::oid[])
  UNION
    SELECT s.x FROM reach r JOIN pg_type ty ON ty.oid = r.t
      CROSS JOIN LATERAL (SELECT ty.typbasetype UNION ALL SELECT ty.typelem
                          UNION ALL SELECT rngsubtype FROM pg_range WHERE rngtypid = ty.oid
                          UNION ALL SELECT a.atttypid FROM pg_attribute a
                           WHERE a.attrelid = ty.typrelid AND a.attnum > 0 AND NOT a.attisdropped) s(x)
     WHERE s.x <> 0
)
SELECT con.oid::bigint AS oid FROM pg_constraint con WHERE con.contypid IN (SELECT t FROM reach)
"""
Q_RELATIONS_ANYWHERE = "SELECT oid::bigint AS oid FROM pg_class WHERE relname = ANY(%s)"
# a PL/pgSQL variable's type: any type so named (a domain's CHECKs run on assignment), and the row types of relations
# so named (`v t.col%TYPE`, `r t%ROWTYPE`: the domain's name is not in the body)
Q_TYPES_NAMED = """
SELECT oid::bigint AS oid FROM pg_type WHERE typname = ANY(%s)
UNION SELECT reltype::bigint FROM pg_class WHERE relname = ANY(%s) AND reltype <> 0
"""
Q_CASTS_TO_NAMED = f"""
SELECT c.castfunc::bigint AS oid FROM pg_cast c JOIN pg_type t ON t.oid = c.casttarget
 WHERE t.typname = ANY(%s) AND c.castfunc <> 0 AND (c.oid >= {FIRST_NORMAL_OID} OR c.castfunc >= {FIRST_NORMAL_OID})
"""
# built-in functions and catalogs are pinned: pg_depend records no dependency on them, so what these call
# among them is read from their text (pg_get_*def, as the server deparses them)
Q_TEXTS = {
    "pg_rewrite": "SELECT 'view ' || ev_class::regclass::text AS what, CASE ev_type WHEN '1' THEN "
                  "pg_get_ruledef(oid) END AS text FROM pg_rewrite",  # a read runs the ON SELECT rule only
    "pg_policy": "SELECT 'policy ' || polname AS what, 'SELECT ' || concat_ws(', ', pg_get_expr(polqual, polrelid), "
                 "pg_get_expr(polwithcheck, polrelid)) AS text FROM pg_policy",
    "pg_constraint": "SELECT CASE WHEN contypid = 0 THEN 'constraint ' || quote_ident(conname) || ' of ' || "
                     "conrelid::regclass::text ELSE 'domain ' || contypid::regtype::text END AS what, "
                     "'SELECT ' || pg_get_expr(conbin, conrelid) AS text FROM pg_constraint",
    # what planning a read runs (agent19.safety.readonly_relations): an index's and a partition key's oid is the
    # index's and the partitioned table's pg_class oid
    "pg_index": "SELECT 'index ' || oid::regclass::text AS what, pg_get_indexdef(oid) AS text FROM pg_class",
    "pg_statistic_ext": "SELECT 'statistics object ' || quote_ident(stxname) AS what, pg_get_statisticsobjdef(oid) "
                        "AS text FROM pg_statistic_ext",
    "pg_partitioned_table": "SELECT 'partition key of ' || oid::regclass::text AS what, 'SELECT ' || (SELECT "
                            "pg_get_expr(p.partexprs, p.partrelid) FROM pg_partitioned_table p WHERE p.partrelid = "
                            "pg_class.oid) AS text FROM pg_class",
    "pg_proc": "SELECT oid::regprocedure::text AS what, pg_get_functiondef(oid) AS text FROM pg_proc",
    **readonly_writes.TEXTS,
}


class Resolver:
    """Walks from a statement to every function and relation it can run or read; refuses on the way."""

    def __init__(self, conn: Any, refuse: Refuse, *, denied_function: Callable[[str], bool],
                 denied_relations: set[str], denied_columns: set[str], harmless_volatile: set[str]) -> None:
        self.conn = conn
        self._refuse = refuse
        self._within: list[str] = []
        self.denied_function = denied_function
        self.denied_relations = denied_relations
        self.denied_columns = denied_columns
        self.harmless_volatile = harmless_volatile
        self.seen_functions: set[int] = set()
        self.seen_relations: set[int] = set()
        self.seen_types: set[int] = set()
        self.rows_written = False
        """Rows of the relations walked are written too (a copy with their indexes and CHECKs): every call in their
        definitions runs, not only those the planner folds (:func:`.readonly_relations.planner_callable`)."""

    def refuse(self, what: str, hint: str) -> Exception:
        """The refusal, saying where the code was reached when that is not the statement (:meth:`within`)."""
        return self._refuse(what + "".join(f"; in the {w}" for w in reversed(self._within)), hint)

    @contextmanager
    def within(self, where: str) -> Iterator[None]:
        """Refusals while following code the statement does not show name ``where`` (an index of a table read)."""
        self._within.append(where)
        try:
            yield
        finally:
            self._within.pop()

    # -- the statement ------------------------------------------------------------------------
    def check_statement(self, tree: Any, *, planning_only: bool) -> None:
        w = written(tree)
        direct: set[int] = set()
        through: set[int] = set()
        for parts in sorted({tuple(p) for p in w.functions}):  # one lookup per distinct name
            found = self.resolve_function(list(parts))
            direct |= found
            if not found:  # `type(x)`: a cast written as a call
                through |= self._cast_functions(list(parts))
        through |= self._oids(Q_OPERATOR_FUNCS, (sorted(w.operators),))
        through |= self._oids(Q_IMPLICIT_CASTS, None)
        if w.columns:
            through |= self._oids(Q_ATTRIBUTE_FUNCS, (sorted(w.columns),))
        for parts in w.casts:
            through |= self._cast_functions(parts)
        rels: set[int] = set()
        for rv in w.relations:  # a CTE's name too: a relation it shadows here may be read elsewhere
            rels |= self.resolve_relation(rv)
        self.check_functions(direct, top_level=True, planning_only=planning_only)
        self.check_functions(through, top_level=False, planning_only=planning_only)
        self.check_relations(rels)
        targets: set[int] = set()
        for rv in w.targets:
            targets |= self.resolve_relation(rv)
        readonly_writes.check_targets(self, targets, planning_only=planning_only)

    # -- resolution ---------------------------------------------------------------------------
    def _read(self, query: str, params: Any = None, *, own: bool = True) -> Any:
        """The cursor of ``query``: agent19's own catalog read under pg_catalog only
        (:func:`agent19.db.catalog_first.read_own`: an exact-match overload such as ``public.>=(oid, integer)``, on
        the login's path, answered ``oid >= 16384`` and hid every user operator: review r27b k15); ``own=False``
        for the few that resolve the statement's names through the session's path (every name in them qualified)."""
        if not own:
            return self.conn.execute(query, params)
        return catalog_first.read_own(self.conn, ((query, params),))[0]

    def _oids(self, query: str, params: Any, *, own: bool = True) -> set[int]:
        return {int(r["oid"]) for r in self._read(query, params, own=own).fetchall() if r["oid"] is not None}

    def _current_database(self, catalog: str, written_name: str) -> None:
        row = self._read("SELECT current_database() AS db").fetchone()
        if row["db"] != catalog:
            raise self.refuse(f"{written_name} names another database ({catalog!r}); the server reads only "
                              f"its current database ({row['db']!r})", "leave out the database name")

    def resolve_function(self, parts: list[str]) -> set[int]:
        written_name = ".".join(parts)
        if len(parts) > 3 or not parts:
            raise self.refuse(f"{written_name}() is not a function name the server resolves",
                              "call it as name(...) or schema.name(...)")
        if len(parts) == 3:
            self._current_database(parts[0], written_name + "()")
            parts = parts[1:]
        if len(parts) == 2:
            return self._oids(Q_FUNCS_IN_SCHEMA, {"schema": parts[0], "name": parts[1]})
        return self._oids(Q_FUNCS_IN_PATH, {"name": parts[0]}, own=False)  # the statement's path

    def resolve_relation(self, rv: dict[str, Any]) -> set[int]:
        parts = [p for p in (rv.get("catalogname"), rv.get("schemaname"), rv.get("relname")) if p]
        written_name = ".".join(parts)
        if rv.get("catalogname"):
            self._current_database(rv["catalogname"], written_name)
        if rv.get("relname", "") in self.denied_relations:
            raise self.refuse(f"{written_name} holds credentials or server internals",
                              "read pg_roles for roles; password hashes and user mappings are never "
                              "returned")
        row = self._read("SELECT pg_catalog.to_regclass(%s::pg_catalog.text)::pg_catalog.oid::bigint AS oid",
                         (_quoted(parts),), own=False).fetchone()  # the statement's path
        return {int(row["oid"])} if row and row["oid"] is not None else set()

    def _cast_functions(self, parts: list[str]) -> set[int]:
        if not parts:
            return set()
        # NULL for an unknown type: the server refuses it
        row = self._read(Q_CAST_TARGET, (_quoted(parts),), own=False).fetchone()  # the statement's path
        if row is None:
            return set()
        return {int(row["input"]), *(int(c) for c in row["casts"] or [])} | self._domain_checks([int(row["type"])])

    def _domain_checks(self, types: list[int]) -> set[int]:
        """Functions the CHECKs of domains reached from ``types`` call (through base types, array elements,
        range subtypes and composite fields: json_populate_record(NULL::t, …) checks t's fields' domains)."""
        constraints = sorted(self._oids(Q_DOMAIN_CONSTRAINTS, (types,)))
        self._check_text("pg_constraint", constraints)
        return self._dependencies("pg_constraint", constraints)[0] if constraints else set()

    def _dependencies(self, catalog: str, oids: list[int], by_object: dict[int, set[int]] | None = None
                      ) -> tuple[set[int], set[int]]:
        """Functions (operators as their functions, domains as their CHECKs' functions) and relations the objects
        depend on; ``by_object`` gets each object's own functions and operators' functions."""
        funcs: set[int] = set()
        rels: set[int] = set()
        types: set[int] = set()
        if not oids:
            return funcs, rels
        for r in self._read(Q_DEPENDENCIES, {"class": catalog, "oids": oids}).fetchall():
            if r["class"] in ("pg_proc", "pg_operator"):
                fns = {int(r["oid"])} if r["class"] == "pg_proc" else {int(x) for x in r["opfuncs"] or []}
                funcs |= fns  # (an operator: its function, its commutator's and its negator's)
                (by_object if by_object is not None else {}).setdefault(int(r["obj"]), set()).update(fns)
            elif r["class"] == "pg_type":
                types.add(int(r["oid"]))
            else:
                rels.add(int(r["oid"]))
        new, self.seen_types = types - self.seen_types, self.seen_types | types  # (a domain's CHECK depends on it)
        if new:  # a cast to a domain runs its CHECKs
            funcs |= self._domain_checks(sorted(new))
        return funcs, rels

    def _check_text(self, catalog: str, oids: list[int]) -> None:
        """Denied built-in functions and credential catalogs in the deparsed text of views, policies, domain
        CHECKs and function definitions (default arguments, BEGIN ATOMIC bodies)."""
        if not oids:
            return
        for r in self._read(Q_TEXTS[catalog] + " WHERE oid = ANY(%s::oid[])", (oids,)).fetchall():
            try:
                trees = parse_json(r["text"] or "")
            except ParseError:
                raise self.refuse(f"{r['what']} does not parse: agent19 cannot see what it does",
                                  "read-only mode reads only what it can check") from None
            for node, f in walk(trees):
                called = _names(f.get("funcname", []))[-1:] if node == "FuncCall" else []
                if called and self.denied_function(called[0]):
                    raise self.refuse(f"{called[0]}() is not allowed in read-only mode (called by {r['what']}): it "
                                      "reaches server files, other sessions, settings, locks, other servers or runs "
                                      "SQL given as a string", "only reads of data and statistics run here")
                read = set(_names(f.get("fields", []))) & self.denied_columns if node == "ColumnRef" else set()
                if read:  # (pg_stat_activity joins pg_authid for names: the password column is what counts)
                    raise self.refuse(f"{r['what']} reads {', '.join(sorted(read))}, which holds credentials",
                                      "read pg_roles for roles; password hashes are never returned")

    # -- verdicts -----------------------------------------------------------------------------
    def check_functions(self, oids: set[int], *, top_level: bool, planning_only: bool) -> None:
        todo = sorted(oids - self.seen_functions)
        if not todo:
            return
        if len(self.seen_functions) + len(todo) > MAX_FUNCTIONS:
            raise self.refuse("the statement reaches too many functions to check", "simplify the query")
        for fn in self._read(Q_FUNCTION_FACTS, (todo,)).fetchall():
            self.seen_functions.add(int(fn["oid"]))
            self._judge(fn, top_level=top_level, planning_only=planning_only)

    def _judge(self, fn: dict[str, Any], *, top_level: bool, planning_only: bool) -> None:
        name = f"{fn['schema']}.{fn['name']}"
        builtin = int(fn["oid"]) < FIRST_NORMAL_OID
        if self.denied_function(fn["name"]):
            how = "" if top_level else " (reached through a view, operator, cast or function body)"
            raise self.refuse(f"{name}() is not allowed in read-only mode{how}: it reaches server files, other "
                              "sessions, settings, locks, other servers or runs SQL given as a string",
                              "only reads of data and statistics run in read-only mode")
        volatile = fn["volatile"] == "v"
        harmless = fn["name"] in self.harmless_volatile and (builtin or fn["language"] in TRUSTED_CODE)
        if volatile and planning_only and top_level:
            return  # the planner does not call volatile functions; it is never executed here
        if volatile and not harmless and (top_level or not builtin):
            raise self.refuse(f"{name}() is a volatile function: it may change data or state",
                              "only stable and immutable functions run in read-only mode")
        if builtin:
            return
        if fn["aggregate_parts"]:  # an aggregate runs its state, final and combine functions
            self.check_functions({int(x) for x in fn["aggregate_parts"]}, top_level=False, planning_only=False)
        funcs, rels = self._dependencies("pg_proc", [int(fn["oid"])])  # default arguments' expressions, too
        if not fn["aggregate_parts"]:
            self._check_text("pg_proc", [int(fn["oid"])])
        funcs |= self._domain_checks([int(t) for t in fn["types"]])  # arguments and result coerced to domains
        self.check_functions(funcs, top_level=False, planning_only=False)
        self.check_relations(rels)
        if fn["definer"]:
            raise self.refuse(f"{name}() is SECURITY DEFINER: it runs with its owner's privileges, beyond the "
                              "reader's", "read-only mode does not call SECURITY DEFINER functions")
        language = fn["language"]
        if language in TRUSTED_CODE:
            return
        if language not in READABLE_LANGUAGES:
            raise self.refuse(f"{name}() is written in {language}: agent19 cannot see what it does",
                              "only built-in, SQL and PL/pgSQL functions whose bodies can be checked run here")
        self.check_functions(self._body_calls(fn, name), top_level=False, planning_only=False)

    def _body_calls(self, fn: dict[str, Any], name: str) -> set[int]:
        if fn["atomic"]:
            funcs, rels = self._dependencies("pg_proc", [int(fn["oid"])])
            self.check_relations(rels)
            return funcs
        source = fn["source"] or ""
        if fn["language"] == "plpgsql":
            if _PLPGSQL_EXECUTE.search(source):
                raise self.refuse(f"{name}() runs SQL built at run time (EXECUTE): agent19 cannot see it",
                                  "read-only mode does not call functions with dynamic SQL")
            if re.search(r'\bU&"', source, re.IGNORECASE):
                raise self.refuse(f"{name}() names something with Unicode escapes (U&\"...\"): agent19 cannot "
                                  "check what it calls",
                                  "read-only mode calls only functions whose bodies can be checked")
            words = {fold_identifier(w) for w in _PLPGSQL_WORD.findall(source)}  # non-ASCII letters kept
            if words & self.denied_relations:
                raise self.refuse(f"{name}() reads {', '.join(sorted(words & self.denied_relations))}, which holds "
                                  "credentials", "read-only mode does not return credentials")
            # every identifier may be a call (`f/**/(…)` too), a relation (a view runs what it calls) or a cast's
            # target type: the cautious reading of a body only the server parses
            names = words | {m.group(1).replace('""', '"') for m in _PLPGSQL_QUOTED.finditer(source)}
            self.check_relations(self._oids(Q_RELATIONS_ANYWHERE, (sorted(names),)))
            typed = self._domain_checks(sorted(self._oids(Q_TYPES_NAMED, (sorted(names), sorted(names)))))
            return (typed | self._oids(Q_FUNCS_ANYWHERE, (sorted(names),))
                    | self._oids(Q_CASTS_TO_NAMED, (sorted(names),))
                    | self._oids(Q_OPERATOR_FUNCS, (sorted(set(_PLPGSQL_OPERATOR.findall(source))),)))
        try:
            trees = parse_json(source)
        except ParseError:
            raise self.refuse(f"the body of {name}() does not parse: agent19 cannot see what it does",
                              "read-only mode calls only functions whose bodies can be checked") from None
        out: set[int] = set()
        for tree in trees:
            w = written(tree)
            names = {parts[-1] for parts in w.functions if parts}
            if names:
                out |= self._oids(Q_FUNCS_ANYWHERE, (sorted(names),))
            out |= self._oids(Q_OPERATOR_FUNCS, (sorted(w.operators),))
            for parts in w.casts:
                out |= self._cast_functions(parts)
            if w.columns:
                out |= self._oids(Q_ATTRIBUTE_FUNCS, (sorted(w.columns),))
            for rv in w.relations:
                if rv.get("relname", "") in self.denied_relations:
                    raise self.refuse(f"{name}() reads {rv['relname']}, which holds credentials",
                                      "read-only mode does not return credentials")
            # any schema: the function may have its own search_path; a view it reads runs what the view calls
            relnames = sorted({rv.get("relname", "") for rv in w.relations})
            self.check_relations(self._oids(Q_RELATIONS_ANYWHERE, (relnames,)) if relnames else set())
        return out

    def check_relations(self, oids: set[int]) -> None:
        readonly_relations.check_relations(self, oids)
