"""Where PostgreSQL's client and server programs are: pg_dump, psql, pg_restore, pg_basebackup, initdb…

For a server of major version ``major``: the OS packages' ``/usr/lib/postgresql/<major>/bin`` first, then
the embedded server's own binaries (pgserver ships PostgreSQL 16, new enough for servers up to 16), then
whatever ``PATH`` has.
"""

from __future__ import annotations

import os
import pwd
import shutil
import socket
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


def as_postgres_user() -> dict[str, object]:
    """``subprocess`` arguments that run a server program as the ``postgres`` OS user when this process is root
    (``initdb`` and ``postgres`` refuse to run as root); none otherwise."""
    if os.geteuid() != 0:
        return {}
    try:
        pw = pwd.getpwnam("postgres")
    except KeyError as exc:
        raise RuntimeError("running as root and there is no 'postgres' OS user to run PostgreSQL as") from exc
    return {"user": pw.pw_uid, "group": pw.pw_gid, "extra_groups": []}


def free_port() -> int:
    """A TCP port free on loopback now (for a server started next)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])
