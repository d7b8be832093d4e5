"""Replication and HA status: the role of the server, its standbys, slots and archiving, failover readiness.

On a primary, each standby's lag is measured in bytes against ``pg_current_wal_lsn()`` and in time from
pg_stat_replication — a standby that has written/flushed/replayed everything counts as 0 s behind even
while ``replay_lag`` still shows its last value (it keeps it until the standby's next status reply,
``wal_receiver_status_interval``; observed in tests/test_backfill_replica.py). Each standby gets a
failover verdict: streaming, at most ``failover_max_lag_bytes`` from the primary (Patroni's
``maximum_lag_on_failover``, 1 MB), and synchronous when the configuration promises zero data loss; with
what would be lost (WAL not yet flushed there) and what it would replay first.

On a standby: received and replayed positions, the replay backlog, whether replay is paused, the WAL
receiver, recovery conflicts. Works with pg_monitor; without pg_read_all_stats pg_stat_replication and
pg_stat_wal_receiver hide their positions, and the result says so.
"""

from __future__ import annotations

from typing import Any

from agent19.ops.backup.archiver import Q_ARCHIVER, archiver_status
from agent19.ops.health.probe import MONITOR, Probe
from agent19.ops.replication.model import (
    Archiver,
    FailoverVerdict,
    LogicalConsumer,
    Receiver,
    ReplicationStatus,
    Slot,
    Standby,
    StandbyState,
    WalStreamClient,
)
from agent19.units import human_size

HERE = "CASE WHEN pg_is_in_recovery() THEN pg_last_wal_receive_lsn() ELSE pg_current_wal_lsn() END"
Q_SETTINGS = f"""
SELECT pg_is_in_recovery() AS standby, current_setting('server_version') AS version, ({HERE})::text AS here,
       current_setting('synchronous_standby_names') AS sync_names,
       current_setting('synchronous_commit') AS sync_commit, current_setting('archive_mode') AS archive_mode"""


def _lag_s(column: str, lsn: str) -> str:
    """Seconds behind; 0 once ``lsn`` has reached this server's position (the time column is stale then)."""
    return f"CASE WHEN r.{lsn} >= ({HERE}) THEN 0 ELSE extract(epoch FROM r.{column})::float8 END AS {column}_s"


def q_standbys(version_num: int) -> str:
    reply = "r.reply_time" if version_num >= 120000 else "NULL::timestamptz"
    return _Q_STANDBYS.replace("r.reply_time", reply)


_Q_STANDBYS = f"""
SELECT r.application_name AS name, r.pid, host(r.client_addr) AS client_addr, r.state, r.sync_state,
       pg_has_role(r.usesysid, 'USAGE') AS own,
       (SELECT s.slot_name FROM pg_replication_slots s WHERE s.active_pid = r.pid) AS slot,
       (SELECT s.slot_type FROM pg_replication_slots s WHERE s.active_pid = r.pid) AS slot_type,
       r.sent_lsn::text, r.write_lsn::text, r.flush_lsn::text, r.replay_lsn::text,
       pg_wal_lsn_diff(({HERE}), r.sent_lsn)::bigint AS unsent_bytes,
       pg_wal_lsn_diff(({HERE}), r.write_lsn)::bigint AS write_lag_bytes,
       pg_wal_lsn_diff(({HERE}), r.flush_lsn)::bigint AS flush_lag_bytes,
       pg_wal_lsn_diff(({HERE}), r.replay_lsn)::bigint AS replay_lag_bytes,
       {_lag_s('write_lag', 'write_lsn')}, {_lag_s('flush_lag', 'flush_lsn')}, {_lag_s('replay_lag', 'replay_lsn')},
       extract(epoch FROM now() - r.reply_time)::float8 AS reply_age_s
  FROM pg_stat_replication r ORDER BY r.application_name, r.pid"""


def q_slots(version_num: int) -> str:
    v13 = version_num >= 130000
    return f"""
SELECT slot_name AS name, slot_type AS type, plugin, database, active, active_pid, temporary,
       {'wal_status' if v13 else 'NULL::text'} AS wal_status,
       {'safe_wal_size' if v13 else 'NULL::bigint'} AS safe_wal_size,
       pg_wal_lsn_diff(({HERE}), restart_lsn)::bigint AS retained_bytes,
       pg_wal_lsn_diff(({HERE}), confirmed_flush_lsn)::bigint AS confirmed_behind_bytes,
       age(xmin)::bigint AS xmin_age, age(catalog_xmin)::bigint AS catalog_xmin_age,
       {'inactive_since::text' if version_num >= 170000 else 'NULL::text'} AS inactive_since,
       {'extract(epoch FROM now() - inactive_since)::float8' if version_num >= 170000 else 'NULL::float8'}
         AS inactive_s
  FROM pg_replication_slots ORDER BY slot_name"""


