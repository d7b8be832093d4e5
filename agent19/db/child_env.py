"""Connection details for child processes (pg_dump, psql, pg_restore, pg_basebackup…) without a
password on their command line.

A command line is readable by every local user (``ps``, ``/proc/PID/cmdline``); a process's
environment only by its owner and root. So the password leaves the DSN and travels in
``PGPASSWORD`` (libpq reads it when the connection string has none)::

    dsn, env = child_connection(database.dsn)
    subprocess.run(["pg_dump", "--schema-only", "-d", dsn], env=env, ...)

Every other connection parameter (host, port, user, sslmode, options…) stays in the DSN.
"""

from __future__ import annotations

import os
from collections.abc import Mapping

from psycopg.conninfo import conninfo_to_dict, make_conninfo


def child_connection(
    dsn: str, base_env: Mapping[str, str] | None = None, **overrides: str
) -> tuple[str, dict[str, str]]:
    """``(dsn_without_password, environment)`` for a libpq child process.

    ``overrides`` replace connection parameters (e.g. ``dbname="scratch"``). The environment is
    ``base_env`` (default: this process's) plus ``PGPASSWORD`` when the DSN carried a password.
    """
    params = {k: str(v) for k, v in conninfo_to_dict(dsn).items() if v is not None}
    params.update(overrides)
    password = params.pop("password", None)
    env = dict(os.environ if base_env is None else base_env)
    if password:
        env["PGPASSWORD"] = password
    return make_conninfo(**params), env
