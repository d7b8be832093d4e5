"""What a migration's statements do to the search_path its unqualified names are looked up on, as the server does.

``SET search_path`` sets the session's path; ``SET LOCAL search_path`` and ``set_config('search_path', …, true)``
set it until the end of the transaction; ``set_config(…, false)`` is a plain ``SET``. A ``ROLLBACK`` undoes every
SET of its transaction (``ROLLBACK TO SAVEPOINT``: those after the savepoint), a ``COMMIT`` ends the LOCAL one.
The state lives in :class:`~agent19.migrate.classification.state.MigrationState` (``path``, ``local_path``,
``tx_start``, ``savepoints``); :meth:`~agent19.migrate.classification.state.Context.search_path` reads it.

A ``SET LOCAL`` outside a transaction block stays in effect here (no COMMIT ends it): the dry run, one transaction,
runs it so; an autocommit run would not (PostgreSQL warns and ignores it).
"""

from __future__ import annotations

from typing import Any

from agent19.migrate.classification.state import DEFAULT_SCHEMA, Context
from agent19.sqltree import fold_identifier

_DEFAULT: list[str] = []  # RESET / SET … TO DEFAULT: the session's own path


def split_path(text: str) -> list[str]:
    """A search_path value as text (``'"$user", public'``) → its schemas, read as the server reads it: comma
    separated, an unquoted name folded to lower case (``A``-``Z`` only, as the server does in a UTF8 database), a
    double-quoted one as written (``""`` a quote)."""
    out: list[str] = []
    i, n = 0, len(text)
    while i < n:
        while i < n and text[i] in " \t\n\r":
            i += 1
        if i < n and text[i] == '"':
            j, name = i + 1, []
            while j < n:
                if text[j] == '"':
                    if j + 1 < n and text[j + 1] == '"':
                        name.append('"')
                        j += 2
                        continue
                    break
                name.append(text[j])
                j += 1
            out.append("".join(name))
            i = j + 1
        else:
            j = text.find(",", i)
            j = n if j < 0 else j
            word = fold_identifier(text[i:j].strip())
            if word:
                out.append(word)
            i = j
        while i < n and text[i] != ",":
            i += 1
        i += 1
    return out


def _resolve(ctx: Context, schemas: list[str]) -> list[str] | None:
    """``schemas`` as written → the path state keeps: ``"$user"`` is the login's schema when the catalog read says
    who that is (else skipped), ``pg_catalog`` left out (it holds no application table); ``pg_temp`` kept where it
    is listed; ``[]`` (RESET, DEFAULT): None, the session's own."""
    if not schemas:
        return None
    role = ctx.catalog.role if ctx.catalog is not None else None
    path = [role if s == "$user" else s for s in schemas if s != "pg_catalog"]
    return [s for s in path if s and s != "$user"] or [DEFAULT_SCHEMA]


def set_path(ctx: Context, schemas: list[str], *, local: bool) -> None:
    """A ``SET [LOCAL] search_path`` (or ``set_config``) to ``schemas`` (``[]``: RESET or DEFAULT)."""
    state = ctx.state
    path = _resolve(ctx, schemas)
    if local:  # until the transaction ends: the session's value (or the transaction's SET) comes back then
        state.local_path = path if path is not None else list(ctx.session_path())
        return
    state.path = path
    state.local_path = None  # a SET after a SET LOCAL in the same transaction replaces it, and outlives the COMMIT


