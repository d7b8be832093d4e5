"""pgbouncer_config and pgbouncer_status proven with the real pgbouncer (Debian's package; .ci/run installs it).

The generated config is started as it is written (as the postgres OS user, on loopback) and 200 concurrent
clients go through 20 server connections in transaction mode: every transaction completes and the server,
watched from pg_stat_activity, never sees more than the pool. A config whose pools exceed max_connections is
flagged and not written. The caveats the config states are shown on the real thing: a SET leaks to the next
client in transaction mode, and PgBouncer < 1.21 loses driver-prepared statements between server connections.
"""

from __future__ import annotations

import json
import os
import pwd
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import psycopg
import pytest
from psycopg.conninfo import make_conninfo

from agent19.db.binaries import pg_binary
from agent19.db.connection import Database, _tokens
from agent19.errors import ConfigError
from agent19.ops.pgbouncer.status import pgbouncer_status
from tests.conftest import need, session_settings
from tests.reader_login import psql
from tools.throwaway import ThrowawayServer, free_port, start_system, system_versions

ROOT = Path(__file__).parent.parent
PGBOUNCER = shutil.which("pgbouncer") or "/usr/sbin/pgbouncer"
APP_PASSWORD = "app-" + uuid.uuid4().hex
ADMIN_PASSWORD = "admin-" + uuid.uuid4().hex


@pytest.fixture(scope="module")
def server() -> Iterator[ThrowawayServer]:
    need(bool(system_versions()), "no system PostgreSQL binaries")
    need(os.path.exists(PGBOUNCER), "pgbouncer is not installed (apt-get install pgbouncer; .ci/run does)")
    s = start_system()
    with psycopg.connect(s.dsn, autocommit=True) as c:
        c.execute(f"CREATE ROLE app LOGIN PASSWORD '{APP_PASSWORD}'")
        c.execute(f"ALTER ROLE postgres PASSWORD '{ADMIN_PASSWORD}'")  # the admin console's login
        c.execute("CREATE DATABASE shop OWNER app")
    with psycopg.connect(s.dsn_for("shop"), autocommit=True) as c:
        c.execute("CREATE EXTENSION pg_stat_statements")
        c.execute("CREATE TABLE hits (id bigserial PRIMARY KEY, client int NOT NULL)")
        c.execute("ALTER TABLE hits OWNER TO app")
    try:
        yield s
    finally:
        s.stop()


def agent19(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "agent19", *args], capture_output=True, text=True, cwd=ROOT,
                          timeout=120, env={**os.environ, **(env or {})})


def console_status(directory: Path, cfg: dict[str, Any]) -> subprocess.CompletedProcess[str]:
    """agent19 pgbouncer status as the README says: the admin DSN config gave, its password from console.pgpass."""
    return agent19("pgbouncer", "status", "--admin-dsn", cfg["admin_dsn"], "--samples", "1",
                   env={"PGPASSFILE": str(directory / "console.pgpass"), "PGPASSWORD": "", "PGCONNECT_TIMEOUT": "5"})


def generate(server: ThrowawayServer, directory: Path, *extra: str) -> tuple[int, dict[str, Any]]:
    done = agent19("--dsn", server.dsn_for("shop"), "pgbouncer", "config", "--write", str(directory),
                   "--format", "json", *extra)
    assert done.returncode in (0, 1), done.stderr
    return done.returncode, json.loads(done.stdout)


class Bouncer:
    def __init__(self, directory: Path, port: int) -> None:
        self.directory, self.port = directory, port
        pw = pwd.getpwnam("postgres") if os.geteuid() == 0 else None
        if pw:  # pgbouncer refuses root, like postgres: run it as the postgres OS user
            os.chmod(directory.parent, 0o755)
            for p in [directory, *directory.iterdir()]:
                os.chown(p, pw.pw_uid, pw.pw_gid)
        self.process = subprocess.Popen(
            [PGBOUNCER, str(directory / "pgbouncer.ini")], stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
            **({"user": pw.pw_uid, "group": pw.pw_gid, "extra_groups": []} if pw else {}))  # type: ignore[arg-type]
        deadline = time.monotonic() + 15
        while True:
            try:
                with socket.create_connection(("127.0.0.1", port), timeout=0.5):
                    return
            except OSError:
                if self.process.poll() is not None or time.monotonic() > deadline:
                    log = (directory / "pgbouncer.log")
                    raise RuntimeError("pgbouncer did not start: " + (log.read_text() if log.exists() else "")
                                       + (self.process.stdout.read().decode() if self.process.stdout else "")
                                       ) from None
                time.sleep(0.1)

    def dsn(self, user: str = "app", password: str = APP_PASSWORD, dbname: str = "shop") -> str:
        return make_conninfo(host="127.0.0.1", port=self.port, user=user, password=password, dbname=dbname)

    def stop(self) -> None:
        self.process.send_signal(signal.SIGINT)
        try:
            self.process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()


