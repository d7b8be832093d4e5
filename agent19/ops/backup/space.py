"""Disk space for backup verification: refuse before filling a disk, and say how much is needed."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import psycopg
from psycopg.conninfo import conninfo_to_dict

from agent19.db.connection import Database
from agent19.errors import InputError
from agent19.units import human_size

MARGIN = 1.1  # 10% over the estimate: dumps of text-heavy tables can exceed their heap size a little
EMPTY_CLUSTER = 48 * 1024 * 1024  # an initdb of PostgreSQL 15 takes ~40 MB before anything is restored


def dir_bytes(path: Path) -> int:
    """Size of a file, or of every file under a directory."""
    if path.is_file():
        return path.stat().st_size
    total = 0
    for root, _dirs, files in os.walk(path):
        for name in files:
            try:
                total += os.lstat(os.path.join(root, name)).st_size
            except FileNotFoundError:
                pass
    return total


def require_free(path: Path, needed: int, what: str) -> None:
    """Raise a clear error when ``path``'s disk has less than ``needed`` × 1.1 bytes free."""
    need = int(needed * MARGIN)
    free = shutil.disk_usage(path).free
    if free < need:
        raise InputError(
            f"not enough free space for {what}: needs about {human_size(need)} in {path.parent}, "
            f"{human_size(free)} free",
            "pass --work-dir on a disk with more room",
        )


def _is_local(dsn: str) -> bool:
    host = conninfo_to_dict(dsn).get("host") or os.environ.get("PGHOST") or ""
    return all(h in ("", "localhost", "127.0.0.1", "::1") or h.startswith("/") for h in str(host).split(","))


def server_free_bytes(db: Database) -> tuple[int | None, int | None]:
    """``(free, total)`` bytes of the target's data directory disk when agent19 can see it (the server
    runs on this machine and the role may read ``data_directory``), else ``(None, None)``."""
    if not _is_local(db.dsn):
        return None, None
    try:
        rows = db.execute_read("SELECT setting FROM pg_settings WHERE name = 'data_directory'")
    except psycopg.Error:
        return None, None
    if not rows or not rows[0]["setting"]:
        return None, None
    directory = Path(rows[0]["setting"])
    try:
        usage = shutil.disk_usage(directory)
    except OSError:
        return None, None
    return usage.free, usage.total