def transaction(ctx: Context, f: dict[str, Any]) -> None:
    """A transaction statement's effect on the path: BEGIN remembers it, ROLLBACK restores it, COMMIT (or PREPARE)
    ends the LOCAL one; SAVEPOINT, ROLLBACK TO and RELEASE likewise for a savepoint."""
    state, kind = ctx.state, f.get("kind", "")
    if kind in ("TRANS_STMT_BEGIN", "TRANS_STMT_START"):
        if state.tx_start is None:
            state.tx_start = (state.path,)
            state.savepoints = []
    elif kind in ("TRANS_STMT_COMMIT", "TRANS_STMT_PREPARE", "TRANS_STMT_ROLLBACK"):
        if kind == "TRANS_STMT_ROLLBACK" and state.tx_start is not None:
            state.path = state.tx_start[0]
        state.local_path = None
        state.savepoints = []
        state.tx_start = (state.path,) if f.get("chain") else None
    elif kind == "TRANS_STMT_SAVEPOINT":
        state.savepoints.append((f.get("savepoint_name", ""), state.path, state.local_path))
    elif kind in ("TRANS_STMT_ROLLBACK_TO", "TRANS_STMT_RELEASE"):
        name = f.get("savepoint_name", "")
        at = next((i for i in range(len(state.savepoints) - 1, -1, -1) if state.savepoints[i][0] == name), None)
        if at is None:
            return
        if kind == "TRANS_STMT_ROLLBACK_TO":  # the savepoint stays
            _, state.path, state.local_path = state.savepoints[at]
            del state.savepoints[at + 1:]
        else:
            del state.savepoints[at:]


def set_statement(ctx: Context, f: dict[str, Any]) -> None:
    """``SET [LOCAL] search_path …`` / ``RESET search_path`` / ``SET search_path TO DEFAULT``."""
    args = [a.get("A_Const", {}).get("sval", {}).get("sval", "") for a in f.get("args", [])]
    if f.get("kind") in ("VAR_SET_DEFAULT", "VAR_RESET"):
        args = _DEFAULT
    set_path(ctx, args, local=bool(f.get("is_local")))


def set_config_calls(ctx: Context, select: dict[str, Any]) -> None:
    """``SELECT set_config('search_path', 'public', false)`` (``true``: until the transaction ends) in a SELECT's
    target list, with constant arguments (any other value is not known before it runs)."""
    for target in select.get("targetList", []):
        call = target.get("ResTarget", {}).get("val", {}).get("FuncCall", {})
        names = [n.get("String", {}).get("sval") for n in call.get("funcname", [])]
        args = [a.get("A_Const") for a in call.get("args", [])]
        if names[-1:] != ["set_config"] or names[:-1] not in ([], ["pg_catalog"]) or len(args) != 3 or None in args:
            continue
        name, value, is_local = args
        if name.get("sval", {}).get("sval", "").lower() != "search_path" or "sval" not in value:
            continue
        if "boolval" not in is_local:
            continue
        set_path(ctx, split_path(value["sval"].get("sval", "")), local=bool(is_local["boolval"].get("boolval")))


def transaction_end_paths(statements: list[Any], catalog: Any) -> dict[int, str | None]:
    """For a run of ``statements`` inside one transaction of its own (the dry run: the migration's COMMIT and
    ROLLBACK are not run), the search_path each COMMIT/ROLLBACK(/TO SAVEPOINT, PREPARE) of the migration leaves where
    it differs from the one before it: the path as ``set_config`` text, None for the session's own (the value the
    run started with). Running ``set_config('search_path', it, true)`` there keeps the rest of the run on the path
    the migration will have (a ``SET LOCAL`` ended, a rolled-back ``SET`` undone)."""
    ctx = Context(catalog=catalog, pg_major=0, session_utc=True)
    out: dict[int, str | None] = {}
    for stmt in statements:
        state = ctx.state
        before = state.local_path if state.local_path is not None else state.path
        if stmt.node == "TransactionStmt":
            transaction(ctx, stmt.fields)
            after = state.local_path if state.local_path is not None else state.path
            if after != before:
                out[stmt.index] = None if after is None else ", ".join(
                    '"' + s.replace('"', '""') + '"' for s in after)
        elif stmt.node == "VariableSetStmt" and stmt.fields.get("name") == "search_path":
            set_statement(ctx, stmt.fields)
        elif stmt.node == "SelectStmt" and stmt.may_contain("FuncCall"):
            set_config_calls(ctx, stmt.fields)
    return out
