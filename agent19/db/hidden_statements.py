"""What a login cannot see in ``pg_stat_statements``: other roles' statements, without ``pg_read_all_stats``.

pg_stat_statements shows a login every role's rows (user, database, calls, times), but the text of another
role's statement only to a superuser or a member of ``pg_read_all_stats``: the others read
``<insufficient privilege>`` (observed on PostgreSQL 15). A tool that concludes from the *absence* of a
statement (no UPDATE sets this column, no LISTEN in the workload) is then wrong for the roles it cannot read:
it asks :func:`hidden_statements` and reports the sentence in its ``cannot_see`` (and says its conclusion is
unknown) instead of claiming there are none. Counted in the current database only, where the tools look.

A tool that only needs statements that changed rows (which columns UPDATEs set) counts only the hidden ones
that wrote WAL or dirtied a block (``writes_only``, PostgreSQL 13+: before, every hidden statement counts): a SELECT, a
``pg_stat_statements_reset()`` or an UPDATE that matched no row leaves both at 0. An unlogged table's rows
write no WAL, and an already-dirty page is not dirtied again: for one, ask without ``writes_only``.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

QUALIFIED_SQL = True  # its statements name functions, operators, types, catalog relations pg_catalog.-qualified

HIDDEN_TEXT = "<insufficient privilege>"
NEEDS = "pg_read_all_stats"
WROTE = "wal_records OPERATOR(pg_catalog.>) 0 OR shared_blks_dirtied OPERATOR(pg_catalog.>) 0"
"""A pg_stat_statements row whose statement wrote (PostgreSQL 13+: ``wal_records``)."""

Q_VERSION = "SELECT pg_catalog.current_setting('server_version_num')::int AS v"
Q_HIDDEN = ("SELECT userid::pg_catalog.regrole::pg_catalog.text AS role, pg_catalog.count(*)::bigint AS statements, "
            "pg_catalog.sum(calls)::bigint AS calls, pg_catalog.quote_ident(current_user) AS login FROM {view} "
            "WHERE query OPERATOR(pg_catalog.=) '" + HIDDEN_TEXT + "' AND ({wrote}) AND dbid OPERATOR(pg_catalog.=) "
            "(SELECT oid FROM pg_catalog.pg_database WHERE datname OPERATOR(pg_catalog.=) "
            "pg_catalog.current_database()) GROUP BY userid ORDER BY 3 DESC")
"""Per other role, its statements in ``{view}`` this login cannot read (``{wrote}``: which of them count, ``true``
for all)."""

Rows = Callable[[str], list[dict[str, Any]]]


Q_VIEW_SCHEMA = ("SELECT n.nspname::pg_catalog.text AS schema FROM pg_catalog.pg_extension e "
                 "JOIN pg_catalog.pg_namespace n ON n.oid OPERATOR(pg_catalog.=) e.extnamespace "
                 "WHERE e.extname OPERATOR(pg_catalog.=) 'pg_stat_statements'")


def statements_view(rows: Rows) -> str | None:
    """``pg_stat_statements`` qualified by the schema its extension is in, quoted here (never through the
    search_path, where anyone who may create in a schema on it could put a view of that name with statements of
    their choosing — review r28 F10); None when the extension is not created in this database."""
    found = rows(Q_VIEW_SCHEMA)
    if not found:
        return None
    schema = str(found[0]["schema"])
    return '"' + schema.replace('"', '""') + '".pg_stat_statements'


def hidden_sql(view: str, writes_only: str = "") -> str:
    """Per other role: its statements in ``view`` (pg_stat_statements, schema-qualified) this login cannot read;
    ``writes_only``: the columns that say a statement wrote (see the module docstring), "" for every statement."""
    return Q_HIDDEN.format(view=view, wrote=writes_only or "true")


def hidden_note(rows: list[dict[str, Any]], unknown: str) -> str | None:
    """The ``cannot_see`` sentence for the rows of :func:`hidden_sql`, or None when nothing is hidden.
    ``unknown`` names what the hidden statements leave unknown (e.g. "which columns other roles' UPDATEs set")."""
    if not rows:
        return None
    login = rows[0]["login"]
    n, calls = sum(int(r["statements"]) for r in rows), sum(int(r["calls"] or 0) for r in rows)
    roles = ", ".join(str(r["role"]) for r in rows[:5]) + (f" and {len(rows) - 5} more" if len(rows) > 5 else "")
    return (f"{unknown}: pg_stat_statements hides the text of {n:,} statement(s) ({calls:,} calls) of {roles} "
            f"from {login} - needs {NEEDS} (GRANT {NEEDS} TO {login})")


def hidden_statements(rows: Rows, view: str, unknown: str, *, writes_only: bool = False) -> str | None:
    """:func:`hidden_note` of this login in the current database; ``rows`` runs one query, rows as dicts."""
    wrote = ""
    if writes_only:
        new = int(rows(Q_VERSION)[0]["v"]) >= 130000
        wrote = WROTE if new else ""  # before 13: no wal_records, count all
    return hidden_note(rows(hidden_sql(view, wrote)), unknown)
