"""pg_receivewal is a WAL client, not a standby (r25b M5).

`agent19 replication`, as a superuser, reported `standby pg_receivewal (address hidden) … replayed hidden
… failover: UNKNOWN — its position is hidden (needs pg_monitor …)` and `health` a WARNING `replication_lag
pg_receivewal: state and lag hidden`: replay_lsn is NULL because pg_receivewal never replays, and its
client_addr is NULL because it came over a Unix socket. Tested with the real pg_receivewal over a Unix
socket on a physical slot: it is listed as a WAL client, 'local socket', and nothing asks for a privilege the
login holds. A login without pg_read_all_stats is still told what is hidden from it.
"""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import psycopg
import pytest
from psycopg.conninfo import conninfo_to_dict, make_conninfo

from tests.conftest import need, one, until
from tools.throwaway import SYSTEM_ROOT, ThrowawayServer, start_system, system_versions

ROOT = Path(__file__).parent.parent


@pytest.fixture(scope="module")
def receiving(public_tmp_module: Path) -> Iterator[ThrowawayServer]:
    need(bool(system_versions()), "no system PostgreSQL binaries (pg_receivewal) installed")
    server = start_system()
    recv: subprocess.Popen[bytes] | None = None
    try:
        with psycopg.connect(server.dsn, autocommit=True) as c:
            c.execute("SELECT pg_create_physical_replication_slot('keep')")
            c.execute("CREATE ROLE app LOGIN; CREATE ROLE app_stats LOGIN IN ROLE pg_read_all_stats")
        port = conninfo_to_dict(server.dsn)["port"]
        binary = SYSTEM_ROOT / str(server.major) / "bin" / "pg_receivewal"
        recv = subprocess.Popen([binary, "-D", str(public_tmp_module), "-h", str(server.directory), "-p", str(port),
                                 "-U", "postgres", "--slot", "keep", "--no-loop"],
                                stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        until("pg_receivewal to stream", lambda: one(
            server.dsn, "SELECT count(*) FROM pg_stat_replication WHERE state = 'streaming'") == 1, every=0.1)
        yield server
    finally:
        if recv is not None:
            recv.terminate()
            recv.wait(timeout=30)
        server.stop()


@pytest.fixture(scope="module")
def public_tmp_module(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("wal")
    path.chmod(0o777)
    return path


def _cli(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "agent19", *args], capture_output=True, text=True, cwd=ROOT,
                          timeout=120)


def test_pg_receivewal_is_a_wal_client_on_a_local_socket_not_a_hidden_standby(receiving: ThrowawayServer) -> None:
    for who in ("postgres", "app_stats"):
        dsn = make_conninfo(receiving.dsn, user=who)
        done = _cli("replication", "--dsn", dsn)
        assert done.returncode == 0, done.stdout + done.stderr  # no standby: nothing is "not ready"
        text = done.stdout
        assert "standby pg_receivewal" not in text and "hidden" not in text and "pg_monitor" not in text, text
        assert "WAL client pg_receivewal (pg_receivewal; local socket, slot keep): streaming" in text, text
        out = json.loads(_cli("replication", "--dsn", dsn, "--format", "json").stdout)
        assert out["standbys"] == [] and [c["name"] for c in out["wal_clients"]] == ["pg_receivewal"]
        checks = {c["check"]: c for c in json.loads(_cli("health", "--dsn", dsn, "--format", "json").stdout)["checks"]}
        lag = checks["replication_lag"]
        assert lag["status"] == "ok" and "not a standby" in lag["message"] and not lag.get("needs"), lag
        assert checks["failover_readiness"]["status"] == "ok", checks["failover_readiness"]


def test_a_login_without_pg_read_all_stats_is_told_what_is_hidden(receiving: ThrowawayServer) -> None:
    dsn = make_conninfo(receiving.dsn, user="app")
    out = json.loads(_cli("replication", "--dsn", dsn, "--format", "json").stdout)
    [c] = out["wal_clients"]
    assert c["client"] == "address hidden" and c["state"] is None and "application_name" in c["identified_by"]
    assert any("pg_stat_replication: needs pg_monitor" in x for x in out["cannot_see"])
    text = _cli("replication", "--dsn", dsn).stdout
    assert "state and positions hidden" in text and "standby pg_receivewal" not in text, text
