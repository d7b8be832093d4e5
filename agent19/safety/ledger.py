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

from agent19.db.captures import trusted
from agent19.errors import Agent19Error

QUALIFIED_SQL = True
"""Every statement here names its functions, operators, types and catalog relations ``pg_catalog.``-qualified: an
overload the login owns is not what it calls (tests/test_qualified_sql.py)."""
EQ = "OPERATOR(pg_catalog.=)"
TABLE = "agent19.confirmations"
SCHEMA_DDL = "CREATE SCHEMA IF NOT EXISTS agent19"
DDL = """CREATE TABLE IF NOT EXISTS agent19.confirmations (
    nonce pg_catalog.text PRIMARY KEY,
    expires_at pg_catalog.timestamptz NOT NULL,
    approved_by pg_catalog.text,
    approved_at pg_catalog.timestamptz,
    used_at pg_catalog.timestamptz,
    outcome pg_catalog.text
)"""
Q_EXISTS = "SELECT pg_catalog.to_regclass(%s) IS NOT NULL AS e"
Q_HAS_SCHEMA = f"SELECT 1 FROM pg_catalog.pg_namespace WHERE nspname {EQ} 'agent19'"
Q_USER = "SELECT CURRENT_USER AS u"
Q_LOCK = {mode: f"LOCK TABLE {{table}} IN {mode} MODE"
          for mode in ("ACCESS SHARE", "ROW EXCLUSIVE", "SHARE ROW EXCLUSIVE")}
"""The lock :func:`hold` takes, by mode (the table named by the caller: one of agent19's own constants)."""
Q_ROW = f"SELECT approved_by, used_at FROM {TABLE} WHERE nonce {EQ} %s"
Q_ROW_LOCKED = Q_ROW + " FOR UPDATE"
Q_APPROVE_NEW = (f"INSERT INTO {TABLE} (nonce, expires_at, approved_by, approved_at) "
                 "VALUES (%s, pg_catalog.to_timestamp(%s), %s, pg_catalog.now())")
Q_APPROVE = f"UPDATE {TABLE} SET approved_by = %s, approved_at = pg_catalog.now() WHERE nonce {EQ} %s"
Q_FORGET = (f"DELETE FROM {TABLE} WHERE expires_at OPERATOR(pg_catalog.<) "
            "(pg_catalog.now() OPERATOR(pg_catalog.-) interval '1 day')")
Q_BURN = (f"INSERT INTO {TABLE} (nonce, expires_at, used_at, outcome) "
          "VALUES (%s, pg_catalog.to_timestamp(%s), pg_catalog.now(), %s) ON CONFLICT (nonce) DO UPDATE "
          f"SET used_at = COALESCE({TABLE}.used_at, pg_catalog.now()), outcome = excluded.outcome")
Q_USE = (f"UPDATE {TABLE} SET used_at = pg_catalog.now(), outcome = 'executed', approved_by = %s "
         f"WHERE nonce {EQ} %s")
Q_USE_UNSEALED = (f"UPDATE {TABLE} SET approved_by = %s, approved_at = pg_catalog.now(), used_at = pg_catalog.now(), "
                  f"outcome = 'executed' WHERE nonce {EQ} %s")
Q_USE_NEW = (f"INSERT INTO {TABLE} (nonce, expires_at, approved_by, approved_at, used_at, outcome) "
             "VALUES (%s, pg_catalog.to_timestamp(%s), %s, pg_catalog.now(), pg_catalog.now(), 'executed')")


COLUMNS = ["nonce text", "expires_at timestamp with time zone", "approved_by text", "approved_at timestamp with time "
           "zone", "used_at timestamp with time zone", "outcome text"]
