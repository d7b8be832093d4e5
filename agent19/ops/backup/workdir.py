"""Work directories and local throwaway clusters for backup verification, and their cleanup.

Lifecycle, and what is guaranteed:

* **Name.** ``<base>/agent19-backup-<pid>-<random>`` (base: the system's temporary directory or
  ``--work-dir``). The run that owns it holds an exclusive ``flock`` on ``.owner`` inside it; the
  lock is not inherited by child processes, so it dies with the owning process.
* **Clusters** (a restored base backup, or a fresh cluster to restore a dump into) live inside the
  work directory, listen on a Unix socket in it only (``listen_addresses = ''``), and are stopped
  before the directory is removed.
* **Removal.** Always in ``finally``; on SIGTERM/SIGHUP (:func:`install_signal_handlers`) and at exit
  (``atexit`` and the MCP server's shutdown hook).
* **SIGKILL** cannot run code: the first cluster started in a work directory starts a supervisor process beside
  it (:mod:`agent19.db.cluster_supervisor`) that stops the clusters and removes the directory once this process
  is gone, however it ended. As a fallback (the supervisor killed too, the machine rebooted), the next run calls
  :func:`remove_leftovers`, which takes the lock of every ``agent19-backup-*`` directory whose owner is gone,
  stops any PostgreSQL still running from it (its ``postmaster.pid``) and deletes it. A directory whose owner is
  alive is left alone, and so is one without ``.owner`` younger than :data:`GRACE_S` (a run between its
  ``mkdir`` and its lock).
"""

from __future__ import annotations

import fcntl
import logging
import os
import re
import secrets
import shutil
import signal
import subprocess
import tempfile
import threading
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from psycopg.conninfo import make_conninfo

from agent19 import children, lifecycle
from agent19.db import cluster_supervisor
from agent19.db.binaries import as_postgres_user, free_port
from agent19.errors import InputError

log = logging.getLogger(__name__)

PREFIX = "agent19-backup-"
PREFIXES = (PREFIX, "agent19-isolated-")  # backup verification's, an isolated dry run's
GRACE_S = 600.0
"""A work directory without ``.owner`` is removed only once this old: a run creates ``.owner`` right after the
directory, and a run starting at the same time must not delete the other's in between."""
_ACTIVE: dict[Path, WorkDir] = {}
_LOCK = threading.Lock()


def run_as() -> dict[str, Any]:
    """subprocess keyword arguments that run PostgreSQL's server-side programs as ``postgres`` when we
    are root (initdb and postgres refuse root); empty otherwise."""
    return as_postgres_user()


def give_to_server_user(path: Path) -> None:
    """As root, hand ``path`` (recursively) to the ``postgres`` OS user that will run the server."""
    ids = run_as()
    if not ids:
        return
    uid, gid = ids["user"], ids["group"]
    os.chown(path, uid, gid)
    for root, dirs, files in os.walk(path):
        for name in [*dirs, *files]:
            try:
                os.chown(os.path.join(root, name), uid, gid, follow_symlinks=False)
            except FileNotFoundError:
                pass


@dataclass
class LocalCluster:
    """A PostgreSQL server started by agent19 on a data directory inside a work directory."""

    pgdata: Path
    socket_dir: Path
    port: int
    user: str
    process: subprocess.Popen[bytes] | None
    log_path: Path

    def dsn(self, dbname: str = "postgres") -> str:
        return make_conninfo(host=str(self.socket_dir), port=str(self.port), user=self.user, dbname=dbname,
                             application_name="agent19 backup verify", connect_timeout="10")

    def log_tail(self, chars: int = 3000) -> str:
        try:
            return self.log_path.read_text(errors="replace")[-chars:]
        except OSError:
            return ""

    def running(self) -> bool:
        return self.process is not None and self.process.poll() is None

    def stop(self) -> None:
        if self.process is None:
            return
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGINT)  # fast shutdown
            try:
                self.process.wait(timeout=60)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        self.process = None


@dataclass
class WorkDir:
    path: Path
    lock_fd: int
    clusters: list[LocalCluster] = field(default_factory=list)
    supervisor: cluster_supervisor.Supervisor | None = None
    """Started with the first cluster: stops the clusters and removes the directory when this process is gone."""

    def supervise(self) -> cluster_supervisor.Supervisor:
        """The directory's supervisor (:mod:`agent19.db.cluster_supervisor`), started on the first call."""
        if self.supervisor is None:
            self.supervisor = cluster_supervisor.start(self.path)
        return self.supervisor

    def start_cluster(self, pgdata: Path, bindir: Path, user: str, settings: dict[str, str] | None = None,
                      env: dict[str, str] | None = None) -> LocalCluster:
        """Start ``postgres -D pgdata`` on a private socket (no TCP); returns at once (see :func:`wait_ready`).
        ``env``: the server's environment (default: this process's)."""
        socket_dir = self.path / "socket"
        socket_dir.mkdir(exist_ok=True)
        port = free_port()
        conf = {"listen_addresses": "''", "port": str(port), "unix_socket_directories": f"'{socket_dir}'",
                "archive_mode": "off", "hot_standby": "off", "shared_buffers": "'64MB'",
                "primary_conninfo": "''", "primary_slot_name": "''", "logging_collector": "off",
                "log_min_messages": "warning"} | (settings or {})
        with open(pgdata / "postgresql.auto.conf", "a") as f:  # read last: these win
            f.write("\n# agent19 backup verification\n")
            f.writelines(f"{k} = {v}\n" for k, v in conf.items())
        give_to_server_user(self.path)
        os.chmod(pgdata, 0o700)
        self.supervise()  # before the server starts: it never runs unsupervised
        log_path = self.path / f"postgres-{port}.log"
        out = open(log_path, "wb")
        process = subprocess.Popen([str(bindir / "postgres"), "-D", str(pgdata)], stdout=out,
                                   stderr=subprocess.STDOUT, cwd=self.path, env=env, **run_as())
        cluster = LocalCluster(pgdata, socket_dir, port, user, process, log_path)
        self.clusters.append(cluster)
        return cluster

    def cleanup(self) -> None:
        for cluster in self.clusters:
            try:
                cluster.stop()
            except OSError as exc:
                log.warning("could not stop the cluster in %s: %s", cluster.pgdata, exc)
        self.clusters.clear()
        shutil.rmtree(self.path, ignore_errors=True)
        if self.supervisor is not None:  # after the removal: it finds nothing left to do, and exits
            self.supervisor.close()
            self.supervisor = None
        try:
            os.close(self.lock_fd)
        except OSError:
            pass


