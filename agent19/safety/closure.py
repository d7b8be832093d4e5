"""The code a trial must not run, computed from what the server records (not from reading a statement's text).

A rolled-back transaction does not undo a signal to another session, a sequence set back, a connection to
another server. Code reaches those not only through the calls a statement shows, but through every object the
server runs on its own: triggers (and FK cascades into tables that have them), CHECK and domain constraints,
column defaults, index expressions, row-level security policies, views and rules, operators (``+`` included,
shadowed through ``search_path``), casts, aggregates, event triggers. And a role's code is not confined to the
objects a statement names: the server cannot keep code a role runs away from that role's other sessions.

So the guard decides on the whole database, in one catalog read (:data:`Q_CLOSURE`, folded into the dry run's
screen):

1. **Bad functions B**: functions named as an escape (:data:`~agent19.safety.function_facts.ESCAPING` but
   ``nextval``, dblink / postgres_fdw — any schema: extensions live in user schemas), SQL given as a string
   (``query_to_xml``…), foreign tables (by name); functions whose code cannot be read (a language other than SQL and
   PL/pgSQL — C / internal allowed for built-ins and extension members —, or PL/pgSQL ``EXECUTE``); then, to a
   fixed point, every function whose body uses a member (a name or an operator of a member, in the server's own
   tokens: comments dropped, quoted names kept as written, unquoted folded to lower case) or that the server
   records as depending on one (aggregates, operators; a ``BEGIN ATOMIC`` body is read as the server prints it).
   A use matches as the server resolves it, without argument types (:class:`Bad`): a qualified name in its
   schema, an unqualified one on the login's ``search_path`` — in any schema when the code or the migration
   mentions ``search_path``; built-ins named as escapes, operators and the migration's own functions by name
   in any schema. Built-ins are pinned (no ``pg_depend`` row): expressions that call an escaping one are found
   in their stored trees (defaults, constraints, policies, rules, trigger conditions, index expressions).
2. **Entry points**: every other object that depends (``pg_depend``) on a member of B, or on an operator over one.
   If there is one, no statement but transaction control (and ``CREATE FUNCTION``, which runs nothing unless an
   event trigger is an entry point) is tried on this database.
3. **The statement**: one whose own tokens (a ``DO`` body's too) use a member is not run; functions the migration
   creates or renames join the analysis in order; a statement that creates an entry point stops itself and every
   statement after it.

``kind``: ``escape`` (refused), ``sequence`` (not run: ``setval``), ``unreadable`` (not run unless the operator
opted in with ``--allow-unreadable-code``; then such code is no member).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from pglast.parser import scan

from agent19.safety.function_facts import ESCAPING, SEQUENCE_FORWARD, SEQUENCE_MOVES, SQL_FROM_STRING
from agent19.safety.readonly_catalog import FIRST_NORMAL_OID, READABLE_LANGUAGES

SEEDS = sorted((ESCAPING - SEQUENCE_FORWARD) | SQL_FROM_STRING)
_REMOTE_PREFIXES = ("dblink", "postgres_fdw")
_OPERATOR_CHARS = set("+-*/<>=~!@#%^&|`?")
_SEVERITY = {"escape": 0, "sequence": 1, "unreadable": 2}

# one round trip: functions that may be members (every non-built-in one, and built-ins named as seeds), user
# operators, foreign tables, and what depends on any of them (with the relation it belongs to, if any)
Q_CLOSURE = f"""
WITH fn AS (
  SELECT p.oid, p.proname::text AS name, n.nspname::text AS schema, n.nspname || '.' || p.proname AS qualified,
         l.lanname::text AS lang,
         p.oid < {FIRST_NORMAL_OID} OR p.oid IN (SELECT e.objid FROM pg_depend e WHERE e.classid = 'pg_proc'::regclass
                                                 AND e.deptype = 'e') AS known,
         CASE WHEN p.prokind = 'a' THEN '' WHEN p.oid < {FIRST_NORMAL_OID} THEN NULL
              WHEN p.prosqlbody IS NOT NULL THEN pg_get_functiondef(p.oid)  -- BEGIN ATOMIC: the server's text
              WHEN l.lanname IN ('sql', 'plpgsql') THEN p.prosrc
                   -- SET standard_conforming_strings on the function: its body is read otherwise (unscannable)
                   || CASE WHEN array_to_string(p.proconfig, ' ') ~* 'standard_conforming_strings'
                           THEN E'\n-- standard_conforming_strings' ELSE '' END END AS src,
         coalesce(array_to_string(p.proconfig, ' ') ~* 'search_path', false) AS sets_path
    FROM pg_proc p JOIN pg_language l ON l.oid = p.prolang JOIN pg_namespace n ON n.oid = p.pronamespace
   WHERE p.oid >= {FIRST_NORMAL_OID} OR p.proname = ANY(%(seeds)s)),  -- dblink, postgres_fdw: >= FIRST_NORMAL_OID
