"""capacity_plan and capacity_sample on a real server: growth planted in a created_at column (linear and
compound) is found again within 10 %; samples recorded by the CLI across inserts are fitted; rates over a
window count the rows a writer really inserted; the document has no placeholder; a plain role gets a plan.
"""

from __future__ import annotations

import json
import re
import stat
import subprocess
import sys
import threading
import time
import uuid
from datetime import datetime, timedelta
from pathlib import Path

import psycopg
import pytest
from psycopg.conninfo import make_conninfo

from agent19.config import Settings
from agent19.db.connection import Database
from agent19.ops.capacity.measure import measure_rates, pss_schema
from agent19.ops.capacity.model import DAYS_PER_MONTH, CapacityPlan
from agent19.ops.capacity.plan import capacity_plan
from agent19.ops.health.probe import Probe
from agent19.ops.health.thresholds import HealthThresholds
from tests.conftest import run_sql
from tests.mcp_client import stdio_session
from tools.throwaway import ThrowawayServer

ROOT = Path(__file__).parent.parent


def _db(dsn: str) -> Database:
    # the test login is a superuser: counting creation columns scans rows as it (review r29 F4: opted in here)
    return Database(Settings.load(dsn=dsn, env={}, allow_privileged_reads=True))


def plan(dsn: str, **kw: object) -> CapacityPlan:
    db = _db(dsn)
    try:
        return capacity_plan(db, **kw)  # type: ignore[arg-type]
    finally:
        db.close()


def _month_start(d: datetime) -> datetime:
    return d.replace(day=1, hour=0, minute=0, second=0, microsecond=0)


def _add_months(d: datetime, n: int) -> datetime:
    y, m = divmod(d.month - 1 + n, 12)
    return d.replace(year=d.year + y, month=m + 1)


def plant(dsn: str, increments: list[float]) -> int:
    """Rows in ``events.created_at``: ``increments[k]`` in month k (the last is this month, pro rata to now)."""
    with psycopg.connect(dsn, autocommit=True) as c:
        c.execute("CREATE TABLE events (id bigserial PRIMARY KEY, created_at timestamptz NOT NULL DEFAULT now(), "
                  "kind text)")
        row = c.execute("SELECT now() AT TIME ZONE 'UTC'").fetchone()
        assert row
        now: datetime = row[0]
        this = _month_start(now)
        total = 0
        for k, inc in enumerate(increments):
            start = _add_months(this, k - len(increments) + 1)
            end = _add_months(start, 1) if start < this else now
            if start == this:
                inc *= (now - this) / (_add_months(this, 1) - this)
            n = round(inc)
            total += n
            if n:
                c.execute("INSERT INTO events (created_at, kind) SELECT (%s::timestamp + (%s::timestamp - "
                          "%s::timestamp) * (g - 0.5) / %s) AT TIME ZONE 'UTC', 'planted' "
                          "FROM generate_series(1, %s) g", (start, end, start, n, n))
        c.execute("ANALYZE events")
    return total


def test_linear_growth_planted_in_created_at_is_found_within_10_percent(dsn: str) -> None:
    rows = plant(dsn, [1000.0] * 13)
    p = plan(dsn, window_s=0, disk_size=1 << 30)
    g = p.growth
    assert g.source == "creation timestamp columns"
    assert any("public.events.created_at" in e for e in g.evidence)
    assert g.rows_fit is not None and g.rows_fit.method == "linear", g.rows_fit
    # a calendar month is 28–31 days: the planted 1,000 a month is 1,000 × 30.44 / days-in-month per average month
    assert abs(g.rows_fit.per_month - 1000) <= 100, g.rows_fit
    assert g.rows_fit.error_pct is not None and g.rows_fit.error_pct < 5
    twelve = next(pr for pr in g.projections if pr.months == 12)
    assert twelve.rows is not None and abs(twelve.rows - (rows + 12_000)) <= 1_200
    assert [pr.months for pr in g.projections] == [3, 6, 12]
    # days to 80 % of the disk follow from the fitted rate and the cluster's data now
    assert g.fit is not None and g.days_to_80_pct is not None and g.days_to_100_pct is not None
    extra = 0.8 * (1 << 30) - p.current.cluster_bytes
    if g.fit.method == "linear":
        assert g.days_to_80_pct == pytest.approx(extra / g.fit.per_month * DAYS_PER_MONTH, rel=0.01)
    assert g.days_to_100_pct > g.days_to_80_pct