@pytest.fixture
def bouncer(server: ThrowawayServer) -> Iterator[tuple[Bouncer, dict[str, Any]]]:
    yield from _bouncer(server)


@pytest.fixture
def session_bouncer(server: ThrowawayServer) -> Iterator[tuple[Bouncer, dict[str, Any]]]:
    """A PgBouncer in session mode: each client keeps its server connection (what agent19 needs)."""
    yield from _bouncer(server, "--pool-mode", "session")


def _bouncer(server: ThrowawayServer, *extra: str) -> Iterator[tuple[Bouncer, dict[str, Any]]]:
    port = free_port()
    top = Path(tempfile.mkdtemp(prefix="agent19-pgbouncer-"))  # pytest's tmp_path is 0700: postgres cannot enter
    directory = top / "pgb"
    code, cfg = generate(server, directory, "--listen-port", str(port), "--users", "app", "postgres",
                         "--pool-size", "20", "--reserve-pool-size", "0", *extra)
    assert code == 0 and cfg["valid"], cfg["findings"]
    try:
        b = Bouncer(directory, port)
        try:
            yield b, cfg
        finally:
            b.stop()
    finally:
        shutil.rmtree(top, ignore_errors=True)


def _app_backends(server: ThrowawayServer) -> int:
    with psycopg.connect(server.dsn_for("shop"), autocommit=True) as c:
        row = c.execute("SELECT count(*) FROM pg_stat_activity WHERE usename = 'app'").fetchone()
    return int(row[0]) if row else 0


def test_the_generated_config_and_its_secrets(server: ThrowawayServer, tmp_path: Path) -> None:
    code, cfg = generate(server, tmp_path / "out", "--users", "app")
    assert code == 0 and cfg["valid"] and cfg["pool_mode"] == "transaction"
    assert cfg["auth"] == "userlist" and cfg["auth_users"] == ["app"]
    ini = (tmp_path / "out" / "pgbouncer.ini").read_text()
    for line in ("pool_mode = transaction", "max_db_connections = ", "server_idle_timeout = 600",
                 "server_lifetime = 3600", "server_connect_timeout = 5", "query_wait_timeout = 120",
                 "dbname=shop", "auth_type = scram-sha-256"):
        assert line in ini
    userlist = (tmp_path / "out" / "userlist.txt").read_text()
    assert userlist.startswith('"app" "SCRAM-SHA-256$')
    secret = userlist.split('"')[3]
    assert secret not in json.dumps(cfg) and APP_PASSWORD not in json.dumps(cfg)
    assert (tmp_path / "out" / "userlist.txt").stat().st_mode & 0o077 == 0
    b = cfg["budget"]
    assert cfg["pools_total"] <= b["available"] == b["max_connections"] - b["superuser_reserved_connections"] \
        - b["reserved_connections"] - b["agent19"] - b["other_direct"]
    assert cfg["file_descriptors"] >= 1000 + cfg["pools_total"]
    if cfg["pgbouncer_version"] and tuple(map(int, cfg["pgbouncer_version"].split(".")[:2])) < (1, 21):
        assert "max_prepared_statements" not in ini
        assert any("prepare_threshold=None" in (f["fix"] or "") for f in cfg["findings"])


def test_pools_past_max_connections_are_flagged_and_not_written(server: ThrowawayServer, tmp_path: Path) -> None:
    code, cfg = generate(server, tmp_path / "big", "--pool-size", "200")
    assert code == 1 and cfg["valid"] is False
    err = next(f for f in cfg["findings"] if f["level"] == "error")
    assert "pools exceed" in err["message"] and "max_connections 100" in err["message"]
    assert not (tmp_path / "big" / "pgbouncer.ini").exists()
    code, cfg = generate(server, tmp_path / "other", "--other-connections", "82")  # leaves 100 - 3 - 5 - 82 = 10
    assert code == 0 and cfg["valid"] and cfg["budget"]["available"] == 10
    assert (cfg["default_pool_size"], cfg["reserve_pool_size"], cfg["pools_total"]) == (8, 2, 10)
    assert "max_db_connections = 10" in (tmp_path / "other" / "pgbouncer.ini").read_text()


