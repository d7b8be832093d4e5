"""``pgbouncer_status``: a running PgBouncer's pools from its admin console, with what to do.

Reads ``SHOW POOLS``, ``SHOW STATS``, ``SHOW CLIENTS``, ``SHOW SERVERS`` and ``SHOW DATABASES`` from the
admin console (the virtual database ``pgbouncer``; the login must be in ``admin_users`` or ``stats_users`` and
in the auth file: PgBouncer does not use auth_query for the console — the config agent19 writes has one,
:data:`agent19.ops.pgbouncer.config.CONSOLE_USER`, with its password in ``console.pgpass``).
The console speaks only the simple query protocol, so commands go through ``PQexec``. Pools are read
``samples`` times, ``interval_s`` apart: a pool is *waiting* when ``cl_waiting > 0`` in every reading (a
single reading catches bursts that clear by themselves), and *saturated* when its server connections in
use (``sv_active``) reach its pool size (``pool_size`` + ``reserve_pool`` of SHOW DATABASES).

A pool whose clients wait while it has no server connection at all is not short of connections: PgBouncer cannot
open one. The console does not say why; PgBouncer's log does (``logfile`` of SHOW CONFIG, read when it is on this
machine and readable): ``server login failed: … password authentication failed`` makes the pool
``login_failed`` ("authentication to the server failed", e.g. ``pgbouncer config`` re-run into a new directory
and its pgbouncer_auth.sql not applied; observed on PgBouncer 1.18); without the log it is ``no_server``, and
the fix says where to look. Neither blames the pool size.
"""

from __future__ import annotations

import re
import time
from pathlib import Path
from typing import Any

import psycopg
from pydantic import BaseModel, Field

from agent19.db.redact import password_of, redact_dsn, redact_text
from agent19.errors import DatabaseUnavailable, InputError


class PoolStatus(BaseModel):
    database: str
    user: str
    pool_mode: str | None = None
    cl_active: int
    cl_waiting: int = Field(description="clients waiting for a server connection (last reading)")
    waiting_in_readings: int = Field(description="readings in which cl_waiting > 0")
    sustained_waiting: bool
    max_wait_s: float = Field(description="longest current wait of a client (maxwait), seconds, over the readings")
    sv_active: int
    sv_idle: int
    sv_used: int
    pool_size: int | None = Field(default=None, description="pool_size + reserve_pool of SHOW DATABASES")
    saturation_pct: float | None = Field(default=None, description="server connections in use (sv_active) / pool "
                                         "size")
    status: str = Field(description="ok | waiting | saturated | login_failed (PgBouncer's log: the server rejects "
                        "its login) | no_server (clients wait, no server connection opens, the log not readable)")
    fix: str | None = None


class PgBouncerStatus(BaseModel):
    admin: str = Field(description="the admin console reached (password redacted)")
    version: str | None = None
    pools: list[PoolStatus]
    stats: list[dict[str, Any]] = Field(description="SHOW STATS rows (per database)")
    clients: int
    servers: int
    readings: int
    interval_s: float
    problems: int = Field(description="pools not ok")
    untrusted_data: bool = True


def _show(conn: psycopg.Connection[Any], what: str) -> list[dict[str, Any]]:
    res = conn.pgconn.exec_(f"SHOW {what}".encode())
    if res.status != psycopg.pq.ExecStatus.TUPLES_OK:
        raise InputError(f"SHOW {what} failed on the admin console: "
                         f"{(res.error_message or b'').decode(errors='replace').strip()}",
                         "the login must be in PgBouncer's admin_users or stats_users")
    names = [(res.fname(i) or b"").decode() for i in range(res.nfields)]
    rows = []
    for r in range(res.ntuples):
        row: dict[str, Any] = {}
        for i, n in enumerate(names):
            v = res.get_value(r, i)
            text = v.decode() if v is not None else None
            row[n] = int(text) if text is not None and text.lstrip("-").isdigit() else text
        rows.append(row)
    return rows


LOGIN_FAILED = re.compile(r"server login failed: (.*)$")
CLOSED = re.compile(r"(\S+)/(\S+)@\S+ closing because: login failed")
"""PgBouncer's log lines for a server connection whose login the server refused (1.18: ``WARNING server login
failed: FATAL password authentication failed for user "…"``, then ``S-0x…: db/user@host:port closing because:
login failed``)."""


def _login_failures(logfile: str | None, tail_bytes: int = 256 * 1024) -> dict[tuple[str, str], str] | None:
    """(database, user) -> the last ``server login failed`` reason in PgBouncer's log; None: no readable log."""
    if not logfile:
        return None
    try:
        with Path(logfile).open("rb") as f:
            f.seek(max(f.seek(0, 2) - tail_bytes, 0))
            text = f.read().decode(errors="replace")
    except OSError:
        return None
    found: dict[tuple[str, str], str] = {}
    reason = None
    for line in text.splitlines():
        if m := LOGIN_FAILED.search(line):
            reason = m.group(1).strip()[:200]
        elif (m := CLOSED.search(line)) and reason:
            found[(m.group(1), m.group(2))], reason = reason, None
    return found


