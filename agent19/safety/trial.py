"""The choke point's ``TRIAL`` layer: what a statement's reachable code may do in a transaction that is rolled back.

A trial (a dry run, EXPLAIN ANALYZE of a write, a measured write) runs the statement on the real server and
rolls it back. The rollback undoes writes to tables; it does not undo a signal to another session, a sequence
set back, a connection to another server. The text checks (:func:`agent19.safety.readonly.check_escapes`) see
only the statement's own calls; this layer follows, on the server's catalog, the code the statement reaches:

* the functions it names (their bodies, and the functions named in those bodies), resolved as the server
  would, by name and schema, without the argument types: a schema-qualified name in that schema only; an
  unqualified one in the schemas of the login's ``search_path`` (``current_schemas(true)``) — in every schema
  when the migration or the body sets ``search_path`` (it can then reach any of them); the functions of
  triggers, rules and defaults exactly (by OID); a ``DO`` block's body; functions created earlier in the same
  migration (by name);
* the relations it names: foreign tables; the functions of views' rules, triggers and column defaults; the
  relations views read.

Verdicts (:meth:`TrialCatalog.reach`), the first refusal winning over anything found before or after it:

* **refused** (:class:`~agent19.safety.readonly.ReadOnlyViolation`): the code calls something that escapes
  the rollback (:data:`~agent19.safety.function_facts.ESCAPING` — signals, slots, server files, session
  advisory locks…; dblink / postgres_fdw; ``COPY`` to or from a program or a server file).
* **untestable** (:class:`Untestable`): the code does what the rollback does not undo but is no escape in
  itself — ``setval`` (:data:`~agent19.safety.function_facts.SEQUENCE_MOVES`: sequences are not transactional;
  ``nextval`` only leaves a gap and is followed) — or the guard cannot read it, so cannot prove it stays inside
  the transaction: SQL built at run time (PL/pgSQL ``EXECUTE``, SQL given as a string such as ``query_to_xml``),
  or a body in a language other than SQL and PL/pgSQL (C, untrusted PLs, PL/Perl…) unless the function is
  built in or belongs to an installed extension (C code a superuser installed from a package; its names are
  still judged by :mod:`agent19.safety.function_facts`). Default-deny: the trial does not run it. An operator
  who knows the migration's dynamic SQL may opt in with ``--allow-unreadable-code``
  (``AGENT19_ALLOW_UNREADABLE_CODE``, :attr:`agent19.config.Settings.allow_unreadable_code`): unreadable code
  then runs (``setval`` still does not; a statement whose code does both is not run), and :meth:`TrialCatalog.
  reach`'s caller records in :attr:`TrialCatalog.allowed` that it ran unreadable code (:func:`allowed_note`);
  what the server shows afterwards is still checked.

Each name is read once per :class:`TrialCatalog`; the names the statements use themselves all in one round trip.
"""

from __future__ import annotations

import re
from functools import cache
from typing import Any

from agent19.migrate.parse import Statement
from agent19.safety.function_facts import ESCAPING, SEQUENCE_FUNCTIONS, SEQUENCE_MOVES, SQL_FROM_STRING
from agent19.safety.readonly import ReadOnlyViolation
from agent19.safety.readonly_catalog import FIRST_NORMAL_OID, READABLE_LANGUAGES
from agent19.sqltree import qualified_name, walk

OPT_IN = "--allow-unreadable-code (AGENT19_ALLOW_UNREADABLE_CODE=1)"
# names called in a function body or DO block, with their schema when qualified (``app.f(`` → ``app``, ``f``)
_CALLED = re.compile(r"(?:\b([A-Za-z_][A-Za-z0-9_$]*)\s*\.\s*)?\b([A-Za-z_][A-Za-z0-9_$]*)\s*\(")
_SETS_PATH = re.compile(r"search_path", re.IGNORECASE)
ANY_SCHEMA = "*"
# a function looked up: (schema, name); schema None: the login's search_path; ANY_SCHEMA: every schema
Key = tuple[str | None, str]
_REMOTE = re.compile(r"\b(dblink\w*|postgres_fdw\w*)\b", re.IGNORECASE)
_COPY_OUTSIDE = re.compile(r"\bCOPY\b[^;]*?\b(?:TO|FROM)\s+(?:PROGRAM\b|')", re.IGNORECASE | re.DOTALL)
# PL/pgSQL's dynamic SQL (EXECUTE FUNCTION/PROCEDURE of a CREATE TRIGGER in a body is static DDL)
_DYNAMIC = re.compile(r"\bEXECUTE\b(?!\s+(?:FUNCTION|PROCEDURE)\b)", re.IGNORECASE)


