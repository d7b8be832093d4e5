"""The choke point's ``TRIAL`` layer: what a statement's reachable code may do in a transaction that is rolled back.

A trial (a dry run, EXPLAIN ANALYZE of a write, a measured write) runs the statement on the real server and
rolls it back. The rollback undoes writes to tables; it does not undo a signal to another session, a sequence
set back, a connection to another server. The text checks (:func:`agent19.safety.readonly.check_escapes`) see
only the statement's own calls; this layer judges the code the statement can reach from what the server
records (:mod:`agent19.safety.closure`: the functions that do such things, by name in any schema, and every
object the server runs on its own that leads to one — the whole database, since the server cannot confine
code a role runs to the objects a statement names).

Verdicts (:meth:`TrialCatalog.reach`):

* **refused** (:class:`~agent19.safety.readonly.ReadOnlyViolation`): the statement (its tokens, a ``DO`` body's,
  a relation it names whose trigger, rule or default leads there) uses code that escapes the rollback
  (:data:`~agent19.safety.function_facts.ESCAPING` — signals, slots, server files, session advisory locks…;
  dblink / postgres_fdw; foreign tables; ``COPY`` to or from a program or a server file).
* **untestable** (:class:`Untestable`): the code does what the rollback does not undo but is no escape in
  itself — ``setval`` (:data:`~agent19.safety.function_facts.SEQUENCE_MOVES`: sequences are not transactional;
  ``nextval`` only leaves a gap) — or the guard cannot read it, so cannot prove it stays inside the transaction:
  SQL built at run time (PL/pgSQL ``EXECUTE``, SQL given as a string such as ``query_to_xml``), or a body in a
  language other than SQL and PL/pgSQL unless the function is built in or belongs to an extension agent19 knows
  (:data:`~agent19.safety.function_facts.KNOWN_EXTENSIONS`).
  Also every statement (transaction control apart) when the database has an object the server runs on its own
  (trigger, constraint, default, index expression, policy, rule, operator, cast, event trigger) that leads to
  such code, or when an earlier statement of the migration created one — or made one earlier that a later
  statement's new or renamed function now leads to bad code (:meth:`TrialCatalog.judged` records what the
  migration leaves for the server to run later and judges it again). With an enabled event trigger (it runs on
  every DDL statement and may call any function by name), a ``CREATE FUNCTION`` or rename that makes bad code
  is itself not run. Default-deny: the trial does not run it. An operator who knows the migration's dynamic
  SQL may opt in with ``--allow-unreadable-code`` (``AGENT19_ALLOW_UNREADABLE_CODE``,
  :attr:`agent19.config.Settings.allow_unreadable_code`): unreadable code then runs (``setval`` and escapes
  still do not); what the server shows afterwards is still checked.

The catalog is read once per :class:`TrialCatalog`, in one round trip (:data:`Q_TRIAL`: the closure's rows, whether
an event trigger is enabled, and in the same snapshot the fingerprint of the code the server may run —
:attr:`TrialCatalog.code`, compared after the trial's rollback by :mod:`agent19.safety.aftermath`: another
session may change the code while the trial runs, and the server runs what is committed, not what was checked).
"""

from __future__ import annotations

from typing import Any

from agent19.db import catalog_first
from agent19.migrate.parse import Statement
from agent19.safety import trial_owners
from agent19.safety.body_effects import REACHES
from agent19.safety.closure import (
    Q_CLOSURE,
    SEEDS,
    Closure,
    Member,
    Tokens,
    body_verdict,
    option_calls,
    seed_why,
    tokens,
)
from agent19.safety.fingerprint import CODE
from agent19.safety.readonly import ReadOnlyViolation
from agent19.sqltree import qualified_name, walk
from agent19.tool_names import argument

OPT_IN = "--allow-unreadable-code (AGENT19_ALLOW_UNREADABLE_CODE=1)"
# statements whose use of a bad name runs it once, now (not run); any other kind that uses one (a trigger, a
# constraint, a default, an index, a policy, a view, an operator, a cast…) leaves code the server runs later
RUNS_NOW = {"SelectStmt", "InsertStmt", "UpdateStmt", "DeleteStmt", "MergeStmt", "DoStmt", "CallStmt",
            "ExplainStmt", "CopyStmt", "ExecuteStmt", "DeclareCursorStmt", "VariableSetStmt", "CreateFunctionStmt"}
