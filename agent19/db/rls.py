"""Row-level security: a policy filters what a login reads without an error, so a count, a checksum or a copy
made through it describes only the rows the policy shows.

One question, asked of the server for the session's own login (``row_security_active``: RLS enabled on the
table, and the login neither its owner — unless ``FORCE ROW LEVEL SECURITY`` — nor ``BYPASSRLS`` nor a
superuser), and one way to say it, shared by data-quality checks, ETL extraction and backup verification.
Readers that must see every row also set ``row_security = off`` (:data:`EVERY_ROW`): then a read the check
missed (a view over such a table, a query source) errors instead of returning a subset.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from typing import Any

HINT = ("needs BYPASSRLS, or the table's owner without FORCE ROW LEVEL SECURITY (a policy that applies stops the "
        "read even when it shows every row: every-row reads run with row_security = off)")
QUALIFIED_SQL = True
"""Every statement here names its functions, operators, types and catalog relations ``pg_catalog.``-qualified: an
overload the login owns is not what it calls (tests/test_qualified_sql.py)."""
EVERY_ROW = "SET LOCAL row_security = off"
"""In a transaction: a read a policy would filter raises instead (``query would be affected by row-level
security policy``)."""

Q_ROW_SECURITY = "SELECT pg_catalog.current_setting('row_security') AS v"
Q_SET_ROW_SECURITY = "SELECT pg_catalog.set_config('row_security', %s, true)"
Q_HIDDEN = """
SELECT n.nspname AS schema, c.relname AS name
  FROM pg_catalog.pg_class c JOIN pg_catalog.pg_namespace n ON n.oid OPERATOR(pg_catalog.=) c.relnamespace
 WHERE c.relrowsecurity AND pg_catalog.row_security_active(c.oid) AND {where}
 ORDER BY 1"""
Q_HIDDEN_PAIRS = Q_HIDDEN.format(where="""EXISTS (
       SELECT FROM ROWS FROM (pg_catalog.unnest(%s::pg_catalog.text[]), pg_catalog.unnest(%s::pg_catalog.text[]))
                   u(s, t)
        WHERE n.nspname OPERATOR(pg_catalog.=) u.s AND c.relname OPERATOR(pg_catalog.=) u.t)""")
Q_HIDDEN_RELATION = Q_HIDDEN.format(where="c.oid OPERATOR(pg_catalog.=) pg_catalog.to_regclass(%s)")
Q_HIDDEN_DATABASE = Q_HIDDEN.format(
    where="""c.relkind OPERATOR(pg_catalog.=) ANY ('{r,p}'::pg_catalog."char"[])
   AND n.nspname OPERATOR(pg_catalog.<>) ALL ('{pg_catalog,information_schema}'::pg_catalog.name[])""")


@contextmanager
def every_row(conn: Any) -> Iterator[None]:
    """The reads inside, in the caller's transaction, with ``row_security = off`` (a read a policy would filter
    raises); the session's setting is put back afterwards, so statements after them (a ``DELETE`` that policies
    are meant to limit) run as before. After an error the transaction is aborted anyway (a savepoint rolled back
    restores the setting itself)."""
    row = conn.execute(Q_ROW_SECURITY).fetchone()
    before = row["v"] if isinstance(row, dict) else row[0]
    conn.execute(EVERY_ROW)
    yield
    conn.execute(Q_SET_ROW_SECURITY, (before,))


def message(table: str) -> str:
    """The one sentence: ``row-level security may hide rows of app.t from this login: needs BYPASSRLS …``.

    "May": ``row_security_active`` says a policy applies, not what it shows (``USING (true)`` shows every row).
    The advice is what works: a policy that applies makes a ``row_security = off`` read (and pg_dump) fail."""
    return f"row-level security may hide rows of {table} from this login: {HINT}"


def hidden(conn: Any, tables: Iterable[tuple[str, str]]) -> list[str]:
    """Of ``(schema, name)`` pairs, the tables (``schema.name``, as ``Table.qualified_name`` spells it) whose
    rows a policy may hide from this session's login."""
    pairs = list(tables)
    if not pairs:
        return []
    rows = conn.execute(Q_HIDDEN_PAIRS, ([s for s, _ in pairs], [t for _, t in pairs])).fetchall()
    return [_name(r) for r in rows]


def hidden_relation(conn: Any, regclass: str) -> str | None:
    """The relation ``regclass`` (SQL text, quoted as ``to_regclass`` reads it) when a policy may hide its rows
    from this session's login, else None."""
    row = conn.execute(Q_HIDDEN_RELATION, (regclass,)).fetchone()
    return _name(row) if row else None


def hidden_in_database(conn: Any) -> list[str]:
    """Every table of the database whose rows a policy may hide from this session's login."""
    rows = conn.execute(Q_HIDDEN_DATABASE).fetchall()
    return [_name(r) for r in rows]


def explains(exc: BaseException) -> bool:
    """True when PostgreSQL refused a read because a policy would have filtered it (``row_security = off``)."""
    return "row-level security" in str(exc)


def relation_key(schema: str, name: str) -> str:
    from agent19.migrate.patterns.sqlnames import relation_key as key  # as agent19.db.models names a table

    return key(schema, name)


def _name(row: Any) -> str:
    schema, name = (row["schema"], row["name"]) if isinstance(row, dict) else row
    return relation_key(schema, name)
