"""Observe what a statement really does on the server: the locks it takes and what it rewrites.

Run inside a transaction that the caller rolls back:

    with db.rolled_back() as conn:
        obs = observe(conn, "ALTER TABLE orders ALTER COLUMN note TYPE text")
    obs.strongest("public.orders")   # 'AccessExclusiveLock'
    obs.rewritten                    # ['public.orders'] if its relfilenode changed

Locks are read from ``pg_locks`` for this backend (``locktype = 'relation'``) after the
statement, so they are the locks held until commit. Rewrites are detected by comparing
``pg_class.relfilenode`` before and after. This is the oracle that agent19's knowledge of
PostgreSQL's behaviour is tested against.
"""

from __future__ import annotations

import time
from typing import TYPE_CHECKING, Any

from pydantic import BaseModel, Field

from agent19.db import catalog_first
from agent19.db.catalog import EQ, NE, NOT_LIKE, _chars, relation_key_sql
from agent19.db.locks import strongest_mode

if TYPE_CHECKING:  # annotations only: the driver loads where a connection is opened
    import psycopg


QUALIFIED_SQL = True  # its statements name functions, operators, types, catalog relations pg_catalog.-qualified

Node = tuple[str, int, str, int | None]
"""A relation as :data:`Q_FILENODES` reads it: (name, relfilenode or 0, relkind, an index's table oid)."""
KIND_WORDS = {"r": "table", "p": "partitioned table", "v": "view", "m": "materialized view", "i": "index",
              "I": "partitioned index", "S": "sequence", "f": "foreign table", "t": "TOAST table"}
DATA_KINDS = {"r", "p", "m"}
"""Kinds whose rows are lost when dropped, even if something of the same name is made again."""


class HeldLock(BaseModel):
    relation: str = Field(description="schema-qualified name, or the oid when it no longer exists")
    relkind: str | None = Field(default=None, description="pg_class.relkind: r table, i index, p partitioned, ...")
    mode: str


class Observation(BaseModel):
    sql: str
    locks: list[HeldLock] = []
    rewritten: list[str] = Field(default=[], description="relations whose relfilenode changed")
    duration_ms: float
    rows: int | None = Field(default=None, description="rows affected, when the statement reports it")
    notices: list[str] = []
    gone_names: dict[str, str] = Field(default={}, description="oid (as in locks) -> a name, for relations that no "
                                       "longer exist after the statement: see name_gone()")
    renamed: dict[str, str] = Field(default={}, description="name after the statement -> its name before, for "
                                    "relations the statement renamed (or moved to another schema)")
    dropped: list[str] = Field(default=[], description="relations that no longer exist after the statement, with "
                               "their kind: 'table app.victim', 'view app.report_v' (not the indexes that went with "
                               "their table, nor an index or view made again under its name, as ALTER COLUMN TYPE "
                               "rebuilds indexes)")
    filenodes_after: dict[int, Node] = Field(
        default={}, exclude=True, repr=False,
        description="every user relation after the statement (oid -> name, relfilenode): the next statement's "
                    "``before`` when nothing ran between them (see observe())")
    also: list[list[Any]] = Field(default=[], exclude=True, repr=False,
                                  description="the rows of observe()'s ``also`` queries, read after the statement")

    def named_locks(self) -> list[HeldLock]:
        """``locks`` with relations that no longer exist named instead of shown as bare oids."""
        return [lk.model_copy(update={"relation": self.gone_names[lk.relation]}) if lk.relation in self.gone_names
                else lk for lk in self.locks]

    def modes_on(self, relation: str) -> set[str]:
        return {lock.mode for lock in self.locks if lock.relation == relation}

    def strongest(self, relation: str) -> str | None:
        return strongest_mode(self.modes_on(relation))

    @property
    def strongest_overall(self) -> str | None:
        return strongest_mode({lock.mode for lock in self.locks if lock.relkind in ("r", "p", "m", None)})


# Every user relation, to name one a statement drops (its kind, and an index's table: an index that goes with
# its table is not reported apart); only tables, matviews, indexes and TOAST count for rewrites (0 for the rest:
# a sequence's RESTART gives it a new file, which is no table rewrite).
Q_FILENODES = f"""
SELECT c.oid, {relation_key_sql('n.nspname', 'c.relname')} AS name,
       CASE WHEN c.relkind {EQ} ANY ({_chars('r', 'm', 'i', 't')}) THEN c.relfilenode ELSE 0 END AS relfilenode,
       c.relkind::pg_catalog.text AS relkind, i.indrelid AS owner
  FROM pg_catalog.pg_class c JOIN pg_catalog.pg_namespace n ON n.oid {EQ} c.relnamespace
  LEFT JOIN pg_catalog.pg_index i ON i.indexrelid {EQ} c.oid
 WHERE c.relkind {EQ} ANY ({_chars('r', 'm', 'i', 't', 'p', 'I', 'v', 'S', 'f')})
   AND n.nspname {NE} ALL ('{{pg_catalog,information_schema}}'::pg_catalog.name[])
   AND n.nspname {NOT_LIKE} 'pg_toast%%'
"""
Q_LOCKS = f"""
SELECT COALESCE({relation_key_sql('n.nspname', 'c.relname')}, l.relation::pg_catalog.text) AS relation,
       c.relkind::pg_catalog.text AS relkind, l.mode
  FROM pg_catalog.pg_locks l
  LEFT JOIN pg_catalog.pg_class c ON c.oid {EQ} l.relation
  LEFT JOIN pg_catalog.pg_namespace n ON n.oid {EQ} c.relnamespace
 WHERE l.pid {EQ} pg_catalog.pg_backend_pid() AND l.locktype {EQ} 'relation' AND l.granted
   AND l.database {EQ} (SELECT oid FROM pg_catalog.pg_database WHERE datname {EQ} pg_catalog.current_database())
   AND COALESCE(n.nspname, '') {NE} ALL ('{{pg_catalog,information_schema}}'::pg_catalog.name[])
   AND l.relation OPERATOR(pg_catalog.>=) 16384
 ORDER BY 1, 3
"""


