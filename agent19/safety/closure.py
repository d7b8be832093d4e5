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
   PL/pgSQL — C / internal allowed for built-ins and members of the extensions agent19 knows, KNOWN_EXTENSIONS —,
   or PL/pgSQL ``EXECUTE``, or a body that creates or changes code the server runs later —
   ``CREATE FUNCTION`` in a ``DO`` block, ``ALTER TABLE`` in a function: :func:`makes_code`); then, to a
   fixed point, every function whose body uses a member (a name or an operator of a member, in the server's own
   tokens: comments dropped, quoted names kept as written, unquoted folded as the server folds them, A-Z only)
   or that the server records as depending on one (aggregates, operators; a ``BEGIN ATOMIC`` body is read as
   the server prints it).
   A use matches as the server may resolve it at run time, without argument types (:class:`Bad`): an
   unqualified name in any schema (code can change the path as it runs); a qualified one in its schema only
   when that schema exists and no code creates, renames or moves schemas; built-ins named as escapes,
   operators and the migration's own functions by name in any schema. Identifiers are cut to 63 bytes as the
   server cuts them. Built-ins are pinned (no ``pg_depend`` row): expressions that call an escaping one are
   found in their stored trees (every ``pg_node_tree`` the server evaluates: :mod:`~agent19.safety.closure_query`),
   an aggregate's support functions in ``pg_aggregate`` (``FINALFUNC = pg_cancel_backend``), a cast's in ``pg_cast``;
   a function whose argument default calls one is a member (the default is its code).
2. **Entry points**: every other object that depends (``pg_depend``) on a member of B, or on an operator over one
   (an extension's member too, unless it uses that extension's own compiled code).
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

from agent19.safety.body_effects import (
    REACHES,
    STRING_CODE,
    makes_code,
    makes_foreign,
    resets_reading,
    writes_catalog,
)
from agent19.safety.closure_query import Q_CLOSURE, SEEDS
from agent19.safety.function_facts import ESCAPING, LEAVES_COPY, SEQUENCE_FORWARD, SEQUENCE_MOVES, SQL_FROM_STRING
from agent19.safety.readonly_catalog import READABLE_LANGUAGES
from agent19.sqltree import fold_identifier, walk

__all__ = ["Q_CLOSURE", "SEEDS", "Bad", "Closure", "Member", "Tokens", "body_verdict", "lifted", "makes_code",
           "option_calls",
           "seed_why",
           "tokens"]

_REMOTE_PREFIXES = ("dblink", "postgres_fdw")
_OPERATOR_CHARS = set("+-*/<>=~!@#%^&|`?")
_SEVERITY = {"escape": 0, "sequence": 1, "unreadable": 2}
# (keyword, the one before it): code that creates, renames or moves schemas, or installs or updates an
# extension (its script may create one), or moves an object to another schema
_MOVES_SCHEMAS = {("SCHEMA", "ALTER"), ("SCHEMA", "CREATE"), ("SCHEMA", "SET"), ("EXTENSION", "CREATE"),
                  ("EXTENSION", "ALTER")}
NAMEDATALEN = 64  # the server keeps the first NAMEDATALEN - 1 bytes of an identifier (at a character boundary)


@dataclass
class Tokens:
    """What a piece of SQL or PL/pgSQL uses, in the server's lexer's terms."""

    names: set[str] = field(default_factory=set)
    calls: set[tuple[str | None, str]] = field(default_factory=set)  # (qualifier or None, name), operators too
    called: set[tuple[str | None, str]] = field(default_factory=set)  # those followed by '(', and operators
    # the last part of a qualified name not followed by '(' or '.': maybe attribute notation, ``alias.fn`` =
    # ``fn(alias)`` — the qualifier is a table or alias (one may be named like a schema), so any schema
    attributes: set[str] = field(default_factory=set)
    moves_schemas: bool = False  # ALTER/CREATE/SET SCHEMA, CREATE/ALTER EXTENSION (a string's SQL too)
    dynamic: bool = False  # EXECUTE other than EXECUTE FUNCTION/PROCEDURE (PL/pgSQL dynamic SQL, or a prepared one)
    copy_outside: bool = False  # COPY ... PROGRAM / to or from a server file
    foreign: str | None = None  # what it does that reaches outside (a foreign table made or changed, LOAD…)
    catalog: str | None = None  # it writes a system catalog directly, or locks a shared one (what)
    unscannable: bool = False
    # may change how the server reads its strings (standard_conforming_strings): names the setting, RESET ALL /
    # DISCARD ALL (back to a login's default, which may be off), set_config with a name built at run time
    strings_unsure: bool = False
    makes_code: tuple[str, ...] = ()  # it creates or changes code the server runs later, e.g. ('CREATE FUNCTION',)

    def call(self, qualifier: str | None, name: str) -> None:
        """``name`` (in schema ``qualifier``, or any) is called: a name, a call, followed by its arguments."""
        self.names.add(name)
        self.calls.add((qualifier, name))
        self.called.add((qualifier, name))


