"""Health checks on sessions: connections, long queries, idle transactions, blocked chains, prepared transactions.

All read pg_stat_activity (and pg_locks, pg_prepared_xacts) now: a snapshot, no statistics window.
Without pg_read_all_stats (pg_monitor), other roles' sessions show no state, timing or query; the checks
then say how many sessions they could not see, and are ``unknown`` rather than ``ok`` if they find nothing.
"""

from __future__ import annotations

from typing import Any

from agent19.db.redact import shown_statement
from agent19.migrate.patterns.sqlnames import literal
from agent19.ops.health.model import Check, Status, grade, worst
from agent19.ops.health.probe import MONITOR, Probe
from agent19.units import human_duration

HIDDEN = "'<insufficient privilege>'"
CLIENTS = "backend_type = 'client backend' AND pid <> pg_backend_pid()"


def _hidden(probe: Probe) -> int:
    if probe.facts.read_all_stats:
        return 0
    # hidden rows show neither backend_type nor state; those with a user are sessions (or that user's workers)
    return int(probe.rows(f"SELECT count(*) AS n FROM pg_stat_activity WHERE query = {HIDDEN} "
                          "AND usename IS NOT NULL")[0]["n"])


def _partial(check: Check, hidden: int) -> Check:
    """Mark a check that could not see ``hidden`` sessions of other roles."""
    if hidden:
        check.needs = MONITOR
        check.message += f"; {hidden} session(s) of other roles not visible without {MONITOR}"
        if check.status == "ok":
            check.status = "unknown"
    return check


def _by_age(rows: list[dict[str, Any]], key: str, warning_s: float,
            critical_s: float) -> tuple[Status, dict[str, float]]:
    """The worst of ``rows`` by their age ``key`` in seconds, and the threshold as a check reports it."""
    return (worst([grade(r[key], warning_s, critical_s) for r in rows]),
            {"warning_s": warning_s, "critical_s": critical_s})


def _q(text: str | None) -> str:
    return shown_statement(text or "", 200)


def _signal(probe: Probe, pids: list[int], call: str) -> str:
    """``SELECT call(pid)`` for the pids this login may signal (PostgreSQL's rule: a superuser any; otherwise a
    session of a role it has the privileges of, or any with pg_signal_backend, never a superuser's), and who can
    signal the others — advice to run what would fail with "permission denied to … backend" is none."""
    parts = ["pid 0 is a prepared transaction: end it with ROLLBACK PREPARED (see prepared_transactions)"] \
        if 0 in pids else []  # no backend to signal
    pids = [p for p in pids if p]
    if not pids:
        return "; ".join(parts)
    rows = probe.rows(f"""
SELECT a.pid, a.usename AS "user", coalesce(t.rolsuper, false) AS superuser,
       me.rolsuper OR (a.usesysid IS NOT NULL AND NOT coalesce(t.rolsuper, false)
                       AND (pg_has_role(a.usesysid, 'USAGE') OR pg_has_role('pg_signal_backend', 'USAGE'))) AS may
  FROM pg_stat_activity a LEFT JOIN pg_roles t ON t.oid = a.usesysid
       CROSS JOIN (SELECT rolsuper FROM pg_roles WHERE rolname = current_user) me
 WHERE a.pid IN ({", ".join(str(int(p)) for p in pids)})""")
    found = {r["pid"]: r for r in rows}
    mine = [p for p in pids if p in found and found[p]["may"]]
    parts[:0] = [", ".join(f"SELECT {call}({p})" for p in mine)] if mine else []
    for p in pids:
        r = found.get(p)
        if r is None:
            parts.append(f"pid {p} has ended")
        elif not r["may"]:
            who = "a superuser" if r["superuser"] else \
                f"a superuser, a member of role {r['user']} or of pg_signal_backend"
            parts.append(f"pid {p} (role {r['user']}): this login may not signal it - ask {who} to run "
                         f"SELECT {call}({p})")
    return "; ".join(parts)


