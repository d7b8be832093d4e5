"""The thresholds of ``health_check`` and ``replication_status``: one table, overridable in config.

Every number a check judges by is a field of :class:`HealthThresholds`, with its default and source.
Override them in ``agent19.toml`` (table ``[health]``) or ``pyproject.toml`` (``[tool.agent19.health]``),
read by the same loader as lint's config (:func:`agent19.migrate.lint.config.load_section`)::

    [tool.agent19.health]
    fail_on = "warning"              # critical (default) | warning | never: the CLI exits 1 at or above
    idle_in_transaction_s = 10
    connections_warning_pct = 70

and per run with ``agent19 health --set idle_in_transaction_s=10`` (MCP: ``set: ["…=…"]``), which win over
the file. Sources of the defaults: PgHero, check_postgres, Patroni and postgres_exporter's alert rules
(see /work/shared/REFERENCE.md, "Operations thresholds"); where none gives a critical level the field
says it is agent19's choice.
"""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from agent19.errors import ConfigError
from agent19.migrate.lint.config import load_section

FailOn = Literal["critical", "warning", "never"]
WRAPAROUND_LIMIT = 2**31
"""Transaction IDs and multixact IDs wrap around at 2^31 of age (the server stops before that)."""


class HealthThresholds(BaseModel):
    """The one table of health thresholds. Percentages are 0–100; durations in seconds; sizes in bytes."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    fail_on: FailOn = Field(default="critical", description="the CLI exits 1 when a check is at or above this")
    # -- how a health check queries (it never waits) --
    lock_timeout_ms: int = Field(default=500, ge=1, description="lock_timeout of every query a check sends; "
                                 "a check that cannot get its lock in time is `unknown`, naming who blocks it")
    statement_timeout_ms: int = Field(default=3000, ge=1, description="statement_timeout of every check query")
    # -- sessions --
    connections_warning_pct: float = Field(default=80, description="client connections / max_connections (PgHero, "
                                           "postgres_exporter)")
    connections_critical_pct: float = Field(default=90, description="same, critical")
    long_query_s: float = Field(default=60, description="an active query running longer is a warning (PgHero)")
    long_query_critical_s: float = Field(default=600, description="...a critical one (agent19's choice)")
    idle_in_transaction_s: float = Field(default=30, description="idle in transaction longer is a warning")
    idle_in_transaction_critical_s: float = Field(default=600, description="...critical (agent19's choice)")
    blocked_s: float = Field(default=5, description="a session waiting on another's lock this long is a warning")
    blocked_critical_s: float = Field(default=60, description="...critical (agent19's choice)")
    prepared_xact_s: float = Field(default=60, description="a prepared transaction older than this is a warning")
    prepared_xact_critical_s: float = Field(default=3600, description="...critical (agent19's choice)")
    # -- vacuum and wraparound --
    wraparound_warning_pct: float = Field(default=50, description="XID / multixact age as % of 2^31 (check_postgres)")
    wraparound_critical_pct: float = Field(default=75, description="same, critical")
    dead_tuples_pct: float = Field(default=10, description="dead / (live + dead) rows of a table (warning)")
    dead_tuples_min: int = Field(default=10_000, description="...and at least this many dead rows")
    stale_stats_pct: float = Field(default=10, description="rows modified since the last (auto)analyze, % of "
                                   "the table (warning)")
    stale_stats_min: int = Field(default=10_000, description="...and at least this many rows modified")
    # -- sequences --
    sequence_warning_pct: float = Field(default=85, description="values used of the sequence's (or its column's) "
                                        "range")
    sequence_critical_pct: float = Field(default=95, description="same, critical")
    # -- statistics since the reset --
    cache_hit_min_pct: float = Field(default=99, description="buffer cache hit ratio below this is a warning (PgHero)")
    cache_hit_min_blocks: int = Field(default=100_000, description="judge the ratio only after this many blocks "
                                      "were read (hit + read)")
    checkpoints_requested_pct: float = Field(default=50, description="requested / all checkpoints (warning)")
    checkpoints_min: int = Field(default=10, description="judge only after this many checkpoints")
    temp_bytes_warning: int = Field(default=1 << 30, description="temporary file bytes written since the reset")
    deadlocks_warning: int = Field(default=1, description="deadlocks since the reset (warning at this count)")
    # -- replication, slots, archiving --
    replica_lag_s: float = Field(default=5, description="a standby's replay lag above this is a warning (PgHero)")
    replica_lag_warning_bytes: int = Field(default=16 << 20, description="...or this far behind in replayed WAL (one "
                                           "segment; agent19's choice: replay_lag moves only when the standby "
                                           "replies - up to wal_receiver_status_interval late after a burst - the "
                                           "bytes at once)")
    replica_lag_critical_bytes: int = Field(default=1 << 30, description="a standby this far behind is critical")
    failover_max_lag_bytes: int = Field(default=1 << 20, description="a failover candidate is at most this far "
                                        "behind (Patroni's maximum_lag_on_failover)")
    slot_retained_critical_bytes: int = Field(default=1 << 30, description="an inactive slot retaining this much "
                                              "WAL is critical (any inactive slot is a warning)")
    slot_inactive_critical_s: float = Field(default=1800, description="inactive this long is critical (PostgreSQL "
                                            "17+ reports inactive_since)")
    archive_ready_warning: int = Field(default=10, description="WAL segments waiting for the archiver (warning)")
    archive_ready_critical: int = Field(default=15, description="same, critical")
    archive_failure_window_s: float = Field(default=3600, description="an archiver failure this recent, "
                                            "succeeded since, is a warning (no success since: critical)")


def _number(raw: str) -> float | int | str:
    try:
        return int(raw)
    except ValueError:
        try:
            return float(raw)
        except ValueError:
            return raw


def load_thresholds(overrides: list[str] | None = None, config: Path | str | None = None) -> HealthThresholds:
    """The config file's ``[health]`` table, then ``KEY=VALUE`` overrides on top."""
    section, path = load_section("health", (), config)
    values: dict[str, object] = dict(section)
    for item in overrides or []:
        key, sep, raw = item.partition("=")
        if not sep or not key.strip():
            raise ConfigError(f"threshold override {item!r} is not KEY=VALUE", "e.g. --set idle_in_transaction_s=10")
        values[key.strip()] = _number(raw.strip())
    try:
        return HealthThresholds(**values)  # type: ignore[arg-type]
    except ValidationError as exc:
        err = exc.errors()[0]
        where = f"{path}: " if path and err["loc"] and str(err["loc"][0]) in section else ""
        raise ConfigError(f"{where}health threshold {'.'.join(map(str, err['loc']))}: {err['msg']}",
                          "the thresholds and their defaults are listed in agent19/ops/health/thresholds.py "
                          "(HealthThresholds)") from None
