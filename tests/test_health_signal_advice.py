"""health's advice to cancel or end a session names only what this login may signal (r25c L2): an application
role (no pg_signal_backend, no pg_monitor) whose UPDATE waits on another role's SELECT … FOR UPDATE was told to
``pg_cancel_backend`` its own waiting UPDATE (the victim: cancelling it frees nothing) and to
``pg_terminate_backend`` the other role's session (refused: "permission denied to terminate process")."""

from __future__ import annotations

import threading
import time

import psycopg
from psycopg.conninfo import make_conninfo

from agent19.config import Settings
from agent19.db.connection import Database
from agent19.ops.health.check import health_check
from agent19.ops.health.thresholds import HealthThresholds
from tests.conftest import one, owner_login, run_sql, until


def test_advice_signals_only_what_the_login_may_and_says_who_can(dsn: str) -> None:
    app = owner_login(dsn)
    reporter = app.split("user=")[1].split()[0] + "_rep"
    run_sql(dsn, f"CREATE ROLE {reporter} LOGIN")
    run_sql(app, f"CREATE TABLE orders (id int PRIMARY KEY, status text); INSERT INTO orders VALUES (1, 'new'); "
                 f"GRANT SELECT, UPDATE ON orders TO {reporter}")
    holder = psycopg.connect(make_conninfo(dsn, user=reporter))
    victim = psycopg.connect(app)
    waiter = None
    try:
        holder.execute("SELECT * FROM orders WHERE id = 1 FOR UPDATE")  # idle in transaction, holding the row
        head = holder.info.backend_pid
        blocked = victim.info.backend_pid
        waiter = threading.Thread(target=lambda: victim.execute("UPDATE orders SET status = 'x' WHERE id = 1"),
                                  daemon=True)
        waiter.start()
        until("the UPDATE to wait", lambda: one(dsn, f"SELECT cardinality(pg_blocking_pids({blocked})) > 0"))
        time.sleep(1.5)
        db = Database(Settings.load(dsn=app, env={}))
        try:
            report = health_check(db, HealthThresholds(long_query_s=1, blocked_s=1),
                                  only=["long_running_queries", "blocked_sessions"])
        finally:
            db.close()
        chains = report.check("blocked_sessions")
        assert chains.objects == sorted([f"pid {head}", f"pid {blocked}"], key=lambda s: int(s.split()[1]))
        fix = chains.fix or ""
        assert f"SELECT pg_terminate_backend({head})" not in fix.split("ask")[0], fix  # this login cannot
        assert f"pid {head} (role {reporter}): this login may not signal it" in fix, fix
        assert "pg_signal_backend" in fix and f"member of role {reporter}" in fix
        long = report.check("long_running_queries")
        assert f"pid {blocked}" in long.objects, long
        assert f"pg_cancel_backend({blocked})" not in (long.fix or ""), long.fix  # the victim
        assert f"{blocked} wait for another session's lock" in (long.fix or ""), long.fix
    finally:
        holder.rollback()
        if waiter is not None:
            waiter.join(timeout=10)
        holder.close()
        victim.close()
