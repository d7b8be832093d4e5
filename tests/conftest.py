"""Real PostgreSQL servers for the tests, started here on loopback in temporary directories.

* ``pg`` — the primary server: ``AGENT19_TEST_DSN`` if set, else the system's PostgreSQL (with
  contrib, pg_stat_statements preloaded, wal_level=logical), else the embedded pgserver.
* ``pg_any`` — parametrized over every server version available here (the system's, e.g. 15,
  and pgserver's 16), for behaviour that differs between versions.
* ``dsn`` — a fresh, empty database on ``pg`` for one test, dropped afterwards.

With ``CI=true`` nothing a user relies on may be skipped: a missing server or extension fails.
"""

from __future__ import annotations

import atexit
import os
import shutil
import tempfile
import time
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import psycopg
import pytest

from tools.throwaway import ThrowawayServer, start_pgserver, start_replica, start_system, system_versions

IN_CI = os.environ.get("CI", "").lower() in {"1", "true", "yes"}

# The test servers' login is a superuser: tests of other features opt in to running user reads as it
# (as an operator would, knowingly). tests/test_privilege_boundary.py and tests/test_choke_point.py
# turn it off and run reads as a least-privilege reader login too.
os.environ.setdefault("AGENT19_ALLOW_PRIVILEGED_READS", "1")

# agent19's state (dry-run ledger, audit log, confirmation key, the embedded server) goes in a data
# directory of this session, never the user's own (AGENT19_DATA_DIR they set, or the per-user default): set here, at
# import, before any test reads a setting, so every CLI and MCP server a test starts inherits it. Removed at exit
# (registered before any embedded server's own exit handler, so it runs after that server stopped).
SESSION_DATA_DIR = Path(tempfile.mkdtemp(prefix="agent19-test-data-"))
os.environ["AGENT19_DATA_DIR"] = str(SESSION_DATA_DIR)
atexit.register(shutil.rmtree, SESSION_DATA_DIR, ignore_errors=True)
# A Settings a test makes without the session's data directory (Settings(...), or Settings.load(env={...}) whose env
# has no AGENT19_DATA_DIR) falls back to the per-user default (platformdirs: $XDG_DATA_HOME/agent19 on Linux): that
# default points into an empty directory of this session too, never the user's, and a test that writes state there
# fails (_no_state_in_the_default_data_dir). Tests make their Settings with session_settings() below.
DEFAULT_DATA_HOME = Path(tempfile.mkdtemp(prefix="agent19-test-default-"))
os.environ["XDG_DATA_HOME"] = str(DEFAULT_DATA_HOME)
atexit.register(shutil.rmtree, DEFAULT_DATA_HOME, ignore_errors=True)


def session_settings(**overrides: Any) -> Any:
    """``Settings.load`` from ``overrides`` only — not the environment (a developer's DATABASE_URL, AGENT19_MODE or
    timeouts) — with the session's data directory."""
    from agent19.config import Settings

    return Settings.load(env={"AGENT19_DATA_DIR": str(SESSION_DATA_DIR)}, **overrides)


@pytest.fixture(autouse=True)
def _no_state_in_the_default_data_dir() -> Iterator[None]:
    """After each test: nothing was written in the default data directory (see DEFAULT_DATA_HOME)."""
    yield
    written = sorted(str(p.relative_to(DEFAULT_DATA_HOME)) for p in DEFAULT_DATA_HOME.rglob("*"))
    if written:
        shutil.rmtree(DEFAULT_DATA_HOME)  # the next test starts from an empty one
        DEFAULT_DATA_HOME.mkdir()
        pytest.fail(f"this test wrote agent19 state in the default data directory ({', '.join(written[:5])}), which "
                    "is the user's outside the tests: make its Settings with tests.conftest.session_settings() (the "
                    "session's data directory)")


def need(condition: bool, reason: str) -> None:
    """Skip outside CI, fail in CI: a missing prerequisite must not pass silently there."""
    if condition:
        return
    if IN_CI:
        pytest.fail(f"CI=true and {reason}")
    pytest.skip(reason)


def need_stat_statements(dsn: str) -> None:
    """pg_stat_statements created in the test database and readable (else :func:`need` says why)."""
    with psycopg.connect(dsn, autocommit=True) as c:
        try:
            c.execute("CREATE EXTENSION IF NOT EXISTS pg_stat_statements")
            c.execute("SELECT count(*) FROM pg_stat_statements")
        except psycopg.Error as exc:
            need(False, f"pg_stat_statements is not usable on the test server: {exc}")


def as_at_a_terminal() -> None:
    """``preexec_fn`` for a child the test will interrupt with SIGINT: Ctrl-C's default action, as at a terminal.
    A test run started in the background by a non-interactive shell (how a CI job may start it) inherits SIGINT
    ignored, and Python keeps an ignored SIGINT ignored: the child would never see the test's Ctrl-C."""
    import signal

    signal.signal(signal.SIGINT, signal.SIG_DFL)


def until(what: str, check: Callable[[], Any], timeout: float = 30, every: float = 0.05) -> Any:
    """Poll ``check`` until it returns something true (returned); fail naming ``what`` after ``timeout`` s."""
    deadline = time.monotonic() + timeout
    while True:
        got = check()
        if got:
            return got
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(every)


def owner_login(dsn: str, prefix: str = "app") -> str:
    """A new non-superuser LOGIN role that owns the test database and its public schema (as an application's
    role does); returns its DSN (no password: the test servers trust loopback)."""
    from psycopg.conninfo import make_conninfo

    role = f"{prefix}_{uuid.uuid4().hex[:8]}"
    with psycopg.connect(dsn, autocommit=True) as c:
        db = c.execute("SELECT current_database()").fetchone()[0]
        c.execute(f"CREATE ROLE {role} LOGIN")
        c.execute(f'ALTER DATABASE "{db}" OWNER TO {role}')
        c.execute(f"ALTER SCHEMA public OWNER TO {role}")
    return make_conninfo(dsn, user=role)