def wait_ready(cluster: LocalCluster, timeout: float = 600, until_primary: bool = False) -> str | None:
    """Wait until the cluster accepts connections (and, with ``until_primary``, has left recovery).

    Returns None when ready, or why it is not: the server's own last log lines when it exited.
    """
    import psycopg

    from agent19.db import catalog_first

    deadline = time.monotonic() + timeout
    while True:
        if cluster.process is not None and cluster.process.poll() is not None:
            return f"PostgreSQL exited (status {cluster.process.returncode}):\n{cluster.log_tail()}"
        try:
            with catalog_first.connect(cluster.dsn(), autocommit=True, connect_timeout=2) as conn:
                row = conn.execute("SELECT pg_is_in_recovery()").fetchone()
                if not until_primary or (row and not row[0]):
                    return None
        except psycopg.OperationalError:
            pass
        if time.monotonic() > deadline:
            return f"PostgreSQL was not ready within {timeout:.0f}s:\n{cluster.log_tail()}"
        time.sleep(0.2)


def remove_leftovers(base: Path | None = None) -> list[str]:
    """Remove every ``agent19-backup-*`` (and ``agent19-isolated-*``) work directory under ``base`` whose owner
    process is gone (one without ``.owner``: once older than :data:`GRACE_S`)."""
    base = base or Path(tempfile.gettempdir())
    removed = []
    for path in sorted(p for prefix in PREFIXES for p in base.glob(f"{prefix}*")):
        if not path.is_dir() or path in _ACTIVE:
            continue
        try:
            fd = os.open(path / ".owner", os.O_RDWR | os.O_NOFOLLOW | os.O_NONBLOCK)  # its server user may plant a link
        except FileNotFoundError:
            fd = None
            try:
                if time.time() - path.stat().st_mtime < GRACE_S:  # perhaps a run between mkdir and its lock
                    continue
            except OSError:
                continue
        except OSError:
            continue
        if fd is not None:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:  # its owner is alive
                os.close(fd)
                continue
        try:
            cluster_supervisor.stop_postmasters(path)
            shutil.rmtree(path, ignore_errors=True)
            removed.append(str(path))
            log.info("removed leftover backup work directory %s", path)
        finally:
            if fd is not None:
                os.close(fd)
    return removed


_SHELL_ACTIVE = re.compile(r'[$`"\\]')


@contextmanager
def work_dir(base: Path | None = None, prefix: str = PREFIX) -> Iterator[WorkDir]:
    """A fresh work directory (after removing what killed runs left); removed when the block exits. ``prefix``: one
    of :data:`PREFIXES`."""
    # absolute: initdb, pg_basebackup and the server run in other directories than ours (a relative path broke)
    base = (Path(base) if base else Path(tempfile.gettempdir())).absolute()
    if _SHELL_ACTIVE.search(str(base.absolute())):
        # pg_verifybackup runs pg_waldump through the shell with the path in double quotes: $(…) would run
        raise InputError(f"the work directory {str(base)!r} holds $, `, \" or \\: PostgreSQL's pg_verifybackup "
                         "passes paths under it through a shell, which would run what they hold",
                         "choose a work directory whose path has none of these characters")
    try:
        base.mkdir(parents=True, exist_ok=True)
        remove_leftovers(base)
        path = base / f"{prefix}{os.getpid()}-{secrets.token_hex(4)}"
        path.mkdir(mode=0o700)
    except OSError as exc:  # a file, /proc, no permission, a read-only or full file system
        raise InputError(f"cannot create a work directory under {str(base)!r}: {exc.strerror or exc}",
                         "pass --work-dir a directory this user can write (or create it first); it needs room "
                         "for the restored copy") from None
    fd = os.open(path / ".owner", os.O_CREAT | os.O_RDWR, 0o600)  # not inheritable (PEP 446)
    fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    wd = WorkDir(path, fd)
    with _LOCK:
        _ACTIVE[path] = wd
    try:
        yield wd
    finally:
        with _LOCK:
            _ACTIVE.pop(path, None)
        wd.cleanup()


def _cleanup_active() -> None:
    with _LOCK:
        active = list(_ACTIVE.values())
        _ACTIVE.clear()
    for wd in active:
        wd.cleanup()


def install_signal_handlers() -> None:
    """Remove active work directories (stopping their clusters) on SIGTERM/SIGHUP and at exit."""
    lifecycle.cleanup_on_exit(_cleanup_active)


def run(cmd: Sequence[str | Path], *, env: dict[str, str] | None = None, as_server_user: bool = False,
        timeout: float | None = None, cwd: Path | None = None) -> subprocess.CompletedProcess[bytes]:
    """Run a PostgreSQL client program; never raises on a non-zero exit (the caller reports it)."""
    extra = run_as() if as_server_user else {}
    # interrupted, it is stopped with its helpers (initdb's bootstrap server would write on in the removed directory)
    return children.run(cmd, env=env, timeout=timeout, cwd=cwd, **extra)
