"""What a rolled-back trial left behind outside its transaction: the after-check every face that runs one shares.

A trial (``agent19 sql --mode dry-run`` of a write, ``explain --analyze`` of a write, confirm_destructive's
measurement) runs user code in a transaction that is then rolled back. The screen before it
(:mod:`agent19.safety.trial`) cannot see every path to code — a CHECK constraint, a domain, an index expression,
a policy, an operator — and the rollback does not undo what that code did outside the transaction. So
:func:`trial` reads, in one round trip before the statement and one after the rollback:

* the login's sequences: one set back (``setval``, or to not-called) is an **error**, named with the value to
  restore (the comparison is the dry run's: :func:`agent19.migrate.dryrun.schema_diff.position`); nothing is
  restored automatically. One ``nextval`` moved forward is said with the amount and the share of its range now
  used (``advanced``); an **error** when that reached the end of the range (the application's next ``nextval``
  fails) or used a noticeable share of what was left. Sequences the login may ``UPDATE`` (so ``setval``) but not
  read show no value (``pg_sequences.last_value`` is NULL): they cannot be compared, and the result says how many;
* the other sessions of the same role in the same database: when the database holds code of its own that the
  statement may have run (functions outside extensions), sessions gone afterwards are a **warning** — a session
  may have ended on its own, so it cannot be attributed with certainty;
* the fingerprint of the code the server may run (:data:`agent19.safety.fingerprint.CODE`), compared with the
  one read with the guard's catalog read (``checked``; else at the trial's start): another session changed a
  function, trigger, constraint… while the trial ran, so what the server ran is not what the guard checked — an
  **error** (the result cannot be trusted; nothing can stop the server from running it).
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from contextlib import contextmanager
from typing import TYPE_CHECKING, Any

from pydantic import BaseModel, Field

from agent19.db import catalog_first
from agent19.db.models import Sequence
from agent19.safety.fingerprint import CHANGED, CODE

if TYPE_CHECKING:
    from agent19.db.connection import Database

GRACE_S = 0.1
"""How long a session terminated by the trial's code may take to leave pg_stat_activity (the signal is
asynchronous): the sessions are read once more after it when none had gone yet."""

_SESSIONS = """ARRAY(SELECT pid FROM pg_stat_activity  -- this database's: the role's elsewhere come and go unseen
              WHERE usename = session_user AND datname = current_database() AND pid <> pg_backend_pid()
                AND backend_type = 'client backend'
              ORDER BY pid) AS sessions"""
Q_STATE = f"""
SELECT (SELECT coalesce(json_agg(json_build_object('schema', s.schemaname, 'name', s.sequencename,
                                                   'data_type', s.data_type::text, 'last_value', s.last_value,
                                                   'max_value', s.max_value, 'increment', s.increment_by)),
                        '[]'::json)
          FROM pg_sequences s) AS sequences,
       (SELECT count(*) FROM pg_class c
         WHERE c.relkind = 'S' AND NOT pg_is_other_temp_schema(c.relnamespace)
           AND CASE WHEN c.relkind = 'S'  -- the privilege functions raise on other relations: evaluated after
                    THEN has_sequence_privilege(c.oid, 'UPDATE') AND NOT has_sequence_privilege(c.oid, 'SELECT,USAGE')
               END
       ) AS unreadable,
       {_SESSIONS},
       EXISTS (SELECT 1 FROM pg_proc p
                WHERE p.oid >= 16384 AND NOT EXISTS (
                      SELECT 1 FROM pg_depend d WHERE d.classid = 'pg_proc'::regclass AND d.objid = p.oid
                         AND d.deptype = 'e')) AS user_code,
       session_user AS role,
       {CODE} AS code
"""
Q_SESSIONS = f"SELECT {_SESSIONS}"


class Aftermath(BaseModel):
    """What the server showed after a rolled-back trial, outside its transaction."""

    errors: list[str] = Field(default=[], description="changes the rollback did not undo, e.g. a sequence set back")
    warnings: list[str] = Field(default=[], description="what may have been the trial's doing, e.g. sessions of "
                                "the same role that ended during it")
    notes: list[str] = Field(default=[], description="what could not be compared, e.g. sequences the login may "
                             "not read")
    advanced: list[str] = Field(default=[], description="sequences nextval moved forward (not rolled back), with the "
                                "amount and the share of the range used; used up (or nearly): also in errors")

    def lines(self) -> list[str]:
        return ([f"error: {e}" for e in self.errors] + [f"warning: {w}" for w in self.warnings]
                + [f"warning: left on the target: {a}" for a in self.advanced if a not in self.errors]
                + [f"note: {n}" for n in self.notes])


def state(conn: Any) -> dict[str, Any]:
    """:data:`Q_STATE`, read as the guard reads the fingerprint it is compared with (pg_catalog only:
    :func:`agent19.db.catalog_first.read_own`)."""
    (cur,) = catalog_first.read_own(conn, (Q_STATE,))
    return dict(cur.fetchone())  # the pool's sessions return rows as dicts


def _sequences(state: dict[str, Any]) -> dict[str, Sequence]:
    return {f"{s['schema']}.{s['name']}": Sequence(**s) for s in state["sequences"]}


def _quoted(name: str) -> str:
    """``schema.name`` as setval's text argument: each part an identifier, the whole an SQL literal."""
    parts = name.split(".", 1)
    ident = ".".join(p if p.isidentifier() and p == p.lower() else '"' + p.replace('"', '""') + '"' for p in parts)
    return "'" + ident.replace("'", "''") + "'"