def tokens(text: str, depth: int = 0) -> Tokens:
    """Names (identifiers as the server resolves them, keywords in lower case) and operators ``text`` uses."""
    out = Tokens()
    try:
        toks = [t for t in scan(text) if t.name not in ("SQL_COMMENT", "C_COMMENT")]
    except Exception:  # noqa: BLE001 — pglast raises its own ParseError; unreadable either way
        out.unscannable = True
        return out
    # its strings may not end where they scan as ending: unreadable, though what it shows is still read
    out.strings_unsure = "standard_conforming_strings" in text.lower() or resets_reading(toks, text)
    out.makes_code = makes_code(toks)
    out.foreign = makes_foreign(toks)
    out.catalog = writes_catalog(toks, text)
    copy = False
    strings: list[str] = []
    prev: str | None = None  # the name just before a '.', if any
    for i, t in enumerate(toks):
        raw = text[t.start:t.end + 1]
        name: str | None = None
        if t.name == "IDENT":
            name = _truncated(raw[1:-1].replace('""', '"') if raw.startswith('"') else fold_identifier(raw))
            out.names.add(name)
        elif t.name == "UIDENT":  # U&"..." escapes: not decoded, so unknown: every bad name could hide here
            out.unscannable = True
        elif t.kind != "NO_KEYWORD":
            name = raw.lower()
            out.names.add(name)
            nxt = toks[i + 1].name if i + 1 < len(toks) else ""
            if t.name == "LANGUAGE" and nxt in ("IDENT", "SCONST") and _makes_routine(out) \
                    and text[toks[i + 1].start:toks[i + 1].end + 1].strip("'\"").lower() in ("c", "internal"):
                out.foreign = out.foreign or ("creates a function of C or internal code (the server loads its "
                                              "library as it creates it, and runs what it names)")
            if t.name == "EXECUTE" and nxt not in ("FUNCTION", "PROCEDURE"):
                out.dynamic = True
            copy = copy or t.name == "COPY"
            before = toks[i - 1].name if i else ""
            if (t.name, before) in _MOVES_SCHEMAS:
                out.moves_schemas = True
            if copy and (t.name == "PROGRAM" or (t.name in ("TO", "FROM") and nxt in ("SCONST", "USCONST"))):
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
            elif (prev is not None or (i and toks[i - 1].name == "ASCII_46")) and after != "ASCII_46":
                out.attributes.add(name)  # alias.fn, (row).fn, (f()).fn: attribute notation, fn(row)
        elif t.name in ("SCONST", "USCONST"):
            strings.append(raw)
            if i > 1 and toks[i - 1].name == "ASCII_61" and _option_word(text, toks[i - 2]) in FUNCTION_OPTIONS:
                named = _unquote(raw) if t.name == "SCONST" else ""  # U&'...': not decoded, so unknown
                if not named:
                    out.unscannable = True
                for form in {named, named.lower()} - {""}:  # CREATE OPERATOR's FUNCTION = 'lo_export' is a call
                    qualifier, _, last = form.rpartition(".")
                    out.call(qualifier or None, last)
            if depth < 3 and not out.moves_schemas and ("schema" in raw.lower() or "extension" in raw.lower()):
                out.moves_schemas = tokens(_unquote(raw), depth + 1).moves_schemas  # a CREATE FUNCTION's body
        prev = name if name is not None and after == "ASCII_46" else (prev if t.name == "ASCII_46" else None)
    if out.dynamic and depth < 3:  # SQL built at run time: its string pieces are read as SQL too (an escape
        for raw in strings:       # found there is refused, not merely unreadable)
            inner = tokens(_unquote(raw), depth + 1)
            out.names |= inner.names
            out.calls |= inner.calls
            out.called |= inner.called
            out.attributes |= inner.attributes
            out.copy_outside |= inner.copy_outside
            out.foreign = out.foreign or inner.foreign
            out.catalog = out.catalog or inner.catalog
            out.moves_schemas |= inner.moves_schemas
    return out