def test_config_and_status_text_in_an_ascii_encoding(bouncer: tuple[Bouncer, dict[str, Any]], server: ThrowawayServer,
                                                     tmp_path: Path) -> None:
    """Their own words are ASCII (the pools' budget said with 'x' and '-', the ini's comment): the text reads the same
    under PYTHONIOENCODING=ascii, with the same exit code (tests/test_ascii_output_ops.py for the other commands)."""
    from tests.test_ascii_output_ops import same_in_ascii

    b, cfg = bouncer
    too_big = same_in_ascii(tmp_path, "pgbouncer", "config", "--pool-size", "200", code=1,
                            DATABASE_URL=server.dsn_for("shop"))
    assert "pair(s) x (pool" in too_big and " - superuser_reserved " in too_big, too_big
    with psycopg.connect(b.dsn(), autocommit=True) as c:
        c.execute("SELECT 1")
        status = same_in_ascii(tmp_path, "pgbouncer", "status", "--admin-dsn", cfg["admin_dsn"], "--samples", "1",
                               code=0, PGPASSFILE=str(b.directory / "console.pgpass"), PGPASSWORD="",
                               PGCONNECT_TIMEOUT="5")
    assert "shop/app" in status, status


def test_pgbouncer_121_gets_max_prepared_statements(server: ThrowawayServer, tmp_path: Path) -> None:
    code, cfg = generate(server, tmp_path / "new", "--pgbouncer-version", "1.22.1")
    assert code == 0 and "max_prepared_statements = 200" in cfg["ini"]
    assert not any("prepare_threshold" in (f["fix"] or "") for f in cfg["findings"])


def test_200_clients_through_20_server_connections(server: ThrowawayServer,
                                                   bouncer: tuple[Bouncer, dict[str, Any]]) -> None:
    b, cfg = bouncer
    assert cfg["default_pool_size"] == 20 and cfg["reserve_pool_size"] == 0
    stop, peak, errors = threading.Event(), [0], []

    def watch() -> None:
        while not stop.is_set():
            peak[0] = max(peak[0], _app_backends(server))
            time.sleep(0.02)

    def client(n: int) -> None:
        try:
            with psycopg.connect(b.dsn(), autocommit=True, prepare_threshold=None) as c:
                for _ in range(5):
                    with c.transaction():
                        c.execute("INSERT INTO hits (client) VALUES (%s)", (n,))
                        c.execute("SELECT pg_sleep(0.06)")
        except Exception as exc:  # noqa: BLE001 — collected and asserted below
            errors.append(f"client {n}: {exc}")

    watcher = threading.Thread(target=watch)
    watcher.start()
    clients = [threading.Thread(target=client, args=(n,)) for n in range(200)]
    for t in clients:
        t.start()
    time.sleep(0.8)
    status = pgbouncer_status(b.dsn("postgres", ADMIN_PASSWORD, "pgbouncer"), samples=3, interval_s=0.3)
    for t in clients:
        t.join()
    stop.set()
    watcher.join()
    assert errors == []
    with psycopg.connect(server.dsn_for("shop")) as c:
        row = c.execute("SELECT count(*), count(DISTINCT client) FROM hits").fetchone()
    assert row == (1000, 200)
    assert 1 <= peak[0] <= 20, peak[0]
    pool = next(p for p in status.pools if p.database == "shop" and p.user == "app")
    assert pool.pool_mode == "transaction" and pool.pool_size == 20
    assert pool.sustained_waiting and pool.status == "waiting" and pool.fix and status.problems >= 1
    calm = agent19("pgbouncer", "status", "--admin-dsn", b.dsn("postgres", ADMIN_PASSWORD, "pgbouncer"),
                   "--samples", "2", "--interval", "0.2")
    assert calm.returncode == 0, calm.stdout + calm.stderr
    assert "ok" in calm.stdout and ADMIN_PASSWORD not in calm.stdout