def test_compound_growth_is_fitted_as_compound_within_10_percent(dsn: str) -> None:
    cum = [10_000 * 1.1**k for k in range(13)]
    plant(dsn, [cum[0]] + [cum[k] - cum[k - 1] for k in range(1, 13)])
    g = plan(dsn, window_s=0).growth
    assert g.rows_fit is not None and g.rows_fit.method == "compound_monthly", g.rows_fit
    assert abs(g.rows_fit.monthly_growth_pct - 10) <= 1, g.rows_fit
    assert "linear" in g.rows_fit.rejected and g.rows_fit.rejected["linear"] > g.rows_fit.error_pct


def test_samples_recorded_by_the_cli_across_inserts_are_fitted(dsn: str, pg: ThrowawayServer,
                                                               tmp_path: Path) -> None:
    run_sql(dsn, "CREATE TABLE t (id bigserial PRIMARY KEY, body text)")

    def sample() -> dict:
        done = subprocess.run([sys.executable, "-m", "agent19", "--dsn", dsn, "--data-dir", str(tmp_path),
                               "capacity", "sample", "--format", "json"], capture_output=True, text=True, cwd=ROOT)
        assert done.returncode == 0, done.stderr
        return json.loads(done.stdout)

    first = sample()
    sizes = [first["sample"]["database_bytes"]]
    for _ in range(2):
        run_sql(dsn, "INSERT INTO t (body) SELECT repeat('x', 200) FROM generate_series(1, 20000)")
        time.sleep(0.05)
        sizes.append(sample()["sample"]["database_bytes"])
    with psycopg.connect(dsn) as c:
        row = c.execute("SELECT system_identifier::text FROM pg_control_system()").fetchone()
    assert row and first["key"] == row[0]
    path = Path(first["path"])
    assert path == tmp_path / "capacity" / f"{row[0]}.jsonl"
    assert stat.S_IMODE(path.stat().st_mode) == 0o600 and len(path.read_text().splitlines()) == 3
    assert sizes[0] < sizes[1] < sizes[2]
    # recorded seconds apart: dated 4 days apart, as daily cron samples over 8 days would be
    lines = [json.loads(x) for x in path.read_text().splitlines()]
    taken = datetime.fromisoformat(lines[-1]["at"].replace("Z", "+00:00"))
    for k, line in enumerate(lines):
        line["at"] = (taken - timedelta(days=4 * (len(lines) - 1 - k))).strftime("%Y-%m-%dT%H:%M:%S.%f")[:-3] + "Z"
    path.write_text("".join(json.dumps(x) + "\n" for x in lines) + "{not json\n")  # a torn line is skipped
    g = plan(dsn, window_s=0, data_dir=tmp_path).growth
    assert g.source == "samples" and g.fit is not None and g.fit.points == 3
    assert [o.bytes for o in g.observed] == sizes
    assert g.fit.per_month > 0 and g.fit.error_pct is not None
    assert any("1 unreadable line" in n for n in g.notes)