# the options of CREATE OPERATOR / AGGREGATE / TYPE / RANGE TYPE (and ALTER OPERATOR / TYPE) that name a function,
# which may be given as a string literal: a call the server makes later (review r35 F1)
FUNCTION_OPTIONS = frozenset("""function procedure restrict join sfunc finalfunc combinefunc serialfunc deserialfunc
    msfunc minvfunc mfinalfunc input output receive send typmod_in typmod_out analyze subscript subtype_diff
    canonical""".split())


def option_calls(tree: Any) -> set[tuple[str | None, str]]:
    """The functions a statement's options name (``FUNCTION = lo_export``, ``FINALFUNC = 'pg_read_file'``,
    ``SUBTYPE_DIFF = …``) as the parser decoded them (an ``E'…'`` or ``U&'…'`` string, adjacent literals),
    ``(qualifier or None, name)``, each also in lower case: the server calls them later (review r36 F1)."""
    found: set[tuple[str | None, str]] = set()
    for node, f in walk(tree):
        if node != "DefElem" or str(f.get("defname", "")).lower() not in FUNCTION_OPTIONS:
            continue
        arg = f.get("arg") or {}
        parts = arg.get("TypeName", {}).get("names") or arg.get("List", {}).get("items") or [arg]
        names = [p.get("String", {}).get("sval", "") for p in parts if isinstance(p, dict)]
        if names and names[-1]:
            qualifier = names[-2] if len(names) > 1 else None
            found |= {(qualifier, names[-1]), (qualifier and qualifier.lower(), names[-1].lower())}
    return found


def _makes_routine(out: Tokens) -> bool:
    return any(m.endswith(("FUNCTION", "PROCEDURE")) for m in out.makes_code)


def _option_word(text: str, tok: Any) -> str:
    raw = text[tok.start:tok.end + 1]
    return raw[1:-1] if raw.startswith('"') else raw.lower()


def _truncated(name: str) -> str:
    """``name`` as the server stores it: its first NAMEDATALEN - 1 bytes, at a character boundary."""
    raw = name.encode()
    return raw[:NAMEDATALEN - 1].decode(errors="ignore") if len(raw) >= NAMEDATALEN else name


def _unquote(raw: str) -> str:
    if raw.startswith("$"):
        tag = raw[:raw.index("$", 1) + 1]
        return raw[len(tag):-len(tag)]
    return raw[raw.index("'") + 1:-1].replace("''", "'")


class Bad:
    """B by name: ``name -> [(schema, member)]`` (schema None: any — built-ins named as escapes, operators,
    foreign tables, the migration's own functions). A use matches as the server may resolve it at run time,
    without the argument types. Which schema an unqualified name reaches is decided when the code runs, and
    code can change it (``SET SCHEMA``, ``set_config`` with a name built at run time, ``SET LOCAL``, a
    function's own ``SET``), so an unqualified use matches a member of that name in any schema. A qualified
    use matches that schema only when it exists now and no code (``anywhere`` false: the migration's, the
    database's, ``used`` itself) creates, renames or moves schemas; otherwise any schema (``ALTER SCHEMA stash
    RENAME TO evil2`` makes ``evil2.k`` what was ``stash.k``)."""

    def __init__(self, schemas: list[str], anywhere: bool) -> None:
        self.by_name: dict[str, list[tuple[str | None, Member]]] = {}
        self.schemas, self.anywhere = set(schemas), anywhere

    def add(self, name: str, schema: str | None, member: Member) -> None:
        self.by_name.setdefault(name, []).append((schema, member))

    def __contains__(self, name: str) -> bool:
        return name in self.by_name

    def hits(self, used: Tokens, *, calls_only: bool = False) -> list[tuple[str, Member]]:
        """What ``used`` uses of B; ``calls_only``: names followed by ``(``, operators and attribute notation
        only (DDL that names columns, which may share a name with a function). A qualified name not followed by
        ``(`` may be attribute notation (``c.zap`` runs ``zap(c)``): matched by its last part in any schema."""
        anywhere = self.anywhere or used.moves_schemas
        out = []
        uses = (used.called if calls_only else used.calls) | {(None, n) for n in used.attributes}
        for qualifier, name in sorted(uses, key=lambda c: (c[0] or "", c[1])):
            for schema, m in self.by_name.get(name, []):
                if (schema is None or qualifier is None or qualifier == schema or anywhere
                        or qualifier not in self.schemas):
                    out.append((name, m))
        return out


