"""The confirmation ledger: each challenge token's approval and single use, kept in the target
database itself.

Table ``agent19.confirmations`` (created on first use, in schema ``agent19``): one row per token
nonce — who approved it (the channel: ``terminal``, ``loopback page``, ``elicitation``,
``argument (operator opt-in)``), when, and when it was used. :func:`claim` runs inside the same
transaction as the destructive statement and locks the row (``FOR UPDATE``), so a token runs at
most one statement whatever the number of agent19 processes or machines sharing
``AGENT19_CONFIRM_KEY``: a second attempt waits for the first and then finds it used; two
concurrent first attempts collide on the primary key. If the statement fails, the transaction rolls
back and the token is not spent.

When the login cannot create the schema (no CREATE privilege on the database), nothing destructive
runs: :class:`LedgerUnavailable` says which SQL an administrator must run once.

The login that runs destructive statements can also write this table (a model in execute mode could
``INSERT`` an approval for its own token). So an approval counts only when sealed: ``approved_by``
holds the channel and an HMAC, with the confirmation key, over the nonce and the channel
(:func:`seal`); a row written by SQL approves nothing. Using the token replaces the seal by the bare
channel, so clearing ``used_at`` afterwards does not make the token approved again.
"""

from __future__ import annotations

import hashlib
import hmac
from typing import Any

import psycopg

from agent19.errors import Agent19Error

TABLE = "agent19.confirmations"
SCHEMA_DDL = "CREATE SCHEMA IF NOT EXISTS agent19"
DDL = """CREATE TABLE IF NOT EXISTS agent19.confirmations (
    nonce text PRIMARY KEY,
    expires_at timestamptz NOT NULL,
    approved_by text,
    approved_at timestamptz,
    used_at timestamptz,
    outcome text
)"""


COLUMNS = ["nonce text", "expires_at timestamp with time zone", "approved_by text", "approved_at timestamp with time "
           "zone", "used_at timestamp with time zone", "outcome text"]
Q_SHAPE = """
SELECT c.oid, c.relkind = 'r' AND c.relpersistence = 'p' AND NOT c.relispartition AND NOT c.relrowsecurity
   AND (SELECT array_agg(a.attname::text || ' ' || pg_catalog.format_type(a.atttypid, a.atttypmod) ORDER BY a.attnum)
          FROM pg_catalog.pg_attribute a WHERE a.attrelid = c.oid AND a.attnum > 0 AND NOT a.attisdropped) = %(columns)s
   AND NOT EXISTS (SELECT 1 FROM pg_catalog.pg_attrdef d WHERE d.adrelid = c.oid)
   AND NOT EXISTS (SELECT 1 FROM pg_catalog.pg_constraint k WHERE k.conrelid = c.oid AND k.contype NOT IN ('p', 'n'))
   AND NOT EXISTS (SELECT 1 FROM pg_catalog.pg_trigger t WHERE t.tgrelid = c.oid)
   AND NOT EXISTS (SELECT 1 FROM pg_catalog.pg_rewrite r WHERE r.ev_class = c.oid)
   AND NOT EXISTS (SELECT 1 FROM pg_catalog.pg_inherits h WHERE c.oid IN (h.inhrelid, h.inhparent))
   AND NOT EXISTS (SELECT 1 FROM pg_catalog.pg_index i
                    WHERE i.indrelid = c.oid AND (i.indexprs IS NOT NULL OR i.indpred IS NOT NULL)) AS ours
  FROM pg_catalog.pg_class c JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace
 WHERE n.nspname = split_part(%(table)s, '.', 1) AND c.relname = split_part(%(table)s, '.', 2)
"""
"""Whether a table of agent19's (``agent19.confirmations``, :data:`agent19.safety.tally.TABLE`) has agent19's own
shape and runs no code: its columns only, logged, no default, check, trigger, rule, inheritance, expression index or
row level security. Any role may make schema ``agent19`` and a table by that name first (CREATE SCHEMA and CREATE
TABLE lose nothing by themselves); a default or check calling a function there would run, unmeasured, in the
transaction of every confirmed statement (review r27 k03); a rule or a policy would make agent19's writes or reads of
it see nothing. Found by name in the catalog (not ``to_regclass``, which needs USAGE on the schema)."""


