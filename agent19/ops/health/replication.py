"""Health checks from :func:`agent19.ops.replication.status.replication_status`: lag, failover readiness, slots,
archiving, and on a standby its replay and receiver."""

from __future__ import annotations

from agent19.migrate.patterns.sqlnames import literal
from agent19.ops.backup.archiver import Q_ARCHIVER, judge
from agent19.ops.health.model import Check, Status, grade, worst
from agent19.ops.health.probe import Probe
from agent19.ops.replication.model import ReplicationStatus
from agent19.ops.replication.status import q_slots, q_standbys, replication_status
from agent19.units import human_duration, human_size

NAMES = ("replication_lag", "failover_readiness", "replication_slots", "archiving", "standby_replay")


SEES = {"replication_lag": ("pg_stat_replication",),
        "failover_readiness": ("pg_stat_replication", "pg_stat_wal_receiver"),
        "archiving": ("pg_ls_archive_statusdir",), "standby_replay": ("pg_stat_wal_receiver",)}
"""The view or function each check reads: a check needs only the privileges hiding what it reads."""


def replication_checks(probe: Probe) -> list[Check]:
    r = replication_status(probe)
    out = [_lag(probe, r), _failover(probe, r), _slots(probe, r), _archiving(probe, r)]
    if r.standby is not None:
        out.append(_standby(r))
    for c in out:
        needs = [x for x in r.cannot_see if any(src in x for src in SEES.get(c.check, ()))]
        if needs:
            c.needs = "; ".join(needs)
    return out


def _lag(probe: Probe, r: ReplicationStatus) -> Check:
    t = probe.thresholds
    found: list[tuple[str, Status, str]] = []
    for s in r.standbys:
        by_time = grade(s.replay_lag_s, t.replica_lag_s, None)
        by_bytes = grade(s.replay_lag_bytes, t.replica_lag_warning_bytes, t.replica_lag_critical_bytes)
        state = "critical" if s.state not in ("streaming", "catchup", None) else "ok"
        status = worst([by_time, by_bytes, state])  # type: ignore[list-item]
        text = (f"{s.name}: {s.state}, replay {human_size(s.replay_lag_bytes)} / "
                f"{human_duration(s.replay_lag_s or 0)} behind")
        if s.state is None or s.replay_lag_bytes is None:  # this role sees the walsender, not its state/positions
            status, text = worst([status, "unknown"]), f"{s.name}: state and lag hidden"
        found.append((s.name, status, text))
    bad = [f for f in found if f[1] != "ok"]
    return Check(
        check="replication_lag", status=worst([f[1] for f in found]),
        evidence=q_standbys(probe.facts.version_num).strip(),
        value=[s.model_dump(exclude={"failover"}) for s in r.standbys], objects=[f[0] for f in bad],
        threshold={"warning_s": t.replica_lag_s, "warning_bytes": t.replica_lag_warning_bytes,
                   "critical_bytes": t.replica_lag_critical_bytes},
        message="; ".join(f[2] for f in found) if found else
        ("this server is a standby (see standby_replay)" if r.role == "standby" else "no standby streaming")
        + "".join(f"; {c.name} ({c.kind}) keeps WAL without replaying it: not a standby" for c in r.wal_clients),
        fix=None if all(f[1] == "unknown" for f in bad) else "on the standby: is replay paused "
        "(pg_get_wal_replay_pause_state()), its disk or CPU saturated, a long query holding replay back "
        "(max_standby_streaming_delay)? On the primary: the "
        "network, or a WAL burst (bulk load) it is still catching up with",
    )