@dataclass(frozen=True)
class Member:
    """Why a function (or operator, or foreign table) is in B: ``why`` is a sentence about the innermost code."""

    kind: str
    why: str
    code: str = ""  # unreadable code: what and where, e.g. ``EXECUTE in app.f``
    leaves: bool = False  # unreadable code that may act outside an isolated copy too (another language, C)
    in_copy: bool = False  # an escape an isolated copy contains (signals to its sessions, its advisory locks…)

    @property
    def isolable(self) -> bool:
        """An isolated copy contains it (:data:`~agent19.safety.function_facts.IN_ISOLATED_COPY`), unless the copy
        has a way out (:attr:`Closure.way_out`)."""
        return self.kind == "sequence" or self.in_copy or (self.kind == "unreadable" and not self.leaves)


def lifted(m: Member, allow: bool, contained: bool) -> bool:
    """Whether member ``m`` is run anyway: code agent19 cannot read, with the operator's opt-in (``allow``), or in an
    isolated copy that offers it no way out (``contained``) unless the code itself may leave the copy."""
    return m.kind == "unreadable" and (allow or (contained and not m.leaves))


def seed_why(caller: str, name: str, contained: bool = False) -> Member | None:
    """How a call of built-in ``name`` by ``caller`` is judged, or None (harmless). ``contained``: in an isolated
    copy (:data:`~agent19.safety.function_facts.IN_ISOLATED_COPY`), where only what leaves the copy escapes."""
    if name.startswith(_REMOTE_PREFIXES):
        return Member("escape", f"{caller} uses {name}, which reaches another server")
    if contained and name in ESCAPING and name not in LEAVES_COPY:
        return None  # the copy's sessions, sequences, locks, server: nobody else's
    if name in SEQUENCE_MOVES:
        return Member("sequence", f"{caller} calls {name}(), which moves a sequence (sequences are not "
                                  "transactional)")
    if name in ESCAPING - SEQUENCE_FORWARD:
        where = "the isolated copy" if contained else "the transaction"
        return Member("escape", f"{caller} calls {name}(), which acts outside {where}", in_copy=name not in LEAVES_COPY)
    if name in SQL_FROM_STRING:
        where = f"{name}() in {caller.removeprefix('function ')}"
        return Member("unreadable", f"runs SQL given as a string ({where})", where)
    return None


def body_verdict(what: str, language: str, body: Tokens | None, *, known: bool, allow: bool,
                 bad: Bad, extension: str | None = None, tracked: bool = False, contained: bool = False,
                 lift_contained: bool = False, trusted: bool = False) -> Member | None:
    """Whether code ``what`` (its language, its tokens; ``body`` None: its text is not read; ``extension``: the
    one it belongs to) is a member of B. ``tracked``: the code it makes whose text is read (a trigger, an
    ``ALTER TABLE``…) is judged again by the caller when a later statement changes a function (a migration's
    ``DO`` block: :meth:`agent19.safety.trial.TrialCatalog.judged`), so only code made from a string counts.
    ``contained``: an isolated copy (:func:`seed_why`); ``lift_contained``: one without a way out, where unreadable
    code that cannot leave it is run (:func:`lifted`) — code in a language the server does not sandbox (not
    ``trusted``: PL/Python, C) may leave it."""
    found: list[Member] = []
    where = what.removeprefix("function ")
    if language not in READABLE_LANGUAGES:
        if not known and language in ("c", "internal"):
            outside = (f"of extension {extension}, which agent19 does not know" if extension
                       else "outside any extension")
            found.append(Member("unreadable", f"{what} is C code {outside}", f"C code in {where}", leaves=True))
        elif not known:
            found.append(Member("unreadable", f"{what} is written in {language}, which agent19 cannot read",
                                f"{language} in {where}", leaves=not trusted))
    elif body is not None:
        if body.copy_outside:
            found.append(Member("escape", f"{what} runs COPY to or from a program or a server file"))
        if body.foreign:
            found.append(Member("escape", f"{what} {body.foreign}, which reaches {REACHES}"))
        if body.catalog:
            found.append(Member("escape", f"{what} {body.catalog}: what the server runs or lets in is then not "
                                          "what agent19 read"))
        for name, m in bad.hits(body):
            found.append(seed_why(what, name, contained) or m)
        if body.unscannable:
            found.append(Member("unreadable", f"{what} cannot be read (its text does not scan as SQL)",
                                f"unscannable text in {where}"))
        if body.strings_unsure:
            found.append(Member("unreadable", f"{what} may change how the server reads string literals "
                                "(standard_conforming_strings, RESET ALL, DISCARD ALL or set_config with a name "
                                "built at run time), so its strings may not end where agent19 reads them ending",
                                f"string reading changed in {where}"))
        if made := [m for m in body.makes_code if not tracked or m in STRING_CODE]:
            found.append(Member("unreadable", f"{what} creates or changes code the server runs later "
                                              f"({made[0]}), which agent19 has not read", f"{made[0]} in {where}"))
        if language == "plpgsql" and body.dynamic:
            found.append(Member("unreadable", f"runs SQL built at run time (EXECUTE in {where})",
                                f"EXECUTE in {where}"))
    found = [m for m in found if not lifted(m, allow, lift_contained)]
    return min(found, key=lambda m: _SEVERITY[m.kind]) if found else None