# DDL whose names are mostly columns: only calls (a name and its parenthesis), operators and attribute notation
# (a qualified name without one: ``c.zap`` runs ``zap(c)``) are matched there
NAMES_COLUMNS = {"CreateStmt", "AlterTableStmt", "IndexStmt", "ViewStmt", "CreateTableAsStmt"}
_RENAMED_ROUTINES = {"OBJECT_FUNCTION", "OBJECT_PROCEDURE", "OBJECT_ROUTINE", "OBJECT_AGGREGATE"}
# kinds that leave no code for the server to run later (they name objects, and hold no expression)
_LEAVES_NO_CODE = {"TransactionStmt", "GrantStmt", "GrantRoleStmt", "AlterDefaultPrivilegesStmt", "CommentStmt",
                   "SecLabelStmt", "DropStmt", "AlterOwnerStmt", "LockStmt", "TruncateStmt", "VacuumStmt",
                   "ReindexStmt", "ClusterStmt"}
# the guard's one read: the closure's rows, whether an event trigger fires on DDL here, and (same snapshot) the
# fingerprint of the code the server may run (agent19.safety.fingerprint), compared again after the trial
Q_TRIAL = f"""SELECT q.*, EXISTS (SELECT 1 FROM pg_event_trigger WHERE evtenabled <> 'D') AS events, {CODE} AS code,
       pg_catalog.current_setting('agent19.isolated_copy', true) AS isolated_copy,
       {catalog_first.USER_PATH} AS agent19_search_path, {trial_owners.Q_OTHERS} AS others, session_user AS login
  FROM ({Q_CLOSURE}) q"""
"""The guard's one catalog read. It names the catalog unqualified: with a search_path that searches another schema
before pg_catalog, that schema's objects would answer it (a view named pg_proc hid a trigger's setval: review r26b
j07). The path is read in the same statement with qualified functions, and such a read is refused
(:mod:`agent19.db.catalog_first`)."""


class Untestable(ReadOnlyViolation):
    """A trial would run code whose effect it cannot contain or cannot see; nothing ran. A dry run reports the
    statement as not tested (not a failure)."""


class PrivilegedTrial(Untestable):
    """The login is privileged and the database has objects of a less privileged role, whose code the server may run
    with the login's powers (:mod:`agent19.safety.trial_owners`); nothing ran."""


def named_functions(tree: Any) -> set[str]:
    return {qualified_name(f.get("funcname", [])).rsplit(".", 1)[-1].lower()
            for node, f in walk(tree) if node == "FuncCall"}


def _option(options: Any, name: str) -> Any:
    for opt in options or []:
        d = opt.get("DefElem", {})
        if d.get("defname") == name:
            return d.get("arg")
    return None


def _string(arg: Any, default: str) -> str:
    if isinstance(arg, dict) and "List" in arg:
        return _string(arg["List"].get("items") or [], default)
    if isinstance(arg, dict):
        return str(arg.get("String", {}).get("sval", default))
    if isinstance(arg, list) and arg:  # AS 'body' [, 'link symbol']
        return _string(arg[0], default)
    return default


def _do_block(stmt: Statement) -> tuple[str, str]:
    """(language, body) of a ``DO`` block."""
    return (_string(_option(stmt.fields.get("args"), "language"), "plpgsql").lower(),
            _string(_option(stmt.fields.get("args"), "as"), ""))


def _last_name(parts: Any) -> str:
    """The last part of a dotted name as the server stores it (the parser folded it, or kept it quoted)."""
    return str(((parts or [{}])[-1]).get("String", {}).get("sval", ""))


def _created(stmt: Statement) -> tuple[str, str, str] | None:
    """(name as the server stores it, language, body text) of a ``CREATE FUNCTION/PROCEDURE``; a ``BEGIN
    ATOMIC`` body is the statement's own text."""
    if stmt.node != "CreateFunctionStmt":
        return None
    name = _last_name(stmt.fields.get("funcname"))
    language = _string(_option(stmt.fields.get("options"), "language"), "sql").lower()
    body = _option(stmt.fields.get("options"), "as")
    return name, language, _string(body, "") if body is not None else stmt.sql


