"""Measured impact: what a write actually did, read from the server before it is kept.

Reading a statement cannot tell whether ``WHERE id > 0`` or ``WHERE EXISTS (SELECT 1)`` matches every
row, nor what a trigger, a rule, a cascade or a function deletes. The server can: inside the call's
transaction, :data:`Q_WRITES` reads ``pg_stat_xact_user_tables`` — the rows this backend inserted,
updated and deleted per table, savepoints included — before and after the statement, and
:data:`agent19.safety.objects.Q_OBJECTS` lists every definition (relations of every kind with the
tables' relfilenode and dropped-column count, functions, types, policies, triggers, constraints,
rules, column defaults, schemas, default privileges), so a table truncated, rewritten or dropped out of sight
shows too, and so does a view, index, function… dropped, replaced, renamed or moved, a column default changed, row
level security turned off or on, privileges granted or revoked — by this transaction only, not another session
meanwhile. For each table with
rows updated or deleted (two or more), the exact row count before the statement is derived from an exact
``count(*)`` after it (``after + deleted - inserted``, all in the same transaction). The counters are the
partitions'; a partitioned table whose partitions were touched gets its own figures too, the partitions' added up
and its rows counted across every partition, so the limits hold for the table and not only for each partition.
Large objects count as the rows of their catalogs; a foreign table written (:data:`Q_REMOTE`) cannot be measured
here at all.

:func:`verdict` compares the figures with the thresholds in the settings
(``mass_write_fraction``, ``mass_write_rows``): above them the caller rolls the savepoint back and
the call becomes a confirmation challenge stating these numbers. :func:`add_earlier` first adds what agent19 removed
from the same tables without confirmation within ``mass_write_window_minutes`` (:mod:`agent19.safety.tally`), and the
verdict judges the sum too — as a share of the table's rows before the window's removals — so six statements of 49 %
each do not empty a table; a statement that writes the tally, or moves it, is a reason of its own.

Cost: three reads per call (the write counters, the foreign tables locked — a read of this backend's locks — and
:data:`~agent19.safety.objects.Q_OBJECTS`) before and after, plus one ``count(*)`` per table the statement
updated or deleted two or more rows of (``tools/bench/bench_safety.py`` measures it on a 1M-row table).
"""

from __future__ import annotations

from typing import Any

import psycopg
from psycopg import sql
from pydantic import BaseModel, Field

from agent19.config import Settings
from agent19.db import catalog_first
from agent19.migrate.parse import Statement
from agent19.safety import objects, tally
from agent19.safety.run import QueryResult, run_write

Q_WRITES = """
SELECT relid, schemaname AS nsp, relname AS rel, n_tup_ins AS ins, n_tup_upd AS upd, n_tup_del AS del
  FROM pg_stat_xact_user_tables
 WHERE n_tup_ins + n_tup_upd + n_tup_del > 0
UNION ALL
SELECT relid, schemaname, relname, n_tup_ins, n_tup_upd, n_tup_del
  FROM pg_stat_xact_sys_tables
 WHERE relid IN ('pg_catalog.pg_largeobject_metadata'::regclass, 'pg_catalog.pg_largeobject'::regclass)
   AND n_tup_ins + n_tup_upd + n_tup_del > 0
"""
"""Every table, whatever its schema: agent19's own writes (its confirmation ledger before :func:`before`, its tally of
removed rows after :func:`after`: :mod:`agent19.safety.tally`) are never inside the window :func:`run_measured`
measures, so nothing is left out — not a schema named
``agent19``, which any role may create or rename one of its own to (review r27 k03), nor the ledger itself (a
statement deleting its rows is the caller's write). Large objects are rows too, of two system catalogs the user
counters leave out: ``pg_largeobject_metadata`` (one row per large object: ``lo_unlink`` deletes it) and
``pg_largeobject`` (their data in pages: ``lo_put``, ``lo_truncate`` update and delete them) — review r27 k08. Any
login may count the first; only a superuser the second, so another login's change to two pages or more of large
object data has an unknown share and is confirmed by a human."""
LABELS = {"pg_catalog.pg_largeobject_metadata": " (one row per large object)",
          "pg_catalog.pg_largeobject": " (the data of large objects, in pages)"}
