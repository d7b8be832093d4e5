"""Restoring a plain SQL dump with psql, its backslash commands refused and its SQL filtered for the restorer."""

from __future__ import annotations

import re
import secrets
import subprocess
import tempfile
from pathlib import Path

from agent19 import children
from agent19.errors import InputError
from agent19.ops.backup.restorer import PlainFilter

_RESTRICT_LINE = re.compile(rb"^\\(un)?restrict\s+\S+\s*$")


def restore_plain(psql: str, path: Path, dsn: str, env: dict[str, str], major: int,
                  keep: PlainFilter) -> tuple[int, bytes]:
    """Run a plain SQL dump with psql, its backslash commands refused.

    A plain dump is a psql script: ``\\!`` would run shell commands here, ``\\connect`` reach other
    databases with the target's password. psql first gets ``\\restrict`` with a key only this run knows
    (every later backslash command fails the restore); the file's own ``\\restrict``/``\\unrestrict``
    lines (pg_dump 15.14+ writes them) are dropped on the way in, and so is what ``keep`` refuses
    (ownership and privileges, as pg_restore's ``--no-owner --no-privileges``).
    """
    cmd = [psql, "-X", "-q", "-v", "ON_ERROR_STOP=1", "-c", f"\\restrict {secrets.token_hex(16)}",
           "-f", "-", "-d", dsn]
    with tempfile.TemporaryFile() as err, open(path, "rb") as src:
        proc = children.start(cmd, stdin=subprocess.PIPE, stdout=subprocess.DEVNULL, stderr=err, env=env)
        assert proc.stdin is not None
        try:
            for line in src:
                if not _RESTRICT_LINE.match(line) and keep.keep(line):
                    proc.stdin.write(line)
            proc.stdin.close()
        except BrokenPipeError:
            pass
        except BaseException:  # interrupted: psql ends before its database is dropped
            children.stop(proc)
            raise
        proc.wait()
        children.forget(proc)
        err.seek(0)
        stderr = err.read()
    if b"invalid command \\restrict" in stderr:
        raise InputError(f"psql {major} here is older than 15.14 and cannot refuse a plain dump's backslash commands",
                         "update the PostgreSQL client programs, or verify a custom-format dump (pg_dump -Fc)")
    if b"backslash commands are restricted" in stderr:
        stderr += b"\nerror: the plain dump contains psql backslash commands (such as \\! or \\connect); not run\n"
    return proc.returncode, stderr
