"""The tally of rows agent19 removed without a confirmation, kept in the target database.

The limits on a measured write (:mod:`agent19.safety.measure`) hold over a window of time, not only per statement:
six ``DELETE … WHERE`` each removing 49 % of a table, sent one after the other, each pass a per-statement limit and
together empty the table (review r27 k12). So each statement agent19 keeps without a confirmation leaves a row here —
per table it updated or deleted rows of: its oid and name, the rows, the transaction's time — written in the
statement's own transaction (a statement rolled back or refused leaves nothing), and the next statement is judged with
the rows agent19 removed from the same table within ``mass_write_window_minutes``
(``AGENT19_MASS_WRITE_WINDOW_MINUTES``, default 60; 0 turns the tally off) added to its own
(:func:`agent19.safety.measure.add_earlier`). A statement a human confirmed is not recorded: the human saw its figures
and agreed, and its rows do not count against later statements.

Table ``agent19.removals`` (created on first use, like ``agent19.confirmations``: :mod:`agent19.safety.ledger`,
whose shape check it shares — a table made there first by another role with a rule, a policy, a default, a trigger
or other columns is refused loudly, never read or written). Who can write it cannot make agent19 skip the check
silently:

* through agent19, a statement that writes the table's rows (insert, update or delete, even one row), or renames,
  moves or drops it (a RENAME is on the allowlist), is measured as doing so and goes to a human
  (:func:`tampering`); TRUNCATE and DROP are destructive anyway;
* rows written by other means can only make agent19 stricter: a row's rows count when positive, and the share is
  taken of the table's live rows, never of a figure read from here;
* rows deleted by other means are beyond agent19 — a login that may do that may as well delete the table's rows.

Judging and writing take the table's ``SHARE ROW EXCLUSIVE`` lock until the statement's transaction ends, so two
agent19 sessions writing at the same moment are judged one after the other, each with the other's rows.
"""

from __future__ import annotations

from typing import Any

import psycopg

from agent19.safety import ledger

TABLE = "agent19.removals"
DDL = """CREATE TABLE IF NOT EXISTS agent19.removals (
    relid oid NOT NULL,
    relname text NOT NULL,
    removed bigint NOT NULL,
    at timestamptz NOT NULL
)"""
COLUMNS = ["relid oid", "relname text", "removed bigint", "at timestamp with time zone"]
LOCK = "SHARE ROW EXCLUSIVE"
"""Conflicts with itself: one agent19 transaction at a time judges and records, until it commits or rolls back."""
ABOUT = f"{TABLE}, agent19's tally of the rows it removed without a confirmation"

Q_RECENT = """
SELECT relid, sum(greatest(removed, 0))::bigint AS removed, count(*) AS statements,
       greatest(extract(epoch FROM now() - min(at)) / 60, 0)::float8 AS minutes
  FROM agent19.removals
 WHERE relid = ANY(%(oids)s::oid[]) AND at > now() - make_interval(secs => %(secs)s::float8)
 GROUP BY relid
"""
"""Per table, what agent19 removed within the window (a row dated later than now counts too: stricter, never
laxer)."""


def state(conn: Any) -> tuple[int | None, bool]:
    """The tally table's oid (None when there is none) and whether it has agent19's shape (read from the catalog: no
    privilege needed)."""
    row = conn.execute(ledger.Q_SHAPE, {"columns": COLUMNS, "table": TABLE, "defaults": []}).fetchone()
    return (int(row["oid"]), bool(row["ours"])) if row else (None, True)


def tampering(before: tuple[int | None, bool], after: tuple[int | None, bool], writes: dict[int, int]) -> list[str]:
    """What a statement did to the tally: ``before``/``after``, its :func:`state` around it; ``writes``: rows the
    statement inserted, updated or deleted per table oid."""
    out = []
    if before[0] is not None and after[0] != before[0]:
        out.append(f"moved, renamed or dropped {ABOUT} (agent19 would start an empty one)")
    elif before[0] is not None and before[1] and not after[1]:
        out.append(f"changed the definition of {ABOUT} (agent19 refuses to use it so changed)")
    for table in sorted({t for t, _ in (before, after) if t is not None}):
        if writes.get(table):
            out.append(f"wrote {writes[table]} rows of {ABOUT}")
    return out


def recent(conn: Any, oids: list[int], window_minutes: float, lock: bool) -> dict[int, dict[str, Any]]:
    """Per table of ``oids``: ``removed``, ``statements`` and ``minutes`` since the first of them, within the window.
    ``lock``: hold the table (:data:`LOCK`) until the transaction ends — the statement will be recorded in it."""
    if not oids or window_minutes <= 0 or state(conn)[0] is None:
        return {}
    try:
        if lock:
            ledger.hold(conn, TABLE, COLUMNS, LOCK)
        else:
            ledger.check_shape(conn, TABLE, COLUMNS)
        rows = conn.execute(Q_RECENT, {"oids": oids, "secs": window_minutes * 60}).fetchall()
    except psycopg.errors.InsufficientPrivilege as exc:
        raise _unreadable(conn, exc) from None
    return {int(r["relid"]): dict(r) for r in rows}


def record(conn: Any, removals: list[tuple[int, str, int]], window_minutes: float) -> None:
    """Inside the statement's transaction: it removed ``rows`` of each ``(oid, name, rows)``."""
    removals = [r for r in removals if r[2] > 0]
    if not removals or window_minutes <= 0:
        return
    ledger.ensure(conn, TABLE, DDL, COLUMNS)
    try:
        ledger.hold(conn, TABLE, COLUMNS, LOCK)
        with conn.cursor() as cur:
            cur.executemany("INSERT INTO agent19.removals (relid, relname, removed, at) "
                            "VALUES (%s::oid, %s, %s::bigint, now())", removals)
        conn.execute("DELETE FROM agent19.removals WHERE at < now() - greatest(interval '1 day', "
                     "make_interval(secs => %s::float8))", (window_minutes * 60,))
    except psycopg.errors.InsufficientPrivilege as exc:
        raise _unreadable(conn, exc) from None


def _unreadable(conn: Any, exc: Exception) -> ledger.LedgerUnavailable:
    user = conn.info.user  # (the transaction is aborted: nothing more is asked of the server)
    return ledger.LedgerUnavailable(
        f"agent19 keeps the rows it removes without a confirmation in {TABLE}, and the login {user!r} may not read "
        f"or write it ({str(exc).strip().splitlines()[0]}); nothing was kept",
        f"have its owner run: GRANT SELECT, INSERT, DELETE ON {TABLE} TO {user}; or drop it (agent19 makes its own)")
