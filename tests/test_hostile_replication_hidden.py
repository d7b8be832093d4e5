"""A role without pg_monitor, a healthy streaming standby: health and replication say "unknown", never raise an alarm.

Found by a hostile review: such a role saw `CRITICAL failover_readiness … NOT ready — not streaming`, `ok
replication_lag … None, replay unknown size / 0.0 s behind` and `standby … (None): None, None` although the
standby was streaming and caught up. pg_stat_replication shows such a role the walsender's row with its state
and positions NULL: nothing is known, so nothing may be claimed.
"""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import psycopg
import pytest
from psycopg.conninfo import make_conninfo

from tests.conftest import need, one, until
from tools.throwaway import ThrowawayServer, start_replica, start_system, system_versions

ROOT = Path(__file__).parent.parent


@pytest.fixture(scope="module")
def pair() -> Iterator[tuple[ThrowawayServer, ThrowawayServer]]:
    need(bool(system_versions()), "no system PostgreSQL binaries to start a primary and a standby")
    primary = start_system()
    try:
        standby = start_replica(primary)
        try:
            with psycopg.connect(primary.dsn, autocommit=True) as c:
                c.execute("CREATE ROLE nomon LOGIN; CREATE ROLE mon LOGIN IN ROLE pg_monitor")
            until("the standby to replay the roles", lambda: one(
                standby.dsn, "SELECT count(*) FROM pg_roles WHERE rolname = 'mon'") == 1, every=0.1)
            yield primary, standby
        finally:
            standby.stop()
    finally:
        primary.stop()


def _cli(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "agent19", *args], capture_output=True, text=True, cwd=ROOT,
                          timeout=120)


def _checks(dsn: str) -> dict[str, dict[str, object]]:
    done = _cli("health", "--dsn", dsn, "--format", "json")
    assert done.returncode == 0, done.stdout + done.stderr  # no critical check on a healthy pair
    return {c["check"]: c for c in json.loads(done.stdout)["checks"]}


def test_the_primary_seen_without_pg_monitor_reports_unknown_not_an_alarm(pair: tuple[ThrowawayServer, ...]) -> None:
    primary, _ = pair
    mon = _checks(make_conninfo(primary.dsn, user="mon"))
    assert mon["failover_readiness"]["status"] == "ok" and mon["replication_lag"]["status"] == "ok"

    checks = _checks(make_conninfo(primary.dsn, user="nomon"))
    ready, lag = checks["failover_readiness"], checks["replication_lag"]
    assert ready["status"] == "unknown", ready
    assert "unknown" in str(ready["message"]) and "pg_monitor" in str(ready["needs"]) and ready["fix"] is None
    assert lag["status"] == "unknown" and "hidden" in str(lag["message"]) and lag["fix"] is None, lag
    assert "None" not in str(lag["message"]) and "0.0 s" not in str(lag["message"])

    text = _cli("replication", "--dsn", make_conninfo(primary.dsn, user="nomon"))
    assert "failover: UNKNOWN" in text.stdout and "NOT READY" not in text.stdout, text.stdout
    assert "None" not in text.stdout and "state hidden" in text.stdout
    out = json.loads(_cli("replication", "--dsn", make_conninfo(primary.dsn, user="nomon"), "--format", "json").stdout)
    [sb] = out["standbys"]
    assert sb["failover"]["ready"] is False and sb["failover"]["unknown"] is True


def test_the_standby_seen_without_pg_monitor_reports_unknown_not_a_warning(pair: tuple[ThrowawayServer, ...]) -> None:
    _, standby = pair
    assert _checks(make_conninfo(standby.dsn, user="mon"))["failover_readiness"]["status"] == "ok"
    ready = _checks(make_conninfo(standby.dsn, user="nomon"))["failover_readiness"]
    assert ready["status"] == "unknown" and "hidden" in str(ready["message"]) and ready["fix"] is None, ready
    text = _cli("replication", "--dsn", make_conninfo(standby.dsn, user="nomon")).stdout
    assert "failover: UNKNOWN" in text and "NOT READY" not in text, text