def _failover(probe: Probe, r: ReplicationStatus) -> Check:
    if r.standby is not None:
        v = r.standby.failover
        assert v is not None
        return Check(
            check="failover_readiness", status="ok" if v.ready else "unknown" if v.unknown else "warning",
            value=v.model_dump(),
            evidence="pg_stat_wal_receiver, pg_get_wal_replay_pause_state(), pg_last_wal_receive_lsn() - "
            "pg_last_wal_replay_lsn()", objects=[] if v.ready else ["this standby"],
            threshold={"max_lag_bytes": r.max_lag_bytes},
            message="this standby could be promoted: receiving and replaying" if v.ready else
            ("whether this standby could be promoted is unknown: " if v.unknown else
             "this standby is not ready for promotion: ") + "; ".join(v.reasons),
            fix=None if v.ready or v.unknown else "resume replay (SELECT pg_wal_replay_resume()) / restore the "
            "connection to the primary, and let it catch up",
        )
    ready = [s for s in r.standbys if s.failover.ready]
    unknown = [s for s in r.standbys if s.failover.unknown]
    not_ready = [s for s in r.standbys if not s.failover.ready and not s.failover.unknown]
    status: Status = "ok" if not r.standbys or not (not_ready or unknown) else \
        "unknown" if not not_ready else "warning" if ready or unknown else "critical"
    value = {"standbys": {s.name: s.failover.model_dump() for s in r.standbys},
             "zero_data_loss_promised": r.zero_data_loss_promised}
    parts = [f"{s.name}: ready (would lose {human_size(s.failover.would_lose_bytes)})" for s in ready]
    parts += [f"{s.name}: readiness unknown - {'; '.join(s.failover.reasons)}" for s in unknown]
    parts += [f"{s.name}: NOT ready - {'; '.join(s.failover.reasons)} (would lose "
              f"{human_size(s.failover.would_lose_bytes)})" for s in not_ready]
    return Check(
        check="failover_readiness", status=status, value=value,
        evidence=q_standbys(probe.facts.version_num).strip(),
        objects=[s.name for s in not_ready + unknown],
        threshold={"max_lag_bytes": r.max_lag_bytes, "synchronous_required": r.zero_data_loss_promised},
        message="; ".join(parts) if parts else "no standby: nothing to fail over to (single server)",
        fix=None if status in ("ok", "unknown") else "bring the standbys back within the maximum lag (see "
        "replication_lag); promote only a ready one" + ("; with synchronous_standby_names set, promote a sync standby"
                                      if r.zero_data_loss_promised else ""),
    )


def _slots(probe: Probe, r: ReplicationStatus) -> Check:
    t = probe.thresholds
    found = []
    for s in r.slots:
        if s.active and s.wal_status not in ("unreserved", "lost"):
            continue
        critical = (s.wal_status in ("unreserved", "lost") or (s.retained_bytes or 0) >= t.slot_retained_critical_bytes
                    or (s.inactive_s or 0) >= t.slot_inactive_critical_s)
        how_long = f" for {human_duration(s.inactive_s)}" if s.inactive_s is not None else ""
        found.append((s.name, "critical" if critical else "warning",
                      f"{s.name} ({s.type}{', ' + s.plugin if s.plugin else ''}) "
                      f"{'active' if s.active else 'inactive' + how_long}, retains "
                      f"{human_size(s.retained_bytes)} of WAL, wal_status {s.wal_status}"
                      + (f", holds back vacuum by {s.catalog_xmin_age or s.xmin_age:,} XIDs"
                         if (s.catalog_xmin_age or s.xmin_age) else "")))
    return Check(
        check="replication_slots", status=worst([f[1] for f in found]),  # type: ignore[misc]
        evidence=q_slots(probe.facts.version_num).strip(), value=[s.model_dump() for s in r.slots],
        objects=[f[0] for f in found],
        threshold={"inactive": "warning", "critical_retained_bytes": t.slot_retained_critical_bytes,
                   "critical_inactive_s": t.slot_inactive_critical_s, "critical_wal_status": ["unreserved", "lost"]},
        message="; ".join(f[2] for f in found) or (f"{len(r.slots)} slot(s), all active" if r.slots else "no slot"),
        fix=None if not found else "an inactive slot keeps every WAL segment since its consumer stopped, until the "
        "disk fills: restart its consumer, or drop it if nobody will come back - "
        + ", ".join(f"SELECT pg_drop_replication_slot({literal(f[0])})" for f in found)
        + " (destructive for its consumer); bound the damage with max_slot_wal_keep_size",
    )


