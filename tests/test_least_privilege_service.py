"""agent19 as the application's login: server_info degrades, connection errors say what happened first
(with exit status 3 for every command), the first call after a server restart works, and the MCP tools
accept what MCP clients send."""

from __future__ import annotations

import json
import socket
import subprocess
import threading
import time
import uuid
from collections.abc import Iterator

import psycopg
import pytest
from psycopg.conninfo import make_conninfo

from agent19.cli import main
from agent19.config import AccessMode
from agent19.db.binaries import as_postgres_user
from agent19.db.connection import Database
from tests.conftest import need, session_settings
from tests.mcp_client import stdio_session
from tools.throwaway import SYSTEM_ROOT, ThrowawayServer, start_system, system_versions

PASSWORD = "s3cret-pw"


@pytest.fixture(scope="module")
def app(pg: ThrowawayServer) -> Iterator[str]:
    """An application role with a password, owning its database (no superuser, no CREATEDB, no
    pg_read_all_settings); the server asks loopback logins for passwords (scram)."""
    role, dbname = f"app_{uuid.uuid4().hex[:8]}", f"shop_{uuid.uuid4().hex[:8]}"
    with psycopg.connect(pg.dsn, autocommit=True) as conn:
        conn.execute(f"CREATE ROLE {role} LOGIN PASSWORD '{PASSWORD}'")
        conn.execute(f"CREATE DATABASE {dbname} OWNER {role}")
    dsn = make_conninfo(pg.dsn, user=role, password=PASSWORD, dbname=dbname)
    with psycopg.connect(dsn, autocommit=True) as conn:
        conn.execute("CREATE TABLE orders (id bigint PRIMARY KEY, customer_id int, note text)")
        conn.execute("INSERT INTO orders SELECT g, g % 100, 'n' FROM generate_series(1, 1000) g")
    try:
        yield dsn
    finally:
        with psycopg.connect(pg.dsn, autocommit=True) as conn:
            conn.execute(f"DROP DATABASE IF EXISTS {dbname} WITH (FORCE)")
            conn.execute(f"DROP ROLE IF EXISTS {role}")


def cli(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    code = main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


def test_info_degrades_without_pg_read_all_settings(app: str, capsys: pytest.CaptureFixture[str]) -> None:
    with psycopg.connect(app) as conn, pytest.raises(psycopg.errors.InsufficientPrivilege):
        conn.execute("SELECT current_setting('shared_preload_libraries')")  # what server_info used to do
    code, out, _ = cli(capsys, "info", "--dsn", app, "--format", "json")
    assert code == 0
    info = json.loads(out)
    assert info["connected"] and info["is_superuser"] is False
    stats = next(f for f in info["features"] if f["name"] == "pg_stat_statements")
    assert stats["available"] is None and "needs pg_read_all_settings" in stats["reason"]
    privileges = {p["name"]: p for p in info["privileges"]}
    assert privileges["CREATEDB (scratch databases)"]["available"] is False
    assert "ALTER ROLE" in privileges["CREATEDB (scratch databases)"]["reason"]
    assert privileges["pg_read_all_settings"]["available"] is False
    assert PASSWORD not in out
    code, out, _ = cli(capsys, "info", "--dsn", app)
    assert code == 0 and "[?] pg_stat_statements" in out


class Silent:
    """A TCP port that accepts connections and never answers: a connection attempt times out."""

    def __init__(self) -> None:
        self.sock = socket.socket()
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(16)
        self.port = self.sock.getsockname()[1]
        self.accepted: list[socket.socket] = []
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self) -> None:
        while True:
            try:
                self.accepted.append(self.sock.accept()[0])
            except OSError:
                return

    def close(self) -> None:
        self.sock.close()
        for s in self.accepted:
            s.close()


@pytest.fixture(scope="module")
def silent() -> Iterator[Silent]:
    s = Silent()
    yield s
    s.close()