def _renamed(stmt: Statement) -> tuple[str, str]:
    """(old name, new name) of a routine's ``RENAME``."""
    obj = (stmt.fields.get("object") or {}).get("ObjectWithArgs", {})
    return _last_name(obj.get("objname")), str(stmt.fields.get("newname", ""))


def _renames_routine(stmt: Statement) -> bool:
    return stmt.node == "RenameStmt" and stmt.fields.get("renameType") in _RENAMED_ROUTINES


def _worst(members: list[Member]) -> Member | None:
    order = {"escape": 0, "sequence": 1, "unreadable": 2}
    return min(members, key=lambda m: order[m.kind]) if members else None


class TrialCatalog:
    """The target's catalog as :mod:`agent19.safety.closure` reads it (one round trip, when first needed; nothing
    has run yet, so it cannot change between the statements judged), grown by what the statements judged so far
    create (:meth:`judged`). ``statements`` and ``skip`` are accepted for the callers' sake (the read no longer
    depends on the names they use)."""

    def __init__(self, conn: Any, statements: list[Statement] | None = None,
                 skip: Any = lambda stmt: False) -> None:
        self.conn = conn
        self.allow = False
        self.contained = False  # an isolated copy (agent19.migrate.dryrun.isolated): set by check() from the database
        self._isolable: bool | None = None  # the same database, isolated, would have no way out (read when needed)
        self.anywhere = any(tokens(s.sql).moves_schemas for s in statements or [])
        self._rows: dict[str, Any] | None = None
        self._closures: dict[bool, Closure] = {}
        self._events: list[tuple[str, str, Any]] = []  # (function name, rename-to or "", Member | None)
        # code the migration made so far that the server runs later: its functions' bodies (by name: language,
        # tokens) and the other objects (by statement: tokens, whether only calls count), judged again whenever
        # a later statement creates, replaces or renames a function
        self._bodies: dict[str, tuple[str, Tokens]] = {}
        self._made: dict[int, tuple[Tokens, bool]] = {}
        self.stopped: str | None = None  # why every later statement is not run
        self._stop: tuple[int, str] | None = None  # (statement, why): set by reach, applied once it is judged
        self.allowed: dict[int, str] = {}  # by Statement.index: ran unreadable code by the opt-in (check)
        if any(s.node != "TransactionStmt" and not skip(s) for s in statements or []):
            self._read()

    def _read(self) -> dict[str, Any]:
        if self._rows is None:
            # under pg_catalog only: an exact-match overload (public.>=(oid, integer)) would answer it otherwise
            (cur,) = catalog_first.read_own(self.conn, ((Q_TRIAL, {"seeds": SEEDS, **trial_owners.PARAMETERS}),))
            row = cur.fetchone()  # a dict, or a tuple in the order of its columns' names
            rows = dict(row) if isinstance(row, dict) else dict(zip([d.name for d in cur.description], row,
                                                                    strict=True))
            path = str(rows.get("agent19_search_path") or "")
            if schema := catalog_first.shadowing(path):
                raise ReadOnlyViolation(f"refused: {catalog_first.refusal(path, schema)}",
                                        "nothing was run: agent19 could not trust its own reading of the code")
            self._rows = rows
        return self._rows

    @property
    def code(self) -> str | None:
        """The fingerprint of the code the server may run, read with the catalog (None: nothing was read)."""
        return None if self._rows is None else str(self._rows["code"])

    @property
    def events(self) -> bool:
        """An enabled event trigger: the server runs it on every DDL statement, and its code may call any
        function by name."""
        return bool(self._read()["events"])

    def closure(self) -> Closure:
        key = self.allow, self.contained
        if key not in self._closures:
            c = Closure(self._read(), allow=self.allow, anywhere=self.anywhere, contained=self.contained)
            for name, new, member in self._events:
                c.rename(name, new) if new else c.add_function(name, member)
            self._closures[key] = c
        return self._closures[key]

    def isolation_helps(self, m: Member) -> bool:
        """Not in an isolated copy yet, and one would run what ``m`` stops: the copy contains its effect, and this
        database (as dumped there) has no way out of it (:attr:`Closure.way_out`)."""
        if self.contained or not m.isolable:
            return False
        if self._isolable is None:
            self._isolable = Closure(self._read(), allow=False, anywhere=self.anywhere, contained=True).way_out is None
        return self._isolable

    def privileged_owners(self, stmt: Statement) -> str | None:
        """Why no statement is tried as this login: it is privileged and the database has objects of a less
        privileged role, whose code the server may run with the login's powers (:mod:`agent19.safety.trial_owners`);
        None otherwise, for transaction control, and in an isolated copy (nothing there leaves it)."""
        if self.contained or stmt.node == "TransactionStmt":
            return None
        rows = self._read()
        return trial_owners.refusal(rows.get("others"), str(rows.get("login")))

    def _why(self, m: Member, why: str | None = None) -> str:
        """Why a statement stopped by member ``m`` is not run (``why``: the text, when not ``m``'s own): an
        :class:`Unreadable` when agent19 cannot read the code, with what else would test it."""
        text = why or m.why
        if m.kind == "unreadable":
            if self.contained:
                c = self.closure()
                if m.leaves:
                    where = "in an isolated copy too, code in a language the server does not sandbox may act outside it"
                else:  # lifted there unless the copy has a way out
                    out = c.way_out.why if c.way_out else "a way out of it"
                    where = f"SQL built at run time may reach what leaves this isolated copy ({out})"
                return _unreadable(text, m.code, copy=where)
            return _unreadable(text, m.code, isolated=self.isolation_helps(m))
        if m.kind == "escape" or not self.isolation_helps(m):
            return text
        return f"{text}; {_isolated_run()}"

    def _escape(self, text: str, m: Member) -> str:
        """A refusal: with the isolated run that would run it, where one would."""
        return f"{text}; {_isolated_run()}" if self.isolation_helps(m) else text

    def _apply(self, name: str, new: str, member: Member | None) -> None:
        self._events.append((name, new, member))
        for c in self._closures.values():
            c.rename(name, new) if new else c.add_function(name, member)

    def judged(self, stmt: Statement) -> None:
        """``stmt`` was judged: a function it creates or renames is judged by the statements after it; code the
        server would run on its own that it creates stops them."""
        c = self.closure()
        before = len(c.entries)
        if created := _created(stmt):
            name, language, body = created
            self._bodies[name] = language, tokens(body)
            self._apply(name, "", self._verdict(name, c))
            self._rejudge(stmt, c)
        elif _renames_routine(stmt):
            old, new = _renamed(stmt)
            self._apply(old, new, None)
            if old in self._bodies:
                self._bodies[new] = self._bodies.pop(old)
            self._rejudge(stmt, c)
        elif stmt.node not in RUNS_NOW and stmt.node not in _LEAVES_NO_CODE:
            self._made[stmt.index] = tokens(stmt.sql), stmt.node in NAMES_COLUMNS
        elif stmt.node == "DoStmt" and (made := tokens(_do_block(stmt)[1])).makes_code:
            self._made[stmt.index] = made, False  # its triggers, constraints… (read: closure.makes_code)
        if self.stopped is None and self._stop and self._stop[0] == stmt.index:
            self.stopped = self._stop[1]
        if self.stopped is None and len(c.entries) > before:
            what, _rel, member, _event = c.entries[-1]
            self.stopped = (f"statement {stmt.index + 1} makes {what} reach code a dry run cannot contain "
                            f"({member.why})")

    def _verdict(self, name: str, c: Closure) -> Member | None:
        """A function the migration created, judged by its body against what is bad now."""
        language, body = self._bodies[name]
        return body_verdict(f"function {name} (created earlier in this migration)", language, body, known=False,
                            allow=self.allow, bad=c.bad, contained=c.contained, lift_contained=c.lift_contained)

    def _rejudge(self, stmt: Statement, c: Closure) -> None:
        """``stmt`` created, replaced or renamed a function: the migration's other functions that use it are
        judged again (to a fixed point), then the code it made earlier for the server to run later — a trigger,
        a CHECK, a default… that now leads to a member of B stops every statement after ``stmt``."""
        changed = True
        while changed:
            changed = False
            for name in self._bodies:
                if name not in c.bad and (m := self._verdict(name, c)):
                    self._apply(name, "", m)
                    changed = True
        for index, (used, calls_only) in sorted(self._made.items()):
            hits = [m for _n, m in c.bad.hits(used, calls_only=calls_only) if not c.lifts(m)]
            if self.stopped is None and index < stmt.index and (m := _worst(hits)):
                self.stopped = (f"statement {index + 1} made code the server runs on its own, which statement "
                                f"{stmt.index + 1} makes reach code a dry run cannot contain ({m.why})")

    def _made_bad(self, stmt: Statement, c: Closure) -> Member | None:
        """What a ``CREATE FUNCTION`` or a routine's rename would make bad under its (new) name, or None."""
        if created := _created(stmt):
            name, language, body = created
            return body_verdict(f"function {name} (created by this statement)", language, tokens(body),
                                known=False, allow=self.allow, bad=c.bad, contained=c.contained,
                                lift_contained=c.lift_contained)
        old, new = _renamed(stmt)
        found = c.bad.by_name.get(old) or [(None, None)]
        return found[0][1] if new not in c.bad else None

    def reach(self, stmt: Statement) -> tuple[str | None, str | None]:
        """``(refusal, untestable)``: why the code ``stmt`` reaches escapes a rollback, or else why a trial
        cannot contain or cannot read it; ``(None, None)`` when neither."""
        self._stop = None
        if stmt.node == "TransactionStmt":
            return None, None
        if stmt.node == "ImportForeignSchemaStmt":
            return "IMPORT FOREIGN SCHEMA connects to another server", None
        if self.stopped:
            return None, self.stopped
        c = self.closure()
        own = tokens(stmt.sql)
        for qualifier, name in option_calls(stmt.tree):  # FUNCTION = E'lo\x5fexport': decoded by the parser
            own.call(qualifier, name)
        if own.catalog:
            return f"it {own.catalog}: what the server runs or lets in is then not what agent19 read", None
        if own.unscannable:  # U&"..." names: not decoded, so any name could hide there
            if stmt.node not in RUNS_NOW:
                self._stop = stmt.index, f"statement {stmt.index + 1} could not be read (U& escapes)"
            return None, ("its text uses U&'...' or U&\"...\" escapes (or does not scan as SQL), which agent19 does "
                          "not decode: it cannot tell what it runs; write the names plainly, or test it on a staging "
                          "copy")
        if own.foreign:  # e.g. a foreign table (harmless itself; reading it then runs file_fdw's program)
            why = f"it {own.foreign}, which reaches {REACHES}; a dry run cannot contain that: test it on a staging copy"
            self._stop = stmt.index, f"statement {stmt.index + 1} {why.removeprefix('it ')}"
            return None, why
        members = [seed_why("the statement", n, c.contained) or m
                   for n, m in c.bad.hits(own, calls_only=stmt.node in NAMES_COLUMNS)]
        if stmt.node == "DoStmt":  # the body is a string to the parser: read it as a function body
            language, body = _do_block(stmt)
            if m := body_verdict("the DO block", language, tokens(body), known=False, allow=self.allow, bad=c.bad,
                                 tracked=True, contained=c.contained, lift_contained=c.lift_contained):
                members.append(m)
        elif stmt.node == "CreateFunctionStmt" or _renames_routine(stmt):  # runs nothing: judged when called,
            members = []  # unless an event trigger runs on this very statement (and may call it by name)
            if self.events and (m := self._made_bad(stmt, c)) and not c.lifts(m):
                why = (f"{m.why}; an event trigger of this database runs on every DDL statement, this one "
                       "included, and may call it by name")
                self._stop = stmt.index, f"statement {stmt.index + 1} makes bad code an event trigger may run ({why})"
                if m.kind == "escape":
                    return self._escape(why, m), None
                return None, self._why(m, why)
        members = [m for m in members if not c.lifts(m)]
        if m := _worst(members):
            if stmt.node not in RUNS_NOW:
                self._stop = stmt.index, (f"statement {stmt.index + 1} creates code the server runs on its own "
                                          f"that a dry run cannot contain ({m.why})")
            return (self._escape(m.why, m), None) if m.kind == "escape" else (None, self._why(m))
        return self._entry_points(stmt, c, own.names)

    def _entry_points(self, stmt: Statement, c: Closure, names: set[str]) -> tuple[str | None, str | None]:
        """Objects of the database the server runs on its own that lead to bad code: a relation the statement
        names leads there (refused when it escapes), or else any (not run: the server cannot confine it)."""
        entries = [e for e in c.entries if not c.lifts(e[2])]
        if not entries or (stmt.node == "CreateFunctionStmt" and not any(e[3] for e in entries)):
            return None, None
        named = [e for e in entries if e[1] is not None and e[1] in names]
        if m := _worst([e[2] for e in named]):
            if m.kind == "escape":
                return self._escape(f"{m.why} (through {named[0][0]})", m), None
            return None, self._why(m)
        whats = sorted({e[0] for e in entries})
        more = f" and {len(whats) - 3} more" if len(whats) > 3 else ""
        m = _worst([e[2] for e in entries])
        assert m is not None
        why = (f"{', '.join(whats[:3])}{more} run(s) code where {m.why}: the server runs it for any statement, "
               "whatever it names, so a dry run on this database cannot contain it")
        return None, self._why(m, why)