def _q_standby(version_num: int) -> str:
    pause = "pg_get_wal_replay_pause_state()" if version_num >= 140000 else \
        "CASE WHEN pg_is_wal_replay_paused() THEN 'paused' ELSE 'not paused' END"
    return f"""
SELECT pg_last_wal_receive_lsn()::text AS receive_lsn, pg_last_wal_replay_lsn()::text AS replay_lsn,
       pg_wal_lsn_diff(pg_last_wal_receive_lsn(), pg_last_wal_replay_lsn())::bigint AS replay_backlog_bytes,
       extract(epoch FROM now() - pg_last_xact_replay_timestamp())::float8 AS last_replay_age_s,
       {pause} AS pause_state"""


def _q_receiver(version_num: int) -> str:
    flushed = "flushed_lsn" if version_num >= 130000 else "received_lsn"
    return f"""
SELECT status, sender_host, sender_port, slot_name, {flushed}::text AS flushed_lsn, latest_end_lsn::text,
       extract(epoch FROM now() - last_msg_receipt_time)::float8 AS last_msg_age_s
  FROM pg_stat_wal_receiver"""


Q_CONFLICTS = """
SELECT datname, confl_tablespace AS tablespace, confl_lock AS lock, confl_snapshot AS snapshot,
       confl_bufferpin AS bufferpin, confl_deadlock AS deadlock
  FROM pg_stat_database_conflicts
 WHERE confl_tablespace + confl_lock + confl_snapshot + confl_bufferpin + confl_deadlock > 0"""


def promises_zero_loss(sync_names: str | None, sync_commit: str | None) -> bool:
    return bool((sync_names or "").strip()) and (sync_commit or "on") in {"on", "remote_write", "remote_apply"}


WAL_CLIENTS = {"pg_receivewal": "pg_receivewal", "pg_basebackup": "pg_basebackup's WAL stream"}
"""Default application_name of PostgreSQL's WAL clients that keep WAL without replaying it."""


def client(row: dict[str, Any], read_all_stats: bool) -> str:
    """client_addr as the login sees it: a NULL it may see is a Unix socket, else the privilege hides it."""
    if row.get("client_addr"):
        return str(row["client_addr"])
    return "local socket" if read_all_stats or row.get("own") else "address hidden"


def wal_client(row: dict[str, Any], where: str) -> WalStreamClient | None:
    """``row`` as a WAL client that is not a standby, or None (a standby, or a walsender this login cannot judge).

    Told by what it reports: a standby replies with the position it replayed; pg_receivewal and pg_basebackup's
    WAL stream never replay, so replay_lsn stays NULL while sent_lsn is visible. With the walsender's details
    hidden (needs pg_read_all_stats) only the tools' own application_name tells."""
    if row.get("state") is not None:
        if row.get("replay_lsn") is not None or row.get("sent_lsn") is None:
            return None
        by = "it reports no replayed position (it keeps WAL, it does not replay it)"
    elif row.get("name") in WAL_CLIENTS:
        by = f"its application_name (its state is hidden: needs {MONITOR})"
    else:
        return None
    keep = ("name", "pid", "slot", "state", "sent_lsn", "write_lsn", "flush_lsn", "unsent_bytes", "write_lag_bytes",
            "flush_lag_bytes")
    return WalStreamClient(**{k: row.get(k) for k in keep}, client=where, identified_by=by,
                           kind=WAL_CLIENTS.get(row.get("name") or "", "a WAL client that does not replay"))


def verdict(row: dict[str, Any], max_lag: int, zero_loss: bool) -> FailoverVerdict:
    reasons, hidden = [], []  # hidden: what this role cannot see (pg_stat_replication shows other columns NULL)
    if row.get("state") is None:  # only the pid is shown without pg_read_all_stats
        hidden.append(f"its state and position are hidden (needs {MONITOR})")
    elif row.get("state") != "streaming":
        reasons.append(f"not streaming (state {row.get('state')})")
    behind = row.get("replay_lag_bytes")
    if behind is None:
        if row.get("state") is not None:
            reasons.append("it reports no replayed position")
    elif behind > max_lag:
        reasons.append(f"{human_size(behind)} behind the primary (replayed), more than {human_size(max_lag)}")
    if zero_loss and row.get("sync_state") is not None and row.get("sync_state") not in ("sync", "quorum"):
        reasons.append(f"the configuration promises zero data loss but it is {row.get('sync_state')}")
    flush, replay = row.get("flush_lag_bytes"), row.get("replay_lag_bytes")
    return FailoverVerdict(ready=not (reasons or hidden), reasons=reasons + hidden,
                           unknown=bool(hidden) and not reasons, would_lose_bytes=flush,
                           replay_backlog_bytes=None if flush is None or replay is None else max(replay - flush, 0))


