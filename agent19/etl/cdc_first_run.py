"""The first run of ``cdc run``: the checks before a slot is created, the slot with its exported snapshot, and
the copy of each captured table under that snapshot (:meth:`agent19.etl.cdc.CdcRun.initial_copy` drives them)."""

from __future__ import annotations

import shlex
import threading
from typing import Any

import psycopg
from psycopg import sql

from agent19.db.connection import Connection, Database
from agent19.errors import InputError
from agent19.etl.cdc_apply import Target, quoted
from agent19.migrate.patterns.sqlnames import ident

Q_OPEN_WRITERS = """
SELECT pid, datname, state, extract(epoch FROM now() - xact_start)::float AS age_s FROM pg_stat_activity
 WHERE backend_xid IS NOT NULL AND pid <> pg_backend_pid() AND backend_type = 'client backend' ORDER BY xact_start
"""


def require_empty(dest: Connection, targets: dict[str, Target], slot: str, lock: bool = False) -> None:
    """Refuse a first run into destination tables that hold rows (the copy would mix or, emptied first, lose
    them); ``lock``: inside the copy's transaction, under an EXCLUSIVE lock (reads go on, writes wait)."""
    if lock:
        dest.execute(sql.SQL("LOCK TABLE {} IN EXCLUSIVE MODE").format(
            sql.SQL(", ").join(t.ident for t in targets.values())))
    full = {}
    for name, t in targets.items():
        row = dest.execute(sql.SQL("SELECT EXISTS (SELECT FROM {}) AS any").format(t.ident)).fetchone()
        if row and row["any"]:
            n = dest.execute(sql.SQL("SELECT count(*) AS n FROM {}").format(t.ident)).fetchone()
            full[name] = int(n["n"]) if n else 0
    if not full:
        return
    listed = ", ".join(f"{name} ({n:,} rows)" for name, n in full.items())
    truncate = shlex.quote("TRUNCATE " + ", ".join(quoted(name) for name in full))
    raise InputError(
        f"refused: the first run of slot {slot} copies the source tables into empty destination tables, "
        f"and these hold rows: {listed}. Nothing was removed, no slot was created",
        f"if those rows may go, empty the tables through the confirmation protocol on the destination, where a "
        f"person agrees to lose them: DATABASE_URL=<destination> agent19 confirm {truncate} (then with "
        f"--token ... --mode execute); or capture into other, empty tables")



Q_FOREIGN_KEYS = """
SELECT c.conrelid::regclass::text AS child, c.confrelid::regclass::text AS parent, c.conname AS name,
       c.condeferrable AS deferrable, c.conrelid::oid AS child_oid, c.confrelid::oid AS parent_oid
  FROM pg_constraint c
 WHERE c.contype = 'f' AND c.conrelid <> c.confrelid AND c.conrelid = ANY(%(oids)s) AND c.confrelid = ANY(%(oids)s)
"""


def copy_order(dest: Connection, targets: dict[str, Target]) -> list[str]:
    """The captured tables in the order their first copy can fill them: a table after the tables its destination
    foreign keys reference (whatever order they were named in; ties keep it). A cycle of foreign keys is
    broken at its DEFERRABLE ones (the copy defers them to its commit); a cycle without one is refused before
    any slot is made: no order fills those tables."""
    oids = {}
    for name, t in targets.items():
        row = dest.execute("SELECT to_regclass(%s)::oid AS oid", (t.ident.as_string(dest),)).fetchone()
        if row and row["oid"] is not None:
            oids[int(row["oid"])] = name
    edges = dest.execute(Q_FOREIGN_KEYS, {"oids": list(oids)}).fetchall()

    def sort(names: list[str], keys: list[Any]) -> tuple[list[str], list[str]]:
        """(names whose parents among ``names`` come first, in the named order otherwise; those in a cycle)."""
        parents: dict[str, set[str]] = {name: set() for name in names}
        for e in keys:
            if oids[int(e["child_oid"])] in parents and oids[int(e["parent_oid"])] in parents:
                parents[oids[int(e["child_oid"])]].add(oids[int(e["parent_oid"])])
        order, left = [], list(names)
        while ready := [n for n in left if not (parents[n] & set(left))]:
            order += ready
            left = [n for n in left if n not in ready]
        return order, left

    order, left = sort(list(targets), edges)
    rigid = [e for e in edges if not e["deferrable"]]
    tail, stuck = sort(left, rigid)  # deferrable keys are checked at the copy's commit: only the others order it
    if stuck:
        named = "; ".join(f"{e['name']} ({e['child']} -> {e['parent']})" for e in rigid
                          if oids[int(e["child_oid"])] in stuck and oids[int(e["parent_oid"])] in stuck)
        raise InputError(
            f"the destination's foreign keys between {', '.join(stuck)} form a cycle ({named}): no order of the "
            "first copy fills them without a violation, and none of them is DEFERRABLE. No slot was created",
            "on the destination make one foreign key of the cycle deferrable (ALTER TABLE ... ALTER CONSTRAINT ... "
            "DEFERRABLE; the copy then checks it at its commit), or drop it there for the first run and add it "
            "back after (the changes that follow arrive in the source's order, which satisfies it)")
    return order + tail


