"""Throwaway PostgreSQL servers: started in a temporary directory, on loopback, then removed.

Used by the test suite, the benchmarks and ``tools/pg-local``. Two sources:

* the system's binaries (``/usr/lib/postgresql/<N>/bin``, e.g. Debian's packages, with contrib,
  HypoPG and wal2json when installed) — started with ``shared_preload_libraries =
  pg_stat_statements`` and ``wal_level = logical``;
* the embedded ``pgserver`` package (PostgreSQL 16, no contrib extensions).

A system server can get a streaming hot standby (:func:`start_replica`, ``pg_basebackup``).

``initdb`` and ``postgres`` refuse to run as root; as root, the system's binaries run as the
``postgres`` OS user that the packages create.
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

from psycopg.conninfo import make_conninfo

from agent19.db.binaries import as_postgres_user, free_port
from agent19.db.child_env import child_connection

SYSTEM_ROOT = Path("/usr/lib/postgresql")


def system_versions() -> list[int]:
    """Major versions whose server binaries are installed, newest first."""
    if not SYSTEM_ROOT.is_dir():
        return []
    found = [int(p.name) for p in SYSTEM_ROOT.iterdir() if p.name.isdigit() and (p / "bin" / "postgres").exists()]
    return sorted(found, reverse=True)


@dataclass
class ThrowawayServer:
    """A running server; :meth:`stop` stops it and deletes its directory."""

    dsn: str
    major: int
    source: str  # "system" or "pgserver"
    directory: Path
    _process: subprocess.Popen[bytes] | None = field(default=None, repr=False)
    _handle: object | None = field(default=None, repr=False)

    def dsn_for(self, dbname: str) -> str:
        """The DSN of another database on this server."""
        return make_conninfo(self.dsn, dbname=dbname)

    def stop(self) -> None:
        if self._process is not None:
            self._process.send_signal(signal.SIGINT)  # fast shutdown: do not wait for clients
            try:
                self._process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                self._process.kill()
                self._process.wait()
            self._process = None
        if self._handle is not None:
            self._handle.cleanup()  # type: ignore[attr-defined]
            self._handle = None
        shutil.rmtree(self.directory, ignore_errors=True)


def start_system(major: int | None = None, *, settings: dict[str, str] | None = None) -> ThrowawayServer:
    """Start the system's PostgreSQL (newest installed unless ``major`` is given)."""
    versions = system_versions()
    if not versions:
        raise RuntimeError(f"no PostgreSQL server binaries under {SYSTEM_ROOT}")
    major = major or versions[0]
    bindir = SYSTEM_ROOT / str(major) / "bin"
    directory = Path(tempfile.mkdtemp(prefix=f"agent19-pg{major}-"))
    os.chmod(directory, 0o755)
    pgdata = directory / "data"
    run_as = as_postgres_user()
    if run_as:
        os.chown(directory, run_as["user"], run_as["group"])  # type: ignore[arg-type]
    subprocess.run(
        [bindir / "initdb", "-D", pgdata, "-U", "postgres", "--auth=trust", "-E", "UTF8", "--locale=C.UTF-8"],
        check=True, capture_output=True, cwd=directory, **run_as,  # type: ignore[arg-type]
    )
    port = free_port()
    conf = {
        "listen_addresses": "'127.0.0.1'",
        "port": str(port),
        "unix_socket_directories": f"'{directory}'",
        "shared_preload_libraries": "'pg_stat_statements'",
        "wal_level": "logical",
        "max_wal_senders": "4",
        "max_replication_slots": "4",
        "fsync": "off",
        "synchronous_commit": "off",
        "full_page_writes": "off",
        "max_connections": "100",
        "shared_buffers": "128MB",
        "log_min_messages": "warning",
        "timezone": "'UTC'",
    } | (settings or {})
    with open(pgdata / "postgresql.conf", "a") as f:
        f.writelines(f"{k} = {v}\n" for k, v in conf.items())
    log = open(directory / "postgres.log", "wb")
    process = subprocess.Popen(
        [bindir / "postgres", "-D", pgdata], stdout=log, stderr=subprocess.STDOUT, cwd=directory,
        **run_as,  # type: ignore[arg-type]
    )
    dsn = f"postgresql://postgres@127.0.0.1:{port}/postgres"
    server = ThrowawayServer(dsn=dsn, major=major, source="system", directory=directory, _process=process)
    _wait_ready(server)
    return server


