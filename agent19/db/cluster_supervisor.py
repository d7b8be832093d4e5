"""A process that makes a work directory's throwaway clusters die with the agent19 process that made them.

The cleanup of a work directory (:mod:`agent19.ops.backup.workdir`) runs in ``finally``, on SIGTERM/SIGHUP and at
exit — nothing runs after a SIGKILL (or an out-of-memory kill): the copy's postmaster would keep running, with its
disk and time limits (:mod:`agent19.migrate.dryrun.isolated_limits`) enforced by nobody, until the next run removes
it. So the first cluster started in a work directory starts this supervisor beside it (:func:`start`): a small
detached process (its own session: Ctrl-C at the terminal reaches agent19, which cleans up, not it) that holds the
read end of a pipe whose only write end agent19 holds (not inherited by agent19's other children). The pipe reads
end-of-file when agent19 is gone, however it ended — a pid could be reused, a pipe cannot — and the supervisor then
stops every server running from the directory (immediate shutdown: the copy is thrown away) and removes it.

It also enforces limits agent19 sends it down the pipe (``limit <bytes> <seconds>``: the directory's size, the time
from then; 0 for none): past one, it stops the servers (fast shutdown: their sessions end), so the limits hold while
agent19 is stuck or stopped too, and says which limit on its standard output, a pipe agent19 reads
(:meth:`Supervisor.tripped`). Nothing of agent19's is written in or read from the directory: it belongs to the OS user
that runs the server (``postgres`` when agent19 runs as root) while the cluster runs, so that user could plant a
symbolic link there (a file written through it as root would overwrite any file) or forge what is read.

It signals only PostgreSQL servers of the directory's data directories (:func:`stop_postmasters`): a
``postmaster.pid`` is written by that same user, and may hold any pid.

Only the standard library: it runs as ``python -m agent19.db.cluster_supervisor FD DIRECTORY``.
"""

from __future__ import annotations

import itertools
import os
import select
import shutil
import signal
import stat
import subprocess
import sys
import time
from pathlib import Path

EVERY_S = 0.25
"""How often the directory's size and the time are checked (a cluster writing 40 MB/s passes its limit by ~10 MB)."""


def size_of(path: Path) -> int:
    """Bytes of the files under ``path`` (as ``du`` counts them: allocated blocks), skipping what vanishes."""
    total = 0
    for root, _dirs, files in os.walk(path):
        for name in files:
            try:
                total += os.lstat(os.path.join(root, name)).st_blocks * 512
            except OSError:
                continue
    return total


def _read_pid(pidfile: Path) -> int | None:
    """The pid on the first line of ``pidfile``, not following a symbolic link; None if there is none."""
    try:
        fd = os.open(pidfile, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK)
    except OSError:
        return None
    try:
        if not stat.S_ISREG(os.fstat(fd).st_mode):
            return None
        return int(os.read(fd, 64).split(b"\n")[0])
    except (OSError, ValueError):
        return None
    finally:
        os.close(fd)


def server_of(pid: int, pgdata: Path) -> bool:
    """Whether ``pid`` is a PostgreSQL server started on the data directory ``pgdata`` (``postgres -D pgdata``, as
    agent19 starts them) and run by the OS user that owns it (the server refuses any other data directory) — never
    this process. The pid comes from a ``postmaster.pid`` its user may have forged (e.g. the supervisor's own pid:
    it would have stopped itself and left the copy running unsupervised)."""
    if pid <= 0 or pid == os.getpid():
        return False
    try:
        args = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
        process_uid = os.stat(f"/proc/{pid}").st_uid
        data_uid = os.lstat(pgdata).st_uid
    except OSError:
        return False
    if not args or os.path.basename(args[0]) not in (b"postgres", b"postmaster"):
        return False
    data = str(pgdata.absolute()).encode()
    pairs = itertools.pairwise(args)
    return process_uid == data_uid and any(flag == b"-D" and value == data for flag, value in pairs)


def stop_postmasters(directory: Path, sig: int = signal.SIGQUIT, wait_s: float = 10.0) -> None:
    """Signal every PostgreSQL whose data directory is under ``directory`` (``sig``: SIGQUIT immediate shutdown,
    SIGINT fast); wait up to ``wait_s`` for each to end, then SIGKILL it (0: do not wait). Only servers of those
    data directories (:func:`server_of`)."""
    for pidfile in directory.glob("**/postmaster.pid"):
        pid = _read_pid(pidfile)
        if pid is None or not server_of(pid, pidfile.parent):  # not (or no longer) that data directory's server
            continue
        try:
            os.kill(pid, sig)
            if not wait_s:
                continue
            deadline = time.monotonic() + wait_s
            while time.monotonic() < deadline:
                os.kill(pid, 0)
                time.sleep(0.1)
            os.kill(pid, signal.SIGKILL)
        except ProcessLookupError:
            pass


