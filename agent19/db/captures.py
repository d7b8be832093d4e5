"""Functions and operators that would take the place of pg_catalog's in agent19's own queries.

agent19's sessions search ``pg_catalog`` first (:mod:`agent19.db.catalog_first`), but the server chooses a function
or an operator by its arguments too: an *exact* match in any schema of the search_path beats a ``pg_catalog``
candidate that needs a coercion. So a ``public.||(text, bigint)``, a ``public.replace(name, text, text)`` or an
operator ``public.>=(oid, integer)`` is what agent19's catalog reads would call — as agent19's login (review r27b
k01: a database owner's overload forged a confirmation report's row count and could run anything as a superuser
login). agent19's reads between a migration's statements already run under ``pg_catalog, pg_temp``
(``catalog_first.read_own``); its other reads keep the login's path (user names resolve through it, and the catalog's
``pg_get_*def`` functions write names as the user's sessions see them), so they are protected here instead:

* **a capture** is a function or operator in a schema of the session's path other than ``pg_catalog`` whose name is
  also a ``pg_catalog`` function's or operator's, and which ``pg_catalog`` has no twin of (same argument types: then
  the path's order decides, and ``pg_catalog`` is searched first) — whatever its argument types: a literal in
  agent19's SQL matches a domain or an enum of the owner's as well as a built-in type (review r28 F1);
* **at the start of every session** (:func:`refuse_untrusted`, from ``Database._configure`` and
  ``catalog_first.connect``; for a pooled session, when a call takes it: :func:`recheck`): a capture owned by
  neither a superuser nor the login itself — someone who could change what runs as the login; for an operator its
  function's owner too, for an aggregate its functions' — is refused: agent19 runs nothing there and says what to
  do. One owned by the login or a superuser (a deliberate override, an extension's functions) is trusted, and
  remembered as the session's *baseline*;
* **after user SQL ran on a session** (a migration replayed, the ``up`` of a rollback check), before agent19's
  catalog snapshot reads it: a capture not in the baseline — created by that SQL, whoever owns it (a superuser
  login's migration makes superuser-owned ones) — stops the read (:func:`guard`, one round trip).

A check is the interim (review r28): a capture planted by another session *during* a call is seen only by the next
call, and the refusal turns agent19 off wherever someone may create in a schema on its path. The end state is
agent19's SQL qualified everywhere, as the confirmation path's is (``QUALIFIED_SQL``, tests/test_qualified_sql.py),
or run under ``pg_catalog, pg_temp`` (``catalog_first.read_own``, ``own_path``) — as the tools declared
``catalog_only`` are, whose sessions this check does not read (``catalog_first.catalog_only``).

Every query here names its functions, operators and types ``pg_catalog.``-qualified: it resolves nothing through the
path it inspects.
"""

from __future__ import annotations

import weakref
from typing import TYPE_CHECKING, Any

from agent19.errors import Agent19Error

if TYPE_CHECKING:
    import psycopg

CATALOG = "'11'::pg_catalog.oid"  # pg_catalog's namespace oid (fixed by the server)
EQ, NE = "OPERATOR(pg_catalog.=)", "OPERATOR(pg_catalog.<>)"
SESSION_SCHEMAS = "pg_catalog.current_schemas(false)"
"""The schemas of the session's search_path that exist (read under that path)."""


def trusted(owner: str) -> str:
    """Owned by a superuser or by the login itself (``SESSION_USER``: a database's ``SET role`` must not make
    another role's code the login's own — review r28 F5)."""
    return (f"COALESCE((SELECT u.rolsuper OR u.rolname {EQ} SESSION_USER FROM pg_catalog.pg_roles u "
            f"WHERE u.oid {EQ} {owner}), false)")


def _fn_trusted(fn: str) -> str:
    """The function ``fn`` (an aggregate's transition or final function; none: 0 or NULL) is :func:`trusted`."""
    return (f"({fn} IS NULL OR {fn} {EQ} '0'::pg_catalog.oid OR "
            f"{trusted(f'(SELECT g.proowner FROM pg_catalog.pg_proc g WHERE g.oid {EQ} {fn})')})")


def _q(name: str) -> str:
    return f"pg_catalog.quote_ident({name}::pg_catalog.text)"