class LedgerUnavailable(Agent19Error):
    """The target database cannot record the token's single use: nothing ran."""

    exit_code = 1


class NotApproved(Exception):
    """No human approved this token yet."""


class AlreadyUsed(Exception):
    """The token was used (or burnt) before."""


def ensure(conn: Any, table: str = TABLE, ddl: str = DDL, columns: list[str] = COLUMNS) -> None:
    """Create ``table`` (``agent19.confirmations`` unless told) when missing (``conn`` in autocommit, or in a
    transaction: the creation is then a savepoint of it)."""
    if conn.execute("SELECT to_regclass(%s) IS NOT NULL AS e", (table,)).fetchone()["e"]:
        check_shape(conn, table, columns)
        return
    has_schema = conn.execute("SELECT 1 FROM pg_namespace WHERE nspname = 'agent19'").fetchone() is not None
    try:
        with conn.transaction():
            if not has_schema:  # (CREATE SCHEMA IF NOT EXISTS checks the privilege even when it exists)
                conn.execute(SCHEMA_DDL)
            conn.execute(ddl)
    except (psycopg.errors.UniqueViolation, psycopg.errors.DuplicateObject):
        pass  # another agent19 created it at the same moment
    except psycopg.errors.InsufficientPrivilege as exc:
        user = conn.execute("SELECT current_user AS u").fetchone()["u"]
        raise LedgerUnavailable(
            f"agent19 records each confirmation token's single use and the rows it removes without one in the "
            f"target database, in {table}, and the login {user!r} cannot create it "
            f"({str(exc).strip().splitlines()[0]}); nothing was run",
            f"have an administrator run once: CREATE SCHEMA agent19 AUTHORIZATION {user}; (agent19 creates the "
            "table on first use)") from None
    check_shape(conn, table, columns)  # another session may have made it first


def hold(conn: Any, table: str = TABLE, columns: list[str] = COLUMNS, mode: str = "ROW EXCLUSIVE") -> None:
    """Inside the transaction that writes (or reads) ``table``: lock it against DDL (a default, trigger or rule added
    now would wait for the transaction's end), then check its shape."""
    conn.execute(f"LOCK TABLE {table} IN {mode} MODE")
    check_shape(conn, table, columns)


def check_shape(conn: Any, table: str = TABLE, columns: list[str] = COLUMNS) -> None:
    """:class:`LedgerUnavailable` unless ``table`` is missing or has agent19's shape (:data:`Q_SHAPE`)."""
    row = conn.execute(Q_SHAPE, {"columns": columns, "table": table}).fetchone()
    if row is not None and not row["ours"]:
        raise LedgerUnavailable(
            f"{table} is not the table agent19 makes (other columns, or unlogged, or a default, check, trigger, rule, "
            "inheritance, expression index or row level security): code there would run, or rows vanish, each time "
            "agent19 writes or reads it; nothing was run",
            f"have its owner look at it, then drop it or rename schema agent19 (agent19 makes its own {table})")


def seal(key: bytes, nonce: str, channel: str) -> str:
    """``approved_by`` for a human's approval of ``nonce`` through ``channel``."""
    mac = hmac.new(key, f"approved\0{nonce}\0{channel}".encode(), hashlib.sha256).hexdigest()
    return f"{channel} #{mac}"


def approved_channel(key: bytes, nonce: str, approved_by: str | None) -> str | None:
    """The channel that approved ``nonce``, when ``approved_by`` carries a valid seal; else None."""
    if not approved_by or " #" not in approved_by:
        return None
    channel = approved_by.rpartition(" #")[0]
    return channel if hmac.compare_digest(seal(key, nonce, channel), approved_by) else None