Q_SHAPE = f"""
SELECT c.oid, c.relkind {EQ} 'r' AND c.relpersistence {EQ} 'p' AND NOT c.relispartition AND NOT c.relrowsecurity
   AND (SELECT pg_catalog.array_agg(pg_catalog.concat(a.attname, ' ', pg_catalog.format_type(a.atttypid, a.atttypmod))
                                    ORDER BY a.attnum)
          FROM pg_catalog.pg_attribute a
         WHERE a.attrelid {EQ} c.oid AND a.attnum OPERATOR(pg_catalog.>) 0 AND NOT a.attisdropped)
       {EQ} %(columns)s::pg_catalog.text[]
   AND NOT EXISTS (SELECT 1 FROM pg_catalog.pg_attrdef d JOIN pg_catalog.pg_attribute da
                      ON da.attrelid {EQ} d.adrelid AND da.attnum {EQ} d.adnum
                    WHERE d.adrelid {EQ} c.oid
                      AND pg_catalog.concat(da.attname, ' ', pg_catalog.pg_get_expr(d.adbin, d.adrelid))
                          OPERATOR(pg_catalog.<>) ALL (%(defaults)s::pg_catalog.text[]))
   AND NOT EXISTS (SELECT 1 FROM pg_catalog.pg_constraint k WHERE k.conrelid {EQ} c.oid
                      AND k.contype OPERATOR(pg_catalog.<>) ALL ('{{p,n}}'::pg_catalog."char"[]))
   AND NOT EXISTS (SELECT 1 FROM pg_catalog.pg_trigger t WHERE t.tgrelid {EQ} c.oid)
   AND NOT EXISTS (SELECT 1 FROM pg_catalog.pg_rewrite r WHERE r.ev_class {EQ} c.oid)
   AND NOT EXISTS (SELECT 1 FROM pg_catalog.pg_inherits h WHERE c.oid {EQ} ANY (ARRAY[h.inhrelid, h.inhparent]))
   AND NOT EXISTS (SELECT 1 FROM pg_catalog.pg_index i
                    WHERE i.indrelid {EQ} c.oid AND (i.indexprs IS NOT NULL OR i.indpred IS NOT NULL))
   AND NOT EXISTS (SELECT 1 FROM pg_catalog.pg_statistic_ext x WHERE x.stxrelid {EQ} c.oid)
   AND {trusted('c.relowner')} AS ours
  FROM pg_catalog.pg_class c JOIN pg_catalog.pg_namespace n ON n.oid {EQ} c.relnamespace
 WHERE n.nspname {EQ} pg_catalog.split_part(%(table)s::pg_catalog.text, '.', 1)
   AND c.relname {EQ} pg_catalog.split_part(%(table)s::pg_catalog.text, '.', 2)
"""
"""Whether a table of agent19's (``agent19.confirmations``, :data:`agent19.safety.tally.TABLE`) has agent19's own shape
and runs no code — owned by the login or a superuser (only its owner can add an index, a statistics object or a
trigger, whose expressions the planner or the write runs as agent19's login: review r30 G1, G2; checking them once
would leave a race no lock closes in a read-only transaction; its schema may be another role's, as `CREATE SCHEMA
agent19 AUTHORIZATION app` makes it, and a table that role puts in its place is that role's) — its columns only,
logged, no default (but ``defaults``: "column expression", as the server writes it back, e.g. ``tables
'{}'::jsonb``), check, trigger, rule, inheritance, expression index, statistics object or row level security. Any
role may make schema ``agent19`` and a table by that name first (CREATE SCHEMA and CREATE TABLE lose nothing by
themselves); a default or check calling a function there would run, unmeasured, in the transaction of every confirmed
statement (review r27 k03); a rule or a policy would make agent19's writes or reads of it see nothing. Found by name
in the catalog (not ``to_regclass``, which needs USAGE on the schema)."""


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
    if conn.execute(Q_EXISTS, (table,)).fetchone()["e"]:
        check_shape(conn, table, columns)
        return
    has_schema = conn.execute(Q_HAS_SCHEMA).fetchone() is not None
    try:
        with conn.transaction():
            if not has_schema:  # (CREATE SCHEMA IF NOT EXISTS checks the privilege even when it exists)
                conn.execute(SCHEMA_DDL)
            conn.execute(ddl)
    except (psycopg.errors.UniqueViolation, psycopg.errors.DuplicateObject):
        pass  # another agent19 created it at the same moment
    except psycopg.errors.InsufficientPrivilege as exc:
        user = conn.execute(Q_USER).fetchone()["u"]
        raise LedgerUnavailable(
            f"agent19 records each confirmation token's single use and the rows it removes without one in the "
            f"target database, in {table}, and the login {user!r} cannot create it "
            f"({str(exc).strip().splitlines()[0]}); nothing was run",
            f"have an administrator run once: CREATE SCHEMA agent19 AUTHORIZATION {user}; (agent19 creates the "
            "table on first use)") from None
    check_shape(conn, table, columns)  # another session may have made it first


def hold(conn: Any, table: str = TABLE, columns: list[str] = COLUMNS, mode: str = "ROW EXCLUSIVE",
         defaults: tuple[str, ...] = ()) -> None:
    """Inside the transaction that writes (or reads) ``table``: lock it against DDL (a default, trigger or rule added
    now would wait for the transaction's end), then check its shape."""
    conn.execute(Q_LOCK[mode].format(table=table))
    check_shape(conn, table, columns, defaults)


def check_shape(conn: Any, table: str = TABLE, columns: list[str] = COLUMNS, defaults: tuple[str, ...] = ()) -> None:
    """:class:`LedgerUnavailable` unless ``table`` is missing or has agent19's shape (:data:`Q_SHAPE`)."""
    row = conn.execute(Q_SHAPE, {"columns": columns, "table": table, "defaults": list(defaults)}).fetchone()
    if row is not None and not row["ours"]:
        raise LedgerUnavailable(
            f"{table} is not the table agent19 makes (owned by a role other than this login or a superuser, or "
            "other columns, unlogged, a default, check, trigger, rule, inheritance, expression index, statistics "
            "object or row level security): code there would run, or rows vanish, each time agent19 writes or reads "
            "it; nothing was run",
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
    row: dict[str, Any] | None = conn.execute(Q_ROW_LOCKED if lock else Q_ROW, (nonce,)).fetchone()
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
            conn.execute(Q_APPROVE_NEW, (nonce, expires, seal(key, nonce, channel)))
        else:
            conn.execute(Q_APPROVE, (seal(key, nonce, channel), nonce))
        conn.execute(Q_FORGET)


def burn(conn: Any, nonce: str, expires: int, outcome: str) -> None:
    """Spend the token without running anything (a wrong phrase, a declined confirmation)."""
    ensure(conn)
    with conn.transaction():
        hold(conn)
        conn.execute(Q_BURN, (nonce, expires, outcome[:200]))


def status(conn: Any, nonce: str) -> dict[str, Any] | None:
    """The token's row (approved_by, used_at), or None when never seen."""
    if not conn.execute(Q_EXISTS, (TABLE,)).fetchone()["e"]:
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
        conn.execute(Q_USE, (approved, nonce))
        return approved
    if channel is None:
        raise NotApproved()
    if row is not None:  # an unsealed row (written by SQL, not by a human's approval): this channel confirms
        conn.execute(Q_USE_UNSEALED, (channel, nonce))
        return channel
    try:
        with conn.transaction():  # a savepoint: a concurrent first use makes this a clean refusal
            conn.execute(Q_USE_NEW, (nonce, expires, channel))
    except psycopg.errors.UniqueViolation:
        raise AlreadyUsed() from None
    return channel