class Closure:
    """B and its entry points for one database (rows of :data:`Q_CLOSURE`), the opt-in ``allow`` applied; grown
    by the migration's own functions (:meth:`add_function`, :meth:`rename`).

    ``contained``: the database is an isolated copy (:mod:`agent19.migrate.dryrun.isolated`). Then only what leaves
    the copy is an escape (:data:`~agent19.safety.function_facts.LEAVES_COPY`, dblink / postgres_fdw, foreign
    tables); ``setval`` and the escapes it contains are no members; and code agent19 cannot read (``EXECUTE``, SQL
    given as a string, a trusted language) runs — unless the copy has a **way out** (:attr:`way_out`: a function
    that leaves it, a foreign table, code in a language the server does not sandbox), which SQL built at run time
    could reach by a name nobody read. Built-in escapes are no way out there: the copy's role is no superuser and
    holds none of the predefined roles that may call them (the server refuses it)."""

    def __init__(self, rows: dict[str, Any], *, allow: bool, anywhere: bool = False, contained: bool = False) -> None:
        """``anywhere``: the migration creates, renames or moves schemas (:attr:`Tokens.moves_schemas`)."""
        self.contained, self.lift_contained, self.way_out = contained, False, None
        self.allow, self.schemas = allow, rows["schemas"] or []
        self.functions = rows["fn"]
        self.operators = rows["op"]
        self.deps = rows["dep"]
        self._tokens = {f["oid"]: tokens(f["src"]) if f["src"] is not None else None for f in self.functions}
        self.anywhere = anywhere or any(t is not None and t.moves_schemas for t in self._tokens.values())
        self.extra: dict[str, Member] = {}  # names the migration made bad
        self.remote = {t["name"]: Member("escape", f"{t['name']} is a foreign table: reading or writing it "
                                                   "reaches another server") for t in rows["ft"]}
        self.foreign_oids = {t["oid"]: t["name"] for t in rows["ft"]}
        self.settings_views = {t["name"]: Member(
            "unreadable", f"{t['name']} is built on pg_settings (writing it calls set_config with each row's name), "
            "so code that names it may change how the server reads string literals",
            f"{t['name']} over pg_settings") for t in rows.get("sv") or []}
        self._compute()

    def lifts(self, m: Member) -> bool:
        """Member ``m`` is run anyway (:func:`lifted`: the opt-in, or an isolated copy without a way out)."""
        return lifted(m, self.allow, self.lift_contained)

    def _compute(self) -> None:
        self.lift_contained = False
        self._compute_once()
        if self.contained:  # unreadable code runs in the copy only when nothing there leads out of it
            out = [m for m in [*self._members, *self.remote.values(), *self.extra.values()]
                   if m.kind == "escape" or (m.kind == "unreadable" and m.leaves)]
            self.way_out = min(out, key=lambda m: _SEVERITY[m.kind]) if out else None
            if self.way_out is None:
                self.lift_contained = True
                self._compute_once()

    def _compute_once(self) -> None:
        contained = self.contained
        bad = Bad(self.schemas, self.anywhere)
        for n in SEEDS:
            if m := seed_why("?", n, contained):
                bad.add(n, None, m)
        for n, m in (self.remote | self.settings_views | self.extra).items():
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
                m = seed_why(f"function {f['qualified']}", f["name"], contained) if f["known"] else None
                m = m or self.extra.get(f["name"])  # the migration replaced it (by name: any schema, cautious)
                if m is None and f["src"] != "":  # '': an aggregate, judged by what it depends on
                    m = body_verdict(f"function {f['qualified']}", f["lang"], self._tokens[f["oid"]],
                                     known=f["known"], allow=self.allow, bad=bad, extension=f.get("extension"),
                                     contained=contained, lift_contained=self.lift_contained,
                                     trusted=bool(f.get("trusted")))
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
        # what may lead out of an isolated copy: not the built-ins themselves (the server refuses them its role)
        self._members = [by_oid[f["oid"]] for f in self.functions
                         if f["oid"] in by_oid and not (f["known"] and f.get("extension") is None)]
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
