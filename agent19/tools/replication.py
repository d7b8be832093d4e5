"""replication_status (``agent19 replication``): role, standbys and failover readiness, slots, archiving."""

from __future__ import annotations

from typing import TYPE_CHECKING

from pydantic import BaseModel, Field

from agent19.ops.replication.model import ReplicationStatus
from agent19.tools.registry import ToolContext, tool
from agent19.units import human_duration, human_size

if TYPE_CHECKING:
    from agent19.ops.replication.model import FailoverVerdict


class ReplicationArgs(BaseModel):
    max_lag_mb: float | None = Field(default=None, ge=0, description="failover readiness: at most this far behind "
                                     "(default 1, as Patroni's maximum_lag_on_failover; config "
                                     "failover_max_lag_bytes)")
    config: str | None = Field(default=None, description="config file (default: nearest agent19.toml [health] or "
                               "pyproject.toml [tool.agent19.health])")


def _size(n: int | None) -> str:
    return "hidden" if n is None else human_size(n)


def _verdict(v: FailoverVerdict) -> str:
    return "READY" if v.ready else ("UNKNOWN - " if v.unknown else "NOT READY - ") + "; ".join(v.reasons)


def render_replication(r: ReplicationStatus) -> str:
    out = [f"role: {r.role} (PostgreSQL {r.server_version}), WAL at {r.current_lsn}"]
    if r.zero_data_loss_promised:
        out.append(f"synchronous_standby_names = '{r.synchronous_standby_names}', synchronous_commit = "
                   f"{r.synchronous_commit}: the configuration promises zero data loss")
    for s in r.standbys:
        v = s.failover
        out.append(f"standby {s.name} ({s.client}): {s.state or 'state hidden'}, "
                   f"{s.sync_state or 'sync state hidden'}; behind: sent "
                   f"{_size(s.unsent_bytes)}, flushed {_size(s.flush_lag_bytes)}, replayed {_size(s.replay_lag_bytes)}"
                   + (f" ({human_duration(s.replay_lag_s)})" if s.replay_lag_s is not None else ""))
        out.append(f"  failover: {_verdict(v)}; promoted now it "
                   f"would lose {_size(v.would_lose_bytes)} and first replay {_size(v.replay_backlog_bytes)}")
    for c in r.wal_clients:
        pos = "state and positions hidden" if c.state is None else (
            f"{c.state}; behind: sent {_size(c.unsent_bytes)}, written {_size(c.write_lag_bytes)}, flushed "
            + ("not reported (it does not flush each write)" if c.flush_lag_bytes is None else
               _size(c.flush_lag_bytes)))
        out.append(f"WAL client {c.name} ({c.kind}; {c.client}" + (f", slot {c.slot}" if c.slot else "")
                   + f"): {pos}; not a standby, no failover target - told by {c.identified_by}")
    if r.standby:
        st = r.standby
        rec = st.receiver
        state = "not running" if rec is None else "running, state hidden" if rec.hidden else rec.status
        out.append(f"standby: receiver {state}"
                   + (f" from {rec.sender_host}:{rec.sender_port}" if rec and rec.sender_host else "")
                   + f"; received {st.receive_lsn}, replayed {st.replay_lsn} ({_size(st.replay_backlog_bytes)} to "
                   f"replay); replay {'PAUSED' if st.replay_paused else 'running'}")
        if st.conflicts:
            out.append("  recovery conflicts: " + ", ".join(f"{d}: {c}" for d, c in st.conflicts.items()))
        if st.failover:
            v = st.failover
            out.append(f"  failover: {_verdict(v)}")
    for sl in r.slots:
        out.append(f"slot {sl.name} ({sl.type}{', ' + sl.plugin if sl.plugin else ''}): "
                   f"{'active' if sl.active else 'INACTIVE'}, retains {_size(sl.retained_bytes)}, wal_status "
                   f"{sl.wal_status}" + (f", safe_wal_size {_size(sl.safe_wal_size)}" if sl.safe_wal_size else ""))
    a = r.archiver
    if a and a.mode != "off":
        out.append(f"archiving ({a.mode}): {a.archived_count} archived"
                   + ("" if a.last_archived_age_s is None else f", last {human_duration(a.last_archived_age_s)} ago")
                   + f", {a.failed_count} failed" + (" - FAILING now" if a.failing else "")
                   + (f", {a.ready_segments} segments waiting" if a.ready_segments is not None else ""))
    elif a:
        out.append("archiving: off")
    out += [f"note: {n}" for n in r.notes] + [f"cannot see: {c}" for c in r.cannot_see]
    return "\n".join(out)


def _not_ready(r: ReplicationStatus) -> bool:
    if r.standby is not None:
        return bool(r.standby.failover and not r.standby.failover.ready)
    return any(not s.failover.ready for s in r.standbys)


@tool(
    briefs={
        "max_lag_mb": "",
    },
    name="replication_status", catalog_only=True, title="Replication",
    args=ReplicationArgs, result=ReplicationStatus, cli="replication", render_text=render_replication,
    exit_code=lambda r: 1 if _not_ready(r) else 0,
    examples=("agent19 replication", "agent19 replication --max-lag-mb 16 --format json"),
)
def replication_status_tool(ctx: ToolContext, args: ReplicationArgs) -> ReplicationStatus:
    """Replication and failover readiness: each standby's lag and state, slots and WAL archiving.

    Replication and high availability of the server: its role (primary or standby). On a primary: each
    standby's state, sync_state and lag (sent/write/flush/replay, bytes and seconds — 0 once caught up,
    even while replay_lag shows a stale value) with a failover verdict (streaming, within the maximum lag,
    synchronous where the configuration promises zero data loss) and what would be lost if it were
    promoted now; replication slots (active, wal_status, WAL retained, safe_wal_size, xmin held back);
    WAL archiving (failures, age of the last success and failure, segments waiting). On a standby: received
    and replayed positions, replay paused or not, the WAL receiver, recovery conflicts.
    The CLI exits 1 when a standby is not ready for failover. Works with pg_monitor; says what it cannot see."""
    from agent19.ops.health.probe import Probe
    from agent19.ops.health.thresholds import load_thresholds
    from agent19.ops.replication.status import replication_status

    thresholds = load_thresholds(None, args.config)
    if args.max_lag_mb is not None:
        thresholds = thresholds.model_copy(update={"failover_max_lag_bytes": int(args.max_lag_mb * 1048576)})
    probe = Probe.open(ctx.db, thresholds)
    try:
        return replication_status(probe)
    finally:
        probe.close()