def _no_server_fix(database: str, user: str, failures: dict[tuple[str, str], str] | None,
                   logfile: str | None) -> tuple[str, str]:
    """(status, fix) of a pool whose clients wait while it has no server connection."""
    why = (failures or {}).get((database, user))
    redo = ("if `agent19 pgbouncer config --write` was re-run into a new directory, apply that directory's "
            "pgbouncer_auth.sql as a superuser (it sets the lookup role's password to the userlist's), or start "
            "PgBouncer from the directory whose SQL was applied; for a userlist, re-run config after a password "
            "change")
    if why:
        return "login_failed", (f"authentication to the server failed for {user} (PgBouncer's log: server login "
                                f"failed: {why}): {redo}. The pool size is not the cause")
    where = f"PgBouncer's log ({logfile})" if logfile else "PgBouncer's log"
    return "no_server", (f"clients wait and no server connection opens: PgBouncer cannot connect or log in to the "
                         f"server - {where} says which ('server login failed': authentication to the server "
                         f"failed: {redo}). The pool size is not the cause")


def pgbouncer_status(admin_dsn: str, *, samples: int = 3, interval_s: float = 1.0) -> PgBouncerStatus:
    shown = redact_dsn(admin_dsn)
    try:
        conn = psycopg.connect(admin_dsn, autocommit=True, connect_timeout=5)
    except psycopg.OperationalError as exc:
        first = (str(exc).strip().splitlines() or [type(exc).__name__])[0]
        raise DatabaseUnavailable(f"cannot reach PgBouncer's admin console at {shown}: "
                                  f"{redact_text(first, password_of(admin_dsn))}",
                                  "give the DSN of the virtual database pgbouncer as a login of PgBouncer's auth "
                                  "file listed in admin_users, e.g. postgresql://pgbouncer_admin@127.0.0.1:6432/"
                                  "pgbouncer with PGPASSFILE=<dir>/console.pgpass (both written by agent19's "
                                  "pgbouncer config); a login only auth_query knows cannot reach the console") from None
    try:
        readings = []
        for i in range(max(samples, 1)):
            if i:
                time.sleep(interval_s)
            readings.append(_show(conn, "POOLS"))
        databases = {d["name"]: d for d in _show(conn, "DATABASES")}
        stats = _show(conn, "STATS")
        clients = len(_show(conn, "CLIENTS"))
        servers = len(_show(conn, "SERVERS"))
        version_rows = _show(conn, "VERSION")
        try:  # SHOW CONFIG is the admin_users' only (a stats_users login reads the pools, not the log's path)
            logfile = next((c.get("value") for c in _show(conn, "CONFIG") if c.get("key") == "logfile"), None) or None
        except InputError:
            logfile = None
    finally:
        conn.close()
    pools = []
    failures = _login_failures(logfile) if any((p.get("cl_waiting") or 0) for rd in readings for p in rd) else None
    for last in readings[-1]:
        if last["database"] == "pgbouncer":  # the admin console's own pseudo-pool
            continue
        key = (last["database"], last["user"])
        same = [p for rd in readings for p in rd if (p["database"], p["user"]) == key]
        waiting = sum(1 for p in same if (p.get("cl_waiting") or 0) > 0)
        max_wait = max((p.get("maxwait") or 0) + (p.get("maxwait_us") or 0) / 1e6 for p in same)
        db = databases.get(last["database"], {})
        size = (db.get("pool_size") or 0) + (db.get("reserve_pool") or 0) or None
        sat = round(100 * (last.get("sv_active") or 0) / size, 1) if size else None
        sustained = waiting == len(same) and len(same) > 1
        status = "waiting" if sustained else "saturated" if sat is not None and sat >= 100 else "ok"
        fix = None
        no_server = waiting and not any((p.get(k) or 0) for p in same for k in (
            "sv_active", "sv_idle", "sv_used", "sv_tested", "sv_login", "sv_active_cancel", "sv_being_canceled"))
        if no_server:
            status, fix = _no_server_fix(last["database"], last["user"], failures, logfile)
        elif status != "ok":
            fix = (f"clients wait for a server connection (up to {max_wait:.1f} s): find long transactions "
                   "(SHOW STATS avg_xact_time; idle in transaction sessions on the server) first; if the server "
                   "has room (agent19 pgbouncer config shows the budget), raise default_pool_size for "
                   f"{last['database']}; otherwise scale the server")
        pools.append(PoolStatus(
            database=last["database"], user=last["user"], pool_mode=last.get("pool_mode"),
            cl_active=last.get("cl_active") or 0, cl_waiting=last.get("cl_waiting") or 0,
            waiting_in_readings=waiting, sustained_waiting=sustained, max_wait_s=round(max_wait, 3),
            sv_active=last.get("sv_active") or 0, sv_idle=last.get("sv_idle") or 0, sv_used=last.get("sv_used") or 0,
            pool_size=size, saturation_pct=sat, status=status, fix=fix))
    version = next(iter(version_rows[0].values()), None) if version_rows else None
    return PgBouncerStatus(admin=shown, version=str(version) if version else None, pools=pools, stats=stats,
                           clients=clients, servers=servers, readings=len(readings), interval_s=interval_s,
                           problems=sum(1 for p in pools if p.status != "ok"))