def test_the_admin_console_login_the_config_writes(bouncer: tuple[Bouncer, dict[str, Any]]) -> None:
    b, cfg = bouncer
    assert cfg["admin_dsn"] == f"postgresql://pgbouncer_admin@127.0.0.1:{b.port}/pgbouncer"
    assert any("console.pgpass" in (f["fix"] or "") and cfg["admin_dsn"] in f["fix"] for f in cfg["findings"])
    with psycopg.connect(b.dsn(), autocommit=True) as c:
        c.execute("SELECT 1")
        done = console_status(b.directory, cfg)
    assert done.returncode == 0, done.stdout + done.stderr
    assert "shop/app" in done.stdout
    password = (b.directory / "console.pgpass").read_text().strip().rsplit(":", 1)[1]
    assert password not in json.dumps(cfg) + done.stdout


def test_transaction_pooling_caveats_on_the_real_pgbouncer(server: ThrowawayServer,
                                                          bouncer: tuple[Bouncer, dict[str, Any]]) -> None:
    b, cfg = bouncer
    # a SET without LOCAL stays on the server connection and reaches the next client
    with psycopg.connect(b.dsn(), autocommit=True) as a, psycopg.connect(b.dsn(), autocommit=True) as other:
        a.execute("SET work_mem = '77MB'")
        row = other.execute("SHOW work_mem").fetchone()
        assert row == ("77MB",)
        a.execute("RESET work_mem")
    # but PgBouncer keeps application_name per client (config does not count its SET): a client that named itself at
    # connection keeps its own, the SET follows its client to another server connection; only a client that sent
    # no application_name sees the last one its server connection had (the finding config gives says so)
    with psycopg.connect(b.dsn(), autocommit=True) as a, psycopg.connect(b.dsn(), autocommit=True,
                                                                       application_name="web") as other:
        a.execute("SET application_name = 'checkout'")
        assert other.execute("SHOW application_name").fetchone() == ("web",)
        other.execute("BEGIN")
        other.execute("SELECT 1")  # holds the server connection a used
        assert a.execute("SHOW application_name").fetchone() == ("checkout",)
        other.execute("ROLLBACK")
        with psycopg.connect(b.dsn(), autocommit=True) as unnamed:
            row = unnamed.execute("SHOW application_name").fetchone()
            assert row and row[0] in ("web", "checkout")  # another client's label
    if tuple(map(int, (cfg["pgbouncer_version"] or "0.0").split(".")[:2])) >= (1, 21):
        return
    # before 1.21 a statement the driver prepared on one server connection is missing on another
    with psycopg.connect(b.dsn(), autocommit=True) as a, psycopg.connect(b.dsn(), autocommit=True) as other:
        a.execute("SELECT count(*) FROM hits WHERE client = %s", (1,), prepare=True)
        other.execute("BEGIN")
        other.execute("SELECT 1")  # holds the server connection a just used (PgBouncer reuses it first)
        with pytest.raises(psycopg.errors.InvalidSqlStatementName):
            a.execute("SELECT count(*) FROM hits WHERE client = %s", (1,), prepare=True)
        other.execute("ROLLBACK")


def test_session_state_in_the_workload_chooses_session_mode(server: ThrowawayServer, tmp_path: Path) -> None:
    with psycopg.connect(server.dsn_for("shop"), autocommit=True) as c:
        c.execute("SET statement_timeout = '5s'")
        c.execute("LISTEN orders_changed")
        c.execute("SELECT pg_advisory_lock(42)")
        c.execute("SELECT pg_advisory_unlock(42)")
        c.execute("PREPARE by_client AS SELECT * FROM hits WHERE client = $1")
        c.execute("EXECUTE by_client(1)")  # pg_stat_statements records the PREPARE's text when it is executed
        c.execute("CREATE TEMP TABLE scratch (x int)")
        with c.transaction():
            c.execute("DECLARE held CURSOR WITH HOLD FOR SELECT 1")
        c.execute("CLOSE held")
    code, cfg = generate(server, tmp_path / "s")
    assert code == 0 and cfg["pool_mode"] == "session"
    assert {f["feature"] for f in cfg["session_features"]} == {
        "SET without LOCAL", "LISTEN", "session advisory locks", "WITH HOLD cursors", "SQL PREPARE",
        "temporary tables"}
    assert "server_reset_query = DISCARD ALL" in cfg["ini"]
    forced = agent19("--dsn", server.dsn_for("shop"), "pgbouncer", "config", "--pool-mode", "transaction",
                     "--format", "json")
    out = json.loads(forced.stdout)
    assert forced.returncode == 1 and not out["valid"]
    assert any("transaction pooling breaks" in f["message"] for f in out["findings"])
    with psycopg.connect(server.dsn_for("shop"), autocommit=True) as c:
        c.execute("SELECT pg_stat_statements_reset()")


