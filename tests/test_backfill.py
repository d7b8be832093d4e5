"""The batched backfill: keyset batches, checkpointed in the batch's own transaction, resumable after
SIGKILL with every row updated exactly once; progress reaches a real MCP client."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import psycopg
import pytest

from agent19.errors import InputError
from agent19.migrate.backfill.executor import BackfillSpec, batch_params, batch_query, run_backfill
from agent19.migrate.backfill.scripts import CHECKPOINT_DDL
from tests.mcp_client import stdio_session

ROOT = Path(__file__).parent.parent
BIG = 200_000


def _make_big(dsn: str, rows: int) -> None:
    """``big``: w to fill with v * 2 once (filling a NULL loses nothing, so no confirmation); a trigger counts
    the updates each row gets."""
    with psycopg.connect(dsn, autocommit=True) as c:
        c.execute(f"""
            CREATE TABLE big (id bigint PRIMARY KEY, v bigint NOT NULL, w bigint, updates int NOT NULL DEFAULT 0);
            INSERT INTO big (id, v) SELECT g, g FROM generate_series(1, {rows}) g;
            CREATE FUNCTION count_updates() RETURNS trigger LANGUAGE plpgsql AS $$
            BEGIN NEW.updates := OLD.updates + 1; RETURN NEW; END $$;
            CREATE TRIGGER count_updates BEFORE UPDATE ON big FOR EACH ROW EXECUTE FUNCTION count_updates();
        """)


def _cli(dsn: str, *args: str) -> list[str]:
    # `v >= 0` stays true after `w = v * 2` (so no end count): only the checkpoint keeps a row from being
    # updated twice (the trigger's count shows it)
    return [sys.executable, "-m", "agent19", "backfill", "big", "--set", "w = v * 2", "--where", "v >= 0",
            "--no-validate-end", "--name", "double_v",
            "--dsn", dsn, "--mode", "execute", "--format", "json", *args]


def _checkpoint(dsn: str) -> tuple[int, bool] | None:
    with psycopg.connect(dsn) as c:
        if c.execute("SELECT to_regclass('agent19_backfill_checkpoint') IS NULL").fetchone()[0]:
            return None
        row = c.execute("SELECT rows_scanned, finished_at IS NOT NULL FROM agent19_backfill_checkpoint "
                        "WHERE name = 'double_v'").fetchone()
    return (row[0], row[1]) if row else None


def kill_when(proc: subprocess.Popen[bytes], reached: Callable[[], bool], timeout_s: float, what: str) -> None:
    """SIGKILL ``proc`` as soon as ``reached()``; fail if it exits first or nothing happens in time."""
    try:
        deadline = time.monotonic() + timeout_s
        while not reached():
            assert proc.poll() is None, proc.stderr.read().decode() if proc.stderr else ""
            assert time.monotonic() < deadline, f"the {what} made no progress"
            time.sleep(0.005)
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait(10)
    finally:
        if proc.poll() is None:
            proc.kill()


def test_sigkill_midway_then_resume_updates_every_row_exactly_once(dsn: str) -> None:
    _make_big(dsn, BIG)
    proc = subprocess.Popen(_cli(dsn, "--batch-size", "1000", "--max-batch-size", "4000", "--pause-ms", "30"),
                            cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    kill_when(proc, lambda: (_checkpoint(dsn) or (0,))[0] >= 20_000, 120, "backfill")
    scanned, finished = _checkpoint(dsn) or (0, True)
    assert 0 < scanned < BIG and not finished, "killed too late to prove anything"
    with psycopg.connect(dsn, autocommit=True) as c:
        # the server ends the killed client's session (and rolls back its open batch) on its own
        for _ in range(500):
            if not c.execute("SELECT count(*) FROM pg_stat_activity WHERE application_name = 'agent19' "
                             "AND pid <> pg_backend_pid()").fetchone()[0]:
                break
            time.sleep(0.02)
        done = c.execute("SELECT count(*) FROM big WHERE updates > 0").fetchone()[0]
    assert done == scanned, "the checkpoint and the updated rows disagree after the kill"

    out = subprocess.run(_cli(dsn), cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr
    result = json.loads(out.stdout)
    assert result["resumed"] is True
    assert result["rows_updated"] == BIG and result["rows_updated_this_run"] == BIG - scanned
    with psycopg.connect(dsn) as c:
        per_count = dict(c.execute("SELECT updates, count(*) FROM big GROUP BY 1").fetchall())
        wrong = c.execute("SELECT count(*) FROM big WHERE w IS DISTINCT FROM id * 2").fetchone()[0]
    assert per_count == {1: BIG}, f"rows by number of updates: {per_count}"
    assert wrong == 0

    again = json.loads(subprocess.run(_cli(dsn), cwd=ROOT, capture_output=True, text=True, timeout=60).stdout)
    assert again["already_done"] is True and again["rows_updated_this_run"] == 0


def test_where_condition_composite_key_and_validation(dsn: str) -> None:
    with psycopg.connect(dsn, autocommit=True) as c:
        c.execute("CREATE TABLE lines (order_id int, line int, qty int, note text, PRIMARY KEY (order_id, line));"
                  "INSERT INTO lines SELECT g / 10, g % 10, g, CASE WHEN g % 2 = 0 THEN 'x' END "
                  "FROM generate_series(1, 5000) g")
        seen: list[tuple[float, float | None, str | None]] = []
        spec = BackfillSpec(table="public.lines", set="note = 'filled:' || qty", where="note IS NULL", batch_size=300)
        r = run_backfill(c, spec, lambda d, t, m: seen.append((d, t, m)))
        assert r.rows_updated == 2500 and r.rows_scanned == 5000 and r.remaining == 0
        assert r.batches >= 2 and not r.resumed
        assert c.execute("SELECT count(*) FROM lines WHERE note = 'filled:' || qty").fetchone()[0] == 2500
        assert seen and seen[-1][0] == seen[-1][1] and "rows/s" in (seen[0][2] or "")
        assert all(b[0] <= b[1] for b in seen if b[1])
        r2 = run_backfill(c, spec.model_copy(update={"restart": True}))
        assert r2.rows_updated == 0 and r2.rows_scanned == 5000 and not r2.already_done


def test_batches_walk_the_key_never_offset() -> None:
    q = batch_query("public.t", [("a", "integer"), ("b", "text")], "x = 1", "x IS NULL", after=True)
    text = q.as_string(None)
    assert "OFFSET" not in text.upper()
    assert '("a", "b") > (%(k0)s::integer, %(k1)s::text)' in text and "LIMIT %(n)s" in text


@pytest.mark.parametrize("bad", [
    {"set": "v = 1; DROP TABLE big"},
    {"set": "v = 1", "where": "true); DELETE FROM big; SELECT (1"},
    {"set": "v ="},
])
def test_set_and_where_must_be_one_update(dsn: str, bad: dict[str, str]) -> None:
    _make_big(dsn, 10)
    with psycopg.connect(dsn, autocommit=True) as c, pytest.raises(InputError):
        run_backfill(c, BackfillSpec(table="big", **bad))
    with psycopg.connect(dsn) as c:
        assert c.execute("SELECT count(*) FROM big WHERE updates = 0").fetchone()[0] == 10


def test_table_without_key_and_a_second_run_are_refused(dsn: str) -> None:
    _make_big(dsn, 10)
    with psycopg.connect(dsn, autocommit=True) as c:
        c.execute("CREATE TABLE heap (v int)")
        with pytest.raises(InputError, match="no primary key"):
            run_backfill(c, BackfillSpec(table="heap", set="v = 1"))
        with psycopg.connect(dsn, autocommit=True) as other:
            other.execute("SELECT pg_advisory_lock(hashtext('agent19_backfill:busy'))")
            with pytest.raises(InputError, match="already running"):
                run_backfill(c, BackfillSpec(table="big", set="v = 1", name="busy"))


def test_cli_refuses_outside_execute_mode(dsn: str) -> None:
    _make_big(dsn, 10)
    out = subprocess.run([sys.executable, "-m", "agent19", "backfill", "big", "--set", "v = 0", "--dsn", dsn],
                         cwd=ROOT, capture_output=True, text=True, timeout=60)
    assert out.returncode == 2 and "needs mode execute" in out.stderr


@pytest.mark.parametrize(("args", "said"), [
    (["big", "--set", "amount_new = 1"], 'column "amount_new" of relation "big" does not exist'),
    (["big", "--set", "w = amount"], 'column "amount" does not exist'),
    (["big", "--set", "w = v", "--where", "nosuch > 0"], 'column "nosuch" does not exist'),
])
def test_a_column_that_does_not_exist_is_unusable_input_not_problems_found(dsn: str, args: list[str],
                                                                          said: str) -> None:
    """README's example on a table without those columns: exit 2 with PostgreSQL's words about the user's SET or
    WHERE (not 1, "found problems", with agent19's own count query quoted)."""
    _make_big(dsn, 10)
    out = subprocess.run([sys.executable, "-m", "agent19", "backfill", *args, "--dsn", dsn, "--mode", "execute"],
                         cwd=ROOT, capture_output=True, text=True, timeout=60)
    assert out.returncode == 2 and said in out.stderr and "the backfill's statement cannot run" in out.stderr, (
        out.returncode, out.stderr)
    assert "LINE 1" not in out.stderr and "IS NOT NULL" not in out.stderr
    with psycopg.connect(dsn) as c:
        assert c.execute("SELECT count(*) FROM big WHERE updates = 0").fetchone()[0] == 10


async def test_progress_notifications_reach_an_mcp_client(dsn: str) -> None:
    _make_big(dsn, 20_000)
    seen: list[tuple[float, float | None, str | None]] = []

    async def on_progress(progress: float, total: float | None, message: str | None) -> None:
        seen.append((progress, total, message))

    async with stdio_session("--dsn", dsn, "--mode", "execute") as session:
        result = await session.call_tool(
            "run_backfill", {"table": "big", "set": "w = v + 1", "where": "v > 0", "batch_size": 500,
                             "max_batch_size": 1000},
            progress_callback=on_progress)
    assert not result.is_error, result.content
    assert result.structured_content["rows_updated"] == 20_000
    assert len(seen) >= 3
    assert [p for p, _, _ in seen] == sorted(p for p, _, _ in seen)
    assert seen[-1][0] == seen[-1][1] == 20_000
    assert any("ETA" in (m or "") for _, _, m in seen)


def test_a_batch_is_one_index_range_scan_not_a_probe_per_key(dsn: str) -> None:
    """The batch updates the key range (after, n-th key] through one index range scan; probing the index
    once per key (a join on the batch's keys) made backfills ~10x slower than one UPDATE."""
    _make_big(dsn, 20_000)
    with psycopg.connect(dsn, autocommit=True) as c:
        c.execute("ANALYZE big")
        c.execute(CHECKPOINT_DDL)
        q = batch_query("public.big", [("id", "bigint")], "w = v * 2", "w IS NULL", after=True).as_string(c)
        plan = "\n".join(r[0] for r in c.execute("EXPLAIN " + q, batch_params("x", ["5000"], 1000)).fetchall())
    update = plan[plan.index("Update on big"):]
    assert "Index Cond: ((id <= _a19_hi._a19_k0) AND (id > '5000'::bigint))" in update, plan
    assert "id = _a19_" not in update, plan


def test_a_key_with_duplicates_is_walked_without_missing_rows(dsn: str) -> None:
    """A walk key need not be unique: rows sharing the batch's last key value are all in that batch, none
    skipped by the next batch's `> last key`."""
    with psycopg.connect(dsn, autocommit=True) as c:
        c.execute("CREATE TABLE events (day int NOT NULL, n int NOT NULL, seen bool);"
                  "CREATE INDEX ON events (day);"
                  "INSERT INTO events SELECT g / 7, g, NULL FROM generate_series(1, 5000) g")
        r = run_backfill(c, BackfillSpec(table="events", set="seen = true", where="seen IS NULL", key=["day"],
                                         batch_size=10, min_batch_size=10, max_batch_size=10,
                                         max_replication_lag_s=None))
        assert c.execute("SELECT count(*) FROM events WHERE seen IS NULL").fetchone()[0] == 0
        assert r.rows_updated == 5000 and r.remaining == 0


def test_one_statement_updates_a_batch_and_moves_its_checkpoint_only_from_where_it_was(dsn: str) -> None:
    """A batch is one statement (one round trip with its BEGIN/COMMIT): it updates the batch and moves the
    checkpoint together, and does nothing when the checkpoint is no longer where this run left it."""
    _make_big(dsn, 1000)
    with psycopg.connect(dsn, autocommit=True) as c:
        c.execute(CHECKPOINT_DDL)
        c.execute("INSERT INTO agent19_backfill_checkpoint (name, table_name, set_sql, key_columns, last_key) "
                  "VALUES ('x', 'public.big', 'w = v * 2', ARRAY['id'], ARRAY['100'])")
        q = batch_query("public.big", [("id", "bigint")], "w = v * 2", "w IS NULL", after=True)
        assert c.execute(q, batch_params("x", ["100"], 50)).fetchone() == (50, 50, ["150"], 1)
        row = c.execute("SELECT last_key, rows_updated, rows_scanned, batches, finished_at IS NULL "
                        "FROM agent19_backfill_checkpoint").fetchone()
        assert row == (["150"], 50, 50, 1, True)
        assert c.execute("SELECT min(id), max(id), count(*) FROM big WHERE updates > 0").fetchone() == (101, 150, 50)
        # a stale position (another run moved it since): nothing updated, nothing moved
        assert c.execute(q, batch_params("x", ["100"], 50)).fetchone() == (0, 0, None, 0)
        assert c.execute("SELECT count(*) FROM big WHERE updates > 0").fetchone() == (50,)
        assert c.execute("SELECT last_key, batches FROM agent19_backfill_checkpoint").fetchone() == (["150"], 1)
        # no key left: the checkpoint is marked finished where it is
        assert c.execute(q, batch_params("x", ["1000"], 50)).fetchone() == (0, 0, None, 0)
        c.execute("UPDATE agent19_backfill_checkpoint SET last_key = ARRAY['1000']")
        assert c.execute(q, batch_params("x", ["1000"], 50)).fetchone() == (0, 0, None, 1)
        assert c.execute("SELECT last_key, batches, finished_at IS NOT NULL "
                         "FROM agent19_backfill_checkpoint").fetchone() == (["1000"], 1, True)


def test_a_run_goes_on_from_a_checkpoint_another_run_moved(dsn: str) -> None:
    """The procedure takes no advisory lock: when it moves the checkpoint between two of the executor's batches,
    the executor's next batch does nothing and it goes on from the new position — every row updated once."""
    _make_big(dsn, 5000)
    spec = BackfillSpec(table="big", set="w = v * 2", where="v >= 0", name="double_v", batch_size=500,
                        min_batch_size=500, max_batch_size=500, max_replication_lag_s=None, validate_end=False)
    moved: list[bool] = []

    def other_run(done: float, total: float | None, message: str | None) -> None:
        if done == 1000 and not moved:  # as the procedure's batch would: rows 1001-1500 and the checkpoint
            with psycopg.connect(dsn) as other:
                other.execute("UPDATE big SET w = v * 2 WHERE id > 1000 AND id <= 1500")
                other.execute("UPDATE agent19_backfill_checkpoint SET last_key = ARRAY['1500'], "
                              "rows_scanned = rows_scanned + 500, rows_updated = rows_updated + 500, "
                              "batches = batches + 1 WHERE name = 'double_v'")
            moved.append(True)

    with psycopg.connect(dsn, autocommit=True) as c:
        r = run_backfill(c, spec, other_run)
        assert moved and r.rows_scanned == 5000 and r.rows_updated == 5000 and r.rows_updated_this_run == 4500
        assert dict(c.execute("SELECT updates, count(*) FROM big GROUP BY 1").fetchall()) == {1: 5000}
