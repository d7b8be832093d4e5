"""pg_dump running in the background for backup verification: to a file or directory, or streamed into
pg_restore (both at once, as ``pg_dump | pg_restore``)."""

from __future__ import annotations

import subprocess
import threading
import time
from collections.abc import Callable
from pathlib import Path

from agent19 import children
from agent19.units import human_duration, human_size

Progress = Callable[[float, float | None, str | None], None]


def restore_errors(stderr: bytes) -> list[str]:
    lines = [ln.strip() for ln in stderr.decode(errors="replace").splitlines()]
    errors = [ln for ln in lines if "error" in ln.lower() or ln.startswith("ERROR") or "FATAL" in ln]
    return errors[:20] or [ln for ln in lines if ln][-5:]



class Dump:
    """pg_dump running in the background: to a file (or directory), or streamed into pg_restore.

    Both are :mod:`agent19.children`: :meth:`stop` (always, before the restore target is dropped) ends them and
    closes the pipe between them, so nothing is left blocked on the server (see that module)."""

    def __init__(self, cmd: list[str], env: dict[str, str], stderr_path: Path,
                 restore_cmd: list[str] | None = None, restore_env: dict[str, str] | None = None) -> None:
        self.start = time.monotonic()
        self.stderr = open(stderr_path, "wb")
        self.stderr_path = stderr_path
        self.bytes = 0
        self.dump_end: float | None = None
        self.restore_end: float | None = None
        self.restore_errors: list[str] = []
        out = subprocess.PIPE if restore_cmd else subprocess.DEVNULL
        self.proc = children.start(cmd, stdout=out, stderr=self.stderr, env=env)
        self.restore = None
        self.pump = None
        if restore_cmd:
            # pg_restore's messages go to a file: a pipe nobody reads while we feed its stdin could fill up
            self.restore_log = open(stderr_path.with_name("pg_restore.stderr"), "w+b")
            self.restore = children.start(restore_cmd, stdin=subprocess.PIPE, stdout=subprocess.DEVNULL,
                                          stderr=self.restore_log, env=restore_env)
            self.restore_stderr = b""
            self.pump = threading.Thread(target=self._pump, daemon=True)
            self.pump.start()

    def _pump(self) -> None:
        """Copy pg_dump's output into pg_restore, counting the bytes (the dump's size)."""
        assert self.proc.stdout and self.restore and self.restore.stdin
        try:
            while block := self.proc.stdout.read(1 << 20):
                self.bytes += len(block)
                self.restore.stdin.write(block)
        except (OSError, ValueError):  # pg_restore ended (broken pipe), or stop() ended both and closed the pipes
            pass
        finally:
            self.dump_end = time.monotonic()
            try:
                self.restore.stdin.close()
            except (OSError, ValueError):
                pass
            self.restore.wait()
            self.restore_log.seek(0)
            self.restore_stderr = self.restore_log.read()
            self.restore_log.close()
            self.restore_end = time.monotonic()

    def wait(self, say: Progress, total: int) -> str | None:
        """Wait for pg_dump (and the streamed restore), reporting progress every second; returns
        pg_dump's error, if any."""
        while True:
            if self.pump is not None:
                self.pump.join(timeout=1)
                if not self.pump.is_alive():
                    break
                say(min(self.bytes, total), total or None, f"dump and restore: {human_size(self.bytes)} streamed")
                continue
            try:
                self.proc.wait(timeout=1)
                break
            except subprocess.TimeoutExpired:
                say(0, None, f"dumping: {human_duration(time.monotonic() - self.start)}")
        self.proc.wait()
        if self.pump:
            self.pump.join()
        else:
            self.dump_end = time.monotonic()
        self.stderr.close()
        children.forget(self.proc)
        if self.restore:
            children.forget(self.restore)
        if self.restore and self.restore.returncode != 0:
            self.restore_errors = restore_errors(self.restore_stderr)
        if self.proc.returncode != 0:
            return self.stderr_path.read_text(errors="replace").strip()[-800:]
        return None

    def stop(self) -> list[str]:
        """End pg_dump and pg_restore if still running (their process groups; see :func:`agent19.children.stop`)
        and close the pipe between them; returns what was stopped ("pg_dump (pid …)"). Idempotent."""
        stopped = [f"{name} (pid {proc.pid})" for name, proc in (("pg_dump", self.proc), ("pg_restore", self.restore))
                   if proc is not None and children.stop(proc)]
        if self.pump is not None:
            self.pump.join(timeout=children.GRACE_S)  # its pipes are closed: it ends at once (closing pg_restore's log)
        self.stderr.close()
        return stopped