op AS (SELECT o.oid, o.oprname::text AS name, o.oprcode::oid AS code FROM pg_operator o
        WHERE o.oid >= {FIRST_NORMAL_OID}),
ft AS (SELECT c.oid, c.relname::text AS name FROM pg_class c WHERE c.relkind = 'f'),
dep AS (
  SELECT d.classid = 'pg_proc'::regclass AS is_fn, d.objid, d.refclassid::regclass::text AS refcls, d.refobjid,
         CASE WHEN d.classid <> 'pg_proc'::regclass THEN pg_describe_object(d.classid, d.objid, d.objsubid) END
           AS what,
         (SELECT relname::text FROM pg_class WHERE oid = coalesce(
            (SELECT ev_class FROM pg_rewrite WHERE d.classid = 'pg_rewrite'::regclass AND oid = d.objid),
            (SELECT tgrelid FROM pg_trigger WHERE d.classid = 'pg_trigger'::regclass AND oid = d.objid),
            (SELECT adrelid FROM pg_attrdef WHERE d.classid = 'pg_attrdef'::regclass AND oid = d.objid),
            (SELECT nullif(conrelid, 0) FROM pg_constraint WHERE d.classid = 'pg_constraint'::regclass
                AND oid = d.objid),
            (SELECT indrelid FROM pg_index WHERE d.classid = 'pg_class'::regclass AND indexrelid = d.objid),
            (SELECT polrelid FROM pg_policy WHERE d.classid = 'pg_policy'::regclass AND oid = d.objid))) AS rel,
         d.classid = 'pg_event_trigger'::regclass AS event
    FROM pg_depend d
   WHERE d.classid <> 'pg_extension'::regclass AND d.deptype <> 'e'
     AND NOT EXISTS (SELECT 1 FROM pg_depend e WHERE e.classid = d.classid AND e.objid = d.objid
                        AND e.deptype = 'e')  -- an extension's own objects (its FDW, its casts): its package's
     AND ((d.refclassid = 'pg_proc'::regclass AND d.refobjid IN (SELECT oid FROM fn))
       OR (d.refclassid = 'pg_operator'::regclass AND d.refobjid IN (SELECT oid FROM op))
       OR (d.refclassid = 'pg_class'::regclass AND d.refobjid IN (SELECT oid FROM ft)))),
tree AS (  -- built-ins are pinned: no pg_depend row says an expression calls one; the stored tree does
  SELECT 'pg_attrdef'::regclass AS cls, oid, adrelid AS rel, adbin::text AS t FROM pg_attrdef
  UNION ALL SELECT 'pg_constraint'::regclass, oid, nullif(conrelid, 0), conbin::text FROM pg_constraint
    WHERE conbin IS NOT NULL
  UNION ALL SELECT 'pg_policy'::regclass, oid, polrelid, concat(polqual::text, polwithcheck::text) FROM pg_policy
  UNION ALL SELECT 'pg_rewrite'::regclass, oid, ev_class, ev_action::text || coalesce(ev_qual::text, '')
    FROM pg_rewrite WHERE ev_class >= {FIRST_NORMAL_OID}
  UNION ALL SELECT 'pg_trigger'::regclass, oid, tgrelid, tgqual::text FROM pg_trigger WHERE tgqual IS NOT NULL
  UNION ALL SELECT 'pg_class'::regclass, indexrelid, indrelid, concat(indexprs::text, indpred::text) FROM pg_index
    WHERE indexprs IS NOT NULL OR indpred IS NOT NULL),