def connections(probe: Probe) -> list[Check]:
    t = probe.thresholds
    sql = f"""
SELECT count(*) FILTER (WHERE backend_type = 'client backend'
                           OR (query = {HIDDEN} AND usename IS NOT NULL)) AS used,
       current_setting('max_connections')::int AS max,
       current_setting('superuser_reserved_connections')::int AS reserved,
       count(*) FILTER (WHERE backend_type = 'client backend' AND state = 'active') AS active,
       count(*) FILTER (WHERE backend_type = 'client backend' AND state LIKE 'idle in transaction%') AS idle_in_tx
  FROM pg_stat_activity"""
    r = probe.rows(sql)[0]
    pct = round(100 * r["used"] / r["max"], 1) if r["max"] else None
    status = grade(pct, t.connections_warning_pct, t.connections_critical_pct)
    check = Check(
        check="connections", status=status, value={**r, "pct": pct},
        threshold={"warning_pct": t.connections_warning_pct, "critical_pct": t.connections_critical_pct},
        message=f"{r['used']} of max_connections {r['max']} client connections ({pct} %)", evidence=sql.strip(),
        fix=None if status == "ok" else "put a pooler (PgBouncer, transaction mode) in front, find idle sessions "
        "(SELECT usename, application_name, state, count(*) FROM pg_stat_activity GROUP BY 1, 2, 3 ORDER BY 4 DESC) "
        "and close them; raising max_connections needs a restart and memory",
    )
    if not probe.facts.read_all_stats:
        check.needs = MONITOR
        check.message += f" (other roles' sessions counted without their state: needs {MONITOR})"
    return [check]


def _sessions_over(probe: Probe, states: str, since: str, seconds: float) -> tuple[str, list[dict[str, Any]]]:
    sql = f"""
SELECT pid, usename AS "user", datname AS database, application_name, state,
       extract(epoch FROM now() - {since})::float8 AS seconds,
       extract(epoch FROM now() - xact_start)::float8 AS xact_seconds, wait_event_type, wait_event, query
  FROM pg_stat_activity
 WHERE {CLIENTS} AND state IN ({states}) AND now() - {since} >= make_interval(secs => {float(seconds)})
 ORDER BY {since} LIMIT 50"""
    rows = probe.rows(sql)
    for r in rows:
        r["query"] = _q(r["query"])
    return sql.strip(), rows


def long_running(probe: Probe) -> list[Check]:
    t = probe.thresholds
    sql, rows = _sessions_over(probe, "'active'", "query_start", t.long_query_s)
    status, threshold = _by_age(rows, "seconds", t.long_query_s, t.long_query_critical_s)
    waiting = [r["pid"] for r in rows if r["wait_event_type"] == "Lock"]
    running = [r["pid"] for r in rows if r["wait_event_type"] != "Lock"]
    fix = "look at them (EXPLAIN); cancel with " + _signal(probe, running, "pg_cancel_backend") if running else ""
    if waiting:  # the victim of a lock: cancelling it frees nothing
        fix += ("; " if fix else "") + (f"pid(s) {', '.join(map(str, waiting))} wait for another session's lock: "
                                        "see blocked_sessions for the session to end")
    check = Check(
        check="long_running_queries", status=status, value=rows, objects=[f"pid {r['pid']}" for r in rows],
        threshold=threshold, evidence=sql,
        message=(f"{len(rows)} queries running >= {human_duration(t.long_query_s)}, longest "
                 f"{human_duration(rows[0]['seconds'])} (pid {rows[0]['pid']})") if rows else
        f"no query running >= {human_duration(t.long_query_s)}",
        fix=None if not rows else f"{fix}; cap them with ALTER ROLE ... SET statement_timeout = '...'",
        untrusted_data=bool(rows),
    )
    return [_partial(check, _hidden(probe))]


def idle_in_transaction(probe: Probe) -> list[Check]:
    t = probe.thresholds
    sql, rows = _sessions_over(probe, "'idle in transaction', 'idle in transaction (aborted)'", "state_change",
                               t.idle_in_transaction_s)
    status, threshold = _by_age(rows, "seconds", t.idle_in_transaction_s, t.idle_in_transaction_critical_s)
    check = Check(
        check="idle_in_transaction", status=status, value=rows, objects=[f"pid {r['pid']}" for r in rows],
        threshold=threshold, evidence=sql,
        message=(f"{len(rows)} sessions idle in transaction >= {human_duration(t.idle_in_transaction_s)}, longest "
                 f"{human_duration(rows[0]['seconds'])} (pid {rows[0]['pid']}): they hold locks and the xmin "
                 "horizon (vacuum cannot remove rows they might see)") if rows else
        f"no session idle in transaction >= {human_duration(t.idle_in_transaction_s)}",
        fix=None if not rows else f"fix the application (a missing COMMIT); end them with "
        f"{_signal(probe, [r['pid'] for r in rows], 'pg_terminate_backend')}; guard with ALTER ROLE ... SET "
        "idle_in_transaction_session_timeout = '60s'",
        untrusted_data=bool(rows),
    )
    return [_partial(check, _hidden(probe))]