def replication_status(probe: Probe) -> ReplicationStatus:
    """Read the replication state of the server ``probe`` is connected to (every query short-timed)."""
    t, facts = probe.thresholds, probe.facts
    s = probe.rows(Q_SETTINGS)[0]
    zero_loss = promises_zero_loss(s["sync_names"], s["sync_commit"])
    out = ReplicationStatus(
        role="standby" if s["standby"] else "primary", server_version=s["version"], current_lsn=s["here"],
        synchronous_standby_names=s["sync_names"] or None, synchronous_commit=s["sync_commit"],
        zero_data_loss_promised=zero_loss, max_lag_bytes=t.failover_max_lag_bytes,
    )
    hidden = not facts.read_all_stats
    for row in probe.rows(q_standbys(facts.version_num)):
        row["client"] = client(row, facts.read_all_stats)
        row.pop("own")
        if row.pop("slot_type") == "logical":  # a logical decoding consumer (pg_recvlogical, a subscription…)
            out.logical_consumers.append(LogicalConsumer(
                name=row["name"], pid=row["pid"], slot=row["slot"], state=row["state"],
                confirmed_behind_bytes=row["flush_lag_bytes"]))
        elif row["state"] == "backup":
            out.notes.append(f"a base backup is streaming from this server ({row['name']}, pid {row['pid']})")
        elif (wc := wal_client(row, row["client"])) is not None:
            out.wal_clients.append(wc)
        else:
            out.standbys.append(Standby(**row, failover=verdict(row, t.failover_max_lag_bytes, zero_loss)))
    if hidden:
        out.cannot_see.append(f"standbys' state and WAL positions in pg_stat_replication: needs {MONITOR}")
    out.slots = [Slot(**r) for r in probe.rows(q_slots(facts.version_num))]
    if facts.version_num < 170000:
        out.notes.append("how long a slot has been inactive: PostgreSQL 17+ reports it (inactive_since)")
    if s["archive_mode"] != "off" and (not s["standby"] or s["archive_mode"] == "always"):
        out.archiver = _archiver(probe)
        if out.archiver.ready_segments is None:
            out.cannot_see.append("WAL segments waiting for the archiver (pg_ls_archive_statusdir): needs pg_monitor")
    elif s["archive_mode"] == "off":
        out.archiver = Archiver(mode="off")
    if s["standby"]:
        out.standby = _standby_state(probe, t.failover_max_lag_bytes)
        if hidden:
            out.cannot_see.append(f"the WAL receiver's details (pg_stat_wal_receiver): needs {MONITOR}")
    elif not out.standbys:
        out.notes.append("no standby is streaming from this server: there is no failover target"
                         + (f" ({', '.join(c.name for c in out.wal_clients)} keeps WAL but does not replay it: "
                            "not a standby)" if out.wal_clients else ""))
    return out


def _archiver(probe: Probe) -> Archiver:
    """The archiver as :func:`agent19.ops.backup.archiver.archiver_status` reads it (one reader: backup, health)."""
    probe.last_sql = Q_ARCHIVER.strip()
    with probe.db.read() as conn:
        a = archiver_status(conn)
    return Archiver(
        mode=a.archive_mode, configured=a.configured, archived_count=a.archived_count,
        last_archived_wal=a.last_archived_wal, last_archived_age_s=a.age_s(a.last_archived_time),
        failed_count=a.failed_count, last_failed_wal=a.last_failed_wal, last_failed_age_s=a.age_s(a.last_failed_time),
        failing=a.failing,
        ready_segments=a.ready_count, stats_reset=str(a.stats_reset) if a.stats_reset else None,
    )


def _standby_state(probe: Probe, max_lag: int) -> StandbyState:
    v = probe.facts.version_num
    st = StandbyState(**probe.rows(_q_standby(v))[0])
    st.replay_paused = st.pause_state in ("paused", "pause requested")
    rec = probe.rows(_q_receiver(v))
    st.receiver = Receiver(**rec[0], hidden=not probe.facts.read_all_stats) if rec else None
    st.conflicts = {r.pop("datname"): {k: int(n) for k, n in r.items()} for r in probe.rows(Q_CONFLICTS)}
    reasons, hidden = [], []
    if st.receiver is not None and st.receiver.hidden:
        hidden.append(f"its WAL receiver's state is hidden (needs {MONITOR})")
    elif st.receiver is None or st.receiver.status != "streaming":
        state = st.receiver.status if st.receiver and st.receiver.status else "not running"
        reasons.append(f"its WAL receiver is {state}")
    if st.replay_paused:
        reasons.append("replay is paused (SELECT pg_wal_replay_resume())")
    if st.replay_backlog_bytes is not None and st.replay_backlog_bytes > max_lag:
        reasons.append(f"{human_size(st.replay_backlog_bytes)} received but not replayed, more than "
                       f"{human_size(max_lag)}")
    st.failover = FailoverVerdict(ready=not (reasons or hidden), reasons=reasons + hidden,
                                  unknown=bool(hidden) and not reasons, replay_backlog_bytes=st.replay_backlog_bytes)
    return st