Q_REMOTE = """
SELECT DISTINCT c.oid, quote_ident(n.nspname) || '.' || quote_ident(c.relname) AS name
  FROM pg_locks l JOIN pg_class c ON c.oid = l.relation JOIN pg_namespace n ON n.oid = c.relnamespace
 WHERE l.pid = pg_backend_pid() AND l.locktype = 'relation' AND c.relkind = 'f'
   AND l.database = (SELECT d.oid FROM pg_database d WHERE d.datname = current_database())
   AND l.mode NOT IN ('AccessShareLock', 'RowShareLock')
"""
"""Foreign tables this transaction holds a write lock on. Their rows live on another server: no counter here sees
them, so a statement that writes one (directly, through a view, a trigger, a function, a partition or an inherited
table: the server locks every relation it writes, until the end of the transaction) is not measured but confirmed by
a human (review r27 k16). Reading one takes a weaker lock and is not counted. postgres_fdw writes in a remote
transaction that follows the local one: the savepoint's rollback undoes them."""
REWRITING_KINDS = {"ClusterStmt", "RefreshMatViewStmt", "AlterTableStmt", "VacuumStmt", "ReindexStmt"}
"""Statement kinds that rewrite their own table (a new relfilenode) by design, keeping every row."""


class Before(BaseModel):
    writes: dict[int, tuple[int, int, int]] = {}
    remote: set[int] = set()
    tally: tuple[int | None, bool] = (None, True)
    catalog: objects.Catalog = objects.Catalog()


class Touch(BaseModel):
    table: str = Field(description="schema.table")
    relid: int | None = Field(default=None, description="the table's oid")
    rows_before: int | None = Field(description="exact rows before the statement (None: not counted)")
    inserted: int
    updated: int
    deleted: int

    @property
    def touched(self) -> int:
        return self.updated + self.deleted

    @property
    def share(self) -> float:
        return self.touched / self.rows_before if self.rows_before else 0.0


class Earlier(BaseModel):
    """What agent19 removed from a table within ``mass_write_window_minutes`` before the statement, unconfirmed."""

    table: str = Field(description="schema.table")
    removed: int = Field(description="rows agent19 deleted or updated in it within the window, without confirmation")
    statements: int = Field(description="how many statements removed them")
    minutes: float = Field(description="minutes since the first of them")
    rows_before: int | None = Field(description="exact rows before the statement (None: not counted)")

    @property
    def base(self) -> int | None:
        """The table's rows before the window's first removal: those before the statement plus agent19's since."""
        return None if self.rows_before is None else self.rows_before + self.removed