def start_replica(primary: ThrowawayServer, *, timeout: float = 60) -> ThrowawayServer:
    """A streaming hot standby of ``primary`` (a :func:`start_system` server), on its own free port.

    ``pg_basebackup -R -X stream`` over loopback (initdb's ``--auth=trust`` already lets
    ``replication`` connect from 127.0.0.1), then started and waited for until it is in recovery
    and ``pg_stat_replication`` on the primary shows it streaming. Its :meth:`~ThrowawayServer.stop`
    removes its directory; stop it before the primary.
    """
    import psycopg

    if primary.source != "system" or primary._process is None:
        raise RuntimeError("start_replica needs a primary started by start_system (its binaries take a base backup)")
    bindir = SYSTEM_ROOT / str(primary.major) / "bin"
    directory = Path(tempfile.mkdtemp(prefix=f"agent19-pg{primary.major}-replica-"))
    os.chmod(directory, 0o755)
    pgdata = directory / "data"
    run_as = as_postgres_user()
    if run_as:
        os.chown(directory, run_as["user"], run_as["group"])  # type: ignore[arg-type]
    name = directory.name.replace("-", "_")
    server = ThrowawayServer(dsn="", major=primary.major, source="system", directory=directory)
    try:
        conninfo, env = child_connection(primary.dsn, application_name=name)  # a password travels in the env
        done = subprocess.run(
            [bindir / "pg_basebackup", "-d", conninfo, "-D", pgdata, "-R", "-X", "stream", "-c", "fast"],
            capture_output=True, cwd=directory, timeout=timeout, env=env, **run_as,  # type: ignore[arg-type]
        )
        if done.returncode != 0:
            raise RuntimeError(f"pg_basebackup failed:\n{done.stderr.decode(errors='replace')[-2000:]}")
        port = free_port()
        conf = {"port": str(port), "unix_socket_directories": f"'{directory}'", "hot_standby": "on"}
        with open(pgdata / "postgresql.conf", "a") as f:
            f.writelines(f"{k} = {v}\n" for k, v in conf.items())
        log = open(directory / "postgres.log", "wb")
        server._process = subprocess.Popen(
            [bindir / "postgres", "-D", pgdata], stdout=log, stderr=subprocess.STDOUT, cwd=directory,
            **run_as,  # type: ignore[arg-type]
        )
        server.dsn = f"postgresql://postgres@127.0.0.1:{port}/postgres"
        _wait_ready(server, timeout)
        deadline = time.monotonic() + timeout
        while True:
            with psycopg.connect(server.dsn, autocommit=True) as conn:
                row = conn.execute("SELECT pg_is_in_recovery()").fetchone()
                if not (row and row[0]):
                    raise RuntimeError("the replica is not in recovery (no standby.signal?)")
            with psycopg.connect(primary.dsn, autocommit=True) as conn:
                row = conn.execute("SELECT count(*) FROM pg_stat_replication WHERE application_name = %s"
                                   " AND state = 'streaming'", (name,)).fetchone()
            if row and row[0]:
                return server
            if time.monotonic() > deadline:
                raise RuntimeError(f"the replica did not start streaming within {timeout:.0f}s")
            time.sleep(0.2)
    except BaseException:
        server.stop()
        raise


def start_pgserver() -> ThrowawayServer:
    """Start pgserver's embedded PostgreSQL in a temporary directory."""
    import pgserver

    directory = Path(tempfile.mkdtemp(prefix="agent19-pgserver-"))
    handle = pgserver.get_server(directory / "pgdata", cleanup_mode="stop")
    uri = handle.get_uri()
    server = ThrowawayServer(dsn=uri, major=0, source="pgserver", directory=directory, _handle=handle)
    _wait_ready(server)
    return server


def _wait_ready(server: ThrowawayServer, timeout: float = 30) -> None:
    import psycopg

    deadline = time.monotonic() + timeout
    while True:
        try:
            with psycopg.connect(server.dsn, connect_timeout=2, autocommit=True) as conn:
                row = conn.execute("SELECT current_setting('server_version_num')::int").fetchone()
                server.major = int(row[0]) // 10000 if row else server.major
                return
        except psycopg.OperationalError:
            if server._process is not None and server._process.poll() is not None:
                log = (server.directory / "postgres.log").read_text(errors="replace")[-2000:]
                raise RuntimeError(f"PostgreSQL exited while starting:\n{log}") from None
            if time.monotonic() > deadline:
                server.stop()
                raise RuntimeError(f"PostgreSQL did not accept connections within {timeout:.0f}s") from None
            time.sleep(0.2)
