"""``cdc check``: is a source ready for change data capture? Each finding with the SQL that fixes it."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, Field

from agent19.db.connection import Database
from agent19.etl.cdc_apply import qualified, quoted
from agent19.migrate.patterns.sqlnames import ident, literal

Q_SETTINGS = """
SELECT current_setting('wal_level') AS wal_level,
       current_setting('max_replication_slots')::int AS max_slots,
       current_setting('max_wal_senders')::int AS max_senders,
       current_setting('max_slot_wal_keep_size') AS keep_size,
       (SELECT count(*) FROM pg_replication_slots)::int AS slots_used,
       (SELECT count(*) FROM pg_stat_replication)::int AS senders_used,
       (SELECT rolreplication OR rolsuper FROM pg_roles WHERE rolname = current_user) AS can_replicate,
       current_user AS login
"""
Q_TABLES = """
SELECT t.name, c.oid IS NOT NULL AS found, c.relreplident AS identity,
       EXISTS (SELECT 1 FROM pg_index i WHERE i.indrelid = c.oid AND i.indisprimary) AS has_pk,
       EXISTS (SELECT 1 FROM pg_publication_tables p WHERE p.pubname = %s
               AND p.schemaname = n.nspname AND p.tablename = c.relname) AS published
  FROM unnest(%s::text[], %s::text[]) AS t(name, quoted) LEFT JOIN pg_class c ON c.oid = to_regclass(t.quoted)
  LEFT JOIN pg_namespace n ON n.oid = c.relnamespace
"""
# names compared as names: a cast of pg_publication_tables' names to regclass may be evaluated on rows of other
# schemas first (pg_toast: permission denied for a login without superuser)
Q_IDLE_SLOTS = """
SELECT slot_name, pg_wal_lsn_diff(pg_current_wal_lsn(), restart_lsn)::bigint AS retained
  FROM pg_replication_slots WHERE NOT active AND restart_lsn IS NOT NULL ORDER BY 2 DESC
"""


class Finding(BaseModel):
    check: str
    status: Literal["ok", "warning", "error"]
    detail: str
    fix: str | None = Field(default=None, description="SQL (or the step) that fixes it")


class CdcReadiness(BaseModel):
    ready: bool = Field(description="no error: `cdc run` (and Debezium) can capture these tables")
    findings: list[Finding]


def check_cdc(db: Database, tables: list[str], publication: str = "agent19_cdc") -> CdcReadiness:
    out: list[Finding] = []
    with db.read() as conn:
        s = conn.execute(Q_SETTINGS).fetchone()
        names = [qualified(t) for t in tables]
        rows = conn.execute(Q_TABLES, (publication, names, [quoted(n) for n in names])).fetchall()
        idle = conn.execute(Q_IDLE_SLOTS).fetchall()
    assert s is not None
    ok = s["wal_level"] == "logical"
    out.append(Finding(check="wal_level", status="ok" if ok else "error", detail=f"wal_level = {s['wal_level']}",
                       fix=None if ok else "ALTER SYSTEM SET wal_level = logical;  -- then restart the server"))
    free_slots = s["max_slots"] - s["slots_used"]
    out.append(Finding(check="max_replication_slots", status="ok" if free_slots > 0 else "error",
                       detail=f"{s['slots_used']} of {s['max_slots']} slots used",
                       fix=None if free_slots > 0 else f"ALTER SYSTEM SET max_replication_slots = {s['max_slots'] + 4};"
                       "  -- then restart"))
    free_senders = s["max_senders"] - s["senders_used"]
    out.append(Finding(check="max_wal_senders", status="ok" if free_senders > 0 else "error",
                       detail=f"{s['senders_used']} of {s['max_senders']} WAL senders in use (the initial copy and "
                       "Debezium each take one)",
                       fix=None if free_senders > 0 else f"ALTER SYSTEM SET max_wal_senders = {s['max_senders'] + 4};"
                       "  -- then restart"))
    out.append(Finding(check="replication_privilege", status="ok" if s["can_replicate"] else "error",
                       detail=f"login {s['login']} " + ("may" if s["can_replicate"] else "may not") +
                       " create and read replication slots",
                       fix=None if s["can_replicate"] else f"ALTER ROLE {ident(s['login'])} REPLICATION;"))
    unset = s["keep_size"] in ("-1", "-1MB")
    out.append(Finding(check="max_slot_wal_keep_size", status="warning" if unset else "ok",
                       detail="unset: a stalled consumer's slot keeps WAL until the disk fills" if unset
                       else f"max_slot_wal_keep_size = {s['keep_size']} (a slot past it is invalidated, not the disk "
                       "filled)",
                       fix="ALTER SYSTEM SET max_slot_wal_keep_size = '10GB'; SELECT pg_reload_conf();" if unset
                       else None))
    for slot in idle:
        if slot["retained"] and slot["retained"] > 1 << 30:
            out.append(Finding(check="idle_slot", status="warning",
                               detail=f"slot {slot['slot_name']} is inactive and retains {slot['retained']:,} bytes "
                               "of WAL",
                               fix=f"SELECT pg_drop_replication_slot({literal(slot['slot_name'])});  -- if unused"))
    missing_pub = []
    for t in rows:
        name = t["name"]
        if not t["found"]:
            out.append(Finding(check="table", status="error", detail=f"{name} not found (or not visible)",
                               fix="check the name: schema.table"))
            continue
        replident = t["identity"]
        if replident == "n" or (replident == "d" and not t["has_pk"]):
            why = "REPLICA IDENTITY NOTHING" if replident == "n" else "no primary key (REPLICA IDENTITY DEFAULT)"
            out.append(Finding(check="replica_identity", status="error",
                               detail=f"{name}: {why}: its updates and deletes carry no old key",
                               fix=f"ALTER TABLE {quoted(name)} REPLICA IDENTITY FULL;  -- or add a primary key"))
        else:
            kind = {"d": "DEFAULT (primary key)", "f": "FULL", "i": "USING INDEX"}.get(replident, replident)
            out.append(Finding(check="replica_identity", status="ok", detail=f"{name}: REPLICA IDENTITY {kind}"))
        if not t["published"]:
            missing_pub.append(name)
    if missing_pub:
        out.append(Finding(check="publication", status="warning",
                           detail=f"publication {publication} does not cover {', '.join(missing_pub)} (needed by "
                           "cdc run --plugin pgoutput and Debezium; cdc run with wal2json filters tables itself)",
                           fix=f"CREATE PUBLICATION {ident(publication)} FOR TABLE "
                           f"{', '.join(quoted(n) for n in missing_pub)};  -- or ALTER PUBLICATION "
                           f"{ident(publication)} ADD TABLE ..."))
    out.append(Finding(check="heartbeat", status="ok",
                       detail="a slot retains WAL until its consumer confirms it: `cdc run` confirms everything it "
                       "decoded on each run (run it regularly); Debezium on a quiet database needs a heartbeat "
                       "(heartbeat.interval.ms with heartbeat.action.query, as `cdc debezium` writes)"))
    return CdcReadiness(ready=not any(f.status == "error" for f in out), findings=out)
