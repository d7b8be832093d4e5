"""A throwaway PostgreSQL cluster of agent19's own: ``initdb`` in a work directory, started on a private Unix socket
(no TCP), stopped and removed with the work directory (:mod:`agent19.ops.backup.workdir`: in ``finally``, on
SIGTERM/SIGHUP, at exit, and by the next run after a SIGKILL).

Used where something must run on a server nobody else uses: backup verification restores a dump into one
(:mod:`agent19.ops.backup.logical`), an isolated dry run restores the target's schema into one and runs the migration
there (:mod:`agent19.migrate.dryrun.isolated`).
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
from pathlib import Path

from agent19.db.binaries import embedded_bin_dir
from agent19.errors import InputError
from agent19.ops.backup.workdir import LocalCluster, WorkDir, give_to_server_user, run, wait_ready

SETTINGS = {"fsync": "off", "wal_level": "minimal", "max_wal_senders": "0"}
"""A copy thrown away: no durability, no replication."""


def _major_of(bindir: Path) -> int | None:
    """The major version of the server programs in ``bindir`` (``postgres --version``), or None."""
    try:
        out = subprocess.run([str(bindir / "postgres"), "--version"], capture_output=True, text=True, timeout=30,
                             check=False).stdout
    except OSError:
        return None
    found = re.search(r"(\d+)(?:\.\d+)?", out)
    return int(found.group(1)) if found else None


def server_bindir(major: int, candidates: list[Path] | None = None) -> Path:
    """The directory of the server programs (``initdb``, ``postgres``) of exactly major version ``major``: the OS
    packages' ``/usr/lib/postgresql/<major>/bin``, the embedded server's, then ``PATH``'s — each only when its
    ``postgres --version`` says ``major``. ``candidates``: look there instead. Raises :class:`InputError` naming the
    package to install when none is."""
    if candidates is None:
        on_path = shutil.which("postgres")
        candidates = [Path(f"/usr/lib/postgresql/{major}/bin"), embedded_bin_dir(),
                      *([Path(on_path).parent] if on_path else [])]
    for bindir in candidates:
        if (bindir / "initdb").exists() and (bindir / "postgres").exists() and _major_of(bindir) == major:
            return bindir
    looked = ", ".join(str(c) for c in candidates) or "nowhere"
    raise InputError(f"no PostgreSQL {major} server programs (initdb, postgres) here (looked in {looked}): the "
                     f"throwaway cluster must be the target's major version, {major}",
                     f"install them: Debian/Ubuntu apt-get install postgresql-{major} (PGDG repository), "
                     f"RHEL/Fedora dnf install postgresql{major}-server, macOS brew install postgresql@{major}")


def start(wd: WorkDir, initdb: Path, superuser: str, *, name: str = "restore",
          env: dict[str, str] | None = None, settings: dict[str, str] | None = None) -> LocalCluster:
    """``initdb`` (trust authentication on the private socket, UTF8, C.UTF-8) into ``wd/name`` as bootstrap superuser
    ``superuser``, then start it (:meth:`WorkDir.start_cluster`, ``env``: the server's environment, default this
    process's) and wait until it accepts connections. Raises :class:`InputError` with the tool's own message."""
    pgdata = wd.path / name
    give_to_server_user(wd.path)
    done = run([initdb, "-D", pgdata, "-U", superuser, "--auth=trust", "-E", "UTF8", "--locale=C.UTF-8",
                "--no-sync"], as_server_user=True, cwd=wd.path, env=env)
    if done.returncode != 0:
        raise InputError("initdb failed for the throwaway cluster: " + done.stderr.decode(errors="replace")[-500:])
    cluster = wd.start_cluster(pgdata, initdb.parent, superuser, SETTINGS | (settings or {}), env=env)
    failure = wait_ready(cluster, timeout=120)
    if failure:
        raise InputError("the throwaway cluster did not start: " + failure)
    return cluster


def server_environment(home: Path) -> dict[str, str]:
    """An environment for a throwaway server that holds none of agent19's: no ``DATABASE_URL``, ``PGPASSWORD`` or
    other ``PG*`` variables a function running there could read; ``HOME`` in the work directory (not the user's
    ``~/.pgpass``)."""
    keep = {k: v for k, v in os.environ.items() if k in ("PATH", "LANG", "TZ") or k.startswith("LC_")}
    return keep | {"HOME": str(home)}