def test_rates_are_deltas_over_the_window_not_lifetime_averages(dsn: str) -> None:
    # no autovacuum/autoanalyze on w: their transactions would commit in this database during the window
    run_sql(dsn, "CREATE TABLE w (id bigserial PRIMARY KEY, v int) WITH (autovacuum_enabled = false)")
    run_sql(dsn, "INSERT INTO w (v) SELECT g FROM generate_series(1, 5000) g")  # before: not in the window

    def writer() -> None:
        time.sleep(0.5)
        with psycopg.connect(dsn, autocommit=True) as c:
            for _ in range(40):
                c.execute("INSERT INTO w (v) SELECT g FROM generate_series(1, 10) g")
        # closing the session flushes its statistics

    db = _db(dsn)
    probe = Probe.open(db, HealthThresholds(statement_timeout_ms=10_000))
    try:
        schema, _ = pss_schema(probe)
        t = threading.Thread(target=writer)
        t.start()
        rates = measure_rates(probe, 3.0, schema)
        t.join()
    finally:
        probe.close()
        db.close()
    assert rates.rows_inserted_per_s * rates.window_s == pytest.approx(400, rel=0.02)
    assert 40 <= rates.commits_per_s * rates.window_s <= 50  # the 40 writes, plus what background workers commit
    assert rates.top_writers and rates.top_writers[0]["table"] == "public.w"
    if schema:
        assert 40 <= (rates.statements_per_s or 0) * rates.window_s <= 45  # agent19's own are left out


def test_the_document_has_no_placeholder_and_every_section(dsn: str) -> None:
    plant(dsn, [500.0] * 4)
    p = plan(dsn, window_s=1, disk_size=10 << 30)
    md = p.markdown
    for section in ("# Database Capacity Plan", "## Current State", "## Growth Projections", "## Scaling Triggers",
                    "## Optimization Thresholds", "## Scaling Options", "## Recommendations"):
        assert section in md
    assert not re.search(r"\[X|\{\{|\{%|\bNone\b|\$\[", md), md
    trig = {t.trigger: t for t in p.triggers}
    assert trig["CPU"].status == "unknown" and trig["CPU"].how_to_measure
    assert trig["connections"].status == "ok" and trig["storage"].status == "ok"
    assert {v.technique for v in p.thresholds} >= {"sharding", "read replicas", "materialized views",
                                                   "connection pooling", "partitioning", "caching layer"}
    assert {v.verdict for v in p.thresholds if v.technique in ("sharding", "partitioning")} == {"not_yet"}
    small = plan(dsn, window_s=0, disk_size=1 << 20)  # a 1 MB disk is already past 80 %
    st = next(t for t in small.triggers if t.trigger == "storage")
    assert st.status == "triggered" and small.growth.days_to_80_pct == 0
    assert any(r.startswith("now: storage") for r in small.recommendations)


def test_without_growth_evidence_no_rate_is_made_up(dsn: str, tmp_path: Path) -> None:
    run_sql(dsn, "CREATE TABLE plain_table (id int)")
    p = plan(dsn, window_s=0, disk_size=1 << 30, data_dir=tmp_path)
    assert p.growth.source == "none" and p.growth.fit is None and p.growth.projections == []
    assert p.growth.days_to_80_pct is None and any("capacity sample" in n for n in p.growth.notes)
    assert "No projection" in p.markdown


def test_a_plain_role_gets_a_plan_and_is_told_what_it_cannot_see(dsn: str) -> None:
    role = f"cap_{uuid.uuid4().hex[:8]}"
    plant(dsn, [100.0] * 3)
    run_sql(dsn, f"CREATE ROLE {role} LOGIN; GRANT SELECT ON events TO {role}")
    try:
        p = plan(make_conninfo(dsn, user=role), window_s=0)
        assert p.current.largest[0].name in ("public.events", "public.events_pkey")
        assert p.growth.source == "creation timestamp columns"
        if p.current.system_identifier is None:
            assert any("pg_control_system" in x for x in p.current.cannot_see)
    finally:
        run_sql(dsn, f"REVOKE ALL ON events FROM {role}; DROP ROLE {role}")


def test_cli_errors_and_help(dsn: str) -> None:
    bad = subprocess.run([sys.executable, "-m", "agent19", "--dsn", dsn, "capacity", "--disk-size", "lots"],
                         capture_output=True, text=True, cwd=ROOT)
    assert bad.returncode == 2 and "--disk-size 500GB" in bad.stderr
    helped = subprocess.run([sys.executable, "-m", "agent19", "capacity", "--help"], capture_output=True,
                            text=True, cwd=ROOT)
    assert helped.returncode == 0 and "--disk-size" in helped.stdout and "--window" in helped.stdout
    assert "sample" in helped.stdout  # `agent19 capacity` is a command and the group of `capacity sample`
    sample_help = subprocess.run([sys.executable, "-m", "agent19", "capacity", "sample", "--help"],
                                 capture_output=True, text=True, cwd=ROOT)
    assert sample_help.returncode == 0 and "cron" in sample_help.stdout