def require_replication_role(source: Database, consequence: str) -> None:
    """Refuse, saying what to run, when the login may not use replication slots (else the server's bare
    "must be superuser or replication role" on the first run, or on a later one after the role lost it)."""
    with source.read() as conn:
        role = conn.execute("SELECT rolname, rolsuper OR rolreplication AS ok FROM pg_roles "
                            "WHERE rolname = current_user").fetchone()
    if role is not None and not role["ok"]:
        raise InputError(f"login {role['rolname']} may not create or read replication slots (it has neither the "
                         f"REPLICATION attribute nor superuser); {consequence}",
                         f"a superuser runs: ALTER ROLE {ident(role['rolname'])} REPLICATION; (agent19 cdc check "
                         "lists what else the source needs)")



def create_slot(source: Database, repl: psycopg.Connection[Any], slot: str, plugin: str) -> Any:
    """CREATE_REPLICATION_SLOT waits until no transaction that had begun writing anywhere on the source server
    (any database) is still open; statement_timeout does not stop that wait, so a timer of the same length
    cancels it, and the refusal names the sessions it waited for."""
    wait_s = source.settings.statement_timeout_ms / 1000
    timer = threading.Timer(wait_s, repl.cancel)
    timer.start()
    try:
        row = repl.execute(sql.SQL("CREATE_REPLICATION_SLOT {} LOGICAL {} EXPORT_SNAPSHOT").format(
            sql.Identifier(slot), sql.Identifier(plugin))).fetchone()
    except psycopg.errors.QueryCanceled:
        with source.read() as conn:
            open_xacts = conn.execute(Q_OPEN_WRITERS).fetchall()
        named = "; ".join(f"pid {r['pid']} ({r['datname']}, {r['state'] or 'state hidden'}"
                          + (f" for {r['age_s']:.0f}s)" if r["age_s"] is not None else ")")
                          for r in open_xacts) or "none visible to this login (pg_read_all_stats shows all)"
        raise InputError(f"creating slot {slot} waited {wait_s:g}s for transactions open on the source server "
                         f"to end (a logical slot starts where none is running): {named}. No slot was created",
                         "commit or end them (an idle-in-transaction session never ends by itself), then run "
                         "again; --statement-timeout sets how long to wait") from None
    finally:
        timer.cancel()
    assert row is not None
    return row



def copy_table(src: psycopg.Connection[Any], dest: Connection, t: Target) -> int:
    cols = sql.SQL(", ").join(sql.Identifier(c) for c in t.columns)
    n = 0
    read = sql.SQL("COPY (SELECT {} FROM {}) TO STDOUT").format(cols, t.ident)
    write = sql.SQL("COPY {} ({}) FROM STDIN").format(t.ident, cols)
    with src.cursor() as out, dest.cursor() as into, out.copy(read) as c1, into.copy(write) as c2:
        for data in c1:
            c2.write(data)
            n += bytes(data).count(b"\n")
    return n