def _calls(names: frozenset[str]) -> re.Pattern[str]:
    ordered = "|".join(map(re.escape, sorted(names, key=len, reverse=True)))
    return re.compile(r"\b(" + ordered + r")\s*(?:/\*.*?\*/\s*)*\(", re.IGNORECASE | re.DOTALL)


@cache  # the lists are constants: built once, not once per statement screened
def _patterns() -> tuple[re.Pattern[str], re.Pattern[str], re.Pattern[str]]:
    """Calls in a body that escape a rollback (sequences apart), that move a sequence anywhere (setval), and that
    run SQL given as a string."""
    return _calls(ESCAPING - SEQUENCE_FUNCTIONS), _calls(SEQUENCE_MOVES), _calls(SQL_FROM_STRING)


class Untestable(ReadOnlyViolation):
    """A trial would run code whose effect it cannot contain or cannot see; nothing ran. A dry run reports the
    statement as not tested (not a failure)."""


def named_functions(tree: Any) -> set[str]:
    return {qualified_name(f.get("funcname", [])).rsplit(".", 1)[-1].lower()
            for node, f in walk(tree) if node == "FuncCall"}


def called_functions(tree: Any, anywhere: bool = False) -> set[Key]:
    """The functions a statement calls, as looked up (:data:`Key`): ``(schema, name)`` when qualified, else
    ``(None, name)`` — ``(ANY_SCHEMA, name)`` when ``anywhere`` (the search_path may have been changed)."""
    out: set[Key] = set()
    for node, f in walk(tree):
        if node == "FuncCall":
            parts = [n.get("String", {}).get("sval", "") for n in f.get("funcname", [])]
            schema = parts[-2].lower() if len(parts) > 1 else ANY_SCHEMA if anywhere else None
            out.add((schema, parts[-1].lower()))
    return out


def body_calls(text: str, anywhere: bool = False) -> set[Key]:
    """The functions named in a body's text (:data:`Key`s; unqualified names in every schema when ``anywhere``
    or when the text itself mentions ``search_path``)."""
    unqualified = ANY_SCHEMA if anywhere or _SETS_PATH.search(text) else None
    return {(schema.lower() if schema else unqualified, name.lower()) for schema, name in _CALLED.findall(text)}


def named_relations(tree: Any) -> set[str]:
    """Every relation name in the tree: ``RangeVar`` nodes, and the bare ones in fields typed as a relation
    (``InsertStmt.relation``, ``UpdateStmt.relation``… carry no ``RangeVar`` wrapper in the JSON tree)."""
    found: set[str] = set()
    stack = [tree]
    while stack:
        item = stack.pop()
        if isinstance(item, dict):
            if isinstance(item.get("relname"), str):
                found.add(item["relname"])
            stack.extend(item.values())
        elif isinstance(item, list):
            stack.extend(item)
    return found


def _do_language(stmt: Statement) -> str:
    for arg in stmt.fields.get("args") or []:
        d = arg.get("DefElem", {})
        if d.get("defname") == "language":
            return str(d.get("arg", {}).get("String", {}).get("sval", "plpgsql")).lower()
    return "plpgsql"


def created_functions(stmt: Statement) -> dict[str, tuple[str, str]]:
    """``{name: (language, text)}`` for a ``CREATE FUNCTION/PROCEDURE`` (followed by later statements' checks)."""
    if stmt.node != "CreateFunctionStmt":
        return {}
    name = qualified_name(stmt.fields.get("funcname", [])).rsplit(".", 1)[-1].lower()
    language = "sql"
    for opt in stmt.fields.get("options") or []:
        d = opt.get("DefElem", {})
        if d.get("defname") == "language":
            language = str(d.get("arg", {}).get("String", {}).get("sval", "sql")).lower()
    return {name: (language, stmt.sql)}