def captures_sql(schemas: str = SESSION_SCHEMAS) -> str:
    """Every capture in ``schemas`` (an SQL ``name[]``): ``oid``, ``what`` (for a message) and ``trusted`` (owned by
    a superuser or the current user; for an operator, its function too)."""
    # the names pg_catalog has, hashed once: a database with 20,000 functions of its own took 240 ms probing the
    # index for each of them; the few that share a name are then looked at closely
    return f"""
WITH builtin AS MATERIALIZED (SELECT DISTINCT b.proname FROM pg_catalog.pg_proc b
                               WHERE b.pronamespace {EQ} {CATALOG}),
     named AS MATERIALIZED (SELECT p.* FROM pg_catalog.pg_proc p JOIN builtin ON builtin.proname {EQ} p.proname
                             WHERE p.pronamespace {NE} {CATALOG})
SELECT p.oid, pg_catalog.concat('function ', {_q('n.nspname')}, '.', {_q('p.proname')}, '(',
              pg_catalog.oidvectortypes(p.proargtypes), ') owned by ',
              {_q('pg_catalog.pg_get_userbyid(p.proowner)')}) AS what,
       {trusted('p.proowner')} AND {_fn_trusted('ag.aggtransfn::pg_catalog.oid')}
           AND {_fn_trusted('ag.aggfinalfn::pg_catalog.oid')} AS trusted
  FROM named p JOIN pg_catalog.pg_namespace n ON n.oid {EQ} p.pronamespace
  LEFT JOIN pg_catalog.pg_aggregate ag ON ag.aggfnoid::pg_catalog.oid {EQ} p.oid
 WHERE n.nspname {EQ} ANY ({schemas})
   AND NOT EXISTS (SELECT FROM pg_catalog.pg_proc b WHERE b.pronamespace {EQ} {CATALOG} AND b.proname {EQ} p.proname
                      AND b.proargtypes {EQ} p.proargtypes)
UNION ALL
SELECT o.oid, pg_catalog.concat('operator ', {_q('n.nspname')}, '.', o.oprname, '(',
              CASE WHEN o.oprleft {EQ} '0'::pg_catalog.oid THEN 'NONE'
                   ELSE pg_catalog.format_type(o.oprleft, NULL) END, ', ',
              pg_catalog.format_type(o.oprright, NULL), ') owned by ',
              {_q('pg_catalog.pg_get_userbyid(o.oprowner)')}) AS what,
       {trusted('o.oprowner')} AND {trusted('f.proowner')} AS trusted
  FROM pg_catalog.pg_operator o JOIN pg_catalog.pg_namespace n ON n.oid {EQ} o.oprnamespace
  JOIN pg_catalog.pg_proc f ON f.oid {EQ} o.oprcode::pg_catalog.oid
 WHERE n.nspname {EQ} ANY ({schemas}) AND o.oprnamespace {NE} {CATALOG}
   AND EXISTS (SELECT FROM pg_catalog.pg_operator b WHERE b.oprnamespace {EQ} {CATALOG} AND b.oprname {EQ} o.oprname)
   AND NOT EXISTS (SELECT FROM pg_catalog.pg_operator b WHERE b.oprnamespace {EQ} {CATALOG}
                      AND b.oprname {EQ} o.oprname AND b.oprleft {EQ} o.oprleft AND b.oprright {EQ} o.oprright)"""


AT_START = f"(SELECT pg_catalog.json_agg(c) FROM ({captures_sql()}) c)"
"""A column for a session's first read (``Database._configure``, ``catalog_first.pin``): its captures as JSON."""

_baselines: weakref.WeakKeyDictionary[Any, frozenset[int]] = weakref.WeakKeyDictionary()


class CapturedPath(Agent19Error):
    """Functions or operators someone else owns would run as agent19's login in its own queries."""


def refuse_untrusted(conn: psycopg.Connection[Any], found: list[dict[str, Any]] | None) -> None:
    """Raise :class:`CapturedPath` when ``found`` (the :data:`AT_START` column) holds an untrusted capture; else
    remember the trusted ones as ``conn``'s baseline."""
    found = found or []
    untrusted = [c["what"] for c in found if not c["trusted"]]
    if untrusted:
        login = conn.info.user
        shown = "; ".join(untrusted[:5]) + (f" and {len(untrusted) - 5} more" if len(untrusted) > 5 else "")
        raise CapturedPath(
            f"agent19 runs nothing on this database as {login}: the search_path of its sessions reaches {shown}. "
            "Named like a pg_catalog built-in without being its twin, such an overload is what the server "
            f"would call instead of the built-in in agent19's own catalog reads, running its code as {login}, and "
            "its owner may change that code",
            "drop it or move it to a schema outside this login's search_path (ALTER FUNCTION/OPERATOR ... SET "
            f"SCHEMA), make {login} or a superuser its owner if it is trusted, or give {login} a search_path "
            f"without that schema (ALTER ROLE {login} SET search_path = ...)")
    _baselines[conn] = frozenset(int(c["oid"]) for c in found)


def _new_sql(conn: psycopg.Connection[Any]) -> str:
    known = ",".join(str(o) for o in sorted(_baselines.get(conn, frozenset()))) or "0"
    return (f"SELECT pg_catalog.string_agg(c.what, '; ') FROM ({captures_sql()}) c "
            f"WHERE c.oid {NE} ALL ('{{{known}}}'::pg_catalog.oid[])")


def recheck(conn: psycopg.Connection[Any], also: str = "NULL") -> Any:
    """A pooled session taken by a new call (one round trip): refuse an untrusted capture, committed by anyone
    since the session was last checked, and take the trusted ones as its baseline again (the login may have made
    one in a call since). ``also``: an SQL expression read in the same round trip (its functions qualified); its
    value is returned."""
    from psycopg.rows import tuple_row

    row = conn.cursor(row_factory=tuple_row).execute(f"SELECT {AT_START}, {also}").fetchone()
    refuse_untrusted(conn, row[0] if row else None)
    return row[1] if row else None


def guard(conn: psycopg.Connection[Any]) -> None:
    """Before agent19 reads ``conn`` with its path (one round trip), after user SQL ran on it: raise
    :class:`CapturedPath` when the path reaches a capture not in the session's baseline, whoever owns it (a
    superuser login's migration makes superuser-owned ones). A session agent19 did not configure is checked as a
    new one (:func:`refuse_untrusted`)."""
    if conn not in _baselines:
        recheck(conn)
        return
    from psycopg.rows import tuple_row

    row = conn.cursor(row_factory=tuple_row).execute(_new_sql(conn)).fetchone()
    if row and row[0]:
        raise CapturedPath(
            f"{row[0]} appeared on the search_path of agent19's session (made by the SQL this session ran before): "
            "named like a pg_catalog built-in without being its twin, the server would call it instead of the "
            "built-in in agent19's own catalog reads, running code nobody judged as the login; agent19 stopped "
            "before reading",
            "create such overloads in a schema outside the search_path of agent19's login (or let a superuser own "
            "one that is trusted); a dry run with --isolated runs a migration that makes one in a throwaway copy")