def test_other_roles_hidden_statements_leave_the_pool_mode_unchecked(server: ThrowawayServer) -> None:
    """H2/M3: as the application's login (no pg_read_all_stats) another role's LISTEN / advisory lock / SET are
    hidden: the result says so and names what is needed, never "shows no ...". The app's own SET application_name
    (PgBouncer tracks it) and pg_dump's session statements (a backup as app) do not force session mode."""
    app = make_conninfo(server.dsn_for("shop"), user="app")
    with psycopg.connect(server.dsn_for("shop"), autocommit=True) as c:
        c.execute("CREATE ROLE reporter LOGIN")
        c.execute("SELECT pg_stat_statements_reset()")
    try:
        with psycopg.connect(make_conninfo(server.dsn_for("shop"), user="reporter"), autocommit=True) as r:
            r.execute("SET search_path = public")
            r.execute("LISTEN report_done")
            r.execute("SELECT pg_advisory_lock(42)")
        with psycopg.connect(app, autocommit=True) as a:
            a.execute("SET application_name = 'checkout'")
        dump = pg_binary("pg_dump", server.major)
        assert dump, "pg_dump of the test server's version"
        subprocess.run([dump, "-Fc", "--no-sync", "-f", os.devnull, "-d", app], check=True)
        done = agent19("--dsn", app, "pgbouncer", "config", "--format", "json")
        assert done.returncode == 0, done.stderr
        cfg = json.loads(done.stdout)
        assert "shows no" not in cfg["pool_mode_why"] and "unchecked" in cfg["pool_mode_why"]
        assert any("reporter" in c and "pg_read_all_stats" in c for c in cfg["cannot_see"]), cfg["cannot_see"]
        assert any(f["level"] == "warning" and "GRANT pg_read_all_stats TO app" in f["fix"] for f in cfg["findings"])
        assert cfg["session_features"] == []  # application_name and pg_dump's SETs / PREPAREs are not the app's
        assert any("pg_dump" in f["message"] for f in cfg["findings"])
        with psycopg.connect(server.dsn_for("shop"), autocommit=True) as c:
            c.execute("GRANT pg_read_all_stats TO app")
        seen = json.loads(agent19("--dsn", app, "pgbouncer", "config", "--format", "json").stdout)
        assert seen["pool_mode"] == "session" and seen["cannot_see"] == []
        found = {f["feature"]: f["statements"] for f in seen["session_features"]}
        assert set(found) == {"SET without LOCAL", "LISTEN", "session advisory locks"}
        assert found["SET without LOCAL"] == ["SET search_path = public"]  # not application_name, not pg_dump's
    finally:
        with psycopg.connect(server.dsn_for("shop"), autocommit=True) as c:
            c.execute("REVOKE pg_read_all_stats FROM app")
            c.execute("DROP ROLE reporter")
            c.execute("SELECT pg_stat_statements_reset()")


def test_the_applications_own_pg_dump_like_set_counts(server: ThrowawayServer) -> None:
    """r25c N2: `SET statement_timeout = 0` is also one of pg_dump's session statements; the application's own (5
    calls, no pg_dump) leaks to other clients in transaction pooling and must count; next to a real pg_dump its
    extra calls still count, while pg_dump's other statements (recognised as a whole) are set aside."""
    app = make_conninfo(server.dsn_for("shop"), user="app")
    with psycopg.connect(server.dsn_for("shop"), autocommit=True) as c:
        c.execute("SELECT pg_stat_statements_reset()")
    try:
        with psycopg.connect(app, autocommit=True) as a:
            for _ in range(5):
                a.execute("SET statement_timeout = 0")
        cfg = json.loads(agent19("--dsn", app, "pgbouncer", "config", "--format", "json").stdout)
        found = {f["feature"]: f for f in cfg["session_features"]}
        assert cfg["pool_mode"] == "session" and found["SET without LOCAL"]["calls"] == 5, cfg["session_features"]
        dump = pg_binary("pg_dump", server.major)
        assert dump, "pg_dump of the test server's version"
        subprocess.run([dump, "-Fc", "--no-sync", "-f", os.devnull, "-d", app], check=True)
        cfg = json.loads(agent19("--dsn", app, "pgbouncer", "config", "--format", "json").stdout)
        found = {f["feature"]: f for f in cfg["session_features"]}
        assert cfg["pool_mode"] == "session" and set(found) == {"SET without LOCAL"}, cfg["session_features"]
        assert found["SET without LOCAL"]["statements"] == ["SET statement_timeout = 0"]  # not pg_dump's others
        assert found["SET without LOCAL"]["calls"] == 6
    finally:
        with psycopg.connect(server.dsn_for("shop"), autocommit=True) as c:
            c.execute("SELECT pg_stat_statements_reset()")