def blocked(probe: Probe) -> list[Check]:
    t = probe.thresholds
    since = "(SELECT min(l.waitstart) FROM pg_locks l WHERE l.pid = a.pid AND NOT l.granted)" \
        if probe.facts.version_num >= 140000 else "a.query_start"
    sql = f"""
WITH waiting AS (SELECT a.pid, pg_blocking_pids(a.pid) AS blockers,
                        extract(epoch FROM now() - coalesce({since}, a.query_start))::float8 AS waiting_s
                   FROM pg_stat_activity a WHERE a.wait_event_type = 'Lock')
SELECT a.pid, w.blockers, w.waiting_s, a.state, a.usename AS "user", a.wait_event,
       extract(epoch FROM now() - a.xact_start)::float8 AS xact_seconds, a.query
  FROM pg_stat_activity a LEFT JOIN waiting w ON w.pid = a.pid
 WHERE cardinality(w.blockers) > 0
    OR a.pid IN (SELECT unnest(blockers) FROM waiting)"""
    rows = {r["pid"]: r for r in probe.rows(sql)}
    for r in rows.values():
        r["query"] = _q(r["query"])
    waiting = [r for r in rows.values() if r["blockers"]]
    chains: list[dict[str, Any]] = []
    for r in sorted(waiting, key=lambda r: -(r["waiting_s"] or 0)):
        chain, seen, pid = [], set(), r["pid"]
        while pid in rows and pid not in seen:
            seen.add(pid)
            chain.append(pid)
            nxt = rows[pid]["blockers"]
            pid = nxt[0] if nxt else None
        if pid is not None and pid not in seen:
            chain.append(pid)  # a blocker we could not see
        chains.append({"pid": r["pid"], "waiting_s": r["waiting_s"], "chain": chain})
    # report each session once, by its longest chain
    chains = [c for c in chains if not any(c["pid"] in o["chain"][1:] for o in chains if o is not c)]
    judged = [c for c in chains if (c["waiting_s"] or 0) >= t.blocked_s][:20]
    status, threshold = _by_age(judged, "waiting_s", t.blocked_s, t.blocked_critical_s)

    def who(pid: int) -> str:
        r = rows.get(pid)
        if pid == 0:
            return "a prepared transaction (pid 0: see prepared_transactions)"
        if r is None:
            return f"pid {pid}"
        state = r["state"] or "state hidden"
        if not r["blockers"] and r["xact_seconds"] is not None:
            state += f", transaction open {human_duration(r['xact_seconds'])}"
        return f"pid {pid} ({state}: {r['query'][:80]})"

    text = [" <- blocked by ".join(who(p) for p in c["chain"]) for c in judged]
    heads = sorted({c["chain"][-1] for c in judged})
    objects = sorted({f"pid {p}" for c in judged for p in c["chain"]}, key=lambda s: int(s.split()[1]))
    return [_partial(Check(
        check="blocked_sessions", status=status, evidence=sql.strip(), objects=objects,
        value={"chains": [{**c, "text": s} for c, s in zip(judged, text, strict=True)],
               "sessions": [rows[p] for p in sorted({p for c in judged for p in c["chain"] if p in rows})]},
        threshold=threshold,
        message=("; ".join(text)) if judged else
        f"no session waiting >= {human_duration(t.blocked_s)} for another's lock"
        + (f" ({len(waiting)} waiting less)" if waiting else ""),
        fix=None if not judged else "the session at the head of each chain holds the lock: finish or end it - "
        + _signal(probe, heads, "pg_terminate_backend")
        + "; give migrations a lock_timeout so they queue behind nobody for long",
        untrusted_data=bool(rows),
    ), _hidden(probe))]


def prepared_transactions(probe: Probe) -> list[Check]:
    t = probe.thresholds
    sql = f"""
SELECT gid, owner, database, prepared::text, extract(epoch FROM now() - prepared)::float8 AS seconds
  FROM pg_prepared_xacts WHERE now() - prepared >= make_interval(secs => {float(t.prepared_xact_s)})
 ORDER BY prepared"""
    rows = probe.rows(sql)
    status, threshold = _by_age(rows, "seconds", t.prepared_xact_s, t.prepared_xact_critical_s)
    return [Check(
        check="prepared_transactions", status=status, value=rows, evidence=sql.strip(),
        objects=[f"{r['database']}: {r['gid']}" for r in rows],
        threshold=threshold,
        message=(f"{len(rows)} prepared transactions older than {human_duration(t.prepared_xact_s)}, oldest "
                 f"{human_duration(rows[0]['seconds'])}: they hold locks and the xmin horizon until resolved")
        if rows else f"no prepared transaction older than {human_duration(t.prepared_xact_s)}",
        fix=None if not rows else "ask the transaction manager that prepared them; else, in their database, "
        + "; ".join(f"COMMIT PREPARED {literal(r['gid'])} (or ROLLBACK PREPARED)" for r in rows[:3]),
        untrusted_data=bool(rows),
    )]
