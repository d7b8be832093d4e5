"""The one choke point for user SQL: every tool that sends SQL a caller wrote to a server calls
:func:`admit` first, and runs user reads through :func:`reader`.

Stable API (other modules depend on it; extend, do not change):

``admit(db, sql, purpose) -> list[Statement]``
    Before anything of ``sql`` reaches the server. Parses it (size cap, the server's grammar) and
    applies the checks ``purpose`` and the access mode call for; raises
    :class:`~agent19.safety.readonly.ReadOnlyViolation` (nothing ran), :class:`PrivilegedReader`
    (reads would run as a privileged login) or :class:`~agent19.errors.ModeError`. Returns the
    parsed statements. For reads and plans it also runs the catalog layer on the server, as the
    login that will run or plan the statement (names resolved as the server does, through that
    login's search_path; views, operators, casts and function bodies followed).

``admit_parsed(db, statements, purpose, *, catalog=None) -> list[Statement]``
    The same for statements already parsed (migration files, keeping their file and line);
    ``catalog``: a :class:`agent19.safety.trial.TrialCatalog` to read reachable code with (``TRIAL``).

``admit_args(mode, args) -> None``
    Called by the tool registry before every tool runs (MCP and CLI alike), for each args field
    declared with :func:`user_sql`: parses it and refuses, in read-only mode, a deny-listed call or
    credential relation anywhere in it; in dry-run mode, a call whose effect escapes a rollback.
    Needs no server. The tool then calls :func:`admit` with the purpose its code knows.

``plan_session(db, statements) -> ContextManager[Connection]``
    Where admitted statements are planned: :func:`reader` when they all read; the main login's
    READ ONLY transaction when one writes (planning a write needs the write's privileges).

``reader(db) -> ContextManager[Connection]``
    A ``READ ONLY`` transaction, always rolled back, as the login user reads run under: the reader
    login of ``--read-dsn`` / ``AGENT19_READ_DSN`` when set (see :func:`reader_database`), else the
    main login. Its pooled session is reset before the call returns (advisory locks released,
    settings, temporary objects and prepared statements discarded): no session-level effect outlives
    the call.

``reader_database(db) -> Database``
    The database object user reads use: ``--read-dsn``'s login; on the embedded server a reader
    login agent19 creates there; else the main login.

``reader_login(db) -> LoginFacts``
    Who user reads run as, and whether that login is privileged (superuser, or a member of
    pg_read_server_files / pg_write_server_files / pg_execute_server_program / pg_signal_backend).

Purposes:

* ``READ`` — the SQL runs as a read (run_sql's read path, EXPLAIN ANALYZE of a read, validation
  queries): exactly one statement that passes every layer of :mod:`agent19.safety.readonly`.
* ``PLAN`` — the SQL is only planned (EXPLAIN without ANALYZE, HypoPG costs): one statement; a read
  must pass the read-only guard; an INSERT/UPDATE/DELETE/MERGE is accepted because planning does not
  run it, but no expression in it may call a denied function, and the user functions the planner may
  evaluate while planning (immutable and stable ones) are followed like a read's; its own volatile
  calls are allowed (the planner never calls them).
* ``REPORT`` — the SQL is only parsed and described from the catalog (a confirmation report),
  never run or planned: any statement kind, but no denied function or credential relation anywhere.
* ``TRIAL`` — the SQL runs inside a transaction that is always rolled back (EXPLAIN ANALYZE of a
  write, a dry run, a measured write), whatever the mode (at least dry-run): calls whose effect escapes
  the rollback are refused (see ``WRITE`` in dry-run mode), in the text and in the code the statement
  reaches (function bodies, DO blocks, and whatever the server runs on its own — triggers, constraints,
  defaults, policies, rules, operators…: :mod:`agent19.safety.trial`, :mod:`agent19.safety.closure`); code
  that moves a sequence (``setval``) or that the guard cannot read (SQL built at run time, other
  languages), or any statement when the database has an object the server runs on its own that leads to
  such code, raises :class:`agent19.safety.trial.Untestable` — not run — unless the operator set
  ``--allow-unreadable-code`` (then unreadable code runs; ``setval`` never does).
* ``WRITE`` — the SQL may change things (dry-run: rolled back or in a scratch database; execute:
  through the confirmation protocol). Refused in read-only mode. In dry-run mode, calls whose
  effect escapes a rolled-back transaction (signals to other sessions, session advisory locks,
  server files, other servers, replication slots, COPY to/from a program or a server file) are
  refused. In execute mode only the parse happens here: :mod:`agent19.safety.protocol` judges
  what may lose data.

Marking the fields that carry user SQL: a tool's args model declares each such field with
``json_schema_extra=gate.user_sql("statement")`` (see :data:`SQL_KINDS`); ``tests/test_choke_point.py``
refuses a tool whose SQL-looking field carries no declaration and proves every declared one is gated.

In read-only mode, ``READ`` and ``PLAN`` are refused when the reads would run as a privileged login,
unless the operator opted in with ``--allow-privileged-reads`` / ``AGENT19_ALLOW_PRIVILEGED_READS``
(see ``agent19 setup-role`` for the reader login to create instead).
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from enum import StrEnum
from typing import TYPE_CHECKING, Any

from agent19 import records
from agent19.config import AccessMode
from agent19.errors import Agent19Error, ConfigError, InputError
from agent19.migrate.parse import Statement, parse_sql
from agent19.safety.privileged import PRIVILEGED_ROLES

if TYPE_CHECKING:  # the driver loads when a database is used, not for the argument checks of `agent19 lint`
    from agent19.db.connection import Connection, Database
    from agent19.safety.trial import TrialCatalog

MAX_SQL_BYTES = 1_000_000


def parse_input(sql: str) -> list[Statement]:
    """The statements of user SQL, with clear errors for empty or oversized input."""
    size = len(sql.encode("utf-8", errors="replace"))
    if size > MAX_SQL_BYTES:
        raise InputError(f"the SQL is {size:,} bytes; at most {MAX_SQL_BYTES:,} are accepted per call",
                         "send one statement at a time; nothing was run")
    statements = parse_sql(sql)
    if not statements:
        raise InputError("no SQL statement given (the text is empty or only comments)", "nothing was run")
    return statements


class Purpose(StrEnum):
    READ = "read"
    PLAN = "plan"
    REPORT = "report"
    TRIAL = "trial"
    WRITE = "write"


class PrivilegedReader(Agent19Error):
    """User reads would run as a login that can reach beyond the database; nothing ran."""

    exit_code = 1


class PrivilegedPlanner(PrivilegedReader):
    """A write would be planned (read-only mode) as a main login that can reach beyond the database; nothing ran."""


USER_SQL = "user_sql"
SQL_KINDS = {
    "statement": "one statement, sent to the server (through admit)",
    "statements": "a list of statements, each sent to the server (through admit)",
    "script": "a migration script (many statements), sent to the server (through admit_parsed)",
    "files": "paths of SQL files whose statements are sent to the server (through admit_parsed)",
    "expression": "an SQL fragment (SET list, WHERE condition) built into a statement sent through admit",
    "text": "SQL that is only parsed or written into generated text, never sent to a server",
}


def user_sql(kind: str) -> dict[str, Any]:
    """``json_schema_extra`` for a field carrying user SQL: ``Field(..., json_schema_extra=user_sql("statement"))``,
    or in a dataclass ``field(metadata={"json_schema_extra": user_sql("text")})``."""
    if kind not in SQL_KINDS:
        raise ValueError(f"unknown user SQL kind {kind!r}; one of {sorted(SQL_KINDS)}")
    return {USER_SQL: kind}


def marked_fields(model: type[Any]) -> dict[str, str]:
    """The fields of an args record (a pydantic model or a dataclass) declared as carrying user SQL, with their
    kind."""
    out: dict[str, str] = {}
    for name, info in records.fields(model).items():
        extra = info.json_schema_extra
        if isinstance(extra, dict) and isinstance(extra.get(USER_SQL), str):
            out[name] = str(extra[USER_SQL])
    return out




@dataclass(kw_only=True)
class LoginFacts:  # who user reads run as; in server_info's result (pydantic reads the descriptions from metadata)
    login: str = field(metadata={"description": "the login (session user) user reads run as"})
    separate_reader: bool = field(metadata={"description": "true when reads use --read-dsn / AGENT19_READ_DSN"})
    superuser: bool
    privileged_roles: list[str] = field(default_factory=list,
                                        metadata={"description": "powerful roles the login is a member of "
                                                  "(CREATEROLE: it may grant itself any)"})
    privileged: bool = field(metadata={"description": "superuser or a member of a role that reaches files, "
                                       "programs or other sessions"})
    statement_timeout: str | None = None
    allowed_by_opt_in: bool = field(default=False, metadata={"description": "privileged, accepted because the "
                                                             "operator set --allow-privileged-reads"})

    def powers(self) -> str:
        """What makes the login privileged, for a message: "a superuser" or "a member of <roles>"."""
        return "a superuser" if self.superuser else "a member of " + ", ".join(self.privileged_roles)


Q_WHERE = "SELECT current_database() AS db, pg_postmaster_start_time() AS started"
Q_LOGIN = """
SELECT session_user AS login, current_setting('statement_timeout') AS statement_timeout,
       -- a member of a superuser role can SET ROLE to it, and so can the code it runs (review r34 F3)
       r.rolsuper OR EXISTS (SELECT FROM pg_roles g WHERE g.rolsuper AND g.rolname <> session_user
                                AND pg_has_role(session_user, g.oid, 'MEMBER')) AS superuser,
       ARRAY(SELECT g FROM unnest(%s::text[]) g
              WHERE CASE WHEN to_regrole(g) IS NOT NULL THEN pg_has_role(session_user, g, 'MEMBER') END)
       -- CREATEROLE (its own or a role's it is a member of) can grant itself any of those roles
       || CASE WHEN EXISTS (SELECT FROM pg_roles g WHERE g.rolcreaterole
                               AND pg_has_role(session_user, g.oid, 'MEMBER')) THEN ARRAY['CREATEROLE']
               ELSE ARRAY[]::text[] END AS roles
  FROM pg_roles r WHERE r.rolname = session_user
"""


def reader_database(db: Database) -> Database:
    """Where user reads run: ``--read-dsn``; on agent19's own embedded server, a reader login agent19
    creates there (same grants as ``agent19 setup-role``'s, no password: the embedded server trusts its
    private socket); else the main login."""
    if db.settings.read_dsn is None and db.embedded and not db.has_reader:
        from agent19.safety import roles  # here: admit_args (every tool call, `agent19 lint` too) needs no roles

        with db.connect() as conn:
            name = roles.ensure_embedded_reader(conn, statement_timeout=f"{db.settings.statement_timeout_ms}ms")
        from psycopg.conninfo import make_conninfo

        db.attach_reader(make_conninfo(db.dsn, user=name, password=""))
    return db.reader_database()


def _login_facts(conn: Connection, db: Database, separate: bool) -> tuple[LoginFacts, Any]:
    row = conn.execute(Q_LOGIN, (list(PRIVILEGED_ROLES),)).fetchone()
    assert row is not None
    roles = list(row["roles"] or [])
    privileged = bool(row["superuser"]) or bool(roles)
    return LoginFacts(
        login=row["login"], separate_reader=separate, superuser=bool(row["superuser"]),
        privileged_roles=roles, privileged=privileged, statement_timeout=row["statement_timeout"],
        allowed_by_opt_in=privileged and db.settings.allow_privileged_reads,
    ), conn.execute(Q_WHERE).fetchone()


def planner_login(db: Database) -> LoginFacts:
    """Who plans a write (:func:`plan_session`): the main login (asked of the server once per :class:`Database`)."""
    cached: LoginFacts | None = getattr(db, "_gate_planner", None)
    if cached is None:
        with db.read() as conn:
            cached = db._gate_planner = _login_facts(conn, db, False)[0]  # type: ignore[attr-defined]
    return cached


def require_unprivileged_planner(db: Database) -> None:
    """In read-only mode, refuse to plan a write as a privileged main login (unless opted in): the planner folds
    the code a table's owner put in its definitions (index expressions, defaults, rules...) as that login."""
    facts = planner_login(db)
    if db.mode is AccessMode.READ_ONLY and facts.privileged and not db.settings.allow_privileged_reads:
        raise PrivilegedPlanner(
            f"refused in read-only mode: planning a write needs the write's privileges, so it is planned as the main "
            f"login {facts.login!r}, {facts.powers()}; the planner runs code the table's owner wrote (index "
            "expressions, column defaults, rules, operators) as that login",
            "connect agent19 (--dsn) as the application's role that owns or writes the tables, not a privileged "
            "login, and keep the least-privilege reader for reads (--read-dsn); or accept the risk with "
            "--allow-privileged-reads (AGENT19_ALLOW_PRIVILEGED_READS=1); explaining the equivalent SELECT needs "
            "neither",
        )


def reader_login(db: Database) -> LoginFacts:
    """Who user reads run as (asked of the server once per :class:`Database`)."""
    cached: LoginFacts | None = getattr(db, "_gate_login", None)
    if cached is not None:
        return cached
    rdb = reader_database(db)
    with rdb.read() as conn:
        facts, where = _login_facts(conn, db, rdb is not db)
    if rdb is not db:
        with db.read() as conn:
            main = conn.execute(Q_WHERE).fetchone()
        if main != where:
            raise ConfigError(
                f"the read DSN reaches database {where['db']!r} of a server started at {where['started']}, the "  # type: ignore[index]
                f"main DSN database {main['db']!r} of a server started at {main['started']}: reads would not see "  # type: ignore[index]
                "the database agent19 works on",
                "point --read-dsn / AGENT19_READ_DSN at the same server and database as --dsn, with the reader login")
    db._gate_login = facts  # type: ignore[attr-defined]
    return facts


def require_unprivileged_reader(db: Database) -> LoginFacts:
    """In read-only mode, refuse to run user reads as a privileged login (unless opted in)."""
    facts = reader_login(db)
    if db.mode is AccessMode.READ_ONLY and facts.privileged and not db.settings.allow_privileged_reads:
        raise PrivilegedReader(
            f"refused in read-only mode: user SQL would run as {facts.login!r}, {facts.powers()}; through views, "
            "functions and casts a statement can reach server files, programs and other sessions as that login",
            "create a least-privilege reader login (`agent19 setup-role` prints the SQL) and pass its DSN as "
            "--read-dsn / AGENT19_READ_DSN; or accept the risk explicitly with --allow-privileged-reads "
            "(AGENT19_ALLOW_PRIVILEGED_READS=1)",
        )
    return facts


def admit(db: Database, sql: str, purpose: Purpose) -> list[Statement]:
    """The choke point: check ``sql`` for ``purpose`` before anything of it reaches the server."""
    return admit_parsed(db, parse_input(sql), purpose)


def admit_parsed(db: Database, statements: list[Statement], purpose: Purpose, *,
                 catalog: TrialCatalog | None = None) -> list[Statement]:
    """:func:`admit` for statements already parsed. ``catalog`` (``TRIAL`` only): where the reachable code is
    read — a dry run's, shared by all its statements; else the main login's session, for this call."""
    from agent19.safety import readonly

    mode = db.mode
    for st in statements:  # every purpose: the server must read the SQL as agent19 read it
        readonly.check_string_reading(st)
    if purpose is Purpose.REPORT:
        for st in statements:
            readonly.check_calls(st.tree)
        return statements
    if purpose in (Purpose.WRITE, Purpose.TRIAL):
        if purpose is Purpose.TRIAL or mode is not AccessMode.EXECUTE:
            for st in statements:  # before the mode check: the refusal names what the SQL tried
                readonly.check_escapes(st, contained=purpose is Purpose.TRIAL and bool(db.contained))
        db.require(AccessMode.DRY_RUN, "running statements that may write")
        if purpose is Purpose.TRIAL:  # the code it reaches, on the catalog (module agent19.safety.trial)
            from agent19.safety import trial

            trial.check(db, statements, catalog)
        return statements
    try:
        if purpose is Purpose.READ:
            st = readonly.check_statements(statements)
        else:
            st = readonly.check_plannable(statements)
        require_unprivileged_reader(db)
        if not readonly.is_read(st):
            require_unprivileged_planner(db)  # planned as the main login (plan_session)
        # checked as the login that will run or plan it: names resolve through its search_path ("$user")
        with plan_session(db, [st]) as conn:
            readonly.check_catalog(conn, st, planning_only=purpose is Purpose.PLAN)
    except readonly.ReadOnlyViolation as exc:
        if mode is AccessMode.READ_ONLY:
            raise
        raise exc.in_mode(mode.value) from None  # the mode in force, not read-only
    return [st]


def _fragments(value: Any) -> list[str]:
    if value is None:
        return []
    items = [str(v) for v in value] if isinstance(value, list | tuple) else [str(value)]
    return [v for v in items if v.strip()]


def _parse_fragment(name: str, text: str) -> list[Statement]:
    """An SQL fragment parsed in the context the tool builds it into (a SET list, or an expression);
    a fragment that does not parse there raises :class:`~agent19.migrate.parse.SqlParseError`."""
    return parse_sql(f"UPDATE _ SET {text}" if name == "set" else f"SELECT ({text})")


def admit_args(mode: AccessMode, args: Any) -> None:
    """The registry's check of every declared user-SQL field, before the tool runs (no server needed)."""
    if mode is AccessMode.EXECUTE:
        return  # the tool's own admit() and the confirmation protocol judge execute mode
    for name, kind in marked_fields(type(args)).items():
        if kind in ("text", "files") or (kind == "script" and mode is AccessMode.DRY_RUN):
            continue  # never sent / read from files / a migration the dry run admits statement by statement
        from agent19.safety import readonly  # here: a call with no SQL to check (a lint) does not load the checks

        for text in _fragments(getattr(args, name, None)):
            statements = _parse_fragment(name, text) if kind == "expression" else parse_input(text)
            if kind == "expression" and len(statements) != 1:
                raise readonly.ReadOnlyViolation(f"refused: {name} closes its clause and adds statements",
                                                 "give one expression; nothing was run")
            for st in statements:
                if mode is AccessMode.DRY_RUN:
                    readonly.check_escapes(st)  # a rollback undoes the rest (e.g. pg_dump's set_config)
                else:
                    readonly.check_calls(st.tree)


@contextmanager
def plan_session(db: Database, statements: list[Statement]) -> Iterator[Connection]:
    """Where admitted statements are planned (see the module docstring)."""
    from agent19.safety import readonly

    if all(readonly.is_read(st) for st in statements):
        with reader(db) as conn:
            yield conn
    else:
        with db.read() as conn:
            yield conn


@contextmanager
def reader(db: Database) -> Iterator[Connection]:
    """A READ ONLY transaction as the login user reads run under; always rolled back."""
    with reader_database(db).read() as conn:
        yield conn


def cap_timeout_ms(conn: Connection, requested_ms: int | None) -> int | None:
    """A caller's timeout, never above the session's statement_timeout (0 there means none)."""
    if requested_ms is None:
        return None
    row: Any = conn.execute("SELECT setting::bigint AS ms FROM pg_settings WHERE name = 'statement_timeout'"
                            ).fetchone()
    session_ms = int(row["ms"]) if row else 0
    return min(requested_ms, session_ms) if session_ms > 0 else requested_ms


def admit_trial(db: Any, sql: str) -> str | None:
    """The choke point for a trial of ``sql`` (:func:`admit`, ``Purpose.TRIAL``), with the catalog read kept:
    returns the fingerprint of the code the server may run, read in the same snapshot as the catalog the
    statements were judged on — pass it to :func:`agent19.safety.aftermath.trial`, which compares it after the
    rollback."""
    from agent19.safety.trial import TrialCatalog

    statements = parse_input(sql)
    with db.read() as conn:
        catalog = TrialCatalog(conn, statements)
        admit_parsed(db, statements, Purpose.TRIAL, catalog=catalog)
    return catalog.code
