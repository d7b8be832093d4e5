"""Strategy replace by swap: the new rows go into a shadow table, which then takes the destination's place.

The whole run is one destination transaction (a run killed at any moment leaves nothing behind: the shadow
table's creation rolls back with it):

1. ``LOCK … IN SHARE MODE`` on the destination: readers go on reading the old rows for the whole load;
   writers wait (a row written into the old table during the load would be dropped with it). The catalog
   is read: what depends on the table and cannot follow it to a new one (views, foreign keys of other
   tables, rules, publications, partitions…) refuses the run, naming them, before
   anything is written.
2. ``CREATE TABLE shadow (LIKE destination INCLUDING ALL EXCLUDING INDEXES)`` — columns, types, defaults,
   identity, generated columns, NOT NULL and CHECK constraints, storage, compression, column comments,
   extended statistics — with the destination's storage parameters, tablespace and persistence. The
   batches load into it.
3. After the load, still without blocking readers: the destination's indexes (built once over the loaded
   rows, under temporary names), its primary key, unique and exclusion constraints, its foreign keys to
   other tables, comments, grants (table and column), owner, per-column statistics targets and options,
   row-level security flags and CLUSTER mark; then ``ANALYZE`` (the new table has statistics before the
   first query plans on it).
4. The swap, under ``lock_timeout`` (retried with backoff; readers queue behind a waiting ACCESS EXCLUSIVE
   request, so it must not wait long): ``ACCESS EXCLUSIVE`` on the destination, a check that nothing changed
   its definition meanwhile, sequences owned by its columns moved to the new table (identity sequences
   continue from the old values), ``DROP TABLE`` (without CASCADE), the shadow renamed to the destination's
   name, the indexes to theirs, the replica identity set. Then commit.

Sessions that waited on the old table during the swap resolve the name again when they get their lock, and
read or write the new table.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Any

import psycopg
from psycopg import sql

from agent19.db.connection import Connection
from agent19.errors import InputError
from agent19.etl.swap_catalog import (
    DEFINITION_QUERIES,
    Q_BLOCKERS,
    Q_GRANTS,
    Q_STATISTICS,
    Q_TABLE,
    Definition,
    SwapRefused,
    options,
)


@dataclass
class Swap:
    """One replace-by-swap of ``table`` on ``conn`` (inside the run's transaction)."""

    conn: Connection
    table: str
    attempts: int = 5
    backoff_s: float = 0.5
    max_backoff_s: float = 30.0
    definition: Definition | None = None
    shadow: sql.Identifier | None = None
    renames: list[tuple[str, str]] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)

    @property
    def shown(self) -> str:
        """The destination's name for messages (schema.table as the catalog spells it)."""
        t = self.definition.table if self.definition else None
        return f"{t['schema']}.{t['name']}" if t else self.table

    # -- reading the destination --------------------------------------------------------------------------
    def _read(self) -> Definition:
        row = self.conn.execute(Q_TABLE, (self.table,)).fetchone()
        if row is None:
            raise InputError(f"the destination table {self.table} does not exist (or this login cannot see it)",
                             "create it first")
        oid = row["oid"]
        # the catalog prints a trigger's table schema-qualified only when the search_path would not find it
        path = self.conn.execute("SELECT pg_catalog.current_setting('search_path') AS v").fetchone()
        self.conn.execute("SELECT pg_catalog.set_config('search_path', 'pg_catalog', true)")
        try:
            return Definition(table=dict(row), grants=self.conn.execute(Q_GRANTS, {"oid": oid}).fetchall(),
                              **{k.replace(" ", "_"): self.conn.execute(q, (oid,)).fetchall()
                                 for k, q in DEFINITION_QUERIES.items()})
        finally:
            self.conn.execute("SELECT pg_catalog.set_config('search_path', %s, true)", (path["v"] if path else "",))

    def _refuse_blockers(self, d: Definition) -> None:
        t = d.table
        why: list[str] = []
        if t["relkind"] == "p":
            why.append("it is partitioned (its partitions would not follow)")
        if t["relispartition"] or t["inherits"]:
            why.append("it is a partition or inherits from another table (the new one would not)")
        if t["typed"]:
            why.append("it is a typed table (CREATE TABLE ... OF type)")
        if t["relkind"] not in ("r", "p"):
            why.append(f"it is not an ordinary table (relkind {t['relkind']})")
        why += [r["what"] for r in self.conn.execute(Q_BLOCKERS, {"oid": t["oid"]}).fetchall()]
        if why:
            raise SwapRefused(
                f"strategy replace swaps a new table in for {self.shown}, and what depends on the old one cannot "
                f"follow it: {'; '.join(why)}; nothing was loaded",
                "drop them before the run and create them again after it, or set replace_by = \"truncate\" under "
                "[destination] (one transaction empties and reloads the table in place: these keep working, but "
                "readers wait for the whole load)")
        if not t["may_own"]:
            raise SwapRefused(f"strategy replace swaps a new table in for {self.shown}, which needs the rights of its "
                              f"owner {t['owner']}; this login has not; nothing was loaded",
                              f"run the pipeline as {t['owner']} (or a member of it: GRANT {t['owner']} TO <login>), "
                              "or set replace_by = \"truncate\" under [destination]")

    # -- 1 and 2: before the load ---------------------------------------------------------------------------
    def begin(self) -> tuple[sql.Identifier, int]:
        """SHARE lock, refusals, the shadow table. Returns the shadow table and the rows the destination holds."""
        self.conn.execute(sql.SQL("LOCK TABLE {} IN SHARE MODE").format(sql.SQL(self.table)))
        d = self.definition = self._read()
        self._refuse_blockers(d)  # (named with the catalog's spelling from here on)
        t = d.table
        self.shadow = sql.Identifier(t["schema"], f"_agent19_swap_{t['oid']}")
        opts = options(t["reloptions"])
        self.conn.execute(sql.SQL("CREATE {}TABLE {} (LIKE {} INCLUDING ALL EXCLUDING INDEXES){}{}").format(
            sql.SQL("UNLOGGED " if t["relpersistence"] == "u" else ""), self.shadow, sql.SQL(self.table),
            sql.SQL(" WITH {}").format(opts) if opts else sql.SQL(""),
            sql.SQL(" TABLESPACE {}").format(sql.Identifier(t["tablespace"])) if t["tablespace"] else sql.SQL("")))
        for c in d.column_settings:
            col = sql.Identifier(c["col"])
            if c["stattarget"] and c["stattarget"] > 0:
                self.conn.execute(sql.SQL("ALTER TABLE {} ALTER COLUMN {} SET STATISTICS {}").format(
                    self.shadow, col, sql.Literal(c["stattarget"])))
            if c["options"]:
                self.conn.execute(sql.SQL("ALTER TABLE {} ALTER COLUMN {} SET {}").format(
                    self.shadow, col, options(c["options"])))
        for g in d.triggers:  # before the load: they fire for the loaded rows, as they would with truncate
            self._trigger(g)
        for s in d.sequences:  # identity: the new table's own sequence continues from the old one's value
            if s["identity"]:
                self._follow(s)
        n = self.conn.execute(sql.SQL("SELECT count(*) AS n FROM {}").format(sql.SQL(self.table))).fetchone()
        return self.shadow, int(n["n"]) if n else 0

    def _trigger(self, g: dict[str, Any]) -> None:
        """The destination's trigger, its enabled state and comment, on the shadow table."""
        assert self.shadow is not None
        head, found, rest = g["def"].partition(g["on_table"])
        if not found or g["on_table"] in rest:
            raise SwapRefused(f"cannot read the definition of trigger {g['name']} of {self.shown} ({g['def']}); "
                              "nothing was loaded", "set replace_by = \"truncate\" under [destination]")
        self.conn.execute(sql.SQL("{} ON {} {}").format(sql.SQL(head), self.shadow, sql.SQL(rest)))
        state = {"D": "DISABLE", "R": "ENABLE REPLICA", "A": "ENABLE ALWAYS"}.get(g["enabled"])
        if state:
            self.conn.execute(sql.SQL("ALTER TABLE {} {} TRIGGER {}").format(self.shadow, sql.SQL(state),
                                                                           sql.Identifier(g["name"])))
        if g["comment"] is not None:
            self.conn.execute(sql.SQL("COMMENT ON TRIGGER {} ON {} IS {}").format(
                sql.Identifier(g["name"]), self.shadow, sql.Literal(g["comment"])))

    def _policy(self, p: dict[str, Any]) -> None:
        """The destination's row-level security policy on the shadow table (its expressions as the catalog prints
        them, schema-qualified)."""
        assert self.shadow is not None
        cmd = {"r": "SELECT", "a": "INSERT", "w": "UPDATE", "d": "DELETE", "*": "ALL"}[p["cmd"]]
        parts = [sql.SQL("CREATE POLICY {} ON {} AS {} FOR {} TO {}").format(
            sql.Identifier(p["name"]), self.shadow, sql.SQL("PERMISSIVE" if p["permissive"] else "RESTRICTIVE"),
            sql.SQL(cmd), sql.SQL(", ").join(sql.SQL(r) for r in p["roles"]))]
        if p["qual"] is not None:
            parts.append(sql.SQL("USING ({})").format(sql.SQL(p["qual"])))
        if p["with_check"] is not None:
            parts.append(sql.SQL("WITH CHECK ({})").format(sql.SQL(p["with_check"])))
        self.conn.execute(sql.SQL(" ").join(parts))
        if p["comment"] is not None:
            self.conn.execute(sql.SQL("COMMENT ON POLICY {} ON {} IS {}").format(
                sql.Identifier(p["name"]), self.shadow, sql.Literal(p["comment"])))

    def _follow(self, s: dict[str, Any]) -> str:
        """The shadow's identity sequence for column ``s['col']``, moved up to the old sequence's value when that
        is higher (rows get identity values after the old ones, as TRUNCATE without RESTART IDENTITY does)."""
        assert self.shadow is not None
        new = self.conn.execute("SELECT pg_get_serial_sequence(%s, %s) AS seq",
                                (self.shadow.as_string(self.conn), s["col"])).fetchone()
        assert new is not None and new["seq"]
        self.conn.execute(sql.SQL(
            "SELECT setval({new}, o.last_value, o.is_called) FROM {old} o, {new_seq} n "
            "WHERE (o.last_value, o.is_called) > (n.last_value, n.is_called)").format(
            new=sql.Literal(new["seq"]), old=sql.SQL(s["seq"]), new_seq=sql.SQL(new["seq"])))
        return str(new["seq"])

    # -- 3: after the load, readers still on the old table ----------------------------------------------------
    def _index_sql(self, index: dict[str, Any], temp: str) -> sql.Composable:
        """The destination's index as a CREATE INDEX of the shadow table under a temporary name."""
        head, found, rest = index["def"].partition(index["prefix"])
        if not found or head not in ("CREATE ", "CREATE UNIQUE "):
            raise InputError(f"cannot read the definition of index {index['name']} of {self.shown} ({index['def']})",
                             "report this as a bug; replace_by = \"truncate\" under [destination] works meanwhile")
        return sql.SQL("{}INDEX {} ON {} USING {}").format(sql.SQL(head), sql.Identifier(temp), self.shadow,
                                                           sql.SQL(rest))

    def build(self) -> None:
        """Indexes, constraints, comments, grants, owner, then ANALYZE: everything but the swap itself."""
        assert self.definition is not None and self.shadow is not None
        d, shadow, conn = self.definition, self.shadow, self.conn
        t = d.table
        timeout = conn.execute("SELECT current_setting('statement_timeout') AS v").fetchone()
        conn.execute("SELECT set_config('statement_timeout', '0', true)")  # one index build may take long
        for i, index in enumerate(d.indexes):
            if not index["valid"]:
                self.notes.append(f"index {index['name']} was invalid (a failed CREATE INDEX CONCURRENTLY): not "
                                  "carried")
                continue
            temp = f"_agent19_swap_{t['oid']}_{i}"
            if index["contype"]:
                conn.execute(sql.SQL("ALTER TABLE {} ADD CONSTRAINT {} {}").format(
                    shadow, sql.Identifier(temp), sql.SQL(index["condef"])))
                if index["con_comment"] is not None:
                    conn.execute(sql.SQL("COMMENT ON CONSTRAINT {} ON {} IS {}").format(
                        sql.Identifier(temp), shadow, sql.Literal(index["con_comment"])))
            else:
                conn.execute(self._index_sql(index, temp))
            temp_ident = sql.Identifier(t["schema"], temp)
            if index["comment"] is not None:
                conn.execute(sql.SQL("COMMENT ON INDEX {} IS {}").format(temp_ident, sql.Literal(index["comment"])))
            if index["clustered"]:
                conn.execute(sql.SQL("ALTER TABLE {} CLUSTER ON {}").format(shadow, sql.Identifier(temp)))
            self.renames.append((temp, index["name"]))
        for fk in d.foreign_keys:
            conn.execute(sql.SQL("ALTER TABLE {} ADD CONSTRAINT {} {}").format(
                shadow, sql.Identifier(fk["name"]), sql.SQL(fk["def"])))
            if fk["comment"] is not None:
                conn.execute(sql.SQL("COMMENT ON CONSTRAINT {} ON {} IS {}").format(
                    sql.Identifier(fk["name"]), shadow, sql.Literal(fk["comment"])))
        if t["comment"] is not None:
            conn.execute(sql.SQL("COMMENT ON TABLE {} IS {}").format(shadow, sql.Literal(t["comment"])))
        for g in d.grants:
            cols = sql.SQL(" ({})").format(sql.Identifier(g["col"])) if g["col"] else sql.SQL("")
            conn.execute(sql.SQL("GRANT {}{} ON {} TO {}{}").format(
                sql.SQL(g["privilege"]), cols, shadow, sql.SQL(g["grantee"]),
                sql.SQL(" WITH GRANT OPTION" if g["grantable"] else "")))
        for p in d.policies:
            self._policy(p)
        for flag, clause in (("relrowsecurity", "ENABLE ROW LEVEL SECURITY"),
                             ("relforcerowsecurity", "FORCE ROW LEVEL SECURITY")):
            if t[flag]:
                conn.execute(sql.SQL("ALTER TABLE {} {}").format(shadow, sql.SQL(clause)))
        if not t["owned"]:
            conn.execute(sql.SQL("ALTER TABLE {} OWNER TO {}").format(shadow, sql.Identifier(t["owner"])))
        conn.execute(sql.SQL("ANALYZE {}").format(shadow))
        conn.execute("SELECT set_config('statement_timeout', %s, true)", (timeout["v"] if timeout else "0",))
        self.notes.append(self._carried(d))

    @staticmethod
    def _carried(d: Definition) -> str:
        roles = {g["grantee"] for g in d.grants}
        parts = [f"{len([i for i in d.indexes if i['valid']])} index(es) with their names",
                 f"{len(d.triggers)} trigger(s) (they fired for the loaded rows)",
                 f"{len(d.policies)} row-level security policy(ies)",
                 f"{len(d.foreign_keys)} foreign key(s)", f"grants to {len(roles)} role(s)",
                 f"owner {d.table['owner']}", f"{len(d.sequences)} owned sequence(s)",
                 "comments, storage parameters, column statistics targets, replica identity"]
        return "carried to the new table: " + ", ".join(parts) + "; the new table was analyzed before the swap"

    def _rename_statistics(self, old: list[dict[str, Any]]) -> None:
        """LIKE … INCLUDING STATISTICS made the extended statistics under new names: each takes the name of the old
        one on the same columns and kinds."""
        oid = self.conn.execute("SELECT to_regclass(%s)::oid AS oid", (self.table,)).fetchone()
        new = self.conn.execute(Q_STATISTICS, (oid["oid"] if oid else None,)).fetchall()
        for o in old:
            match = next((n for n in new if (n["keys"], n["kinds"]) == (o["keys"], o["kinds"])), None)
            if match is not None:
                new.remove(match)
                self.conn.execute(sql.SQL("ALTER STATISTICS {} RENAME TO {}").format(
                    sql.Identifier(match["schema"], match["name"]), sql.Identifier(o["name"])))

    # -- 4: the swap ----------------------------------------------------------------------------------------
    def _lock(self) -> None:
        """ACCESS EXCLUSIVE under the session's lock_timeout, retried with backoff (readers queue behind a waiting
        request, so it never waits long)."""
        for attempt in range(self.attempts):
            try:
                with self.conn.transaction():  # a savepoint: a timed-out request leaves the load intact
                    self.conn.execute(sql.SQL("LOCK TABLE {} IN ACCESS EXCLUSIVE MODE").format(sql.SQL(self.table)))
                return
            except psycopg.errors.LockNotAvailable:
                if attempt + 1 >= self.attempts:
                    break
                time.sleep(min(self.backoff_s * 2 ** attempt, self.max_backoff_s))
        holders = self.conn.execute(
            "SELECT string_agg(DISTINCT l.pid::text, ', ') AS pids FROM pg_locks l WHERE l.relation = to_regclass(%s) "
            "AND l.granted AND l.pid <> pg_backend_pid()", (self.table,)).fetchone()
        lock_timeout = self.conn.execute("SELECT current_setting('lock_timeout') AS v").fetchone()
        raise InputError(
            f"the swap could not take its ACCESS EXCLUSIVE lock on {self.shown} within lock_timeout "
            f"{lock_timeout['v'] if lock_timeout else '?'} ({self.attempts} tries; sessions holding locks on it: "
            f"{(holders or {}).get('pids') or 'none now'}); the loaded rows were rolled back, the destination is "
            "unchanged",
            "run again when the long transactions on the table are done (pg_stat_activity), or raise --lock-timeout "
            "(readers queue behind the waiting swap for that long)")

    def swap(self) -> None:
        assert self.definition is not None and self.shadow is not None
        conn, t = self.conn, self.definition.table
        self._lock()
        now = self._read()
        self._refuse_blockers(now)
        if now.fingerprint() != self.definition.fingerprint():
            raise InputError(f"the definition of {self.shown} changed during the load (an index, grant, owner, "
                             "sequence or setting); the loaded rows were rolled back, the destination is unchanged",
                             "run the pipeline again: the next run copies the new definition")
        identity: list[tuple[str, str]] = []
        for s in now.sequences:
            if s["identity"]:  # moved on by a nextval() elsewhere during the load? follow it
                identity.append((self._follow(s), s["name"]))
            else:
                conn.execute(sql.SQL("ALTER SEQUENCE {} OWNED BY {}.{}").format(
                    sql.SQL(s["seq"]), self.shadow, sql.Identifier(s["col"])))
        conn.execute(sql.SQL("DROP TABLE {}").format(sql.SQL(self.table)))  # no CASCADE: a dependent stops it
        conn.execute(sql.SQL("ALTER TABLE {} RENAME TO {}").format(self.shadow, sql.Identifier(t["name"])))
        for temp, name in self.renames:
            conn.execute(sql.SQL("ALTER INDEX {} RENAME TO {}").format(sql.Identifier(t["schema"], temp),
                                                                      sql.Identifier(name)))
        for seq, name in identity:
            conn.execute(sql.SQL("ALTER SEQUENCE {} RENAME TO {}").format(sql.SQL(seq), sql.Identifier(name)))
        self._rename_statistics(now.statistics)
        table = sql.SQL(self.table)
        ident = t["relreplident"]
        if ident in ("f", "n"):
            conn.execute(sql.SQL("ALTER TABLE {} REPLICA IDENTITY {}").format(
                table, sql.SQL("FULL" if ident == "f" else "NOTHING")))
        elif ident == "i":
            name = next(i["name"] for i in now.indexes if i["replident"])
            conn.execute(sql.SQL("ALTER TABLE {} REPLICA IDENTITY USING INDEX {}").format(
                table, sql.Identifier(name)))