async def test_mcp_capacity_plan(dsn: str, tmp_path: Path) -> None:
    plant(dsn, [200.0] * 3)
    async with stdio_session("--dsn", dsn, "--data-dir", str(tmp_path)) as session:
        s = await session.call_tool("capacity_sample", {})
        assert not s.is_error, s.content
        r = await session.call_tool("capacity_plan", {"window": 0, "disk_size": "2GB"})
        assert not r.is_error, r.content
        out = r.structured_content
        assert out is not None and out["growth"]["disk_size"] == 2 << 30
        assert out["markdown"].startswith("# Database Capacity Plan") and out["untrusted_data"] is True
    assert (tmp_path / "capacity" / f"{out['current']['system_identifier']}.jsonl").exists()


def test_assess_optimization_measures_what_the_caller_did_not_give(dsn: str) -> None:
    rows = plant(dsn, [300.0] * 5)
    run_sql(dsn, "CREATE EXTENSION pg_stat_statements")  # queries/s come from it
    done = subprocess.run([sys.executable, "-m", "agent19", "--dsn", dsn, "assess", "--window", "1",
                           "--execution-ms", "40", "--have-explain", "--format", "json"],
                          capture_output=True, text=True, cwd=ROOT)
    assert done.returncode == 0, done.stderr
    a = json.loads(done.stdout)
    assert a["filled"]["table_rows"] == rows and a["filled"]["connections"] >= 1
    assert "execution_ms" not in a["filled"] and a["measured"] is True and "qps" in a["filled"]
    verdicts = {t["technique"]: t["verdict"] for t in a["thresholds"]}
    assert verdicts["sharding"] == verdicts["partitioning"] == verdicts["connection pooling"] == "not_yet"
    assert verdicts["caching layer"] == "unknown"
    part = next(t for t in a["thresholds"] if t["technique"] == "partitioning")
    assert f"{rows:,} rows" in part["measured"] and "creation timestamp column: yes" in part["measured"]
    given = subprocess.run([sys.executable, "-m", "agent19", "--dsn", dsn, "assess", "--table-rows", "7",
                            "--no-measure", "--format", "json"], capture_output=True, text=True, cwd=ROOT)
    assert json.loads(given.stdout)["thresholds"] == []


def test_thresholds_turn_warranted_past_the_charter_numbers() -> None:
    from agent19.optimize.assess import Measured, charter_thresholds

    big = charter_thresholds(Measured(largest_table="public.events", largest_table_rows=150_000_000,
                                      largest_table_bytes=900 << 30, database_bytes=2 << 40,
                                      largest_has_time_column=True, rows_written_per_s=500, read_qps=2500,
                                      slowest_mean_ms=1500, connections=150, window_s=60))
    verdicts = {t.technique: t.verdict for t in big}
    assert verdicts == {"sharding": "warranted_now", "read replicas": "warranted_now",
                        "materialized views": "warranted_now", "connection pooling": "warranted_now",
                        "partitioning": "warranted_now", "caching layer": "unknown"}
    small = charter_thresholds(Measured(largest_table_rows=90_000_000, database_bytes=1 << 30, read_qps=999,
                                        slowest_mean_ms=999, connections=100, largest_has_time_column=True))
    assert {t.technique: t.verdict for t in small if t.technique != "caching layer"} == dict.fromkeys(
        ("sharding", "read replicas", "materialized views", "connection pooling", "partitioning"), "not_yet")


