"""Watch a statement that runs outside a transaction (in a scratch database) from other sessions.

``observe()`` reads the locks a statement holds *afterwards*; a statement that commits by itself
(``CREATE INDEX CONCURRENTLY``, ``VACUUM``…) holds none afterwards, so here the locks are read from
``pg_locks`` by a second session *while* it runs:

1. **Gate.** A gate session takes ACCESS EXCLUSIVE on every table the statement touches, then the
   statement starts. Its first lock request on each table waits and shows in ``pg_locks`` with
   ``granted = false`` and the exact mode: observed deterministically, however fast the statement.
   The gate is released as soon as the request is seen (or after ``gate_ms`` when none comes);
   the duration is measured from that moment.
2. **Sampling.** Every lock the statement's backend holds or requests is sampled until it ends.
3. **Blocking probes** (optional). Once the statement holds its lock, a ``SELECT`` and an
   ``INSERT … SELECT … WHERE false`` (a real INSERT that writes nothing, in a transaction rolled
   back) are tried on each touched table from their own sessions, with ``lock_timeout`` =
   ``probe_timeout_ms``; whether each waited (seen waiting in ``pg_locks``) and how long it took are
   recorded.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from typing import Any

import psycopg
from psycopg import sql
from pydantic import BaseModel, Field

from agent19.db import catalog_first
from agent19.db.catalog import EQ, _chars, relation_key_sql
from agent19.db.observe import Q_FILENODES, HeldLock, Node, name_gone
from agent19.migrate.dryrun.progress import ServerProgress, read_progress
from agent19.migrate.patterns.sqlnames import relation_key

Reporter = Callable[[float, ServerProgress | None], None]
"""Called while a watched statement runs: (seconds elapsed, the server's progress report of it or None)."""

QUALIFIED_SQL = True  # its statements name functions, operators, types, catalog relations pg_catalog.-qualified

Q_WORKER_LOCKS = f"""
SELECT COALESCE({relation_key_sql('n.nspname', 'c.relname')}, l.relation::pg_catalog.text) AS relation,
       c.relkind::pg_catalog.text AS relkind, l.mode, l.granted, l.pid
  FROM pg_catalog.pg_locks l LEFT JOIN pg_catalog.pg_class c ON c.oid {EQ} l.relation
  LEFT JOIN pg_catalog.pg_namespace n ON n.oid {EQ} c.relnamespace
 WHERE l.pid {EQ} ANY(%s) AND l.locktype {EQ} 'relation' AND l.relation OPERATOR(pg_catalog.>=) 16384
   AND l.database {EQ} (SELECT oid FROM pg_catalog.pg_database WHERE datname {EQ} pg_catalog.current_database())
"""
Q_TABLE_NAME = (f"SELECT n.nspname::pg_catalog.text, c.relname::pg_catalog.text FROM pg_catalog.pg_class c "
                f"JOIN pg_catalog.pg_namespace n ON n.oid {EQ} c.relnamespace "
                f"WHERE c.oid {EQ} pg_catalog.to_regclass(%s) AND c.relkind {EQ} ANY ({_chars('r', 'p', 'm')})")
STATEMENT_TIMEOUT = "SET statement_timeout = {}"
PROBE_TIMEOUTS = "SET lock_timeout = {}; SET statement_timeout = {}"
BEGIN, ROLLBACK = "BEGIN", "ROLLBACK"
LOCK_GATE = "LOCK TABLE {} IN ACCESS EXCLUSIVE MODE"
PROBE_SELECT = "SELECT 1 FROM {} LIMIT 1"
PROBE_INSERT = "INSERT INTO {} SELECT * FROM {} WHERE false"
"""The probes of a table (each a quoted name): they look nothing up by name but the table."""


class Probe(BaseModel):
    table: str
    kind: str = Field(description="select or insert")
    waited: bool = Field(description="the probe was seen waiting for a lock the statement held")
    elapsed_ms: float = Field(description="how long the probe took (its wait included)")
    timed_out: bool = Field(default=False, description="gave up after lock_timeout")
    error: str | None = None


class Watched(BaseModel):
    locks: list[HeldLock] = []
    rewritten: list[str] = []
    duration_ms: float = 0.0
    rows: int | None = None
    notices: list[str] = []
    error: str | None = None
    sqlstate: str | None = None
    position: int | None = None
    probes: list[Probe] = []


def _connect(dsn: str, timeout_ms: int) -> psycopg.Connection[Any]:
    conn = catalog_first.connect(dsn, autocommit=True, application_name="agent19 watch")
    conn.execute(STATEMENT_TIMEOUT.format(int(timeout_ms)))
    return conn


def _filenodes(conn: psycopg.Connection[Any]) -> dict[int, Node]:
    # under pg_catalog, pg_temp: the migration replayed in this database may have made an overload that would match
    # these reads' functions or operators better than pg_catalog's (agent19.db.catalog_first.read_own)
    (cur,) = catalog_first.read_own(conn, (Q_FILENODES,))
    return {r[0]: (r[1], r[2], r[3], r[4]) for r in cur.fetchall()}


def _existing_tables(conn: psycopg.Connection[Any], tables: list[str]) -> dict[str, str]:
    """``schema.name`` (as pg_locks is reported) → quoted SQL name, for the tables that exist."""
    out: dict[str, str] = {}
    for t in tables:  # the names as they are, under pg_catalog, pg_temp, written here: the LOCK TABLE it goes into
        # must never hold text a function the migration made wrote (review r28 F12: a format() overload escaped)
        (cur,) = catalog_first.read_own(conn, ((Q_TABLE_NAME, (t,)),))
        row = cur.fetchone()
        if row:
            out[relation_key(row[0], row[1])] = sql.Identifier(row[0], row[1]).as_string(conn)
    return out



def watch_statement(
    dsn: str, statement: str, tables: list[str], *, statement_timeout_ms: int, measure_blocking: bool = False,
    probe_timeout_ms: int = 2000, gate_ms: int = 500, report: Reporter | None = None,
) -> Watched:
    """Run ``statement`` in autocommit on ``dsn`` and watch its locks (and optionally whom it blocks). While it
    runs, ``report`` is called about once a second with the seconds elapsed and the server's progress report
    of it (``pg_stat_progress_*``, :mod:`agent19.migrate.dryrun.progress`), from this thread."""
    result = Watched()
    observer = _connect(dsn, statement_timeout_ms)
    worker = _connect(dsn, statement_timeout_ms)
    gate = _connect(dsn, statement_timeout_ms)
    try:
        quoted = _existing_tables(observer, tables)
        tables = list(quoted)
        worker_pid = worker.info.backend_pid
        before = _filenodes(observer)
        gate.execute(BEGIN)
        for t in tables:
            gate.execute(sql.SQL(LOCK_GATE).format(sql.SQL(quoted[t])))

        def on_notice(diag: psycopg.errors.Diagnostic) -> None:
            result.notices.append(f"{diag.severity}: {diag.message_primary}")

        worker.add_notice_handler(on_notice)
        done = threading.Event()
        ended: list[float] = []

        def run() -> None:
            try:
                cur = worker.execute(statement)
                result.rows = cur.rowcount if cur.rowcount >= 0 else None
            except psycopg.Error as exc:
                result.error = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
                result.sqlstate = exc.sqlstate
                pos = exc.diag.statement_position
                result.position = int(pos) if pos else None
            finally:
                ended.append(time.perf_counter())
                done.set()

        seen: dict[tuple[str, str], HeldLock] = {}

        def sample(pids: list[int]) -> list[tuple[Any, ...]]:
            rows = catalog_first.read_own(observer, ((Q_WORKER_LOCKS, (pids,)),))[0].fetchall()
            for r in rows:
                if r[4] == worker_pid:
                    seen.setdefault((r[0], r[2]), HeldLock(relation=r[0], relkind=r[1], mode=r[2]))
            return rows

        thread = threading.Thread(target=run, name="agent19-watch", daemon=True)
        started = time.perf_counter()
        thread.start()
        deadline = started + gate_ms / 1000
        gated = False
        while tables and not done.is_set() and time.perf_counter() < deadline:
            if any(r[3] is False for r in sample([worker_pid])):
                gated = True
                break
            time.sleep(0.002)
        released = time.perf_counter()
        gate.execute(ROLLBACK)
        if measure_blocking and tables:
            result.probes = _probe(dsn, quoted, worker_pid, done, sample, probe_timeout_ms)
        next_report = time.perf_counter() + 1.0
        while not done.wait(0.003):
            sample([worker_pid])
            if report is not None and time.perf_counter() >= next_report:
                try:
                    server = read_progress(observer, worker_pid)
                except psycopg.Error:  # a courtesy: the statement is still watched, reported by elapsed time
                    server = None
                report(time.perf_counter() - started, server)
                next_report = time.perf_counter() + 1.0
        thread.join()
        result.duration_ms = round((ended[0] - (released if gated else started)) * 1000, 3)
        after = _filenodes(observer)
        result.rewritten = sorted(rel[0] for oid, rel in before.items() if oid in after and after[oid][1] != rel[1])
        # a relation the statement created was invisible to the observer until it committed: named now
        named = [h.model_copy(update={"relation": after[int(h.relation)][0]})
                 if h.relation.isdigit() and int(h.relation) in after else name_gone(h, before) for h in seen.values()]
        result.locks = sorted(named, key=lambda h: (h.relation, h.mode))
        return result
    finally:
        for conn in (gate, worker, observer):
            conn.close()


def _probe(
    dsn: str, tables: dict[str, str], worker_pid: int, done: threading.Event, sample: Any, timeout_ms: int,
) -> list[Probe]:
    """Once the statement holds a lock on a touched table, try a SELECT and an INSERT on each."""
    while not done.is_set():
        if any(r[3] and r[0] in tables for r in sample([worker_pid])):
            break
        time.sleep(0.002)
    sessions: list[tuple[str, str, psycopg.Connection[Any]]] = []
    for t in tables:
        for kind in ("select", "insert"):
            conn = catalog_first.connect(dsn, autocommit=True, application_name="agent19 probe")
            conn.execute(PROBE_TIMEOUTS.format(int(timeout_ms), int(timeout_ms) * 2))
            sessions.append((t, kind, conn))
    results: list[Probe] = []
    waited: set[int] = set()
    threads = []
    lock = threading.Lock()

    def run(table: str, kind: str, conn: psycopg.Connection[Any]) -> None:
        rel = sql.SQL(tables[table])
        query = (sql.SQL(PROBE_SELECT).format(rel) if kind == "select"
                 else sql.SQL(PROBE_INSERT).format(rel, rel))
        start = time.perf_counter()
        error, timed_out = None, False
        try:
            with conn.transaction(force_rollback=True):
                conn.execute(query)
        except psycopg.errors.LockNotAvailable:
            timed_out = True
        except psycopg.Error as exc:
            error = str(exc).strip().splitlines()[0]
        elapsed = (time.perf_counter() - start) * 1000
        with lock:
            results.append(Probe(table=table, kind=kind, waited=conn.info.backend_pid in waited or timed_out,
                                 elapsed_ms=round(elapsed, 3), timed_out=timed_out, error=error))

    pids = [c.info.backend_pid for _, _, c in sessions]
    for t, kind, conn in sessions:
        th = threading.Thread(target=run, args=(t, kind, conn), daemon=True)
        th.start()
        threads.append(th)
    while any(th.is_alive() for th in threads):
        for r in sample([worker_pid, *pids]):
            if r[3] is False and r[4] in pids:
                waited.add(r[4])
        time.sleep(0.002)
    for _, _, conn in sessions:
        conn.close()
    return sorted(results, key=lambda p: (p.table, p.kind))