UNREADABLE = "a dry run cannot prove it acts only inside the transaction"


class Unreadable(str):
    """Why a statement is untestable because agent19 cannot read the code it reaches — the one reason the
    operator's opt-in lifts; ``code``: what and where, e.g. ``EXECUTE in app.f``."""

    code: str

    def __new__(cls, text: str, code: str) -> Unreadable:
        self = super().__new__(cls, text)
        self.code = code
        return self


def _isolated_run() -> str:
    return f"a dry run in an isolated copy of the schema ({argument('isolated')}) would run it"


def _unreadable(what: str, code: str, isolated: bool = False, copy: str = "") -> Unreadable:
    """``isolated``: a dry run in an isolated copy would run it (said before the other ways); ``copy``: this is one,
    and why it does not run it."""
    where = f"{_isolated_run()}; or test it on a staging copy" if isolated else "test it on a staging copy"
    where = f"{copy}; {where}" if copy else where
    return Unreadable(f"{what}: {UNREADABLE}; {where}, or, if you know what it runs, have the operator start agent19 "
                      f"with {OPT_IN}", code)


def allowed_note(code: str) -> str:
    """What a statement's result says when it ran code agent19 cannot read because the operator opted in."""
    return (f"ran code agent19 cannot read ({code}) because --allow-unreadable-code is set: what it did outside "
            "the transaction is not known")