def _archiving(probe: Probe, r: ReplicationStatus) -> Check:
    """The worst aspect of :func:`agent19.ops.backup.archiver.judge` — the verdict ``backup status`` gives too."""
    t = probe.thresholds
    a = r.archiver
    standby = r.standby is not None
    mode = a.mode if a else "on"  # no archiver: a standby that leaves archiving to its primary
    aspects = judge(mode=mode, configured=bool(a and a.configured), standby=standby and a is None,
                    failing=bool(a and a.failing), failed_count=a.failed_count if a else 0,
                    last_failed_wal=a.last_failed_wal if a else None,
                    failed_age_s=a.last_failed_age_s if a else None, ready=a.ready_segments if a else None,
                    limits=t)
    status = worst([x.status for x in aspects])
    parts = [x.message for x in aspects if x.status != "ok"] or [aspects[0].message]
    if a and a.mode != "off":
        parts.append(f"last archived {a.last_archived_wal} {human_duration(a.last_archived_age_s)} ago"
                     if a.last_archived_age_s is not None else "nothing archived yet")
    return Check(
        check="archiving", status=status, value=a.model_dump() if a else None,
        evidence=Q_ARCHIVER.strip() if a and a.mode != "off" else "SHOW archive_mode",
        window=f"since {a.stats_reset}" if a and a.stats_reset else "since the cluster started counting",
        objects=[a.last_failed_wal] if a and a.failing and a.last_failed_wal else [],
        threshold={"critical_failure_within_s": t.archive_failure_window_s, "ready_warning": t.archive_ready_warning,
                   "ready_critical": t.archive_ready_critical, "archive_mode_off": "warning"},
        message="; ".join(parts),
        fix=None if status in ("ok", "unknown") else "archive_mode off: set archive_mode = on and an archive_command "
        "(restart), or accept recovery only to the last base backup" if mode == "off" else "read the server log for "
        "archive_command's error and fix it (destination full, unreachable, permissions); WAL piles up in pg_wal "
        "until it succeeds; pg_stat_archiver shows success",
    )


def _standby(r: ReplicationStatus) -> Check:
    st = r.standby
    assert st is not None
    hidden = st.receiver is not None and st.receiver.hidden
    receiving = hidden or (st.receiver is not None and st.receiver.status == "streaming")
    conflicts = sum(sum(c.values()) for c in st.conflicts.values())
    status: Status = "critical" if not receiving else "warning" if st.replay_paused or conflicts else \
        "unknown" if hidden else "ok"
    parts = [f"receiver {'running, state hidden' if hidden else st.receiver.status if st.receiver else 'not running'}",
             f"replay {'PAUSED' if st.replay_paused else 'running'}",
             f"{human_size(st.replay_backlog_bytes)} received and not yet replayed"]
    if conflicts:
        parts.append(f"{conflicts} queries cancelled by recovery conflicts ("
                     + ", ".join(f"{db}: {c}" for db, c in st.conflicts.items()) + ")")
    return Check(
        check="standby_replay", status=status, value=st.model_dump(exclude={"failover"}),
        evidence="pg_last_wal_receive_lsn(), pg_last_wal_replay_lsn(), pg_get_wal_replay_pause_state(), "
        "pg_stat_wal_receiver, pg_stat_database_conflicts", objects=["this standby"] if status != "ok" else [],
        message="; ".join(parts),
        fix=None if status == "ok" else "; ".join(
            ([] if receiving else ["check primary_conninfo and the primary's log (pg_hba, slots, wal_keep_size)"])
            + (["SELECT pg_wal_replay_resume()"] if st.replay_paused else [])
            + (["conflicts: raise max_standby_streaming_delay or set hot_standby_feedback = on"] if conflicts else [])),
    )
