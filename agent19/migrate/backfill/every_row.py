"""A backfill sees every row or does not run: a row-level security policy that applies to the login would limit
its walk, its UPDATE and its counts to the rows the policy shows, and its validation ("no row left matching the
condition") would call the others done — the next step of an expand/contract migration, dropping the old column,
would then lose them.

:func:`refuse_hidden_rows` stops a run on such a table before anything is written (the server's
``row_security_active``, :mod:`agent19.db.rls`); :func:`count_every_row` runs a count (what a run would overwrite,
the final validation) with ``row_security = off``, so a condition that reads another filtered table errors instead of
counting a subset.
"""

from __future__ import annotations

from typing import Any

import psycopg
from psycopg import sql

from agent19.db import rls
from agent19.errors import InputError


def refuse_hidden_rows(conn: Any, table: str) -> None:
    """Refuse ``table`` (SQL text) when a row-level security policy may hide some of its rows from this login: the
    walk and the UPDATE would touch only the rows it shows, and the validation would count only those."""
    hidden = rls.hidden_relation(conn, table)
    if hidden is not None:
        raise InputError(f"{rls.message(hidden)}; a backfill through the policy would update only the rows it shows "
                         "and leave the others as they are; nothing was updated",
                         "run the backfill as a login that sees every row")


def count_every_row(conn: Any, query: sql.Composed, said: str) -> Any:
    """One count with ``row_security = off`` (in a transaction, or a savepoint of the caller's): a read a policy
    would filter — the condition's subquery over another table — errors instead of counting a subset."""
    try:
        with conn.transaction(), rls.every_row(conn):
            return conn.execute(query).fetchone()
    except psycopg.Error as exc:
        if not rls.explains(exc):
            raise
        raise InputError(f"the backfill cannot count every row: row-level security hides rows its condition or SET "
                         f"reads from this login ({str(exc).splitlines()[0]}); {said}", rls.HINT) from None