def test_status_without_a_console_says_what_to_give(server: ThrowawayServer) -> None:
    done = agent19("pgbouncer", "status", "--admin-dsn", f"postgresql://postgres:hunter2@127.0.0.1:{free_port()}"
                   "/pgbouncer")
    assert done.returncode == 3 and "admin console" in done.stderr and "hunter2" not in done.stderr  # unavailable
    assert agent19("pgbouncer", "status").returncode == 2


def test_auth_query_from_a_plain_login_works_on_the_real_pgbouncer(server: ThrowawayServer) -> None:
    port = free_port()
    top = Path(tempfile.mkdtemp(prefix="agent19-pgbouncer-"))
    directory = top / "pgb"
    app_dsn = make_conninfo(server.dsn_for("shop"), user="app")
    try:
        done = agent19("--dsn", app_dsn, "pgbouncer", "config", "--write", str(directory), "--listen-port",
                       str(port), "--format", "json")
        assert done.returncode == 0, done.stderr
        cfg = json.loads(done.stdout)
        assert cfg["auth"] == "auth_query" and cfg["auth_users"] == ["pgbouncer_auth"]  # app may not read pg_authid
        setup = (directory / "pgbouncer_auth.sql").read_text()
        password = (directory / "userlist.txt").read_text().split('"')[3]
        assert password not in done.stdout and password in setup
        with psycopg.connect(server.dsn_for("shop"), autocommit=True) as c:  # the DBA applies it
            c.execute(setup)
        b = Bouncer(directory, port)
        try:
            with psycopg.connect(b.dsn(), autocommit=True) as c:
                assert c.execute("SELECT current_user").fetchone() == ("app",)
            # the console: app (auth_query) could not log in to it; the written console login can (M4)
            done = console_status(directory, cfg)
            assert done.returncode == 0, done.stdout + done.stderr
            with pytest.raises(psycopg.OperationalError):
                psycopg.connect(b.dsn(password="wrong"), autocommit=True).close()
            with pytest.raises(psycopg.OperationalError):  # the lookup function never serves a superuser
                psycopg.connect(b.dsn("postgres", ADMIN_PASSWORD), autocommit=True).close()
        finally:
            b.stop()
    finally:
        shutil.rmtree(top, ignore_errors=True)
        with psycopg.connect(server.dsn_for("shop"), autocommit=True) as c:
            c.execute("DROP SCHEMA IF EXISTS pgbouncer CASCADE")
            c.execute("DROP ROLE IF EXISTS pgbouncer_auth")


def test_the_auth_setup_stops_where_another_role_made_the_lookup_function_first(server: ThrowawayServer,
                                                                                tmp_path: Path) -> None:
    """r29 F5: `CREATE SCHEMA IF NOT EXISTS pgbouncer` and `CREATE OR REPLACE FUNCTION pgbouncer.get_auth` run by the
    DBA left a function the application's login had made first its own: it chose the hash PgBouncer checks for any
    user. The setup now stops before changing anything, and says why."""
    app_dsn = make_conninfo(server.dsn_for("shop"), user="app")
    done = agent19("--dsn", app_dsn, "pgbouncer", "config", "--write", str(tmp_path / "pgb"), "--format", "json")
    assert done.returncode == 0, done.stderr
    setup = (tmp_path / "pgb" / "pgbouncer_auth.sql").read_text()
    with psycopg.connect(server.dsn_for("shop"), autocommit=True) as c:
        c.execute("GRANT CREATE ON DATABASE shop TO app")
    try:
        with psycopg.connect(app_dsn, autocommit=True) as c:
            c.execute("CREATE SCHEMA pgbouncer; CREATE FUNCTION pgbouncer.get_auth(p_usename text) RETURNS TABLE "
                      "(usename name, passwd text) LANGUAGE sql AS $$ SELECT p_usename::name, 'chosen'::text $$")
        with psycopg.connect(server.dsn_for("shop"), autocommit=True) as c:  # the DBA applies it
            with pytest.raises(psycopg.errors.RaiseException, match="owned by a role that is not a superuser"):
                c.execute(setup)
        # with psql as a DBA may run it, without ON_ERROR_STOP (r30 G10): psql goes on after the error, the
        # transaction does not
        applied = subprocess.run([psql(), "-X", "-d", server.dsn_for("shop"), "-f",
                                  str(tmp_path / "pgb" / "pgbouncer_auth.sql")], capture_output=True, text=True,
                                 timeout=60)
        assert "owned by a role that is not a superuser" in applied.stderr, applied.stderr
        with psycopg.connect(server.dsn_for("shop"), autocommit=True) as c:
            owner = c.execute("SELECT pg_get_userbyid(proowner), prosecdef FROM pg_proc "
                              "WHERE proname = 'get_auth'").fetchone()
            assert owner == ("app", False)  # untouched: nothing made it a SECURITY DEFINER of anyone's
    finally:
        with psycopg.connect(server.dsn_for("shop"), autocommit=True) as c:
            c.execute("DROP SCHEMA IF EXISTS pgbouncer CASCADE; REVOKE CREATE ON DATABASE shop FROM app")
            c.execute("DROP ROLE IF EXISTS pgbouncer_auth")


