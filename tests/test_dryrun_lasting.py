"""What a rolled-back dry run leaves on the target is measured, not assumed (hostile review r27 k06, k15, k05).

As an application role (owner of the tables, not a superuser), through the library as `agent19 dry-run` runs it:

* k06: ``nextval`` is not transactional. A backfill-sized INSERT used up an ``integer`` serial near its end (the
  application's next INSERT then failed) and the dry run said "target unchanged: yes"; a 20,000-row INSERT moved
  a sequence 20,000 forward and grew the table and its index, unmentioned. Now each is measured and reported
  with its numbers; reaching the end (or a noticeable share of what was left) is an error.
* k15: ANALYZE (and CREATE INDEX, through the heap's statistics) write ``pg_class.reltuples`` in place: after a
  DELETE in the same transaction the rolled-back dry run left the planner believing the table empty. Now ANALYZE
  runs in the scratch database only; a statistic changed anyway (CREATE INDEX) is reported, with the remedy.
* k05: after a statement failed, the dry run went on running the rest under the first statement's ACCESS
  EXCLUSIVE lock, then reported that lock held "for 0 ms". Now the transactional part stops at the first error
  (a migration in one transaction would) and a lock is reported for as long as it was held (until the rollback).
"""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from concurrent.futures import TimeoutError as FutureTimeout
from typing import Any

import psycopg
import pytest

from agent19.db.connection import Database
from tests.conftest import session_settings
from tests.scratch_dryruns import owner
from tests.trial_victims import dry_run_as as _dry_run

SETUP = """
CREATE TABLE tickets (id serial PRIMARY KEY, t text);
SELECT setval('tickets_id_seq', 2147480000);
CREATE TABLE orders (id serial PRIMARY KEY, note text);
INSERT INTO orders (note) SELECT 'o' || g FROM generate_series(1, 1000) g;
CREATE TABLE cust4 (id int PRIMARY KEY, name text);
INSERT INTO cust4 SELECT g, 'name ' || g FROM generate_series(1, 20000) g;
ANALYZE cust4;
"""




def _one(login: str, sql: str) -> Any:
    with psycopg.connect(login, autocommit=True) as c:
        return c.execute(sql).fetchone()


@pytest.fixture
def app(dsn: str) -> str:
    return owner(dsn, SETUP)


def test_a_sequence_used_up_by_the_dry_run_is_an_error_with_its_numbers(app):
    r = _dry_run(app, "INSERT INTO tickets (t) SELECT 'backfill' FROM generate_series(1, 10000);")
    assert not r.target_unchanged and not r.passed, r.summary
    (seq,) = [d for d in r.target_differences if d.kind == "sequence"]
    assert seq.object == "public.tickets_id_seq" and seq.severity == "error", seq
    assert "reached its maximum" in seq.detail and "advanced by 3,647" in seq.detail, seq.detail
    assert any(f.kind == "target_changed" and "tickets_id_seq" in f.message for f in r.findings), r.findings


def test_a_rolled_back_insert_is_reported_as_sequence_advance_and_growth(app):
    size = _one(app, "SELECT pg_relation_size('orders_pkey')")[0]
    r = _dry_run(app, "INSERT INTO orders (note) SELECT 'n' || g FROM generate_series(1, 20000) g;")
    assert r.passed and not r.target_unchanged, r.summary  # a small share of integer's range: reported, no error
    (seq,) = [d for d in r.target_differences if d.kind == "sequence"]
    assert seq.severity == "warning" and "advanced by 20,000" in seq.detail and "% of integer's range" in seq.detail
    grown = {d.object: d for d in r.target_differences if d.kind == "size"}
    assert "public.orders" in grown and "public.orders_pkey" in grown, r.target_differences
    assert grown["public.orders_pkey"].severity == "warning" and "dead" in grown["public.orders"].detail
    assert _one(app, "SELECT pg_relation_size('orders_pkey')")[0] > size  # as measured: the index stays grown