# for each (schema, name) looked up: the functions the server may call. `known`: built in, or a member of an
# installed extension (its code came from a package a superuser installed); `sets_path`: its own SET search_path
Q_FUNCTIONS = f"""
SELECT k.nsp, k.name, coalesce(p.prosrc, '') || ' ' || coalesce(p.probin, '') AS body, l.lanname AS language,
       n.nspname || '.' || p.proname AS qualified,
       p.oid < {FIRST_NORMAL_OID} OR EXISTS (SELECT 1 FROM pg_depend e WHERE e.classid = 'pg_proc'::regclass
                                            AND e.objid = p.oid AND e.deptype = 'e') AS known,
       coalesce(array_to_string(p.proconfig, ' ') ~* 'search_path', false) AS sets_path
  FROM unnest(%s::text[], %s::text[]) k(nsp, name)
  JOIN pg_proc p ON p.proname = k.name JOIN pg_language l ON l.oid = p.prolang
  JOIN pg_namespace n ON n.oid = p.pronamespace
 WHERE CASE WHEN k.nsp IS NULL THEN n.nspname = ANY(current_schemas(true))
            ELSE k.nsp = '{ANY_SCHEMA}' OR n.nspname = k.nsp END
"""
_FUNCTION_KEYS = ("nsp", "name", "body", "language", "qualified", "known", "sets_path")
# for each relation named: foreign table?; the functions its view rules, triggers and defaults call
Q_RELATIONS = """
SELECT c.relname, c.relkind::text AS relkind,
       ARRAY(SELECT DISTINCT n.nspname || '.' || p.proname FROM pg_rewrite r JOIN pg_depend d
                 ON d.classid = 'pg_rewrite'::regclass AND d.objid = r.oid AND d.refclassid = 'pg_proc'::regclass
                 JOIN pg_proc p ON p.oid = d.refobjid JOIN pg_namespace n ON n.oid = p.pronamespace
              WHERE r.ev_class = c.oid
             UNION SELECT n.nspname || '.' || p.proname FROM pg_trigger t JOIN pg_proc p ON p.oid = t.tgfoid
                 JOIN pg_namespace n ON n.oid = p.pronamespace WHERE t.tgrelid = c.oid
             UNION SELECT n.nspname || '.' || p.proname FROM pg_attrdef a JOIN pg_depend d
                 ON d.classid = 'pg_attrdef'::regclass AND d.objid = a.oid AND d.refclassid = 'pg_proc'::regclass
                 JOIN pg_proc p ON p.oid = d.refobjid JOIN pg_namespace n ON n.oid = p.pronamespace
              WHERE a.adrelid = c.oid) AS calls,
       ARRAY(SELECT DISTINCT v.relname::text FROM pg_rewrite r JOIN pg_depend d ON d.classid = 'pg_rewrite'::regclass
                 AND d.objid = r.oid AND d.refclassid = 'pg_class'::regclass JOIN pg_class v ON v.oid = d.refobjid
              WHERE r.ev_class = c.oid AND v.oid <> c.oid) AS reads
  FROM pg_class c WHERE c.relname = ANY(%s)
"""
_RELATION_KEYS = ("relname", "relkind", "calls", "reads")
# both, for the names the statements use themselves, in one statement (one round trip): rows as JSON objects
Q_NAMED = (f"SELECT (SELECT coalesce(json_agg(f), '[]') FROM "
           f"({Q_FUNCTIONS.replace('%s', '%(fs)s', 1).replace('%s', '%(fn)s', 1)}) f) AS f, "
           f"(SELECT coalesce(json_agg(r), '[]') FROM ({Q_RELATIONS.replace('%s', '%(r)s')}) r) AS r")


def _row(row: Any, *keys: str) -> tuple[Any, ...]:
    return tuple(row[k] for k in keys) if isinstance(row, dict) else tuple(row)


def _order(key: Key) -> tuple[str, str]:
    return key[0] or "", key[1]


