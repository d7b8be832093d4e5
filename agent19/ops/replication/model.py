"""What ``replication_status`` reports: the server's role, its standbys and their failover readiness,
replication slots, WAL archiving — or, on a standby, its receiver, replay and recovery conflicts."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, Field


class FailoverVerdict(BaseModel):
    ready: bool = Field(description="promoting it now would be safe: streaming, within the maximum lag, "
                        "synchronous where the configuration promises zero data loss")
    reasons: list[str] = Field(default=[], description="why not (empty when ready)")
    unknown: bool = Field(default=False, description="not ready only because this role cannot see the state or "
                          "positions (needs pg_monitor): readiness is unknown, not refuted")
    would_lose_bytes: int | None = Field(default=None, description="WAL written on the primary but not yet flushed "
                                         "on the standby: lost if it were promoted now")
    replay_backlog_bytes: int | None = Field(default=None, description="WAL the standby has but has not replayed: "
                                             "replayed before it can take writes (a slower promotion)")


class Standby(BaseModel):
    """One row of pg_stat_replication, with lags measured against the primary's current WAL position."""

    name: str = Field(description="application_name (the standby's cluster_name or primary_conninfo's)")
    pid: int
    client_addr: str | None = None
    client: str = Field(default="address hidden", description="client_addr; 'local socket' for a Unix-socket "
                        "connection the login may see; 'address hidden' only where the privilege hides it")
    state: str | None = Field(default=None, description="startup, catchup, streaming, backup, stopping")
    sync_state: str | None = Field(default=None, description="async, potential, sync, quorum")
    slot: str | None = None
    sent_lsn: str | None = None
    write_lsn: str | None = None
    flush_lsn: str | None = None
    replay_lsn: str | None = None
    unsent_bytes: int | None = None
    write_lag_bytes: int | None = None
    flush_lag_bytes: int | None = None
    replay_lag_bytes: int | None = None
    write_lag_s: float | None = Field(default=None, description="0 once written up to the primary's position")
    flush_lag_s: float | None = None
    replay_lag_s: float | None = Field(default=None, description="0 once replayed up to the primary's position, "
                                       "even while pg_stat_replication.replay_lag still shows its last value")
    reply_age_s: float | None = Field(default=None, description="seconds since the standby's last status reply")
    failover: FailoverVerdict


class WalStreamClient(BaseModel):
    """A walsender streaming WAL to a client that keeps it but never replays it (pg_receivewal, the WAL stream of
    pg_basebackup -X stream): in pg_stat_replication, but no standby and no failover target."""

    name: str = Field(description="application_name")
    pid: int
    client: str = Field(description="client_addr, 'local socket', or 'address hidden'")
    kind: str = Field(description="pg_receivewal, pg_basebackup's WAL stream, or a WAL client that does not replay")
    identified_by: str = Field(description="how it was told from a standby: it reports no replayed position, or "
                               "(its state hidden from this login) its application_name")
    slot: str | None = None
    state: str | None = None
    sent_lsn: str | None = None
    write_lsn: str | None = None
    flush_lsn: str | None = Field(default=None, description="null unless it flushes each write (pg_receivewal "
                                  "--synchronous)")
    unsent_bytes: int | None = None
    write_lag_bytes: int | None = None
    flush_lag_bytes: int | None = None


class LogicalConsumer(BaseModel):
    """A walsender serving logical decoding (pg_recvlogical, a subscription, Debezium): not a failover target."""

    name: str
    pid: int
    slot: str | None = None
    state: str | None = None
    confirmed_behind_bytes: int | None = Field(default=None, description="WAL it has not yet confirmed (flushed)")