def _closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.fixture(scope="module")
def scram(pg: ThrowawayServer, app: str) -> Iterator[None]:
    """Loopback TCP logins must give a password (the test server trusts everyone by default)."""
    hba = pg.directory / "data" / "pg_hba.conf"
    before = hba.read_text()
    hba.write_text("local all all trust\nhost all postgres 127.0.0.1/32 trust\n"
                   "host all all 127.0.0.1/32 scram-sha-256\n")
    with psycopg.connect(pg.dsn, autocommit=True) as conn:
        conn.execute("SELECT pg_reload_conf()")
    time.sleep(0.3)
    try:
        yield
    finally:
        hba.write_text(before)
        with psycopg.connect(pg.dsn, autocommit=True) as conn:
            conn.execute("SELECT pg_reload_conf()")


CASES = {
    "authentication failed": lambda app, s: make_conninfo(app, password="wrong-password"),
    "database does not exist": lambda app, s: make_conninfo(app, dbname="no_such_db"),
    "host unknown": lambda app, s: make_conninfo(app, host="no-such-host.invalid"),
    "connection refused": lambda app, s: make_conninfo(app, port=str(_closed_port())),
    "timeout": lambda app, s: make_conninfo(app, port=str(s.port)),
}
COMMANDS = [["info"], ["describe"], ["dry-run", "--sql", "SELECT 1", "--mode", "dry-run"],
            ["explain", "SELECT 1"]]


@pytest.mark.parametrize("what", list(CASES))
def test_connection_errors_say_what_happened_first_with_exit_3(
        what: str, app: str, scram: None, silent: Silent, capsys: pytest.CaptureFixture[str]) -> None:
    dsn = CASES[what](app, silent)
    commands = COMMANDS if what != "timeout" else COMMANDS[:2]  # each timeout waits 5 s
    for command in commands:
        code, out, err = cli(capsys, *command, "--dsn", dsn)
        said = err or out
        assert code == 3, (command, code, said)
        message = said.split("error: ", 1)[-1] if "error: " in said else said.split("not connected: ", 1)[-1]
        assert message.startswith(what), (command, said)
        assert PASSWORD not in said and "wrong-password" not in said
    if what != "timeout":  # plan, like lint and runbook, works on the SQL alone and says why first
        code, out, err = cli(capsys, "plan", "--sql", "ALTER TABLE orders ADD COLUMN x int", "--dsn", dsn)
        assert code == 0 and f"could not be used ({what}" in out, (code, out, err)
        assert PASSWORD not in out + err and "wrong-password" not in out + err


def _restart(server: ThrowawayServer, down_s: float, during: object) -> None:
    assert server._process is not None
    server._process.send_signal(2)
    server._process.wait(30)
    during()  # type: ignore[operator]
    time.sleep(down_s)
    log = open(server.directory / "restart.log", "ab")  # noqa: SIM115 - the server process keeps it
    server._process = subprocess.Popen([SYSTEM_ROOT / str(server.major) / "bin" / "postgres", "-D",
                                        server.directory / "data"], stdout=log, stderr=subprocess.STDOUT,
                                       cwd=server.directory, **as_postgres_user())  # type: ignore[call-overload]
    deadline = time.monotonic() + 30
    while True:
        try:
            psycopg.connect(server.dsn, connect_timeout=2).close()
            return
        except psycopg.OperationalError:
            assert time.monotonic() < deadline, "the server did not come back"
            time.sleep(0.2)


def test_first_call_after_a_server_restart_succeeds() -> None:
    """A real server is stopped (a call meanwhile fails and says why), kept down long enough for the
    pool to back off, restarted: the very next call works, without waiting out the pool's backoff."""
    need(bool(system_versions()), "no system PostgreSQL to restart")
    server = start_system()
    try:
        db = Database(session_settings(dsn=server.dsn, mode=AccessMode.READ_ONLY))
        assert db.execute_read("SELECT 1 AS x") == [{"x": 1}]
        failures: list[str] = []

        def while_down() -> None:
            try:
                db.execute_read("SELECT 1")
            except Exception as exc:  # noqa: BLE001 - the message is the assertion
                failures.append(str(exc))

        _restart(server, 8, while_down)
        backing_off = db._pool  # its workers failed to reconnect while the server was down
        assert backing_off is not None
        asked = backing_off.get_stats().get("requests_num", 0)
        assert db.execute_read("SELECT 2 AS x") == [{"x": 2}]
        # served by a fresh pool: the one backing off was not asked (a request there waits out its timeout)
        assert db._pool is not backing_off and backing_off.get_stats().get("requests_num", 0) == asked
        assert failures and failures[0].startswith("connection refused"), failures
        # a restart nobody noticed (no call while down): the pool checks the connection first
        _restart(server, 0, lambda: None)
        assert db.execute_read("SELECT 3 AS x") == [{"x": 3}]
        db.close()
    finally:
        server.stop()