class Supervisor:
    """agent19's side: the supervisor process and the write end of its pipe."""

    def __init__(self, directory: Path) -> None:
        self.directory = directory
        self._tripped: tuple[str, float] | None = None
        self._said = b""
        read, self._write = os.pipe()  # both ends not inheritable (PEP 446): only pass_fds hands one on
        try:
            self.process = subprocess.Popen(
                [sys.executable, "-m", "agent19.db.cluster_supervisor", str(read), str(directory)],
                pass_fds=(read,), start_new_session=True, cwd="/", stdin=subprocess.DEVNULL,
                stdout=subprocess.PIPE, stderr=subprocess.DEVNULL)
        except BaseException:
            os.close(self._write)
            raise
        finally:
            os.close(read)
        assert self.process.stdout is not None
        os.set_blocking(self.process.stdout.fileno(), False)

    def limit(self, max_bytes: int, max_seconds: float) -> None:
        """Enforce these limits from now (0: none)."""
        os.write(self._write, f"limit {int(max_bytes)} {float(max_seconds)}\n".encode())

    def tripped(self) -> tuple[str, float] | None:
        """Which limit the supervisor stopped the servers for (``disk``, bytes; ``time``, seconds), or None: what it
        said on its standard output."""
        if self._tripped is None and self.process.stdout is not None:
            try:
                while chunk := os.read(self.process.stdout.fileno(), 4096):
                    self._said += chunk
            except (BlockingIOError, OSError, ValueError):
                pass
            for line in self._said.split(b"\n")[:-1]:
                kind, _, value = line.decode(errors="replace").partition(" ")
                if kind in ("disk", "time"):
                    self._tripped = kind, float(value)
        return self._tripped

    def close(self, timeout: float = 30.0) -> None:
        """Let it go: the directory is removed already (or it removes it), and it exits."""
        if self._write < 0:
            return
        os.close(self._write)
        self._write = -1
        try:
            self.process.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()
        self.tripped()  # what it said before it ended
        if self.process.stdout is not None:
            self.process.stdout.close()


def start(directory: Path) -> Supervisor:
    """A supervisor for the work directory ``directory`` (see the module docstring)."""
    return Supervisor(directory)


def _trip(directory: Path, kind: str, value: float) -> None:
    """Tell agent19 why, on standard output — first: it reads it when the stopped server's sessions fail — and stop
    the servers (fast shutdown; agent19's cleanup waits for them)."""
    try:
        os.write(sys.stdout.fileno(), f"{kind} {value}\n".encode())
    except OSError:  # agent19 is gone: the loop reads end-of-file next
        pass
    stop_postmasters(directory, signal.SIGINT, wait_s=0)


def supervise(fd: int, directory: Path) -> None:
    """The supervisor's loop: until ``fd`` reads end-of-file, enforce the limits read from it; then stop the
    servers running from ``directory`` and remove it."""
    max_bytes, max_seconds, since, tripped, pending = 0, 0.0, time.monotonic(), False, b""
    while True:
        ready, _, _ = select.select([fd], [], [], EVERY_S)
        if ready:
            data = os.read(fd, 4096)
            if not data:
                break
            pending += data
            *lines, pending = pending.split(b"\n")
            for line in lines:
                _, size, seconds = line.split()
                max_bytes, max_seconds, since = int(size), float(seconds), time.monotonic()
            continue
        if tripped or not (max_bytes or max_seconds) or not directory.exists():
            continue
        size = size_of(directory) if max_bytes else 0
        if max_bytes and size > max_bytes:
            _trip(directory, "disk", size)
            tripped = True
        elif max_seconds and time.monotonic() - since > max_seconds:
            _trip(directory, "time", max_seconds)
            tripped = True
    stop_postmasters(directory)
    shutil.rmtree(directory, ignore_errors=True)


if __name__ == "__main__":
    for ignored in (signal.SIGINT, signal.SIGHUP):
        signal.signal(ignored, signal.SIG_IGN)  # it ends when agent19 is gone, and cleans up then
    supervise(int(sys.argv[1]), Path(sys.argv[2]))
