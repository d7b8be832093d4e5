"""Strategy replace by swap: the new rows go into a shadow table, which then takes the destination's place.

The whole run is one destination transaction (a run killed at any moment leaves nothing behind: the shadow
table's creation rolls back with it):

1. ``LOCK … IN SHARE MODE`` on the destination: readers go on reading the old rows for the whole load;
   writers wait (a row written into the old table during the load would be dropped with it). The catalog
   is read: what depends on the table and cannot follow it to a new one (views, foreign keys of other
   tables, triggers, policies, rules, publications, partitions…) refuses the run, naming them, before
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

import re
import time
from dataclasses import dataclass, field
from typing import Any

import psycopg
from psycopg import sql

from agent19.db.connection import Connection
from agent19.errors import InputError

Q_TABLE = """
SELECT c.oid, n.nspname AS schema, c.relname AS name, c.relkind, c.relpersistence, c.relispartition,
       c.reloftype <> 0 AS typed, pg_get_userbyid(c.relowner) AS owner, c.reloptions, t.spcname AS tablespace,
       c.relreplident, c.relrowsecurity, c.relforcerowsecurity, obj_description(c.oid, 'pg_class') AS comment,
       pg_has_role(c.relowner, 'USAGE') AS may_own, c.relowner = (SELECT oid FROM pg_roles
                                                                  WHERE rolname = current_user) AS owned,
       EXISTS (SELECT FROM pg_inherits i WHERE i.inhrelid = c.oid) AS inherits
  FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace LEFT JOIN pg_tablespace t ON t.oid = c.reltablespace
 WHERE c.oid = to_regclass(%s)
"""
Q_BLOCKERS = """
WITH t AS (SELECT c.oid, c.reltype FROM pg_class c WHERE c.oid = %(oid)s)
SELECT DISTINCT what FROM (
  SELECT CASE
    WHEN d.classid = 'pg_rewrite'::regclass THEN
      (SELECT CASE v.relkind WHEN 'm' THEN 'materialized view ' WHEN 'v' THEN 'view ' ELSE 'rule on ' END
              || r.ev_class::regclass::text
         FROM pg_rewrite r JOIN pg_class v ON v.oid = r.ev_class WHERE r.oid = d.objid)
    WHEN d.classid = 'pg_constraint'::regclass THEN
      (SELECT 'foreign key ' || quote_ident(k.conname) || ' of table ' || k.conrelid::regclass::text
         FROM pg_constraint k WHERE k.oid = d.objid)
    WHEN d.classid = 'pg_class'::regclass THEN
      (SELECT CASE WHEN EXISTS (SELECT FROM pg_inherits i WHERE i.inhrelid = x.oid AND i.inhparent = t.oid)
                   THEN 'table ' || x.oid::regclass::text || ' (inherits from it)'
                   ELSE pg_describe_object(d.classid, d.objid, d.objsubid) END FROM pg_class x WHERE x.oid = d.objid)
    ELSE pg_describe_object(d.classid, d.objid, d.objsubid) END AS what
    FROM pg_depend d, t
   WHERE ((d.refclassid = 'pg_class'::regclass AND d.refobjid = t.oid)
          OR (d.refclassid = 'pg_type'::regclass AND d.refobjid = t.reltype))
     AND d.deptype = 'n'
     -- its own objects (a CHECK constraint or an index expression depends on its columns) are carried; a foreign
     -- key of the table to itself is not (it would reference the old table)
     AND NOT (d.classid = 'pg_constraint'::regclass AND EXISTS (
              SELECT FROM pg_constraint k WHERE k.oid = d.objid AND k.conrelid = t.oid AND k.confrelid <> t.oid))
     AND NOT (d.classid = 'pg_attrdef'::regclass AND EXISTS (
              SELECT FROM pg_attrdef a WHERE a.oid = d.objid AND a.adrelid = t.oid))
     AND NOT (d.classid = 'pg_class'::regclass AND EXISTS (
              SELECT FROM pg_index i WHERE i.indexrelid = d.objid AND i.indrelid = t.oid))
     AND NOT (d.classid = 'pg_statistic_ext'::regclass AND EXISTS (
              SELECT FROM pg_statistic_ext x WHERE x.oid = d.objid AND x.stxrelid = t.oid))
     AND NOT (d.classid IN ('pg_trigger'::regclass, 'pg_policy'::regclass))  -- listed below
     AND NOT (d.classid = 'pg_rewrite'::regclass AND EXISTS (
              SELECT FROM pg_rewrite r WHERE r.oid = d.objid AND r.ev_class = t.oid))
  UNION ALL
  SELECT 'trigger ' || quote_ident(g.tgname) FROM pg_trigger g, t WHERE g.tgrelid = t.oid AND NOT g.tgisinternal
  UNION ALL
  SELECT 'row-level security policy ' || quote_ident(p.polname) FROM pg_policy p, t WHERE p.polrelid = t.oid
  UNION ALL
  SELECT 'rule ' || quote_ident(r.rulename) FROM pg_rewrite r, t WHERE r.ev_class = t.oid
  UNION ALL
  SELECT 'publication ' || quote_ident(p.pubname) FROM pg_publication_rel pr
    JOIN pg_publication p ON p.oid = pr.prpubid, t WHERE pr.prrelid = t.oid
  UNION ALL
  SELECT 'extension ' || quote_ident(e.extname) FROM pg_depend d JOIN pg_extension e ON e.oid = d.refobjid, t
   WHERE d.classid = 'pg_class'::regclass AND d.objid = t.oid AND d.deptype = 'e'
) x WHERE what IS NOT NULL ORDER BY what
"""
Q_INDEXES = """
SELECT i.indexrelid AS oid, x.relname AS name, pg_get_indexdef(i.indexrelid) AS def, i.indisvalid AS valid,
       k.contype, pg_get_constraintdef(k.oid) AS condef, obj_description(i.indexrelid, 'pg_class') AS comment,
       obj_description(k.oid, 'pg_constraint') AS con_comment, i.indisreplident AS replident,
       i.indisclustered AS clustered,
       format('INDEX %%s ON %%s.%%s USING ', quote_ident(x.relname), quote_ident(n.nspname), quote_ident(c.relname))
         AS prefix
  FROM pg_index i JOIN pg_class x ON x.oid = i.indexrelid JOIN pg_class c ON c.oid = i.indrelid
  JOIN pg_namespace n ON n.oid = c.relnamespace
  LEFT JOIN pg_constraint k ON k.conindid = i.indexrelid AND k.conrelid = i.indrelid AND k.contype IN ('p', 'u', 'x')
 WHERE i.indrelid = %s ORDER BY x.relname