def test_agent19_works_through_a_pgbouncer_that_refuses_startup_options(
        server: ThrowawayServer, session_bouncer: tuple[Bouncer, dict[str, Any]]) -> None:
    """agent19 sends standard_conforming_strings as a startup option; a PgBouncer before 1.20 refuses `options`:
    agent19 connects without it and sets the setting after connecting. (In session mode: in transaction mode
    agent19 refuses to run, the next test.)"""
    b, _cfg = session_bouncer
    db = Database(session_settings(dsn=b.dsn(), mode="read-only"))
    try:
        with db.session() as conn:
            row = conn.execute("SHOW standard_conforming_strings").fetchone()
            assert row is not None and row["standard_conforming_strings"] == "on"
    finally:
        db.close()


def test_agent19_refuses_a_server_session_it_did_not_configure(
        server: ThrowawayServer, bouncer: tuple[Bouncer, dict[str, Any]]) -> None:
    """In transaction mode PgBouncer gives each transaction a server connection of its own: agent19's session
    settings (read-only, timeouts, pg_catalog first) stay on the one it configured — for other clients — and its
    next call runs without them. The session's token is read when a call takes the session: another server session
    answering is refused with what to do, not run without the settings."""
    b, _cfg = bouncer
    db = Database(session_settings(dsn=b.dsn(), mode="read-only"))
    others = [psycopg.connect(b.dsn(), autocommit=True) for _ in range(5)]
    try:
        # the pool's connection configured before the first call: a call waiting for it would make the pool open a
        # second one, configured on the same server connection in turn, and the first call would be refused already
        db._open_pool().wait()
        with db.session() as pooled:
            assert pooled.execute("SELECT 1 AS one").fetchone() == {"one": 1}
        configured = _tokens[pooled]  # what its reset after the call set, on the server connection it then had
        holder = None
        for other in others:  # each holds a server connection of its own; one gets the one agent19 configured
            other.execute("BEGIN")
            if other.execute("SELECT current_setting('agent19.session', true)").fetchone()[0] == configured:
                holder = other
        assert holder is not None, "no client got the server connection agent19 configured"
        for other in others:
            if other is not holder:
                other.execute("ROLLBACK")
        with pytest.raises(ConfigError, match="pool_mode = session") as refused:
            db.execute_read("SELECT 1 AS one")
        assert "transaction" in refused.value.message
        # what agent19 left on that server connection reached this client: why it must not go on
        assert holder.execute("SHOW default_transaction_read_only").fetchone() == ("on",)
    finally:
        db.close()
        for other in others:
            other.close()


def test_a_catalog_only_call_sets_nothing_on_a_server_session_it_did_not_configure(
        server: ThrowawayServer, bouncer: tuple[Bouncer, dict[str, Any]]) -> None:
    """A call of a catalog_only tool searches pg_catalog, pg_temp: set when the call takes its session, only when the
    server session that answers is agent19's own (review r29 F9) — else another client would get that path on the
    server connection it is given next (a transaction-mode PgBouncer resets nothing)."""
    from agent19.db.catalog_first import catalog_only

    b, _cfg = bouncer
    db = Database(session_settings(dsn=b.dsn(), mode="read-only"))
    holder = psycopg.connect(b.dsn(), autocommit=True)
    try:
        db._open_pool().wait()
        with db.session() as pooled:
            assert pooled.execute("SELECT 1 AS one").fetchone() == {"one": 1}
        holder.execute("BEGIN")  # the server connection agent19 configured: the next call gets another
        assert holder.execute("SELECT current_setting('agent19.session', true)").fetchone()[0] == _tokens[pooled]
        with catalog_only(), pytest.raises(ConfigError, match="pool_mode = session"):
            db.execute_read("SELECT 1 AS one")
        with psycopg.connect(b.dsn(), autocommit=True) as other:  # gets the server connection that answered
            assert other.execute("SHOW search_path").fetchone() == ('"$user", public',)
    finally:
        holder.close()
        db.close()


