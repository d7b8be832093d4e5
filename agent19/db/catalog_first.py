"""agent19 reads the server's catalog by unqualified names (``pg_proc``, ``pg_locks``, ``set_config``…): its own
queries must resolve them in ``pg_catalog``.

The server searches ``pg_catalog`` before the ``search_path``'s schemas unless the path lists it explicitly after one
of them (``ALTER ROLE app SET search_path = evil, pg_catalog``, or ``ALTER DATABASE … SET``, or the DSN's
``options``); then ``evil.pg_proc`` — a view any role may create in a schema it owns — answers agent19's guards, and
``evil.format_type(oid, integer)`` runs as agent19's login (review r26b j07). Likewise a temporary relation named like
a catalog one (``CREATE TEMP TABLE pg_locks``) is searched before ``pg_catalog``: ``pg_temp`` comes first for
relations unless listed. So:

* **every session agent19 opens on a user's server searches ``pg_catalog`` first** (:func:`pin`): when the session's
  path lists ``pg_catalog`` after another schema, it is set to the same list without that ``pg_catalog`` entry, and
  the server then searches ``pg_catalog`` implicitly first. ``current_schema()`` and where an unqualified ``CREATE``
  puts an object are unchanged (the first listed schema that exists; ``pg_catalog`` is never one a user creates in).
  :meth:`agent19.db.connection.Database._configure` does it for the pool and ``Database.connect()`` (the path read in
  the round trip it makes anyway), :func:`connect` for every other session (scratch databases, watchers, copies…);
  ``tests/test_session_openers.py`` fails on a ``psycopg.connect(`` anywhere else, bar a short allow-list;
* the trial guard's one catalog read (:data:`agent19.safety.trial.Q_TRIAL`) reads the ``search_path`` too, with
  ``pg_catalog.``-qualified functions, and refuses to judge code when it searches another schema before
  ``pg_catalog`` (:func:`shadowing`): defence in depth, for a path set on the session after it was configured;
* a dry run reads it again after every statement, with the session's temporary relations named ``pg_*``
  (:data:`agent19.migrate.dryrun.cluster_guard.Q_SESSION_READS`): a statement that makes such a relation is rolled
  back and refused; one that leaves a path listing ``pg_catalog`` after another schema (a ``RESET search_path`` back
  to a database's ``app, pg_catalog``) runs, and the path is pinned again for the statements after it, in the
  target's transaction and in a scratch database's replay (:func:`agent19.migrate.dryrun.cluster_guard.pin_path`).

The read-only guard's walk (:mod:`agent19.safety.readonly_catalog`) still reads names through the session's path
(an owner's ``search_path = public, pg_catalog`` must keep resolving the owner's tables), and it needs no refusal:
it judges one statement per call on a pooled session configured (so pinned) after the last call's reset, and
read-only SQL cannot change the path (no SET; ``set_config`` is refused).

Searching ``pg_catalog`` first protects only names found by name: a function or operator is also chosen by its
arguments, and an exact match in any schema of the path beats a ``pg_catalog`` one that needs a coercion. So inside a
dry run's transaction, where the migration under test can create such an overload, agent19's reads between statements
run with :data:`OWN_PATH` (:func:`read_own`), as do the trial guard's one read, the aftermath's state and the read-only
guard's walk (its reads of the statement's own names qualify everything instead). The confirmation path's reads
(impact report, ledger, archive, step 2's recount) name every function, operator and type qualified instead: the
modules that declare ``QUALIFIED_SQL = True`` (``tests/test_qualified_sql.py`` parses their statements). Its other
reads still resolve through the login's path (review r27b k01: a database owner's ``public.||(name, name)``): they
should all run under :data:`OWN_PATH` (resolving user names against the path read before) or be qualified too. The
tools that read only the catalog and statistics do already: declared ``catalog_only`` in the tool registry, every
session they use searches :data:`OWN_PATH` for the whole call (:func:`catalog_only`).

A user who overrides a built-in on purpose (``public.format_type`` before ``pg_catalog``) gets the built-in in
agent19's sessions, their own function in theirs.
"""

from __future__ import annotations

import contextvars
from collections.abc import Iterator
from contextlib import contextmanager
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:  # the driver loads where a session is made (agent19.db.catalog, which reads SEARCH_PATH, need not)
    import psycopg

