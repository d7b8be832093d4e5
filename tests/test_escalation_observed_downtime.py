"""The downtime escalation's figure is the one a dry run measured on the server, not the planner's estimate.

A rewrite of 2,000 rows is estimated at a fraction of a second (no maintenance window). A volatile default
that sleeps 1 ms per row makes the real rewrite take seconds under AccessExclusiveLock: the dry run
measures it (and a second session sees the lock in pg_locks whenever the statement runs), and the plan given that dry
run escalates downtime citing exactly the measured duration and the observed lock."""

from __future__ import annotations

import json
import threading
import time
from pathlib import Path

import psycopg

from agent19.units import human_duration
from tests.conftest import owner_login, run_sql
from tests.test_runbook import agent19

SETUP = """
CREATE TABLE items (id bigint PRIMARY KEY, price numeric);
INSERT INTO items SELECT g, g FROM generate_series(1, 2000) g;
CREATE FUNCTION slow_now() RETURNS timestamptz LANGUAGE plpgsql VOLATILE
    AS $$ BEGIN PERFORM pg_sleep(0.001); RETURN clock_timestamp(); END $$;
ANALYZE items;
"""
SQL = "ALTER TABLE items ADD COLUMN seen timestamptz DEFAULT slow_now()"


def _watch(dsn: str, stop: threading.Event, seen: list[bool]) -> None:
    """Poll from another session: each time the migration's ALTER is running on the target, whether its session
    holds the AccessExclusiveLock on items then."""
    with psycopg.connect(dsn, autocommit=True) as conn:
        while not stop.is_set():
            for (held,) in conn.execute(
                    "SELECT EXISTS (SELECT FROM pg_locks l WHERE l.pid = a.pid AND l.relation = 'items'::regclass "
                    "AND l.mode = 'AccessExclusiveLock' AND l.granted) FROM pg_stat_activity a "
                    "WHERE a.datname = current_database() AND a.state = 'active' AND a.query = %s", (SQL,)):
                seen.append(held)
            time.sleep(0.02)


def test_the_downtime_escalation_cites_the_lock_time_the_dry_run_measured(dsn, tmp_path: Path):
    app = owner_login(dsn)  # the application's role: owns the table and applies the migration
    run_sql(app, SETUP)

    estimated = json.loads(agent19("plan", "--sql", SQL, "--dsn", app, "--format", "json",
                                   "--write-sample-seconds", "0").stdout)
    assert estimated["operations"][0]["estimated_seconds"] < 1
    assert [e["kind"] for e in estimated["escalations"]] == []  # the estimate alone needs no window

    stop, seen = threading.Event(), []
    watcher = threading.Thread(target=_watch, args=(dsn, stop, seen))
    watcher.start()
    try:
        dry = agent19("dry-run", "--sql", SQL, "--dsn", app, "--mode", "dry-run", "--format", "json")
    finally:
        stop.set()
        watcher.join()
    assert dry.returncode == 0, dry.stdout + dry.stderr
    result = json.loads(dry.stdout)
    statement = result["statements"][0]
    measured = statement["duration_ms"] / 1000
    assert measured >= 1.5  # 2,000 rows × 1 ms
    assert {(lk["relation"], lk["mode"]) for lk in statement["locks"]} >= {("public.items", "AccessExclusiveLock")}
    assert statement["observed_rewrite"] is True
    # another session saw the statement the dry run timed run under that lock: the measured time is time the
    # lock was held (at most the first sighting may fall between the statement's start and its lock)
    assert seen and seen[1:] and all(seen[1:]), seen
    (tmp_path / "dry.json").write_text(dry.stdout)

    plan = json.loads(agent19("plan", "--sql", SQL, "--dsn", app, "--format", "json", "--write-sample-seconds",
                              "0", "--dry-run-result", str(tmp_path / "dry.json")).stdout)
    op = plan["operations"][0]
    assert op["figures"] == "observed" and op["estimated_seconds"] == measured
    assert [e["kind"] for e in plan["escalations"]] == ["downtime"]
    evidence = plan["escalations"][0]["evidence"]
    assert evidence == [f"operation 1 (add_column_volatile_default on public.items, ~2,000 rows): AccessExclusiveLock "
                        f"(observed in the dry run) blocks reads and writes for ~{human_duration(measured)} (measured "
                        "in the dry run)"], evidence
    assert "product lead" in plan["escalations"][0]["reviewers"]
