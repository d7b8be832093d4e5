"""The embedded PostgreSQL server (pgserver), used when no DSN is given.

It lives in ``<data_dir>/pgdata`` and is reused across runs; it is stopped when the last
agent19 process using it exits. It has no contrib extensions (no HypoPG, no
pg_stat_statements): features that need one say so.
"""

from __future__ import annotations

import logging
import sys
import warnings
from pathlib import Path

from agent19.errors import DatabaseUnavailable

log = logging.getLogger(__name__)


def start_embedded(data_dir: Path, *, announce: bool = True) -> str:
    """Start (or attach to) the embedded server and return its DSN."""
    pgdata = data_dir / "pgdata"
    try:
        with warnings.catch_warnings():  # platformdirs warns about XDG_RUNTIME_DIR on servers
            warnings.simplefilter("ignore")
            import pgserver
    except ImportError as exc:  # pragma: no cover - pgserver is a dependency
        raise DatabaseUnavailable(
            "no DSN given and the embedded server (pgserver) is not installed",
            "pass --dsn or set DATABASE_URL, or `pip install pgserver`",
        ) from exc
    try:
        pgdata.mkdir(parents=True, exist_ok=True)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            server = pgserver.get_server(pgdata, cleanup_mode="stop")
        uri = server.get_uri()
    except Exception as exc:
        raise DatabaseUnavailable(
            f"could not start the embedded PostgreSQL in {pgdata}: {exc}",
            "pass --dsn to use your own server, or --data-dir for another location",
        ) from exc
    _SERVERS.append(server)  # keep a handle: the server stops when the last handle goes
    if announce:
        print(f"agent19: no DSN given; using the embedded PostgreSQL in {pgdata}", file=sys.stderr)
    return uri


_SERVERS: list[object] = []