class Measurement(BaseModel):
    touches: list[Touch] = []
    vanished: list[str] = Field(default=[], description="tables that no longer exist after the statement")
    rewritten: list[str] = Field(default=[], description="tables truncated or rewritten by the statement")
    columns_dropped: list[str] = Field(default=[], description="tables that lost a column")
    dropped: list[str] = Field(default=[], description="other definitions that no longer exist after the "
                               "statement, e.g. 'view app.report_v', 'index app.t_v_idx'")
    replaced: list[str] = Field(default=[], description="definitions the statement replaced in place, e.g. "
                                "'function app.f', 'the default of column app.t.v'")
    renamed: list[str] = Field(default=[], description="definitions renamed or moved to another schema, e.g. "
                               "'renamed view app.v to app.v2', 'moved table app.t to old.t'")
    security: list[str] = Field(default=[], description="row level security turned on or off, forced or not, e.g. "
                                "'disabled row level security on table app.t'")
    privileges: list[str] = Field(default=[], description="privileges granted or revoked (on tables, views, "
                                  "sequences, functions, types, schemas, or by default), e.g. 'granted SELECT on "
                                  "table app.t to PUBLIC'")
    remote: list[str] = Field(default=[], description="foreign tables the statement wrote: their rows are on another "
                              "server, which agent19 cannot measure")
    unmeasured: str | None = Field(default=None, description="why the statement was not run to be measured (code "
                                   "a rolled-back trial cannot contain or read: agent19.safety.trial)")
    outside: list[str] = Field(default=[], description="what the server showed outside the rolled-back trial "
                               "afterwards (agent19.safety.aftermath): a sequence set back, sessions that ended")
    tally: list[str] = Field(default=[], description="what the statement did to agent19's tally of removed rows "
                             "(agent19.safety.tally), e.g. 'wrote 1 rows of agent19.removals, ...'")
    earlier: list[Earlier] = Field(default=[], description="per table the statement touched: the rows agent19 "
                                   "removed from it without confirmation within the window before it")

    def figures(self) -> dict[str, Any]:
        """What the confirmation token binds (and step 2 must measure again, exactly)."""
        return self.model_dump()


def before(conn: Any) -> Before:
    """The counters and relations before the statement (inside the caller's transaction), read under
    ``pg_catalog, pg_temp`` as the reading after it is (:func:`after`)."""
    with catalog_first.own_path(conn):
        writes = {r["relid"]: (r["ins"], r["upd"], r["del"]) for r in conn.execute(Q_WRITES).fetchall()}
        remote = {r["oid"] for r in conn.execute(Q_REMOTE).fetchall()}
        return Before(writes=writes, remote=remote, catalog=objects.read(conn, after=False), tally=tally.state(conn))


def _touch(conn: Any, nsp: str, rel: str, ins: int, upd: int, dele: int, only: bool = True,
           relid: int | None = None) -> Touch:
    """A table's figures; its rows before the statement are counted (``ONLY`` the table itself, or with ``only``
    False every partition of a partitioned table) when it touched two or more."""
    exists = conn.execute("SELECT to_regclass(%s) IS NOT NULL AS e",
                          (sql.Identifier(nsp, rel).as_string(conn),)).fetchone()["e"]
    # one row touched is never over the share threshold on its own: no count needed (add_earlier counts when agent19
    # removed rows of the table earlier)
    rows = _rows_before(conn, nsp, rel, ins, dele, only) if exists and upd + dele >= 2 else None
    return Touch(table=f"{nsp}.{rel}", relid=relid, rows_before=rows, inserted=ins, updated=upd, deleted=dele)


def _rows_before(conn: Any, nsp: str, rel: str, ins: int, dele: int, only: bool) -> int | None:
    """The table's exact rows before the statement, from a count after it; None when this login may not count."""
    query = sql.SQL("SELECT count(*) AS n FROM {}{}").format(sql.SQL("ONLY " if only else ""), sql.Identifier(nsp, rel))
    try:
        with conn.transaction():  # a savepoint: a login without SELECT leaves the total unknown
            return int(conn.execute(query).fetchone()["n"]) + dele - ins
    except psycopg.errors.InsufficientPrivilege:
        return None


Q_ROOTS = """
SELECT l.relid, c.oid AS root, n.nspname AS nsp, c.relname AS rel
  FROM unnest(%s::oid[]) AS l(relid) JOIN pg_class c ON c.oid = pg_partition_root(l.relid)
  JOIN pg_namespace n ON n.oid = c.relnamespace
 WHERE c.oid <> l.relid
"""