def compare(start: dict[str, Any], end: dict[str, Any], sessions_after: list[int],
            checked: str | None = None) -> Aftermath:
    """The errors, warnings and notes from the state before the trial to the state after its rollback;
    ``checked``: the code fingerprint read with the guard's catalog read (else ``start``'s)."""
    from agent19.migrate.dryrun.schema_diff import position

    out = Aftermath()
    if (checked or start["code"]) != end["code"]:
        out.errors.append(CHANGED)
    before, after = _sequences(start), _sequences(end)
    for name in sorted(before.keys() & after.keys()):
        a, b = before[name], after[name]
        moved = position(name, a, b, backward_is_error=True, cause="setval outside the transaction", measured=True)
        if moved and "moved backward" not in moved[0].detail:  # forward: nextval handed numbers out
            out.advanced.append(f"sequence {name} {moved[0].detail}")
            if moved[0].severity == "error":
                out.errors.append(out.advanced[-1])
        elif any(d.severity == "error" for d in moved):
            to = "its start (not called)" if b.last_value is None else str(b.last_value)
            out.errors.append(f"the statement set sequence {name} back from {a.last_value} to {to} outside the "
                              f"transaction (the rollback does not undo it): restore it with SELECT "
                              f"setval({_quoted(name)}, {a.last_value})")
    if n := max(int(start["unreadable"]), int(end["unreadable"])):
        out.notes.append(f"{n} sequence{'s' if n != 1 else ''} this login may not read (UPDATE without SELECT or "
                         "USAGE: setval works, the value is hidden) were not compared")
    gone = sorted(set(start["sessions"]) - set(sessions_after))
    if gone and start["user_code"]:
        out.warnings.append(
            f"during the trial, {len(gone)} other session(s) of role {start['role']} ended (pids "
            f"{', '.join(map(str, gone))}): if the statement's code (a trigger, a CHECK, a function it reached) "
            "terminated them, the rollback did not undo it: check the application's sessions and logs; a "
            "session may also have ended on its own")
    return out


def after_rollback(conn: Any, start: dict[str, Any], checked: str | None = None) -> Aftermath:
    """Roll back, then read again and compare with ``start`` (:func:`state`, read before the trial ran) and
    the code fingerprint ``checked`` (:attr:`agent19.safety.trial.TrialCatalog.code`)."""
    conn.rollback()
    end = state(conn)
    sessions = list(end["sessions"])
    if start["user_code"] and start["sessions"] and set(start["sessions"]) <= set(sessions):
        time.sleep(GRACE_S)  # a terminated session leaves pg_stat_activity a moment after the signal
        sessions = list(conn.execute(Q_SESSIONS).fetchone()["sessions"])
    return compare(start, end, sessions, checked)


@contextmanager
def trial(db: Database, checked: str | None = None) -> Iterator[tuple[Any, Aftermath]]:
    """A transaction that is always rolled back (:meth:`Database.rolled_back`), checked afterwards: the
    :class:`Aftermath` yielded is filled in after the rollback; ``checked``: the code fingerprint the guard read
    (:func:`agent19.safety.gate.admit_trial`). When the statement failed (a CHECK can set a
    sequence back, then return false), its error is raised again with what the check found added."""
    import psycopg

    from agent19.errors import Agent19Error, InputError, postgres_error_text

    found = Aftermath()
    with db.rolled_back() as conn:
        start = state(conn)  # the first statement of the transaction: nothing of the trial has run yet
        try:
            yield conn, found
        except (psycopg.Error, Agent19Error) as exc:
            try:
                seen = after_rollback(conn, start, checked)
            except psycopg.Error:
                raise exc from None  # the session is gone: the statement's own error stands
            if not (seen.errors or seen.warnings):
                raise
            text = exc.message if isinstance(exc, Agent19Error) else f"PostgreSQL: {postgres_error_text(exc)}"
            raise InputError(f"{text}; and after the rollback: {'; '.join(seen.lines())}",
                             getattr(exc, "hint", None)) from exc
        seen = after_rollback(conn, start, checked)
        found.errors, found.warnings, found.notes = seen.errors, seen.warnings, seen.notes
        found.advanced = seen.advanced