SEARCH_PATH = "pg_catalog.current_setting('search_path')"
"""The session's search_path, read without resolving a name through it."""
OWN_PATH = "pg_catalog, pg_temp"
"""The search_path of agent19's own reads between a migration's statements (:func:`own_reads`): no schema a user can
create in, so no overload of theirs is a candidate (``pg_temp`` is never searched for functions or operators, and
last for relations and types)."""
USER_PATH = "pg_catalog.current_setting('agent19.user_path')"
"""Inside :func:`own_reads`: the session's search_path as it was before them."""


_CATALOG_ONLY: contextvars.ContextVar[bool] = contextvars.ContextVar("agent19_catalog_only", default=False)


@contextmanager
def catalog_only() -> Iterator[None]:
    """Every session agent19 opens or takes inside the block (this thread's context) searches :data:`OWN_PATH` only,
    for the whole of its use: for a tool that reads the server's catalog and statistics and no name of the user's
    through the login's path, and runs no user SQL (``ToolSpec.catalog_only``). No schema a user can create in is
    on the path, so no overload of anyone's — made before the call or while it runs, say while a lock holds it
    (review r28 F2) — is a candidate for what its queries call, and the check of the path's captures
    (:mod:`agent19.db.captures`), which refuses a database where one is untrusted, is not needed there (r28 F8)."""
    token = _CATALOG_ONLY.set(True)
    try:
        yield
    finally:
        _CATALOG_ONLY.reset(token)


def reading_catalog_only() -> bool:
    """Inside :func:`catalog_only`."""
    return _CATALOG_ONLY.get()


SET_OWN_PATH = f"pg_catalog.set_config('search_path', '{OWN_PATH}', false)"
"""A select-list item that gives the session :data:`OWN_PATH` (:func:`catalog_only`)."""


def own_reads(in_transaction: bool) -> tuple[tuple[str, str], str]:
    """The statements that put agent19's own reads under :data:`OWN_PATH` — (save the session's path, set it), sent
    before them in the same pipeline — and the one that gives the session its path back, sent after them.

    Searching ``pg_catalog`` first (:func:`pin`) is not enough where names are looked up by their arguments: the
    server prefers an *exact* match in any schema of the path to a ``pg_catalog`` candidate that needs a coercion,
    so a ``public.replace(name, text, text)`` or an operator ``public.>=(oid, integer)`` — one a migration under test
    creates, in its own transaction — would be what agent19's reads of that transaction call (review r27b k14, k06).
    ``in_transaction``: settings local to it (a rolled-back savepoint undoes them with the rest), else the session's.
    """
    local = "true" if in_transaction else "false"
    return ((f"SELECT pg_catalog.set_config('agent19.user_path', {SEARCH_PATH}, {local})",
             f"SELECT pg_catalog.set_config('search_path', '{OWN_PATH}', {local})"),
            f"SELECT pg_catalog.set_config('search_path', {USER_PATH}, {local})")


def read_own(conn: psycopg.Connection[Any], queries: tuple[str | tuple[str, Any], ...]) -> list[psycopg.Cursor[Any]]:
    """Run ``queries`` (a query, or a query and its parameters) in one round trip under :data:`OWN_PATH`
    (:func:`own_reads`) and give the session its path back; their cursors, results fetched (pipeline mode, or one
    after the other where the client library has none). The queries read :data:`USER_PATH` for the session's own
    path. An error leaves the path to the transaction's rollback (in autocommit: set back before it is raised)."""
    import psycopg as pg
    from psycopg import Pipeline

    in_transaction = conn.info.transaction_status == pg.pq.TransactionStatus.INTRANS
    (save, pin), restore = own_reads(in_transaction)
    items = [(q, None) if isinstance(q, str) else q for q in queries]
    try:
        if not Pipeline.is_supported():
            conn.execute(save)
            conn.execute(pin)
            cursors = [conn.execute(q, p) for q, p in items]
            conn.execute(restore)
            return cursors
        with conn.pipeline():
            conn.execute(save)
            conn.execute(pin)
            cursors = [conn.cursor().execute(q, p) for q, p in items]
            conn.execute(restore)
        return cursors
    except pg.Error:
        if not in_transaction and not conn.closed and conn.info.transaction_status == pg.pq.TransactionStatus.IDLE:
            conn.execute(restore)  # a session's setting outlives the failed read
        raise