def test_a_rolled_back_trial_says_how_far_it_moved_a_sequence(app):
    """The other faces that run a statement rolled back (``sql --mode dry-run``, ``explain --analyze``) share
    :func:`agent19.safety.aftermath.trial`: it says the amount, and fails when the range was used up."""
    from agent19.errors import InputError
    from agent19.safety import aftermath

    db = Database(session_settings(dsn=app, mode="dry-run"))
    try:
        with aftermath.trial(db) as (conn, found):
            conn.execute("INSERT INTO orders (note) SELECT 'n' FROM generate_series(1, 500)")
        assert len(found.advanced) == 1 and "advanced by 500 (1,000 -> 1,500)" in found.advanced[0], found
        assert not found.errors and any("advanced by 500" in line for line in found.lines()), found
        with pytest.raises(InputError, match="reached its maximum"), aftermath.trial(db) as (conn, found):
            conn.execute("INSERT INTO tickets (t) SELECT 'n' FROM generate_series(1, 10000)")
    finally:
        db.close()


def test_analyze_in_a_dry_run_leaves_the_planner_figures_alone(app):
    r = _dry_run(app, "DELETE FROM cust4 WHERE id > 0;\nANALYZE cust4;\n")
    assert r.statements[1].ran_in in ("scratch", "skipped"), r.statements[1]
    assert _one(app, "SELECT reltuples FROM pg_class WHERE oid = 'cust4'::regclass")[0] == 20000
    assert not [d for d in r.target_differences if d.kind == "statistics"], r.target_differences


def test_statistics_written_in_place_by_create_index_are_reported(app):
    r = _dry_run(app, "DELETE FROM cust4 WHERE id > 0;\nCREATE INDEX cust4_name_idx ON cust4 (name);\n")
    assert _one(app, "SELECT reltuples FROM pg_class WHERE oid = 'cust4'::regclass")[0] == 0  # PostgreSQL's doing
    (stats,) = [d for d in r.target_differences if d.kind == "statistics"]
    assert stats.object == "public.cust4" and stats.severity == "error", stats
    assert "reltuples 20,000 -> 0" in stats.detail and "ANALYZE public.cust4" in stats.detail, stats.detail
    assert not r.target_unchanged and not r.passed, r.summary


def _sleeping(dsn: str) -> list[tuple]:
    """Sessions, in any database of the server, running the statement the target never runs."""
    with psycopg.connect(dsn, autocommit=True) as c:
        return c.execute("SELECT pid, datname FROM pg_stat_activity WHERE query LIKE '%pg_sleep(3600)%' "
                         "AND pid <> pg_backend_pid()").fetchall()


def test_the_transactional_part_stops_at_the_first_error_and_locks_are_held_until_the_rollback(app, dsn):
    """The statements after the failing one never run on the target, and their replay in the scratch database
    (the re-observation ahead replays up to the UPDATE) is cancelled rather than waited for: the dry run ends
    although statement 4 would sleep for an hour (statement_timeout 10min), and no session is left running it."""
    sql = ("ALTER TABLE cust4 ADD COLUMN vip boolean;\nSELECT pg_sleep(0.6);\nSELECT 1/0;\n"
           "SELECT pg_sleep(3600);\nUPDATE cust4 SET vip = true;\n")
    with ThreadPoolExecutor(1) as pool:
        running = pool.submit(_dry_run, app, sql, statement_timeout="10min")
        try:  # a safety net only: were the sleep run or waited for, the dry run would not end for 10 minutes
            r = running.result(timeout=120)
        except FutureTimeout:
            left = _sleeping(dsn)
            with psycopg.connect(dsn, autocommit=True) as c:
                for pid, _ in left:
                    c.execute("SELECT pg_cancel_backend(%s)", (pid,))
            pytest.fail(f"the dry run still waited after 120 s, for the statement after the failure: {left}")
    assert _sleeping(dsn) == []
    alter, sleep, fail, after1, after2 = r.statements
    assert fail.error is not None and not r.passed
    for res in (after1, after2):
        assert res.ran_in == "skipped" and res.error is None and res.duration_ms is None, res
        assert res.note and "statement 3 failed" in res.note, res.note
    assert r.longest_lock is not None and r.longest_lock.relation == "public.cust4", r.longest_lock
    assert r.longest_lock.mode == "AccessExclusiveLock" and r.longest_lock.duration_ms >= 600, r.longest_lock
    assert "held" in r.summary, r.summary
