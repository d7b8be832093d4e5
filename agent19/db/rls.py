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
EVERY_ROW = "SET LOCAL row_security = off"
"""In a transaction: a read a policy would filter raises instead (``query would be affected by row-level
security policy``)."""

Q_HIDDEN = """
SELECT n.nspname AS schema, c.relname AS name
  FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
 WHERE c.relrowsecurity AND row_security_active(c.oid) AND {where}
 ORDER BY 1"""


@contextmanager
def every_row(conn: Any) -> Iterator[None]:
    """The reads inside, in the caller's transaction, with ``row_security = off`` (a read a policy would filter
    raises); the session's setting is put back afterwards, so statements after them (a ``DELETE`` that policies
    are meant to limit) run as before. After an error the transaction is aborted anyway (a savepoint rolled back
    restores the setting itself)."""
    row = conn.execute("SELECT current_setting('row_security') AS v").fetchone()
    before = row["v"] if isinstance(row, dict) else row[0]
    conn.execute(EVERY_ROW)
    yield
    conn.execute("SELECT set_config('row_security', %s, true)", (before,))


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
    rows = conn.execute(Q_HIDDEN.format(where="(n.nspname, c.relname) IN (SELECT * FROM unnest(%s::text[], "
                                        "%s::text[]))"),
                        ([s for s, _ in pairs], [t for _, t in pairs])).fetchall()
    return [_name(r) for r in rows]


def hidden_relation(conn: Any, regclass: str) -> str | None:
    """The relation ``regclass`` (SQL text, quoted as ``to_regclass`` reads it) when a policy may hide its rows
    from this session's login, else None."""
    row = conn.execute(Q_HIDDEN.format(where="c.oid = to_regclass(%s)"), (regclass,)).fetchone()
    return _name(row) if row else None


def hidden_in_database(conn: Any) -> list[str]:
    """Every table of the database whose rows a policy may hide from this session's login."""
    rows = conn.execute(Q_HIDDEN.format(where="c.relkind IN ('r', 'p') AND n.nspname NOT IN "
                                        "('pg_catalog', 'information_schema')")).fetchall()
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
