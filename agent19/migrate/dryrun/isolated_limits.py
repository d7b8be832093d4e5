"""What an isolated dry run's throwaway cluster (:mod:`agent19.migrate.dryrun.isolated`) may cost the machine agent19
runs on: the ordinary dry run's load lands on the target, which its DBA sized; this one lands in a work directory
under ``TMPDIR`` of a machine nobody sized for it (one ``CREATE TABLE … AS SELECT … generate_series`` wrote 341 MB in
9 s there).

* **Disk**: at most :func:`max_bytes` in the work directory — ``isolated_max_mb`` (``AGENT19_ISOLATED_MAX_MB``, an
  operator's setting, never a tool argument), by default the smaller of 2 GB and a quarter of the free space there.
  The server refuses temporary files past it (:func:`server_settings`: ``temp_file_limit``), keeps little WAL, and
  :class:`Watchdog` stops the cluster (fast shutdown: its sessions end) when the directory grows past it anyway
  (tables, indexes, WAL, its log).
* **Time**: at most :func:`max_seconds` for the whole run, 20 statement timeouts (10 min at the default 30 s), at
  least 1 min; each statement has its own ``statement_timeout`` too.

A run stopped so raises :class:`~agent19.errors.InputError` saying which limit it passed.
"""

from __future__ import annotations

import logging
import os
import shutil
import signal
import threading
import time
from pathlib import Path

from agent19.config import Settings
from agent19.errors import InputError
from agent19.ops.backup.workdir import LocalCluster

log = logging.getLogger(__name__)

DEFAULT_MAX_BYTES = 2 * 1024**3
"""At most 2 GB by default (and at most a quarter of the free space)."""
EVERY_S = 0.25
"""How often the work directory's size is read (a cluster writing 40 MB/s passes its limit by ~10 MB at most)."""


def max_bytes(settings: Settings, where: Path) -> int:
    """The bytes the work directory ``where`` may hold: ``isolated_max_mb``, else min(2 GB, 25 % of the free
    space of its file system)."""
    if settings.isolated_max_mb is not None:
        return int(settings.isolated_max_mb) * 1024**2
    return min(DEFAULT_MAX_BYTES, shutil.disk_usage(where).free // 4)


def max_seconds(settings: Settings) -> float:
    """The whole run's time: 20 statement timeouts, at least a minute (10 min when statement_timeout is off)."""
    per_statement = settings.statement_timeout_ms / 1000
    return max(60.0, 20 * per_statement) if per_statement > 0 else 600.0


def server_settings(limit: int) -> dict[str, str]:
    """The throwaway server's settings that keep its writes under ``limit`` bytes: temporary files (per session),
    and WAL kept between checkpoints."""
    return {"temp_file_limit": f"'{max(1, limit // 1024)}kB'", "max_wal_size": "'64MB'", "min_wal_size": "'32MB'"}


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


class Watchdog:
    """Stops ``cluster`` when ``path`` holds more than ``limit`` bytes or after ``seconds``: :attr:`tripped` says
    why (None: not). A thread of its own from construction until :meth:`stop`."""

    def __init__(self, path: Path, cluster: LocalCluster, limit: int, seconds: float) -> None:
        self.path, self.cluster, self.limit, self.seconds = path, cluster, limit, seconds
        self.tripped: str | None = None
        self.largest = 0
        self._done = threading.Event()
        self._thread = threading.Thread(target=self._watch, name="agent19-isolated-watchdog", daemon=True)
        self._thread.start()

    def _watch(self) -> None:
        start = time.monotonic()
        while not self._done.wait(EVERY_S):
            size = size_of(self.path)
            self.largest = max(self.largest, size)
            if size > self.limit:
                self._trip(f"the isolated copy wrote more than {self.limit // 1024**2} MB on this machine (its work "
                           f"directory {self.path} held {size // 1024**2} MB): its cluster was stopped",
                           )
                return
            if time.monotonic() - start > self.seconds:
                self._trip(f"the isolated run took more than {self.seconds:.0f} s (20 statement timeouts): its "
                           "cluster was stopped")
                return

    def _trip(self, why: str) -> None:
        self.tripped = why
        log.info("%s", why)  # the error raised says it
        process = self.cluster.process
        if process is not None and process.poll() is None:
            try:
                process.send_signal(signal.SIGINT)  # fast shutdown: every session ends; the cleanup waits for it
            except OSError as exc:  # already gone
                log.debug("could not signal the isolated cluster: %s", exc)

    def stop(self) -> None:
        self._done.set()
        self._thread.join()

    def __enter__(self) -> Watchdog:
        return self

    def __exit__(self, kind: object, exc: BaseException | None, tb: object) -> None:
        """Stopped; a tripped run raises :meth:`error` (instead of what the stopped cluster made fail, if anything:
        the dry run may also have reported its ended sessions as a failed statement)."""
        self.stop()
        if self.tripped is not None:
            raise self.error() from exc

    def error(self) -> InputError:
        """The error a tripped run raises."""
        assert self.tripped is not None
        return InputError(self.tripped, "the migration writes more (or runs longer) than an isolated copy on this "
                          "machine allows: dry-run it on a staging copy, or raise AGENT19_ISOLATED_MAX_MB (an "
                          "operator's setting) / statement_timeout")