def _partitioned(conn: Any, changes: dict[int, tuple[str, str, int, int, int]]) -> list[Touch]:
    """The partitioned tables whose partitions the statement touched, with the partitions' figures added up: the
    limits hold per table, and a DELETE spread over three partitions removes its rows from one table."""
    sums: dict[tuple[str, str, int], list[int]] = {}
    for r in conn.execute(Q_ROOTS, (list(changes),)).fetchall():
        _, _, ins, upd, dele = changes[r["relid"]]
        total = sums.setdefault((r["nsp"], r["rel"], r["root"]), [0, 0, 0])
        total[0], total[1], total[2] = total[0] + ins, total[1] + upd, total[2] + dele
    return [_touch(conn, nsp, rel, ins, upd, dele, only=False, relid=root)
            for (nsp, rel, root), (ins, upd, dele) in sums.items() if upd or dele]


def after(conn: Any, start: Before, statement_kind: str) -> Measurement:
    """What the statement did since ``start`` (same transaction, before commit or rollback), read under
    ``pg_catalog, pg_temp``: an overload of a built-in the statement made (``public.||(text, bigint)``, an exact
    match where pg_catalog's needs a coercion) is not what these reads call (review r27b k07; every name here is
    read from the catalog or qualified)."""
    with catalog_first.own_path(conn):
        return _after(conn, start, statement_kind)


def _after(conn: Any, start: Before, statement_kind: str) -> Measurement:
    m = Measurement()
    changes: dict[int, tuple[str, str, int, int, int]] = {}
    for r in conn.execute(Q_WRITES).fetchall():
        ins0, upd0, del0 = start.writes.get(r["relid"], (0, 0, 0))
        ins, upd, dele = r["ins"] - ins0, r["upd"] - upd0, r["del"] - del0
        changes[r["relid"]] = (r["nsp"], r["rel"], ins, upd, dele)
        if upd == 0 and dele == 0:
            continue  # inserting loses nothing
        m.touches.append(_touch(conn, r["nsp"], r["rel"], ins, upd, dele, relid=r["relid"]))
    if m.touches:
        m.touches += _partitioned(conn, changes)
    m.tally = tally.tampering(start.tally, tally.state(conn), {k: sum(v[2:]) for k, v in changes.items()})
    m.remote = sorted(r["name"] for r in conn.execute(Q_REMOTE).fetchall() if r["oid"] not in start.remote)
    now = objects.read(conn, after=True)
    # only what this transaction did: a definition it dropped (it holds a lock on it) or whose catalog row it wrote
    # — not another session's DDL committed between the two readings
    for key, (name, filenode, dropped) in start.catalog.tables.items():
        if key not in now.objects:
            if start.catalog.objects[key][0] in objects.TABLE_KINDS and objects.ours(now, key, None):
                m.vanished.append(name)
            continue
        if key not in now.tables:
            continue
        if now.tables[key][1] != filenode and key in now.mine and statement_kind not in REWRITING_KINDS:
            m.rewritten.append(name)
        if now.tables[key][2] != dropped and statement_kind != "AlterTableStmt":  # columns this transaction dropped
            m.columns_dropped.append(name)
    # ALTER TABLE changes its table's parts by design; CREATE OR REPLACE VIEW, a view's query; RENAME, a name
    own_parts = statement_kind != "AlterTableStmt"
    dropped, replaced = objects.diff(start.catalog, now, owned_too=own_parts,
                                     replaced_views=statement_kind != "ViewStmt")
    m.dropped = [objects.describe(kind, name) for kind, name in dropped if kind not in objects.TABLE_KINDS]
    m.replaced = [objects.describe(kind, name) for kind, name in replaced]
    m.renamed, m.security, m.privileges = objects.altered(start.catalog, now, owned_too=own_parts,
                                                          renames=statement_kind != "RenameStmt")
    m.touches.sort(key=lambda t: t.table)
    for names in (m.vanished, m.rewritten, m.columns_dropped):
        names.sort()
    return m