"""
Q_FOREIGN_KEYS = """
SELECT conname AS name, pg_get_constraintdef(oid) AS def, obj_description(oid, 'pg_constraint') AS comment
  FROM pg_constraint WHERE conrelid = %s AND contype = 'f' ORDER BY conname
"""
Q_GRANTS = """
SELECT NULL::name AS col, CASE WHEN a.grantee = 0 THEN 'PUBLIC' ELSE quote_ident(r.rolname) END AS grantee,
       a.privilege_type AS privilege, a.is_grantable AS grantable
  FROM pg_class c, aclexplode(c.relacl) a LEFT JOIN pg_roles r ON r.oid = a.grantee
 WHERE c.oid = %(oid)s AND a.grantee <> c.relowner
UNION ALL
SELECT t.attname, CASE WHEN a.grantee = 0 THEN 'PUBLIC' ELSE quote_ident(r.rolname) END, a.privilege_type,
       a.is_grantable
  FROM pg_attribute t, aclexplode(t.attacl) a LEFT JOIN pg_roles r ON r.oid = a.grantee
 WHERE t.attrelid = %(oid)s AND t.attnum > 0 AND NOT t.attisdropped
ORDER BY 1 NULLS FIRST, 2, 3
"""
Q_COLUMN_SETTINGS = """
SELECT attname AS col, attstattarget AS stattarget, attoptions AS options FROM pg_attribute
 WHERE attrelid = %s AND attnum > 0 AND NOT attisdropped AND (attstattarget > 0 OR attoptions IS NOT NULL)
 ORDER BY attnum
"""
Q_SEQUENCES = """
SELECT s.oid::regclass::text AS seq, s.relname AS name, a.attname AS col, d.deptype = 'i' AS identity
  FROM pg_depend d JOIN pg_class s ON s.oid = d.objid AND s.relkind = 'S'
  JOIN pg_attribute a ON a.attrelid = d.refobjid AND a.attnum = d.refobjsubid
 WHERE d.classid = 'pg_class'::regclass AND d.refclassid = 'pg_class'::regclass AND d.refobjid = %s
   AND d.deptype IN ('a', 'i')
 ORDER BY a.attnum
"""
Q_STATISTICS = """
SELECT x.stxname AS name, n.nspname AS schema, x.stxkeys::text AS keys, x.stxkind::text AS kinds
  FROM pg_statistic_ext x JOIN pg_namespace n ON n.oid = x.stxnamespace WHERE x.stxrelid = %s ORDER BY x.stxname