async def test_mcp_lint_without_a_reachable_database_lints_the_sql_and_says_so() -> None:
    dsn = f"postgresql://app:{PASSWORD}@127.0.0.1:{_closed_port()}/shop"
    async with stdio_session("--dsn", dsn) as session:
        result = await session.call_tool("lint_migration", {"sql": "CREATE INDEX orders_c ON orders (customer_id);"})
    assert not result.is_error, result.content
    summary = result.structured_content["summary"]  # type: ignore[index]
    assert summary["live"] is False and summary["errors"] >= 1
    assert summary["assumptions"][0].startswith("the database could not be used (connection refused")
    assert PASSWORD not in json.dumps(result.structured_content)


async def test_mcp_inputs_accept_what_clients_send(app: str, tmp_path: object) -> None:
    """dry_run_result as an object, as JSON text and as a file; explain parameters as numbers."""
    sql = "ALTER TABLE orders ADD COLUMN status text;\nCREATE INDEX orders_status ON orders (status);\n"
    async with stdio_session("--dsn", app, "--mode", "dry-run") as session:
        dry = await session.call_tool("test_migration", {"sql": sql, "detail": "full"})
        assert not dry.is_error, dry.content
        result = dry.structured_content
        assert result is not None and result["passed"]
        path = tmp_path / "dry.json"  # type: ignore[operator]
        path.write_text(json.dumps(result))
        for given in (result, json.dumps(result), str(path)):
            plan = await session.call_tool("plan_migration", {"sql": sql, "dry_run_result": given})
            assert not plan.is_error, (type(given), plan.content)
            assert plan.structured_content["observed_in"], plan.structured_content  # type: ignore[index]
        explained = await session.call_tool("explain_query", {
            "sql": "SELECT * FROM orders WHERE customer_id = $1", "parameters": [42], "analyze": False})
        assert not explained.is_error, explained.content


def test_workload_reads_pg_stat_statements_without_pg_read_all_settings(
        pg: ThrowawayServer, app: str) -> None:
    """top_queries used current_setting('shared_preload_libraries'), which this login may not read."""
    from agent19.optimize.workload import top_queries

    dbname = psycopg.conninfo.conninfo_to_dict(app)["dbname"]
    with psycopg.connect(pg.dsn_for(dbname), autocommit=True) as conn:
        conn.execute("CREATE EXTENSION IF NOT EXISTS pg_stat_statements")
    with psycopg.connect(app, autocommit=True) as conn:
        for i in range(3):
            conn.execute("SELECT * FROM orders WHERE customer_id = %s", (i,))
    db = Database(session_settings(dsn=app))
    try:
        queries = top_queries(db)
    finally:
        db.close()
    assert any("customer_id" in q.sql for q in queries), queries


def test_dry_run_counts_each_failing_statement_once(app: str, capsys: pytest.CaptureFixture[str]) -> None:
    """The plan's 'after' checks of statements that failed follow from those failures: not counted again."""
    sql = "ALTER TABLE nope ADD COLUMN a int;\nALTER TABLE nope2 ADD COLUMN b int;\nCREATE INDEX ON nope3 (a);\n"
    code, out, _ = cli(capsys, "dry-run", "--sql", sql, "--mode", "dry-run", "--dsn", app, "--format", "json")
    result = json.loads(out)
    assert code == 1 and result["summary"].startswith("FAILED at statement 1 (sql:1, "), result["summary"]
    # the transactional part stops at its first failure, as a migration in one transaction does (review r27 k05)
    assert ": 3 statements in" in result["summary"] and "; 1 error(s)," in result["summary"], result["summary"]
    assert sum(f["severity"] == "error" for f in result["findings"]) == 1
    following = [f for f in result["findings"] if f["kind"] == "check_failed"]
    assert len(following) == 1 and following[0]["severity"] == "info", following