class TrialCatalog:
    """The target catalog's answers to :data:`Q_FUNCTIONS` and :data:`Q_RELATIONS`, each name read once (nothing
    has run yet, so they cannot change between the statements judged). The names ``statements`` use themselves
    are read first, all in one round trip (:data:`Q_NAMED`); only names found on the way (function bodies,
    views, triggers) are read later. ``created``: functions made by statements judged so far (:meth:`judged`);
    ``allowed``: by ``Statement.index``, the note of a statement that runs code agent19 cannot read because the
    operator opted in (:func:`check`); ``anywhere``: the migration sets ``search_path`` somewhere, so an
    unqualified name may resolve in any schema."""

    def __init__(self, conn: Any, statements: list[Statement] | None = None,
                 skip: Any = lambda stmt: False) -> None:
        self.conn = conn
        self.created: dict[str, tuple[str, str]] = {}
        self.allowed: dict[int, str] = {}
        self.anywhere = any(_SETS_PATH.search(st.sql) for st in statements or [])
        self._functions: dict[Key, list[tuple[Any, ...]]] = {}
        self._relations: dict[str, list[tuple[Any, ...]]] = {}
        funcs: set[Key] = set()
        rels: set[str] = set()
        for stmt in statements or []:
            if stmt.node != "TransactionStmt" and not skip(stmt):
                funcs |= self._calls(stmt)
                rels |= named_relations(stmt.tree)
        if funcs or rels:
            keys = sorted(funcs, key=_order)
            row = conn.execute(Q_NAMED, {"fs": [k[0] for k in keys], "fn": [k[1] for k in keys],
                                         "r": sorted(rels)}).fetchone()
            found = _row(row, "f", "r")
            self._store_functions(keys, found[0])
            self._store(self._relations, sorted(rels), found[1], _RELATION_KEYS)

    def _calls(self, stmt: Statement) -> set[Key]:
        """What ``stmt`` calls, a ``DO`` block's body included."""
        found = called_functions(stmt.tree, self.anywhere)
        return found | body_calls(stmt.sql, self.anywhere) if stmt.node == "DoStmt" else found

    def functions(self, keys: set[Key]) -> list[tuple[Any, ...]]:
        """``(nsp, name, body, language, qualified, known, sets_path)`` of every function ``keys`` may call."""
        if missing := sorted(keys - self._functions.keys(), key=_order):
            rows = self.conn.execute(Q_FUNCTIONS, ([k[0] for k in missing], [k[1] for k in missing])).fetchall()
            self._store_functions(missing, rows)
        return [row for key in sorted(keys, key=_order) for row in self._functions[key]]

    def _store_functions(self, keys: list[Key], rows: list[Any]) -> None:
        for key in keys:
            self._functions[key] = []
        for r in rows:
            row = _row(r, *_FUNCTION_KEYS)
            self._functions[(row[0], row[1])].append(row)

    def relations(self, names: set[str]) -> list[tuple[Any, ...]]:
        """``(relname, relkind, calls, reads)`` of every relation named ``names``."""
        if missing := sorted(names - self._relations.keys()):
            self._store(self._relations, missing, self.conn.execute(Q_RELATIONS, (missing,)).fetchall(),
                        _RELATION_KEYS)
        return [row for name in sorted(names) for row in self._relations[name]]

    @staticmethod
    def _store(store: dict[str, list[tuple[Any, ...]]], names: list[str], rows: list[Any],
               keys: tuple[str, ...]) -> None:
        for name in names:
            store[name] = []
        for r in rows:
            row = _row(r, *keys)
            store[row[0]].append(row)

    def judged(self, stmt: Statement) -> None:
        """``stmt`` was judged: a function it creates is followed by the statements after it."""
        self.created |= created_functions(stmt)

    def reach(self, stmt: Statement) -> tuple[str | None, str | None]:
        """``(refusal, untestable)``: why the code ``stmt`` reaches escapes a rollback, or else why a trial
        cannot contain or cannot read it (an :class:`Unreadable` only when nothing else makes it untestable);
        ``(None, None)`` when neither. Bounded: 50 rounds."""
        if stmt.node == "ImportForeignSchemaStmt":
            return "IMPORT FOREIGN SCHEMA connects to another server", None
        funcs, rels = self._calls(stmt), named_relations(stmt.tree)
        untestable: str | None = None
        if stmt.node == "DoStmt":  # the body is a string to the parser: read it as a function body
            refusal, untestable = _body_verdict("the DO block", _do_language(stmt), stmt.sql, known=False)
            if refusal:
                return refusal, None
        untestable = _worse(untestable, _direct_sql_from_string({name for _, name in funcs}))
        seen_f: set[Key] = set()
        seen_r: set[str] = set()
        for _ in range(50):
            new_f, new_r = funcs - seen_f, rels - seen_r
            if not new_f and not new_r:
                return None, untestable
            seen_f |= new_f
            seen_r |= new_r
            for _schema, name in sorted(new_f, key=_order):
                if _REMOTE.fullmatch(name):
                    return f"it calls {name}(), which reaches another server", None
                if name in self.created:  # by name, whatever the schema (the cautious reading)
                    language, text = self.created[name]
                    refusal, why = _body_verdict(f"function {name} (created earlier in this migration)",
                                                 language, text, known=False)
                    if refusal:
                        return refusal, None
                    untestable = _worse(untestable, why)
                    funcs |= body_calls(text, self.anywhere)
            for _nsp, _name, body, language, qualified, known, sets_path in self.functions(new_f):
                refusal, why = _body_verdict(f"function {qualified}", language, body, known=bool(known))
                if refusal:
                    return refusal, None
                untestable = _worse(untestable, why)
                funcs |= body_calls(body, self.anywhere or bool(sets_path))
            for relname, relkind, calls, reads in self.relations(new_r):
                if relkind == "f":
                    return f"{relname} is a foreign table: reading or writing it reaches another server", None
                funcs |= {tuple(c.rsplit(".", 1)) for c in calls or []}  # type: ignore[misc]
                rels |= set(reads or [])
        return "its functions and views nest too deeply to follow", None