"""
_OPTION = re.compile(r"^([a-z_][a-z0-9_.]*)=(.*)$", re.S)
DEFINITION_QUERIES = {"indexes": Q_INDEXES, "foreign keys": Q_FOREIGN_KEYS, "sequences": Q_SEQUENCES,
                      "column settings": Q_COLUMN_SETTINGS, "statistics": Q_STATISTICS}


class SwapRefused(InputError):
    """The destination cannot be replaced by a swap (nothing was written)."""


@dataclass
class Definition:
    """What the swap carries from the old table to the new one, as read from the catalog."""

    table: dict[str, Any]
    indexes: list[dict[str, Any]]
    foreign_keys: list[dict[str, Any]]
    grants: list[dict[str, Any]]
    column_settings: list[dict[str, Any]]
    sequences: list[dict[str, Any]]
    statistics: list[dict[str, Any]]

    def fingerprint(self) -> Any:
        t = {k: v for k, v in self.table.items() if k not in ("may_own", "owned")}
        return (t, [{k: v for k, v in i.items() if k != "oid"} for i in self.indexes], self.foreign_keys,
                self.grants, self.column_settings, self.sequences, self.statistics)


def _options(values: list[str] | None) -> sql.Composable | None:
    """Storage parameters as read from the catalog (``name=value``) as a ``(name = 'value', …)`` list."""
    if not values:
        return None
    parts = []
    for v in values:
        m = _OPTION.match(v)
        if not m:
            raise InputError(f"cannot read the storage parameter {v!r} of the destination", "report this as a bug")
        parts.append(sql.SQL("{} = {}").format(sql.SQL(m.group(1)), sql.Literal(m.group(2))))
    return sql.SQL("({})").format(sql.SQL(", ").join(parts))


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

    # -- reading the destination --------------------------------------------------------------------------
    def _read(self) -> Definition:
        row = self.conn.execute(Q_TABLE, (self.table,)).fetchone()
        if row is None:
            raise InputError(f"the destination table {self.table} does not exist (or this login cannot see it)",
                             "create it first")
        oid = row["oid"]
        return Definition(table=dict(row), grants=self.conn.execute(Q_GRANTS, {"oid": oid}).fetchall(),
                          **{k.replace(" ", "_"): self.conn.execute(q, (oid,)).fetchall()
                             for k, q in DEFINITION_QUERIES.items()})

    def _refuse_blockers(self, d: Definition) -> None:
        t = d.table
        why: list[str] = []
        if t["relkind"] == "p":
            why.append("it is partitioned (its partitions would not follow)")
        if t["relispartition"] or t["inherits"]:
            why.append("it is a partition or inherits from another table (the new one would not)")
        if t["typed"]:
            why.append("it is a typed table (CREATE TABLE … OF type)")
        if t["relkind"] not in ("r", "p"):
            why.append(f"it is not an ordinary table (relkind {t['relkind']})")
        why += [r["what"] for r in self.conn.execute(Q_BLOCKERS, {"oid": t["oid"]}).fetchall()]
        if why:
            raise SwapRefused(
                f"strategy replace swaps a new table in for {self.table}, and what depends on the old one cannot "
                f"follow it: {'; '.join(why)}; nothing was loaded",
                "drop them before the run and create them again after it, or set replace_by = \"truncate\" under "
                "[destination] (one transaction empties and reloads the table in place: these keep working, but "
                "readers wait for the whole load)")
        if not t["may_own"]:
            raise SwapRefused(f"strategy replace swaps a new table in for {self.table}, which needs the rights of its "
                              f"owner {t['owner']}; this login has not; nothing was loaded",
                              f"run the pipeline as {t['owner']} (or a member of it: GRANT {t['owner']} TO <login>), "
                              "or set replace_by = \"truncate\" under [destination]")

    # -- 1 and 2: before the load ---------------------------------------------------------------------------
    def begin(self) -> tuple[sql.Identifier, int]:
        """SHARE lock, refusals, the shadow table. Returns the shadow table and the rows the destination holds."""
        self.conn.execute(sql.SQL("LOCK TABLE {} IN SHARE MODE").format(sql.SQL(self.table)))
        d = self.definition = self._read()
        self._refuse_blockers(d)
        t = d.table
        self.shadow = sql.Identifier(t["schema"], f"_agent19_swap_{t['oid']}")
        opts = _options(t["reloptions"])
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
                    self.shadow, col, _options(c["options"])))
        for s in d.sequences:  # identity: the new table's own sequence continues from the old one's value
            if s["identity"]:
                self._follow(s)
        n = self.conn.execute(sql.SQL("SELECT count(*) AS n FROM {}").format(sql.SQL(self.table))).fetchone()
        return self.shadow, int(n["n"]) if n else 0

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
            raise InputError(f"cannot read the definition of index {index['name']} of {self.table} ({index['def']})",
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
            f"the swap could not take its ACCESS EXCLUSIVE lock on {self.table} within lock_timeout "
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
            raise InputError(f"the definition of {self.table} changed during the load (an index, grant, owner, "
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
