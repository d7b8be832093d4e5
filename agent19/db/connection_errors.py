"""What a failed connection means for the user: the server's or libpq's words, sorted into what happened and what
to do (:func:`connection_failure`), and whether an error means the session is gone (:func:`connection_lost`)."""

from __future__ import annotations

import psycopg


def connection_failure(message: str) -> tuple[str, str]:
    """``(what happened, what to do)`` for a connection error's text (libpq's or the server's)."""
    low = message.lower()

    def has(*words: str) -> bool:
        return any(w in low for w in words)

    if has("password authentication failed", "no password supplied", "authentication failed",
           "no pg_hba.conf entry", "permission denied for database") or (has('role "') and has("does not exist")):
        return "authentication failed", ("check the user name and password (DSN, PGPASSWORD or ~/.pgpass) and "
                                         "the server's pg_hba.conf")
    if has('database "') and has("does not exist"):
        return "database does not exist", "check the database name in the DSN (psql -l lists them)"
    if has("could not translate host name", "name or service not known", "nodename nor servname",
           "temporary failure in name resolution"):
        return "host unknown", "check the host name in the DSN"
    if has("too many clients already", "remaining connection slots are reserved", "too many connections for"):
        return "too many connections", ("every connection slot this login may use is taken (max_connections, or a "
                                        "role's or database's CONNECTION LIMIT): close idle sessions or put a pooler "
                                        "(PgBouncer) in front; superuser_reserved_connections keeps a few for a "
                                        "superuser")
    if has("connection refused", "no such file or directory"):
        return "connection refused", "check that the server is running and listens on that host and port"
    if has("timeout expired", "timed out", "couldn't get a connection"):
        return "timeout", "the server did not answer in time: check the network, a firewall, the host and port"
    if has("the database system is", "server closed the connection", "terminating connection"):
        return "server unavailable", "the server is starting, stopping or restarting: try again in a moment"
    return "cannot reach PostgreSQL", "check that the server is running and the DSN (--dsn / DATABASE_URL) is right"


def connection_lost(exc: psycopg.OperationalError) -> bool:
    sqlstate = getattr(exc, "sqlstate", None)
    if sqlstate is None:
        return True  # client-side: the connection is gone
    return sqlstate.startswith("08") or sqlstate in {"57P01", "57P02", "57P03"}