def test_samples_in_a_table_of_the_target_only_when_allowed(dsn: str, tmp_path: Path) -> None:
    run_sql(dsn, "CREATE TABLE t (id bigserial PRIMARY KEY, body text)")

    def sample(*mode: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run([sys.executable, "-m", "agent19", "--dsn", dsn, "--data-dir", str(tmp_path), *mode,
                               "capacity", "sample", "--store", "table", "--format", "json"],
                              capture_output=True, text=True, cwd=ROOT)

    refused = sample()
    assert refused.returncode == 2 and "--mode execute" in refused.stderr
    with psycopg.connect(dsn) as c:
        row = c.execute("SELECT to_regclass('agent19.capacity_samples')").fetchone()
    assert row == (None,)  # nothing was created in read-only mode
    for _ in range(2):
        done = sample("--mode", "execute")
        assert done.returncode == 0, done.stderr
        run_sql(dsn, "INSERT INTO t (body) SELECT repeat('y', 300) FROM generate_series(1, 20000)")
    assert json.loads(done.stdout)["path"] == "agent19.capacity_samples"
    assert json.loads(done.stdout)["samples_for_database"] == 2
    assert not (tmp_path / "capacity").exists()  # nothing in the data directory
    g = plan(dsn, window_s=0, data_dir=tmp_path).growth  # read-only reads the table
    # read from the table; two samples seconds apart are no trend yet
    assert g.source == "samples" and g.fit is None and g.not_known_yet and len(g.observed) == 2
    assert "agent19.capacity_samples" in g.evidence[0] and g.observed[0].bytes < g.observed[1].bytes


def test_every_server_version_gets_a_plan(dsn_any: str) -> None:
    plant(dsn_any, [100.0] * 3)
    p = plan(dsn_any, window_s=1)
    assert p.current.rates is not None and p.growth.source == "creation timestamp columns"
    if p.current.statements_unavailable:  # the embedded server has no contrib: said, and latency is unknown
        assert "pg_stat_statements" in p.current.statements_unavailable
        assert next(t for t in p.triggers if t.trigger == "query latency").status == "unknown"


def test_other_roles_hidden_statements_make_reads_unknown_not_zero(dsn: str) -> None:
    """Without pg_read_all_stats another role's statements show ``<insufficient privilege>``: they may be SELECTs,
    so the read rate is unknown (not 0), no write share is derived, and the read-replica verdict says what to grant
    (review r27-k01: a 100 %-SELECT workload was judged write_share=1.0, "read replicas: not yet, 0.0 reads/s")."""
    plant(dsn, [300.0] * 3)
    run_sql(dsn, "CREATE EXTENSION IF NOT EXISTS pg_stat_statements")
    suffix = uuid.uuid4().hex[:8]
    other, measurer = f"reads_{suffix}", f"measures_{suffix}"
    run_sql(dsn, f"CREATE ROLE {other} LOGIN; CREATE ROLE {measurer} LOGIN; "
                 f"GRANT SELECT ON events TO {other}, {measurer}")
    stop = threading.Event()

    def reader() -> None:
        with psycopg.connect(make_conninfo(dsn, user=other), autocommit=True) as c:
            while not stop.is_set():
                c.execute("SELECT count(*) FROM events WHERE id = 1")
                time.sleep(0.005)

    t = threading.Thread(target=reader)
    t.start()
    try:
        time.sleep(0.5)
        done = subprocess.run([sys.executable, "-m", "agent19", "--dsn", make_conninfo(dsn, user=measurer), "assess",
                               "--window", "2", "--format", "json"], capture_output=True, text=True, cwd=ROOT)
    finally:
        stop.set()
        t.join()
        run_sql(dsn, f"REVOKE ALL ON events FROM {other}, {measurer}; DROP ROLE {other}; DROP ROLE {measurer}")
    assert done.returncode == 0, done.stderr
    a = json.loads(done.stdout)
    assert a["filled"].get("qps", 0) > 10, a["filled"]  # the other role's calls are counted...
    assert "write_share" not in a["filled"], a["filled"]  # ...but not known to be writes
    replicas = next(t for t in a["thresholds"] if t["technique"] == "read replicas")
    assert replicas["verdict"] == "unknown" and "pg_read_all_stats" in replicas["would_change"], replicas