def check(db: Any, statements: list[Statement], catalog: TrialCatalog | None = None) -> None:
    """Raise for the first of ``statements`` whose reachable code a trial must not run (see the module doc):
    :class:`~agent19.safety.readonly.ReadOnlyViolation` when it escapes, :class:`Untestable` when it cannot be
    contained or read. ``catalog``: the caller's, reading the target (a dry run screens many statements with
    one); else one is opened on the main login for this call."""
    if catalog is None:
        with db.read() as conn:
            check(db, statements, TrialCatalog(conn, statements))
        return
    allow = bool(getattr(db.settings, "allow_unreadable_code", False))
    if token := getattr(db, "contained", ""):  # the guard's one setting for an isolated copy: the server's own too
        if catalog._read()["isolated_copy"] != token:
            raise ReadOnlyViolation("refused: the database is set as an isolated copy, but this server is not the "
                                    "throwaway cluster agent19 made for it (its agent19.isolated_copy differs)",
                                    "dry-run without isolation, or with isolated (agent19 makes the copy)")
        catalog.contained = True
    for st in statements:
        catalog.allow = False  # read as if not opted in: what only the opt-in lets run is noted
        refusal, untestable = catalog.reach(st)
        if isinstance(untestable, Unreadable) and allow:
            catalog.allow = True
            code = untestable.code
            refusal, untestable = catalog.reach(st)
            if not refusal and not untestable:
                catalog.allowed[st.index] = allowed_note(code)
        catalog.allow = allow
        opted_in = getattr(db.settings, "allow_privileged_reads", False)
        owners = None if refusal or untestable or opted_in else catalog.privileged_owners(st)
        catalog.judged(st)
        if owners:
            raise PrivilegedTrial(owners, "nothing was run")
        if refusal:
            raise ReadOnlyViolation(f"refused: {refusal}",
                                    "a dry run must leave nothing behind; run it yourself if it is intended")
        if untestable:
            raise Untestable(untestable, "nothing was run")