def test_rerunning_config_keeps_auth_working_and_status_names_a_failed_server_login(server: ThrowawayServer) -> None:
    """r25c N4: a second `pgbouncer config --write` (same directory, or a new one) must not leave the lookup role's
    password and the userlist apart; when they are apart, status says the server login fails, not pool size."""
    port = free_port()
    top = Path(tempfile.mkdtemp(prefix="agent19-pgbouncer-"))
    app_dsn = make_conninfo(server.dsn_for("shop"), user="app")

    def config(directory: Path) -> dict[str, Any]:
        done = agent19("--dsn", app_dsn, "pgbouncer", "config", "--write", str(directory), "--listen-port",
                       str(port), "--format", "json")
        assert done.returncode == 0, done.stderr
        return json.loads(done.stdout)

    def client_works(b: Bouncer) -> None:
        with psycopg.connect(b.dsn(), autocommit=True, connect_timeout=10) as c:
            assert c.execute("SELECT current_user").fetchone() == ("app",)

    with psycopg.connect(server.dsn, autocommit=True) as c:  # the test server trusts loopback: not the lookup role
        hba = Path(str(c.execute("SHOW hba_file").fetchone()[0]))  # type: ignore[index]
    trusting = hba.read_text()
    hba.write_text("host all pgbouncer_auth 127.0.0.1/32 scram-sha-256\n" + trusting)
    with psycopg.connect(server.dsn, autocommit=True) as c:
        c.execute("SELECT pg_reload_conf()")
    try:
        first = config(top / "a")
        with psycopg.connect(server.dsn_for("shop"), autocommit=True) as c:
            c.execute((top / "a" / "pgbouncer_auth.sql").read_text())
        userlist = (top / "a" / "userlist.txt").read_text()
        again = config(top / "a")  # the same directory: its secrets are kept, its SQL applies again
        assert (top / "a" / "userlist.txt").read_text() == userlist and again["admin_dsn"] == first["admin_dsn"]
        with psycopg.connect(server.dsn_for("shop"), autocommit=True) as c:
            c.execute((top / "a" / "pgbouncer_auth.sql").read_text())
        b = Bouncer(top / "a", port)
        try:
            client_works(b)
        finally:
            b.stop()
        other = config(top / "b")  # a new directory: a new password, not yet applied to the role
        b = Bouncer(top / "b", port)
        try:
            blocked = threading.Thread(target=lambda: _try_connect(b.dsn()), daemon=True)
            blocked.start()
            time.sleep(3)
            done = console_status(top / "b", other)
            assert done.returncode == 1, done.stdout + done.stderr
            assert "login_failed" in done.stdout and "authentication to the server failed" in done.stdout
            assert "password authentication failed" in done.stdout and "pgbouncer_auth.sql" in done.stdout
            assert "raise default_pool_size" not in done.stdout
            password = (top / "b" / "userlist.txt").read_text().split('"')[3]
            assert password not in done.stdout + done.stderr
            with psycopg.connect(server.dsn_for("shop"), autocommit=True) as c:  # the role exists: SQL still applies
                c.execute((top / "b" / "pgbouncer_auth.sql").read_text())
            blocked.join(30)
        finally:
            b.stop()
        b = Bouncer(top / "b", port)
        try:
            client_works(b)
        finally:
            b.stop()
    finally:
        shutil.rmtree(top, ignore_errors=True)
        hba.write_text(trusting)
        with psycopg.connect(server.dsn_for("shop"), autocommit=True) as c:
            c.execute("SELECT pg_reload_conf()")
            c.execute("DROP SCHEMA IF EXISTS pgbouncer CASCADE")
            c.execute("DROP ROLE IF EXISTS pgbouncer_auth")


def _try_connect(dsn: str) -> None:
    try:
        psycopg.connect(dsn, autocommit=True, connect_timeout=20).close()
    except psycopg.Error:
        pass
