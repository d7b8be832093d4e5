"""Where PostgreSQL's client and server programs are: pg_dump, psql, pg_restore, pg_basebackup, initdb…

For a server of major version ``major``: the OS packages' ``/usr/lib/postgresql/<major>/bin`` first, then
the embedded server's own binaries (pgserver ships PostgreSQL 16, new enough for servers up to 16), then
whatever ``PATH`` has.
"""

from __future__ import annotations

import shutil
import warnings
from pathlib import Path


def pg_binary(tool: str, major: int) -> str | None:
    """The path of ``tool`` suited to a server of ``major``, or None when none is installed."""
    system = Path(f"/usr/lib/postgresql/{major}/bin/{tool}")
    if system.exists():
        return str(system)
    embedded = embedded_bin_dir() / tool
    if major <= 16 and embedded.exists():
        return str(embedded)
    return shutil.which(tool)


def embedded_bin_dir() -> Path:
    """The embedded server's ``bin`` directory (pgserver is a dependency: its absence is an install error)."""
    with warnings.catch_warnings():  # platformdirs warns about XDG_RUNTIME_DIR on servers
        warnings.simplefilter("ignore")
        import pgserver
    return Path(pgserver.__file__).parent / "pginstall" / "bin"