pinned AS (
  SELECT DISTINCT pg_describe_object(tree.cls, tree.oid, 0) AS what,
         (SELECT relname::text FROM pg_class WHERE oid = tree.rel) AS rel, m[1]::oid AS refobjid
    FROM tree, regexp_matches(tree.t, ':(?:op)?funcid ([0-9]+) ', 'g') m
   WHERE m[1]::oid IN (SELECT oid FROM fn WHERE oid < {FIRST_NORMAL_OID}))
SELECT current_schemas(true)::text[] AS path, ARRAY(SELECT nspname::text FROM pg_namespace) AS schemas,
       (SELECT coalesce(json_agg(fn), '[]') FROM fn) AS fn, (SELECT coalesce(json_agg(op), '[]') FROM op) AS op,
       (SELECT coalesce(json_agg(ft), '[]') FROM ft) AS ft,
       (SELECT coalesce(json_agg(x), '[]') FROM (SELECT false AS is_fn, NULL AS objid, 'pg_proc' AS refcls, refobjid,
                                                      what, rel, false AS event FROM pinned
                                                UNION ALL SELECT * FROM dep) x) AS dep
"""


@dataclass
class Tokens:
    """What a piece of SQL or PL/pgSQL uses, in the server's lexer's terms."""

    names: set[str] = field(default_factory=set)
    calls: set[tuple[str | None, str]] = field(default_factory=set)  # (qualifier or None, name), operators too
    called: set[tuple[str | None, str]] = field(default_factory=set)  # those followed by '(', and operators
    sets_path: bool = False  # mentions search_path anywhere (a string too): unqualified names may go anywhere
    dynamic: bool = False  # EXECUTE other than EXECUTE FUNCTION/PROCEDURE (PL/pgSQL dynamic SQL, or a prepared one)
    copy_outside: bool = False  # COPY ... PROGRAM / to or from a server file
    unscannable: bool = False


def tokens(text: str, depth: int = 0) -> Tokens:
    """Names (identifiers as the server resolves them, keywords in lower case) and operators ``text`` uses."""
    out = Tokens()
    try:
        toks = [t for t in scan(text) if t.name not in ("SQL_COMMENT", "C_COMMENT")]
    except Exception:  # noqa: BLE001 — pglast raises its own ParseError; unreadable either way
        out.unscannable = True
        return out
    out.sets_path = "search_path" in text.lower()
    if "standard_conforming_strings" in text.lower():  # its strings may not end where they scan as ending
        out.unscannable = True
        return out
    copy = False
    strings: list[str] = []
    prev: str | None = None  # the name just before a '.', if any
    for i, t in enumerate(toks):
        raw = text[t.start:t.end + 1]
        name: str | None = None
        if t.name == "IDENT":
            name = raw[1:-1].replace('""', '"') if raw.startswith('"') else raw.lower()
            out.names.add(name)
        elif t.name == "UIDENT":  # U&"..." escapes: not decoded, so unknown: every bad name could hide here
            out.unscannable = True
        elif t.kind != "NO_KEYWORD":
            name = raw.lower()
            out.names.add(name)
            nxt = toks[i + 1].name if i + 1 < len(toks) else ""
            if t.name == "EXECUTE" and nxt not in ("FUNCTION", "PROCEDURE"):
                out.dynamic = True
            copy = copy or t.name == "COPY"
            if copy and (t.name == "PROGRAM" or (t.name in ("TO", "FROM") and nxt == "SCONST")):
                out.copy_outside = True
        elif t.name == "Op" or (t.name.startswith("ASCII_") and raw in _OPERATOR_CHARS):
            out.names.add(raw)
            out.calls.add((prev, raw))
            out.called.add((prev, raw))
        elif t.name == "ASCII_59":
            copy = False
        after = toks[i + 1].name if i + 1 < len(toks) else ""
        if name is not None:
            out.calls.add((prev, name))
            if after == "ASCII_40":
                out.called.add((prev, name))
        elif t.name == "SCONST":
            strings.append(raw)
        prev = name if name is not None and after == "ASCII_46" else (prev if t.name == "ASCII_46" else None)
    if out.dynamic and depth < 3:  # SQL built at run time: its string pieces are read as SQL too (an escape
        for raw in strings:       # found there is refused, not merely unreadable)
            inner = tokens(_unquote(raw), depth + 1)
            out.names |= inner.names
            out.calls |= inner.calls
            out.called |= inner.called
            out.copy_outside |= inner.copy_outside
    return out


def _unquote(raw: str) -> str:
    if raw.startswith("$"):
        tag = raw[:raw.index("$", 1) + 1]
        return raw[len(tag):-len(tag)]
    return raw[raw.index("'") + 1:-1].replace("''", "'")


class Bad:
    """B by name: ``name -> [(schema, member)]`` (schema None: any — built-ins named as escapes, operators,
    foreign tables, the migration's own functions). A use matches as the server would resolve it, without
    the argument types: a qualified name in that schema; an unqualified one in the login's ``search_path``
    (``path``), or in any schema when the code or the migration mentions ``search_path`` (``anywhere``)."""

    def __init__(self, path: list[str], schemas: list[str], anywhere: bool) -> None:
        self.by_name: dict[str, list[tuple[str | None, Member]]] = {}
        self.path, self.schemas, self.anywhere = set(path), set(schemas), anywhere

    def add(self, name: str, schema: str | None, member: Member) -> None:
        self.by_name.setdefault(name, []).append((schema, member))

    def __contains__(self, name: str) -> bool:
        return name in self.by_name

    def hits(self, used: Tokens, *, calls_only: bool = False) -> list[tuple[str, Member]]:
        """What ``used`` uses of B; ``calls_only``: names followed by ``(`` and operators only (DDL that names
        columns, which may share a name with a function)."""
        anywhere = self.anywhere or used.sets_path
        out = []
        for qualifier, name in sorted(used.called if calls_only else used.calls, key=lambda c: (c[0] or "", c[1])):
            for schema, m in self.by_name.get(name, []):
                if schema is None or (qualifier == schema if qualifier in self.schemas else
                                      anywhere or schema in self.path):
                    out.append((name, m))
        return out


@dataclass(frozen=True)
class Member:
    """Why a function (or operator, or foreign table) is in B: ``why`` is a sentence about the innermost code."""

    kind: str
    why: str
    code: str = ""  # unreadable code: what and where, e.g. ``EXECUTE in app.f``


def seed_why(caller: str, name: str) -> Member | None:
    """How a call of built-in ``name`` by ``caller`` is judged, or None (harmless)."""
    if name.startswith(_REMOTE_PREFIXES):
        return Member("escape", f"{caller} uses {name}, which reaches another server")
    if name in SEQUENCE_MOVES:
        return Member("sequence", f"{caller} calls {name}(), which moves a sequence (sequences are not "
                                  "transactional)")
    if name in ESCAPING - SEQUENCE_FORWARD:
        return Member("escape", f"{caller} calls {name}(), which acts outside the transaction")
    if name in SQL_FROM_STRING:
        where = f"{name}() in {caller.removeprefix('function ')}"
        return Member("unreadable", f"runs SQL given as a string ({where})", where)
    return None


def body_verdict(what: str, language: str, body: Tokens | None, *, known: bool, allow: bool,
                 bad: Bad) -> Member | None:
    """Whether code ``what`` (its language, its tokens; ``body`` None: its text is not read) is a member of B."""
    found: list[Member] = []
    where = what.removeprefix("function ")
    if language not in READABLE_LANGUAGES:
        if not known and language in ("c", "internal"):
            found.append(Member("unreadable", f"{what} is C code outside any extension", f"C code in {where}"))
        elif not known:
            found.append(Member("unreadable", f"{what} is written in {language}, which agent19 cannot read",
                                f"{language} in {where}"))
    elif body is not None:
        if body.copy_outside:
            found.append(Member("escape", f"{what} runs COPY to or from a program or a server file"))
        for name, m in bad.hits(body):
            found.append(seed_why(what, name) or m)
        if body.unscannable:
            found.append(Member("unreadable", f"{what} cannot be read (its text does not scan as SQL)",
                                f"unscannable text in {where}"))
        if language == "plpgsql" and body.dynamic:
            found.append(Member("unreadable", f"runs SQL built at run time (EXECUTE in {where})",
                                f"EXECUTE in {where}"))
    found = [m for m in found if not (allow and m.kind == "unreadable")]
    return min(found, key=lambda m: _SEVERITY[m.kind]) if found else None


class Closure:
    """B and its entry points for one database (rows of :data:`Q_CLOSURE`), the opt-in ``allow`` applied; grown
    by the migration's own functions (:meth:`add_function`, :meth:`rename`)."""

    def __init__(self, rows: dict[str, Any], *, allow: bool, anywhere: bool = False) -> None:
        self.allow, self.anywhere = allow, anywhere
        self.path, self.schemas = rows["path"] or [], rows["schemas"] or []
        self.functions = rows["fn"]
        self.operators = rows["op"]
        self.deps = rows["dep"]
        self._tokens = {f["oid"]: tokens(f["src"]) if f["src"] is not None else None for f in self.functions}
        for f in self.functions:  # its own SET search_path: unqualified names it uses may resolve anywhere
            if f["sets_path"] and (t := self._tokens[f["oid"]]) is not None:
                t.sets_path = True
        self.extra: dict[str, Member] = {}  # names the migration made bad
        self.remote = {t["name"]: Member("escape", f"{t['name']} is a foreign table: reading or writing it "
                                                   "reaches another server") for t in rows["ft"]}
        self.foreign_oids = {t["oid"]: t["name"] for t in rows["ft"]}
        self._compute()

    def _compute(self) -> None:
        bad = Bad(self.path, self.schemas, self.anywhere)
        for n in SEEDS:
            if m := seed_why("?", n):
                bad.add(n, None, m)
        for n, m in (self.remote | self.extra).items():
            bad.add(n, None, m)
        by_oid: dict[int, Member] = {}
        op_by_oid: dict[int, Member] = {}
        calls: dict[int, list[tuple[str, int]]] = {}
        for d in self.deps:
            if d["is_fn"]:
                calls.setdefault(d["objid"], []).append((d["refcls"], d["refobjid"]))
        changed = True
        while changed:  # fixed point: each round adds at least one member, or stops
            changed = False
            for f in self.functions:
                if f["oid"] in by_oid:
                    continue
                m = seed_why(f"function {f['qualified']}", f["name"]) if f["known"] else None
                m = m or self.extra.get(f["name"])  # the migration replaced it (by name: any schema, cautious)
                if m is None and f["src"] != "":  # '': an aggregate, judged by what it depends on
                    m = body_verdict(f"function {f['qualified']}", f["lang"], self._tokens[f["oid"]],
                                     known=f["known"], allow=self.allow, bad=bad)
                if m is None:
                    for cls, ref in calls.get(f["oid"], []):
                        m = m or (by_oid.get(ref) if cls == "pg_proc" else op_by_oid.get(ref))
                if m is not None:
                    by_oid[f["oid"]] = m
                    bad.add(f["name"], f["schema"], m)
                    changed = True
            for o in self.operators:
                if o["oid"] not in op_by_oid and (m := by_oid.get(o["code"])):
                    op_by_oid[o["oid"]] = m
                    bad.add(o["name"], None, m)
                    changed = True
        self.bad = bad
        self.entries: list[tuple[str, str | None, Member, bool]] = []  # (what, relation, member, event trigger)
        for d in self.deps:
            if d["is_fn"]:
                continue
            ref = d["refobjid"]
            m = {"pg_proc": by_oid, "pg_operator": op_by_oid}.get(d["refcls"], {}).get(ref)
            if d["refcls"] == "pg_class" and ref in self.foreign_oids:
                m = self.remote[self.foreign_oids[ref]]
            if m is not None:
                self.entries.append((d["what"], d["rel"], m, bool(d["event"])))

    def add_function(self, name: str, member: Member | None) -> None:
        """The migration created (or replaced) function ``name``: bad when ``member``; either way existing code
        that names it is judged again (a harmless function replaced by a bad one)."""
        if member is not None and name not in self.bad:
            self.extra[name] = member
            self._compute()

    def rename(self, old: str, new: str) -> None:
        if old in self.bad and new not in self.bad:
            self.extra[new] = self.bad.by_name[old][0][1]
            self._compute()
