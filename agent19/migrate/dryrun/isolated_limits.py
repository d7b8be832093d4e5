"""What an isolated dry run's throwaway cluster (:mod:`agent19.migrate.dryrun.isolated`) may cost the machine agent19
runs on: the ordinary dry run's load lands on the target, which its DBA sized; this one lands in a work directory
under ``TMPDIR`` of a machine nobody sized for it (one ``CREATE TABLE … AS SELECT … generate_series`` wrote 341 MB in
9 s there).

* **Disk**: at most :func:`max_bytes` in the work directory — ``isolated_max_mb`` (``AGENT19_ISOLATED_MAX_MB``, an
  operator's setting, never a tool argument), by default the smaller of 2 GB and a quarter of the free space there.
  The server refuses temporary files past it (:func:`server_settings`: ``temp_file_limit``), keeps little WAL, and
  the work directory's supervisor process (:class:`Watchdog`, :mod:`agent19.db.cluster_supervisor`) stops the
  cluster (fast shutdown: its sessions end) when the directory grows past it anyway (tables, indexes, WAL, its log)
  — also while agent19 is stuck or stopped; once agent19 is gone, however it ended, it removes the cluster.
* **Time**: at most :func:`max_seconds` for the whole run, 20 statement timeouts (10 min at the default 30 s), at
  least 1 min; each statement has its own ``statement_timeout`` too.

A run stopped so raises :class:`~agent19.errors.InputError` saying which limit it passed.
"""

from __future__ import annotations

import logging
import shutil
from pathlib import Path

from agent19.config import Settings
from agent19.errors import InputError
from agent19.ops.backup.workdir import WorkDir

log = logging.getLogger(__name__)

DEFAULT_MAX_BYTES = 2 * 1024**3
"""At most 2 GB by default (and at most a quarter of the free space)."""


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


class Watchdog:
    """The limits of the work directory ``wd``'s cluster: ``limit`` bytes, ``seconds`` from now. Enforced by the
    directory's supervisor process (:mod:`agent19.db.cluster_supervisor`), which stops the cluster past one (fast
    shutdown: its sessions end) — while agent19 is stuck or stopped too. :attr:`tripped` says why (None: not)."""

    def __init__(self, wd: WorkDir, limit: int, seconds: float) -> None:
        self.path, self.limit, self.seconds = wd.path, limit, seconds
        self._supervisor = wd.supervise()
        self._supervisor.limit(limit, seconds)

    @property
    def tripped(self) -> str | None:
        passed = self._supervisor.tripped()
        if passed is None:
            return None
        kind, value = passed
        if kind == "disk":
            return (f"the isolated copy wrote more than {self.limit // 1024**2} MB on this machine (its work "
                    f"directory {self.path} held {int(value) // 1024**2} MB): its cluster was stopped")
        return f"the isolated run took more than {self.seconds:.0f} s (20 statement timeouts): its cluster was stopped"

    def stop(self) -> None:
        """No limit from now (the cluster is being removed)."""
        if self._supervisor.process.poll() is None:
            self._supervisor.limit(0, 0)

    def __enter__(self) -> Watchdog:
        return self

    def __exit__(self, kind: object, exc: BaseException | None, tb: object) -> None:
        """Stopped; a tripped run raises :meth:`error` (instead of what the stopped cluster made fail, if anything:
        the dry run may also have reported its ended sessions as a failed statement)."""
        self.stop()
        if self.tripped is not None:
            log.info("%s", self.tripped)
            raise self.error() from exc

    def error(self) -> InputError:
        """The error a tripped run raises."""
        tripped = self.tripped
        assert tripped is not None
        return InputError(tripped, "the migration writes more (or runs longer) than an isolated copy on this "
                          "machine allows: dry-run it on a staging copy, or raise AGENT19_ISOLATED_MAX_MB (an "
                          "operator's setting) / statement_timeout")
