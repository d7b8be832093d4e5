"""`agent19 capacity` as the application's role (r25b M2, L1): growth is projected only from enough history,
and the Markdown plan says what the login cannot see.

Rows created over 3.5 days across a month boundary gave two monthly points a day apart, and the plan said
"linear, 879.7 % a month … error 0.0 % on 2 observed points over 0.996 days" and a date the disk fills. Now
growth is "not known yet", with how much history is needed and how to get it. The Markdown plan (the CLI's
default) listed `<insufficient privilege>` as a top statement and had no word on what the login cannot see.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import psycopg
from psycopg.conninfo import make_conninfo

from tests.conftest import need, owner_login, run_sql

ROOT = Path(__file__).parent.parent


def _capacity(dsn: str, tmp: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "agent19", "--dsn", dsn, "--data-dir", str(tmp), "capacity",
                           "--window", "0", *args], capture_output=True, text=True, cwd=ROOT, timeout=120)


def test_days_of_created_at_across_a_month_boundary_project_nothing(dsn: str, tmp_path: Path) -> None:
    app = owner_login(dsn)
    # 3.5 days of orders ending now: at least one month boundary is inside (3 days before this month began)
    run_sql(app, "CREATE TABLE orders (id bigserial PRIMARY KEY, created_at timestamptz NOT NULL DEFAULT now(), "
                 "body text); INSERT INTO orders (created_at, body) SELECT date_trunc('month', now()) "
                 "- interval '3 days' + (now() - date_trunc('month', now()) + interval '3 days') * g / 5000.0, "
                 "repeat('x', 100) FROM generate_series(1, 5000) g; ANALYZE orders")
    done = _capacity(app, tmp_path, "--disk-size", "500GB")
    assert done.returncode == 0, done.stderr
    out = done.stdout
    assert "Fit:" not in out and "% a month" not in out and "80 % in" not in out, out
    assert "growth is not known yet from creation timestamp columns" in out
    assert "a growth trend needs at least 3 points over at least 7 days" in out
    assert "agent19 capacity sample" in out
    assert "see below).-" not in out and "(too little history, see below).\n" in out, out  # a list item glued on
    queries = [line.split(" - ", 1)[1] for line in out.splitlines() if "public.orders.created_at" in line]
    assert queries and queries[0].startswith("SELECT date_trunc"), out
    with psycopg.connect(app) as c:  # the evidence shown runs as shown (it grouped by count(*): an error)
        assert sum(r[1] for r in c.execute(queries[0].rstrip("`").strip()).fetchall()) == 5000


def test_markdown_plan_says_hidden_statements_and_what_it_cannot_see(dsn: str, tmp_path: Path) -> None:
    with psycopg.connect(dsn) as c:
        preloaded = c.execute("SELECT count(*) > 0 AND current_setting('shared_preload_libraries') ~ "
                              "'pg_stat_statements' FROM pg_available_extensions WHERE name = 'pg_stat_statements'"
                              ).fetchone()[0]
    need(preloaded, "pg_stat_statements is not preloaded on the test server")
    app = owner_login(dsn)
    run_sql(dsn, "CREATE EXTENSION IF NOT EXISTS pg_stat_statements")
    other = app.split("user=")[1].split()[0] + "_rep"
    run_sql(dsn, f"CREATE ROLE {other} LOGIN")
    with psycopg.connect(make_conninfo(dsn, user=other), autocommit=True) as c:
        for _ in range(3):
            c.execute("SELECT pg_sleep(0.05), 'reporter statement'")
    done = _capacity(app, tmp_path)
    assert done.returncode == 0, done.stderr
    assert "<insufficient privilege>" not in done.stdout
    assert "another role's statement: its text is hidden from this login, needs pg_read_all_stats" in done.stdout
    assert "What this login cannot see" in done.stdout
    assert "other roles' statements in pg_stat_statements: needs pg_read_all_stats" in done.stdout


def test_history_just_short_of_the_threshold_is_not_shown_as_reaching_it() -> None:
    from agent19.ops.capacity.fit import too_little
    from agent19.ops.capacity.model import Point

    at = ["2026-01-01T00:00:00Z", "2026-01-04T00:00:00Z", "2026-01-07T23:58:34Z"]  # 6.999 days
    why = too_little([Point(at=a, bytes=1000 * k, rows=k) for k, a in enumerate(at, 1)])
    assert why is not None and "over 6.99 days" in why, why  # it said "over 7.00 days … needs at least 7 days"


def test_capacity_sample_says_how_many_samples_a_fit_needs(dsn: str, tmp_path: Path) -> None:
    done = subprocess.run([sys.executable, "-m", "agent19", "--dsn", dsn, "--data-dir", str(tmp_path), "capacity",
                           "sample"], capture_output=True, text=True, cwd=ROOT, timeout=120)
    assert done.returncode == 0, done.stderr
    assert "fits them once there are 3 over at least 7 days" in done.stdout, done.stdout  # it said "two"