def verdict(m: Measurement, settings: Settings) -> list[tuple[str | None, str]]:
    """Why the measured effect needs the confirmation protocol, as (table or None, reason) pairs
    (empty: it may be kept)."""
    reasons: list[tuple[str | None, str]] = []
    if m.unmeasured:
        reasons.append((None, f"not measured, so treated as destructive: {m.unmeasured}"))
    reasons += [(None, f"it wrote foreign table {n}, whose rows are on another server: agent19 cannot measure how "
                 "many it changed there, so it is treated as destructive") for n in m.remote]
    earlier = {e.table: e for e in m.earlier}
    for t in m.touches:
        verb, name = _verb(t), t.table + LABELS.get(t.table, "")
        if t.touched > settings.mass_write_rows:
            reasons.append((t.table, f"measured: it {verb} {t.touched} rows of {name}, more than the limit of "
                            f"{settings.mass_write_rows} rows per table (AGENT19_MASS_WRITE_ROWS)"))
        elif t.touched >= 2 and t.rows_before is None:
            reasons.append((t.table, f"measured: it {verb} {t.touched} rows of {name}, whose total this login "
                            "may not count (no SELECT privilege), so the share is unknown: treated as destructive"))
        elif t.touched >= 2 and t.rows_before is not None and t.share >= settings.mass_write_fraction:
            reasons.append((t.table, f"measured: it {verb} {t.touched} of the {t.rows_before} rows of {name} "
                            f"({t.share:.0%}; the limit is {settings.mass_write_fraction:.0%} of a table, "
                            "AGENT19_MASS_WRITE_FRACTION)"))
        elif (e := earlier.get(t.table)) is not None and (why := _cumulative(t, e, verb, name, settings)):
            reasons.append((t.table, why))
    reasons += [(None, f"measured: it {d}") for d in m.tally]
    reasons += [(None, f"measured: it dropped table {n} (through a trigger, rule or function)") for n in m.vanished]
    reasons += [(None, f"measured: it truncated or rewrote table {n} (through a trigger, rule or function)")
                for n in m.rewritten]
    reasons += [(None, f"measured: it dropped a column of {n} (through a trigger, rule or function)")
                for n in m.columns_dropped]
    reasons += [(None, f"measured: it dropped {d} (through a trigger, rule or function)") for d in m.dropped]
    reasons += [(None, f"measured: it changed {d} (through a trigger, rule or function)") for d in m.replaced]
    reasons += [(None, f"measured: it {d} (through a trigger, rule or function)")
                for d in m.renamed + m.security + m.privileges]
    reasons += [(None, f"measured, after the rollback: {o}") for o in m.outside]
    return reasons


def _cumulative(t: Touch, e: Earlier, verb: str, name: str, settings: Settings) -> str | None:
    """Why ``t`` is over a limit once added to what agent19 removed from the table within the window; None if not."""
    total, base = t.touched + e.removed, e.base
    if e.removed <= 0:
        return None
    window = (f"within {settings.mass_write_window_minutes:g} minutes, AGENT19_MASS_WRITE_WINDOW_MINUTES; "
              "confirmed statements do not count")
    ago = "in the last minute" if e.minutes < 1.5 else f"in the last {e.minutes:.0f} minutes"
    runs = f"{e.statements} statement{'s' if e.statements != 1 else ''} run without confirmation"
    if total > settings.mass_write_rows:
        return (f"measured: it {verb} {t.touched} rows of {name}; with the {e.removed} rows agent19 removed from it "
                f"{ago} ({runs}), that is {total} rows, more than the limit of {settings.mass_write_rows} rows per "
                f"table (AGENT19_MASS_WRITE_ROWS, {window})")
    if base is None or e.rows_before is None:
        return (f"measured: it {verb} {t.touched} rows of {name}, and agent19 removed {e.removed} more {ago} ({runs}); "
                "this login may not count the table's rows (no SELECT privilege), so the share is unknown: treated "
                "as destructive")
    share = total / base if base else 1.0
    if share < settings.mass_write_fraction:
        return None
    own = f" ({t.touched / e.rows_before:.0%})" if e.rows_before else ""
    return (f"measured: it {verb} {t.touched} of the {e.rows_before} rows of {name}{own}; with the {e.removed} rows "
            f"({e.removed / base:.0%}) agent19 removed from it {ago} ({runs}), that is {total} of its {base} rows "
            f"({share:.0%}; the limit is {settings.mass_write_fraction:.0%} of a table, AGENT19_MASS_WRITE_FRACTION, "
            f"{window})")