class Slot(BaseModel):
    name: str
    type: str = Field(description="physical or logical")
    plugin: str | None = None
    database: str | None = None
    active: bool
    active_pid: int | None = None
    temporary: bool = False
    wal_status: str | None = Field(default=None, description="reserved, extended, unreserved, lost (13+)")
    retained_bytes: int | None = Field(default=None, description="WAL kept for it: from its restart_lsn to now")
    safe_wal_size: int | None = Field(default=None, description="bytes more it may fall behind before its WAL is "
                                      "removed (max_slot_wal_keep_size; null when unlimited)")
    confirmed_behind_bytes: int | None = Field(default=None, description="logical: not yet confirmed by its consumer")
    xmin_age: int | None = Field(default=None, description="it holds back vacuum on every table this many XIDs")
    catalog_xmin_age: int | None = Field(default=None, description="it holds back vacuum of the catalogs")
    inactive_since: str | None = Field(default=None, description="PostgreSQL 17+; earlier servers cannot tell")
    inactive_s: float | None = None


class Archiver(BaseModel):
    mode: str = Field(description="archive_mode: off, on, always")
    configured: bool = Field(default=False, description="archive_command or archive_library set (archive_mode on "
                             "without either: WAL piles up in pg_wal, nothing is archived)")
    archived_count: int = 0
    last_archived_wal: str | None = None
    last_archived_age_s: float | None = None
    failed_count: int = 0
    last_failed_wal: str | None = None
    last_failed_age_s: float | None = None
    failing: bool = Field(default=False, description="the last attempt failed (no success since)")
    ready_segments: int | None = Field(default=None, description="WAL segments waiting to be archived (.ready files); "
                                       "null without pg_monitor")
    stats_reset: str | None = None


class Receiver(BaseModel):
    status: str | None = Field(default=None, description="the WAL receiver: streaming, waiting, ... (none: stopped)")
    hidden: bool = Field(default=False, description="this role sees only that a receiver runs (its state and "
                         "positions need pg_monitor)")
    sender_host: str | None = None
    sender_port: int | None = None
    slot_name: str | None = None
    flushed_lsn: str | None = None
    latest_end_lsn: str | None = None
    last_msg_age_s: float | None = None


class StandbyState(BaseModel):
    """This server is a standby: what it has received and replayed, and what stops it."""

    receive_lsn: str | None = None
    replay_lsn: str | None = None
    replay_backlog_bytes: int | None = Field(default=None, description="received but not replayed")
    last_replay_age_s: float | None = Field(default=None, description="since the last replayed transaction "
                                            "committed on the primary (grows on an idle primary too)")
    replay_paused: bool = False
    pause_state: str | None = Field(default=None, description="not paused, pause requested, paused (14+)")
    receiver: Receiver | None = Field(default=None, description="null: no WAL receiver running")
    conflicts: dict[str, dict[str, int]] = Field(default={}, description="recovery conflicts per database "
                                                  "(queries cancelled on this standby)")
    failover: FailoverVerdict | None = None


class ReplicationStatus(BaseModel):
    role: Literal["primary", "standby"]
    server_version: str
    current_lsn: str | None = Field(default=None, description="primary: pg_current_wal_lsn(); standby: replayed")
    synchronous_standby_names: str | None = None
    synchronous_commit: str | None = None
    zero_data_loss_promised: bool = Field(default=False, description="synchronous_standby_names is set and "
                                          "synchronous_commit waits for it (on, remote_write, remote_apply)")
    max_lag_bytes: int = Field(description="the failover readiness limit (default 1 MB, as Patroni's "
                               "maximum_lag_on_failover)")
    standbys: list[Standby] = []
    logical_consumers: list[LogicalConsumer] = Field(default=[], description="walsenders of logical slots "
                                                     "(in pg_stat_replication too, but not standbys)")
    wal_clients: list[WalStreamClient] = Field(default=[], description="walsenders of clients that keep WAL but "
                                               "do not replay it (pg_receivewal, pg_basebackup's stream): not "
                                               "standbys")
    slots: list[Slot] = []
    archiver: Archiver | None = None
    standby: StandbyState | None = Field(default=None, description="set when this server is a standby")
    notes: list[str] = []
    cannot_see: list[str] = Field(default=[], description="what this role cannot see, and the privilege it needs")