@contextmanager
def own_path(conn: psycopg.Connection[Any]) -> Iterator[None]:
    """agent19's reads inside the block run under :data:`OWN_PATH` (as :func:`read_own`'s, for reads that are not
    one batch: a statement's measurement in execute mode, right after the statement, where an overload it made
    would otherwise be what they call); the session's path is given back at the end (in a transaction that failed,
    its rollback does)."""
    import psycopg as pg

    in_transaction = conn.info.transaction_status == pg.pq.TransactionStatus.INTRANS
    (save, pin), restore = own_reads(in_transaction)
    conn.execute(save)
    conn.execute(pin)
    try:
        yield
    finally:
        if not conn.closed and conn.info.transaction_status in (pg.pq.TransactionStatus.INTRANS,
                                                                 pg.pq.TransactionStatus.IDLE):
            conn.execute(restore)


def shadowing(path: str) -> str | None:
    """The schema searched before ``pg_catalog`` when ``path`` lists ``pg_catalog`` after it (``"$user"`` counts:
    it may name a schema), else None. ``pg_temp`` before ``pg_catalog`` is left to the session check: a new
    session has no temporary relations."""
    from agent19.migrate.classification.session_path import split_path  # the server's reading of a path

    names = split_path(path)
    if "pg_catalog" not in names:
        return None
    return next((n for n in names[:names.index("pg_catalog")] if n != "pg_temp"), None)


def refusal(path: str, schema: str) -> str:
    return (f"the session's search_path ({path}) searches schema {schema} before pg_catalog: agent19 reads the "
            f"catalog by its names (pg_proc, pg_locks, set_config...), which would then resolve to {schema}'s "
            "objects. Put pg_catalog first, or leave it out of the path (the server then searches it first): "
            "ALTER ROLE <login> SET search_path = pg_catalog, ...")


def quote(name: str) -> str:
    """``name`` as a double-quoted identifier in a path (``"$user"`` and ``"pg_temp"`` keep their meaning quoted)."""
    return '"' + name.replace('"', '""') + '"'


def unshadowed(path: str) -> str | None:
    """The path to set instead of ``path`` when it searches a schema before ``pg_catalog`` (:func:`shadowing`): the
    same schemas without the explicit ``pg_catalog`` entry, each quoted; else None (nothing to change)."""
    if shadowing(path) is None:
        return None
    from agent19.migrate.classification.session_path import split_path

    return ", ".join(quote(n) for n in split_path(path) if n != "pg_catalog")


def pin(conn: psycopg.Connection[Any], path: str | None = None, own: bool | None = None) -> None:
    """Make ``conn``'s session search ``pg_catalog`` first (:func:`unshadowed`); ``path``: the session's
    search_path when the caller read it already (else read here, one round trip). A second round trip only when
    the path must change. ``own`` (default: inside :func:`catalog_only`): :data:`OWN_PATH` instead. A connection not
    in autocommit is left as idle as it was found (the change committed)."""
    import psycopg
    from psycopg.rows import tuple_row

    idle = conn.info.transaction_status == psycopg.pq.TransactionStatus.IDLE
    own = reading_catalog_only() if own is None else own
    if own:  # nothing of a user's schemas on the path: no capture to look for
        conn.execute(f"SELECT {SET_OWN_PATH}")
    elif path is None:  # a session of its own: its captures are read with its path (Database._configure reads both)
        from agent19.db import captures

        row = conn.cursor(row_factory=tuple_row).execute(f"SELECT {SEARCH_PATH}, {captures.AT_START}").fetchone()
        path = str(row[0]) if row else ""
        captures.refuse_untrusted(conn, row[1] if row else None)
    new = None if own else unshadowed(path or "")
    if new is not None:
        conn.execute("SELECT pg_catalog.set_config('search_path', %s, false)", (new,))
    if idle and not conn.autocommit and conn.info.transaction_status == psycopg.pq.TransactionStatus.INTRANS:
        conn.commit()


def connect(conninfo: str = "", **kwargs: Any) -> psycopg.Connection[Any]:
    """``psycopg.connect`` for a session on a user's server (or a database made from it: a login's settings
    apply in every database), pinned (:func:`pin`) before it is returned."""
    import psycopg

    conn: psycopg.Connection[Any] = psycopg.connect(conninfo, **kwargs)
    try:
        pin(conn)
    except BaseException:
        conn.close()
        raise
    return conn