class ExternalServer(ThrowawayServer):
    def stop(self) -> None:  # not ours to stop
        pass


_servers: dict[str, ThrowawayServer] = {}


def _server(kind: str) -> ThrowawayServer:
    if kind not in _servers:
        if kind == "external":
            dsn = os.environ["AGENT19_TEST_DSN"]
            with psycopg.connect(dsn) as c:
                row = c.execute("SELECT current_setting('server_version_num')::int").fetchone()
            assert row
            _servers[kind] = ExternalServer(dsn=dsn, major=row[0] // 10000, source="external", directory=None)  # type: ignore[arg-type]
        elif kind == "system":
            _servers[kind] = start_system()
        else:
            _servers[kind] = start_pgserver()
    return _servers[kind]


def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    for server in _servers.values():
        server.stop()


def _primary_kind() -> str:
    if os.environ.get("AGENT19_TEST_DSN"):
        return "external"
    return "system" if system_versions() else "pgserver"


@pytest.fixture(scope="session")
def pg() -> ThrowawayServer:
    if IN_CI and not os.environ.get("AGENT19_TEST_DSN") and not system_versions():
        pytest.fail("CI=true but no system PostgreSQL is installed (.ci/run installs it)")
    return _server(_primary_kind())


def _kinds() -> list[str]:
    kinds = [_primary_kind()]
    if "pgserver" not in kinds:
        kinds.append("pgserver")
    return kinds


@pytest.fixture(scope="session", params=_kinds())
def pg_any(request: pytest.FixtureRequest) -> ThrowawayServer:
    return _server(request.param)


@pytest.fixture
def public_tmp() -> Iterator[Path]:
    """A temporary directory the postgres OS user can write in (a server or pg_basebackup runs as it under
    root)."""
    path = Path(tempfile.mkdtemp(prefix="agent19-test-"))
    os.chmod(path, 0o777)
    yield path
    shutil.rmtree(path, ignore_errors=True)


def _fresh_database(server: ThrowawayServer) -> Iterator[str]:
    name = f"t_{uuid.uuid4().hex[:12]}"
    with psycopg.connect(server.dsn, autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{name}"')
    try:
        yield server.dsn_for(name)
    finally:
        with psycopg.connect(server.dsn, autocommit=True) as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


@pytest.fixture
def dsn(pg: ThrowawayServer) -> Iterator[str]:
    """A fresh empty database on the primary test server."""
    yield from _fresh_database(pg)


@pytest.fixture
def dsn_any(pg_any: ThrowawayServer) -> Iterator[str]:
    """A fresh empty database on each available server version."""
    yield from _fresh_database(pg_any)


def run_sql(dsn: str, sql: str) -> None:
    with psycopg.connect(dsn, autocommit=True) as conn:
        conn.execute(sql)


def run_each(dsn: str, sqls: list[str]) -> None:
    """Run ``sqls`` in order, each on its own (autocommit): as psql runs a migration file without -1."""
    with psycopg.connect(dsn, autocommit=True) as conn:
        for sql in sqls:
            conn.execute(sql)  # type: ignore[arg-type]


def plan_changes(dsn: str, changes: list[dict[str, Any]]) -> Any:
    """plan_migration of a change list, with the catalog of ``dsn``."""
    from psycopg.rows import dict_row

    from agent19.db.catalog import snapshot
    from agent19.migrate.planning.model import Change
    from agent19.migrate.planning.plan import plan_migration

    with psycopg.connect(dsn, row_factory=dict_row) as conn:
        catalog = snapshot(conn)
    return plan_migration(changes=[Change.model_validate(c) for c in changes], catalog=catalog)


def one(dsn: str, sql: str) -> Any:
    """The first column of the first row ``sql`` returns (None when it returns no row)."""
    with psycopg.connect(dsn, autocommit=True) as conn:
        row = conn.execute(sql).fetchone()
    return row[0] if row else None


@contextmanager
def primary_and_standby(setup: str) -> Iterator[tuple[ThrowawayServer, ThrowawayServer]]:
    """A system server with ``setup`` run on it (it must create a table ``orders``) and a streaming hot standby
    that has replayed it; both stopped after."""
    need(bool(system_versions()), "no system PostgreSQL binaries to start a primary and a standby")
    primary = start_system()
    try:
        with psycopg.connect(primary.dsn, autocommit=True) as c:
            c.execute(setup)
        standby = start_replica(primary)
        try:
            until("the standby to replay the table", lambda: one(
                standby.dsn, "SELECT to_regclass('orders') IS NOT NULL") is True, every=0.1)
            yield primary, standby
        finally:
            standby.stop()
    finally:
        primary.stop()


@pytest.fixture
def work() -> Iterator[Path]:
    """A work directory for an isolated dry run's throwaway cluster (agent19.migrate.dryrun.isolated), removed after."""
    with tempfile.TemporaryDirectory(prefix="agent19-test-isolated-") as path:
        os.chmod(path, 0o755)  # as root, the server runs as the postgres OS user: it must reach its directory
        yield Path(path)


@pytest.fixture
def pool() -> Iterator[None]:
    """The scratch pool on, as `agent19 serve` has it (agent19.migrate.dryrun.scratch_pool); closed after the test:
    its background work waited for, every database it made ahead dropped."""
    from agent19.migrate.dryrun import scratch_pool

    scratch_pool.enable()
    try:
        yield
    finally:
        scratch_pool.close()
