"""Hostile review r27b-k12: the work directory of a throwaway cluster belongs to the OS user that runs the server
(``postgres`` when agent19 runs as root) while the cluster runs. What that user plants there must not make the
supervisor (agent19.db.cluster_supervisor, agent19's user: root here) overwrite a file through a symbolic link, nor
signal a process that is not a PostgreSQL server of the directory — its own pid in a forged ``postmaster.pid``."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from agent19.db import cluster_supervisor
from agent19.db.binaries import as_postgres_user
from tests.conftest import need, until
from tests.scratch_dryruns import owner
from tests.test_dryrun_isolated import (
    SETUP,
    _killed_and_gone,
    _no_cluster_left,
    _postmaster,
    _sleeping_run,
    _supervisors_of,
)


def test_a_tripped_limit_writes_nothing_through_a_planted_link(tmp_path: Path) -> None:
    """k12: ``.limit-passed -> /root/file`` planted in the directory; the directory then grows past the limit. The
    supervisor used to write ``disk <bytes>`` through the link (as root: any file truncated and overwritten)."""
    directory = tmp_path / "agent19-isolated-test"
    directory.mkdir()
    victim = tmp_path / "victim"
    victim.write_text("precious root data\n")
    os.chmod(victim, 0o600)
    (directory / ".limit-passed").symlink_to(victim)
    supervisor = cluster_supervisor.start(directory)
    try:
        supervisor.limit(4096, 0)
        (directory / "filler").write_bytes(os.urandom(64 * 1024))
        kind, size = until("the supervisor to report the disk limit passed", supervisor.tripped, timeout=20)
        assert kind == "disk" and size > 4096, (kind, size)
        assert victim.read_text() == "precious root data\n"  # nothing written through the link
        assert supervisor.tripped() == (kind, size)  # read once, kept
    finally:
        supervisor.close()
    assert victim.read_text() == "precious root data\n"
    assert not directory.exists()


def test_a_time_limit_is_reported_without_a_file(tmp_path: Path) -> None:
    """The trip reaches agent19 on the supervisor's standard output; the directory holds nothing of it."""
    directory = tmp_path / "agent19-isolated-test"
    directory.mkdir()
    supervisor = cluster_supervisor.start(directory)
    try:
        assert supervisor.tripped() is None
        supervisor.limit(0, 0.5)
        assert until("the time limit to pass", supervisor.tripped, timeout=20) == ("time", 0.5)
        assert sorted(p.name for p in directory.iterdir()) == []
    finally:
        supervisor.close()


def test_a_forged_pid_file_is_not_signalled(tmp_path: Path) -> None:
    """``postmaster.pid`` files holding the supervisor's own pid, and the pid of a process whose arguments hold
    ``-D <data directory>`` but that is no PostgreSQL server: the supervisor signals neither, and removes the
    directory when agent19 lets it go."""
    directory = tmp_path / "agent19-isolated-test"
    data = directory / "copy"
    data.mkdir(parents=True)
    decoy = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)", "-D", str(data)])
    supervisor = cluster_supervisor.start(directory)
    try:
        (directory / "postmaster.pid").write_text(f"{supervisor.process.pid}\n{directory}\n")
        (data / "postmaster.pid").write_text(f"{decoy.pid}\n{data}\n")
        assert not cluster_supervisor.server_of(supervisor.process.pid, directory)
        assert not cluster_supervisor.server_of(decoy.pid, data)
        assert not cluster_supervisor.server_of(os.getpid(), data)
        supervisor.close()
        assert supervisor.process.returncode == 0, supervisor.process.returncode  # not ended by its own SIGQUIT
        assert not directory.exists()
        assert decoy.poll() is None  # not signalled
    finally:
        decoy.kill()
        decoy.wait()


@pytest.fixture
def app(dsn: str) -> str:
    need(os.path.exists("/usr/lib/postgresql/15/bin/initdb"), "PostgreSQL 15 server programs are not installed")
    return owner(dsn, SETUP)


def test_the_supervisor_survives_its_pid_in_the_work_directory(app: str, work: Path, tmp_path: Path) -> None:
    """k12, the reviewer's run: as the server's OS user, ``echo <supervisor pid> > <wd>/postmaster.pid``, then agent19
    is SIGKILLed. The supervisor used to SIGQUIT itself: the copy's postgres kept running unsupervised and the
    directory stayed."""
    child = _sleeping_run(app, work, tmp_path)
    try:
        directory, postmaster = _postmaster(work)
        [supervisor] = _supervisors_of(directory)
        forged = directory / "postmaster.pid"
        forged.write_text(f"{supervisor}\n{directory}\n")
        ids = as_postgres_user()
        if ids:  # as its user would have written it
            os.chown(forged, ids["user"], ids["group"])
        _killed_and_gone(child, directory, postmaster)
    finally:
        child.kill()
        child.wait()
    _no_cluster_left(work)