def add_earlier(conn: Any, m: Measurement, settings: Settings, *, lock: bool) -> None:
    """Add to ``m`` what agent19 removed, without confirmation and within the window, from each table the statement
    touched (:mod:`agent19.safety.tally`; ``lock``: the statement will be recorded there, in this transaction), read
    under ``pg_catalog, pg_temp`` as :func:`after` reads."""
    with catalog_first.own_path(conn):  # after the statement: an overload it made is not what these call
        touched = {t.relid: t for t in m.touches if t.relid is not None and t.touched}
        recent = tally.recent(conn, list(touched), settings.mass_write_window_minutes, lock)
        for relid, r in sorted(recent.items()):
            t = touched[relid]
            rows = t.rows_before if t.rows_before is not None else _counted_now(conn, relid, t)
            m.earlier.append(Earlier(table=t.table, removed=r["removed"], statements=r["statements"],
                                     minutes=r["minutes"], rows_before=rows))


Q_NAME = """SELECT n.nspname AS nsp, c.relname AS rel, c.relkind AS kind
  FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace WHERE c.oid = %s"""


def _counted_now(conn: Any, relid: int, t: Touch) -> int | None:
    """The rows before a statement that touched one row of the table (not counted by :func:`after`): its share
    matters once added to what agent19 removed earlier."""
    where = conn.execute(Q_NAME, (relid,)).fetchone()
    if where is None:
        return None
    return _rows_before(conn, where["nsp"], where["rel"], t.inserted, t.deleted, only=where["kind"] != "p")


def _verb(t: Touch) -> str:
    if t.deleted and t.updated:
        return f"deleted {t.deleted} and updated {t.updated}, touching"
    return "deleted" if t.deleted else "updated"


def run_measured(conn: Any, st: Statement, max_rows: int, status: str) -> tuple[QueryResult, Measurement]:
    """Run the write ``st`` on ``conn`` (inside the caller's transaction) and measure what it touched."""
    start = before(conn)
    result = run_write(conn, st.sql, st, max_rows, status)
    return result, after(conn, start, st.node)


class OverThreshold(Exception):
    """A write touched more than the thresholds allow; its savepoint was rolled back."""

    def __init__(self, m: Measurement, reasons: list[tuple[str | None, str]]) -> None:
        super().__init__("; ".join(r for _, r in reasons))
        self.m, self.reasons = m, reasons


def keep_within_thresholds(conn: Any, st: Statement, max_rows: int, settings: Settings) -> QueryResult:
    """Run ``st`` in a savepoint and commit it only under the thresholds — its own figures added to what agent19
    removed from the same tables within the window (:mod:`agent19.safety.tally`), where it is then recorded, in the
    same transaction; above them nothing is kept and :class:`OverThreshold` carries the measurement for the
    confirmation challenge."""
    with conn.transaction():
        with conn.transaction():  # the savepoint
            result, m = run_measured(conn, st, max_rows, "committed")
            add_earlier(conn, m, settings, lock=True)
            reasons = verdict(m, settings)
            if reasons:
                raise OverThreshold(m, reasons)  # rolls back the savepoint and the transaction
        record(conn, m, settings)
    return result


def record(conn: Any, m: Measurement, settings: Settings) -> None:
    """Record in the tally (:mod:`agent19.safety.tally`) the rows the measured statement removed, in its own
    transaction, under ``pg_catalog, pg_temp`` as :func:`after` reads."""
    with catalog_first.own_path(conn):
        tally.record(conn, [(t.relid, t.table, t.touched) for t in m.touches if t.relid is not None],
                     settings.mass_write_window_minutes)