def _row(conn: Any, nonce: str, lock: bool = False) -> dict[str, Any] | None:
    q = "SELECT approved_by, used_at FROM agent19.confirmations WHERE nonce = %s" + (" FOR UPDATE" if lock else "")
    row: dict[str, Any] | None = conn.execute(q, (nonce,)).fetchone()
    return row


def approve(conn: Any, nonce: str, expires: int, channel: str, key: bytes) -> None:
    """A human confirmed the token through ``channel`` (its own committed transaction)."""
    ensure(conn)
    with conn.transaction():
        hold(conn)
        row = _row(conn, nonce, lock=True)
        if row is not None and row["used_at"] is not None:
            raise AlreadyUsed()
        if row is None:
            conn.execute("INSERT INTO agent19.confirmations (nonce, expires_at, approved_by, approved_at) "
                         "VALUES (%s, to_timestamp(%s), %s, now())", (nonce, expires, seal(key, nonce, channel)))
        else:
            conn.execute("UPDATE agent19.confirmations SET approved_by = %s, approved_at = now() WHERE nonce = %s",
                         (seal(key, nonce, channel), nonce))
        conn.execute("DELETE FROM agent19.confirmations WHERE expires_at < now() - interval '1 day'")


def burn(conn: Any, nonce: str, expires: int, outcome: str) -> None:
    """Spend the token without running anything (a wrong phrase, a declined confirmation)."""
    ensure(conn)
    with conn.transaction():
        hold(conn)
        conn.execute("INSERT INTO agent19.confirmations (nonce, expires_at, used_at, outcome) "
                     "VALUES (%s, to_timestamp(%s), now(), %s) ON CONFLICT (nonce) DO UPDATE "
                     "SET used_at = coalesce(agent19.confirmations.used_at, now()), outcome = excluded.outcome",
                     (nonce, expires, outcome[:200]))


def status(conn: Any, nonce: str) -> dict[str, Any] | None:
    """The token's row (approved_by, used_at), or None when never seen."""
    if not conn.execute("SELECT to_regclass(%s) IS NOT NULL AS e", (TABLE,)).fetchone()["e"]:
        return None
    return _row(conn, nonce)


def claim(conn: Any, nonce: str, expires: int, channel: str | None, key: bytes) -> str:
    """Spend the token inside the caller's transaction; returns the channel that confirmed it.

    ``channel``: the channel that confirmed it just now (elicitation, an opted-in argument), or
    None to require an earlier approval (terminal, loopback page). Raises :class:`NotApproved` or
    :class:`AlreadyUsed`."""
    hold(conn)
    row = _row(conn, nonce, lock=True)
    if row is not None and row["used_at"] is not None:
        raise AlreadyUsed()
    approved = approved_channel(key, nonce, row["approved_by"]) if row is not None else None
    if approved is not None:
        conn.execute("UPDATE agent19.confirmations SET used_at = now(), outcome = 'executed', approved_by = %s "
                     "WHERE nonce = %s", (approved, nonce))
        return approved
    if channel is None:
        raise NotApproved()
    if row is not None:  # an unsealed row (written by SQL, not by a human's approval): this channel confirms
        conn.execute("UPDATE agent19.confirmations SET approved_by = %s, approved_at = now(), used_at = now(), "
                     "outcome = 'executed' WHERE nonce = %s", (channel, nonce))
        return channel
    try:
        with conn.transaction():  # a savepoint: a concurrent first use makes this a clean refusal
            conn.execute("INSERT INTO agent19.confirmations (nonce, expires_at, approved_by, approved_at, used_at, "
                         "outcome) VALUES (%s, to_timestamp(%s), %s, now(), now(), 'executed')",
                         (nonce, expires, channel))
    except psycopg.errors.UniqueViolation:
        raise AlreadyUsed() from None
    return channel