def _worse(a: str | None, b: str | None) -> str | None:
    """The reason that keeps a statement from running even with the operator's opt-in (not :class:`Unreadable`),
    else the first."""
    for why in (a, b):
        if why and not isinstance(why, Unreadable):
            return why
    return a or b


def _direct_sql_from_string(funcs: set[str]) -> str | None:
    if hit := sorted(funcs & SQL_FROM_STRING):
        return (f"runs SQL given as a string ({hit[0]}()): a trial cannot prove it acts only inside the "
                "transaction")
    return None


def _body_verdict(what: str, language: str, body: str, *, known: bool) -> tuple[str | None, str | None]:
    """(refusal, untestable) for one body: ``what`` names it in messages (``function app.f``, ``the DO block``)."""
    escaping, moves, from_string = _patterns()
    where = what.removeprefix("function ")
    if m := _REMOTE.search(body):
        return f"{what} uses {m[1]}, which reaches another server", None
    if m := escaping.search(body):
        return f"{what} calls {m[1]}(), which acts outside the transaction", None
    if _COPY_OUTSIDE.search(body):
        return f"{what} runs COPY to or from a program or a server file", None
    if m := moves.search(body):
        return None, f"{what} calls {m[1]}(), which moves a sequence (sequences are not transactional)"
    if language in ("c", "internal"):
        if known:
            return None, None
        return None, _unreadable(f"{what} is C code outside any extension", f"C code in {where}")
    if language not in READABLE_LANGUAGES:
        return None, _unreadable(f"{what} is written in {language}, which agent19 cannot read",
                                 f"{language} in {where}")
    if language == "plpgsql" and _DYNAMIC.search(body):
        return None, _unreadable(f"runs SQL built at run time (EXECUTE in {where})", f"EXECUTE in {where}")
    if m := from_string.search(body):
        return None, _unreadable(f"runs SQL given as a string ({m[1]}() in {where})", f"{m[1]}() in {where}")
    return None, None


UNREADABLE = "a dry run cannot prove it acts only inside the transaction"


class Unreadable(str):
    """Why a statement is untestable because agent19 cannot read the code it reaches — the one reason the
    operator's opt-in lifts; ``code``: what and where, e.g. ``EXECUTE in app.f``."""

    code: str

    def __new__(cls, text: str, code: str) -> Unreadable:
        self = super().__new__(cls, text)
        self.code = code
        return self


def _unreadable(what: str, code: str) -> Unreadable:
    return Unreadable(f"{what}: {UNREADABLE}; test it on a staging copy, or, if you know what it runs, have the "
                      f"operator start agent19 with {OPT_IN}", code)


def allowed_note(code: str) -> str:
    """What a statement's result says when it ran code agent19 cannot read because the operator opted in."""
    return (f"ran code agent19 cannot read ({code}) because --allow-unreadable-code is set: what it did outside "
            "the transaction is not known")


def check(db: Any, statements: list[Statement], catalog: TrialCatalog | None = None) -> None:
    """Raise for the first of ``statements`` whose reachable code a trial must not run (see the module doc):
    :class:`~agent19.safety.readonly.ReadOnlyViolation` when it escapes, :class:`Untestable` when it cannot be
    contained or read. Code only unreadable runs when the operator opted in; the statement's note is then in
    ``catalog.allowed`` (:func:`allowed_note`). ``catalog``: the caller's, reading the target (a dry run screens
    many statements with one); else one is opened on the main login for this call."""
    if catalog is None:
        with db.read() as conn:
            check(db, statements, TrialCatalog(conn, statements))
        return
    allow_unreadable = bool(getattr(db.settings, "allow_unreadable_code", False))
    for st in statements:
        refusal, untestable = catalog.reach(st)
        catalog.judged(st)
        if refusal:
            raise ReadOnlyViolation(f"refused: {refusal}",
                                    "a dry run must leave nothing behind; run it yourself if it is intended")
        if isinstance(untestable, Unreadable) and allow_unreadable:
            catalog.allowed[st.index] = allowed_note(untestable.code)
        elif untestable:
            raise Untestable(untestable, "nothing was run")
