"""tools/pg-local from a shell where no virtual environment is active: it runs under the checkout's .venv."""

from __future__ import annotations

import os
import signal
import subprocess
from pathlib import Path

import psycopg

from tests.conftest import need

ROOT = Path(__file__).parent.parent


def test_pg_local_starts_a_server_without_an_activated_venv(tmp_path: Path) -> None:
    need((ROOT / ".venv" / "bin" / "python").exists(), "no .venv in this checkout to run under")  # CI makes one
    # this environment with the venv deactivated: python3 on PATH is then one that cannot import agent19
    venv_bin = str((ROOT / ".venv" / "bin").resolve())
    path = [p for p in os.environ.get("PATH", "").split(os.pathsep) if p and str(Path(p).resolve()) != venv_bin]
    env = {k: v for k, v in os.environ.items() if k not in ("VIRTUAL_ENV", "PYTHONPATH", "PATH")}
    env["PATH"] = os.pathsep.join(path)
    proc = subprocess.Popen([str(ROOT / "tools" / "pg-local")], cwd=tmp_path, env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        assert proc.stdout is not None
        lines = [proc.stdout.readline() for _ in range(2)]
        assert lines[1].startswith("export DATABASE_URL="), (lines, proc.stderr.read() if proc.poll() else "")
        dsn = lines[1].split("=", 1)[1].strip().strip("'")
        with psycopg.connect(dsn) as conn:
            assert conn.execute("SELECT 1").fetchone() == (1,)
    finally:
        proc.send_signal(signal.SIGTERM)  # what Ctrl-C does: stop the server and delete its data
        out, err = proc.communicate(timeout=60)
    assert proc.returncode == 0, err