def filenodes(conn: psycopg.Connection[Any]) -> dict[int, Node]:
    return _filenodes(own_reads(conn, (Q_FILENODES,))[0])


def held_locks(conn: psycopg.Connection[Any]) -> list[HeldLock]:
    return _held(own_reads(conn, (Q_LOCKS,))[0])


def own_reads(conn: psycopg.Connection[Any], queries: tuple[str, ...]) -> list[list[Any]]:
    """The rows of ``queries`` (constants), read in one round trip under :data:`agent19.db.catalog_first.OWN_PATH`
    (:func:`agent19.db.catalog_first.read_own`): what a statement under observation created (an overload of
    ``replace`` or ``>=``) is no candidate for them."""
    return [c.fetchall() for c in catalog_first.read_own(conn, queries)]


def _filenodes(rows: list[Any]) -> dict[int, Node]:
    return {_get(r, 0, "oid"): (_get(r, 1, "name"), _get(r, 2, "relfilenode"), _get(r, 3, "relkind"),
                                _get(r, 4, "owner")) for r in rows}


def _held(rows: list[Any]) -> list[HeldLock]:
    return [HeldLock(relation=_get(r, 0, "relation"), relkind=_get(r, 1, "relkind"), mode=_get(r, 2, "mode"))
            for r in rows]


def after_state(conn: psycopg.Connection[Any]) -> tuple[dict[int, Node], list[HeldLock]]:
    """:func:`filenodes` and :func:`held_locks` in one round trip (pipeline mode), or one after the other where
    the client library has no pipeline mode."""
    nodes, locks, _ = _after_state(conn, ())
    return nodes, locks


def _after_state(conn: psycopg.Connection[Any], also: tuple[str, ...],
                 ) -> tuple[dict[int, Node], list[HeldLock], list[list[Any]]]:
    """:func:`after_state`, and the rows of the queries ``also`` (constants, no parameters) in the same round trip
    (:func:`own_reads`)."""
    nodes, locks, *more = own_reads(conn, (Q_FILENODES, Q_LOCKS, *also))
    return _filenodes(nodes), _held(locks), more


def observe(conn: psycopg.Connection[Any], sql: str, params: Any = None, *,
            before: dict[int, Node] | None = None, also: tuple[str, ...] = ()) -> Observation:
    """Run ``sql`` on ``conn`` (inside the caller's transaction) and report its locks and rewrites.

    The caller owns the transaction and must roll it back; errors from ``sql`` propagate. ``before``: the
    relations' file nodes as they are now, when the caller read them after the last thing this session changed
    (an earlier statement's :attr:`Observation.filenodes_after`, or :func:`after_state`): not read again.
    ``also``: more queries (constants) to run right after the statement, in the round trip that reads its locks
    and file nodes; their rows are :attr:`Observation.also`.
    """
    notices: list[str] = []

    def on_notice(diag: psycopg.errors.Diagnostic) -> None:
        notices.append(f"{diag.severity}: {diag.message_primary}")

    conn.add_notice_handler(on_notice)
    try:
        if before is None:
            before = filenodes(conn)
        start = time.perf_counter()
        cur = conn.execute(sql, params)
        duration_ms = (time.perf_counter() - start) * 1000
        rows = cur.rowcount if cur.rowcount >= 0 else None
        after, locks, more = _after_state(conn, also)
    finally:
        conn.remove_notice_handler(on_notice)
    rewritten = sorted(
        rel[0] for oid, rel in before.items() if oid in after and after[oid][1] != rel[1] and rel[1] != 0
    )
    gone = {lk.relation: name_gone(lk, before).relation for lk in locks if lk.relation.isdigit()}
    renamed = {after[oid][0]: rel[0] for oid, rel in before.items() if oid in after and after[oid][0] != rel[0]}
    return Observation(sql=sql, locks=locks, rewritten=rewritten, duration_ms=duration_ms, rows=rows,
                       notices=notices, gone_names=gone, renamed=renamed, dropped=dropped(before, after),
                       filenodes_after=after, also=more)


def dropped(before: dict[int, Node], after: dict[int, Node]) -> list[str]:
    """The relations in ``before`` not in ``after``, as 'kind name' (see :attr:`Observation.dropped`)."""
    names_now = {rel[0] for rel in after.values()}
    return sorted(f"{KIND_WORDS.get(kind, 'relation')} {name}" for oid, (name, _, kind, owner) in before.items()
                  if oid not in after and kind != "t" and not (owner is not None and owner not in after)
                  and (kind in DATA_KINDS or name not in names_now))


def name_gone(lock: HeldLock, before: dict[int, Node]) -> HeldLock:
    """Name a lock whose relation no longer exists (pg_locks then shows only its oid): a relation the
    statement dropped is named as it was before; one it created and dropped again (the new heap and
    indexes of a table rewrite) is called what it is, not shown as a bare number."""
    if not lock.relation.isdigit():
        return lock
    oid = int(lock.relation)
    if oid in before:
        return lock.model_copy(update={"relation": f"{before[oid][0]} (dropped)"})
    return lock.model_copy(update={"relation": f"transient relation {oid} (created and dropped by this statement, "
                                               "e.g. a rewrite's new copy)"})


def _get(row: Any, index: int, key: str) -> Any:
    return row[key] if isinstance(row, dict) else row[index]
