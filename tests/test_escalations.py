"""Escalations on a real server: each migration below raises exactly one kind (one raises none), and the
escalation is the same in plan_migration's result, the runbook, handoff.json (validated against the
shipped schema) and the recipient's Markdown — with its statement and its evidence."""

from __future__ import annotations

import json
import threading
import uuid
from pathlib import Path

import jsonschema
import psycopg
import pytest
from psycopg.conninfo import make_conninfo

from agent19.report.schema import shipped_schema
from tests.test_runbook import agent19, run

SETUP = """
CREATE TABLE accounts (id bigint PRIMARY KEY, name text, legacy text);
INSERT INTO accounts SELECT g, 'a' || g, 'x' FROM generate_series(1, 1000) g;
CREATE TABLE items (id bigint PRIMARY KEY, price numeric);
INSERT INTO items SELECT g, g FROM generate_series(1, 300000) g;
ANALYZE;
"""
RECIPIENT = {"data_loss": "devops.md", "downtime": "devops.md", "performance": "devops.md",
             "breaking_change": "application.md"}


def _documents(dsn: str, sql: str, out: Path, *extra: str) -> tuple[dict, dict]:
    """plan_migration's JSON and the runbook folder for ``sql`` (both through the CLI)."""
    plan = agent19("plan", "--sql", sql, "--dsn", dsn, "--format", "json", *extra)
    assert plan.returncode == 0, plan.stderr
    made = agent19("runbook", "--sql", sql, "--dsn", dsn, "--write", str(out), "--no-handoff", *extra)
    assert made.returncode == 0, made.stderr
    handoff = json.loads((out / "handoff.json").read_text())
    jsonschema.validate(handoff, shipped_schema())
    assert handoff["format"] == "agent19.handoff/2"
    return json.loads(plan.stdout), handoff


def _check_one(kind: str, plan: dict, handoff: dict, out: Path, statement: str, evidence: str) -> None:
    assert [e["kind"] for e in plan["escalations"]] == [kind]
    # the same decision in both (measured rates differ between two sampling windows, the rest is equal)
    assert [(e["kind"], e["operations"], e["statements"], e["reviewers"]) for e in handoff["escalations"]] == [
        (e["kind"], e["operations"], e["statements"], e["reviewers"]) for e in plan["escalations"]]
    esc = plan["escalations"][0]
    assert esc["statements"] == [statement] and esc["operations"] == [1]
    assert any(evidence in e for e in esc["evidence"]), esc["evidence"]
    runbook = (out / "runbook.md").read_text()
    assert f"<!-- agent19:escalation {kind} -->" in runbook and evidence in runbook
    assert runbook.count("<!-- agent19:escalation ") == 1
    for doc in set(RECIPIENT.values()):
        text = (out / doc).read_text()
        assert (f"<!-- agent19:escalation {kind} -->" in text) == (doc == RECIPIENT[kind]), doc
    other = "application.md" if RECIPIENT[kind] == "devops.md" else "devops.md"
    assert "No escalation for" in (out / other).read_text()


@pytest.fixture
def shop(dsn):
    run(dsn, SETUP)
    return dsn


@pytest.mark.parametrize(("kind", "sql", "evidence"), [
    ("data_loss", "TRUNCATE accounts", "destroys data no rollback SQL brings back"),
    ("breaking_change", "ALTER TABLE accounts RENAME COLUMN name TO full_name", "A19013 rename"),
    # a rewrite of 300,000 rows: estimated ~2 s under AccessExclusiveLock, not a large table
    ("downtime", "ALTER TABLE items ADD COLUMN seen timestamptz DEFAULT clock_timestamp()",
     "AccessExclusiveLock (predicted) blocks reads and writes for ~2"),
])
def test_each_migration_raises_exactly_its_escalation(shop, tmp_path, kind, sql, evidence):
    plan, handoff = _documents(shop, sql, tmp_path / "out")
    _check_one(kind, plan, handoff, tmp_path / "out", sql, evidence)
    who = {"data_loss": "DBA", "breaking_change": "application engineers", "downtime": "product lead"}[kind]
    assert who in plan["escalations"][0]["reviewers"]


def test_a_harmless_migration_says_no_escalation_is_needed(shop, tmp_path):
    plan, handoff = _documents(shop, "ALTER TABLE accounts ADD COLUMN note text", tmp_path / "out")
    assert plan["escalations"] == [] and handoff["escalations"] == []
    assert plan["escalation_summary"].startswith("no escalation needed") and "write rates measured" in \
        plan["escalation_summary"]
    runbook = (tmp_path / "out" / "runbook.md").read_text()
    assert "No escalation: no escalation needed" in runbook and "agent19:escalation " not in runbook


def _writer(dsn: str, stop: threading.Event) -> None:
    with psycopg.connect(dsn, autocommit=True) as conn:
        i = 0
        while not stop.is_set():
            i += 1
            conn.execute("INSERT INTO events (kind, n) VALUES ('k' || %s, 0)", (i % 7,))
            conn.execute("UPDATE events SET n = n + 1 WHERE id = %s", (i // 2 + 1,))


def test_an_index_on_a_write_heavy_table_needs_a_performance_analysis(shop, tmp_path):
    """Measured as a non-superuser that owns the table, over a sampling window while writers run."""
    role, password = f"esc_{uuid.uuid4().hex[:8]}", uuid.uuid4().hex
    with psycopg.connect(shop, autocommit=True) as conn:
        conn.execute(f"CREATE ROLE {role} LOGIN PASSWORD '{password}'")
        conn.execute(f"GRANT CREATE ON SCHEMA public TO {role}")
    user_dsn = make_conninfo(shop, user=role, password=password)
    stop = threading.Event()
    try:
        run(user_dsn, "CREATE TABLE events (id bigserial PRIMARY KEY, kind text, n int)")
        sql = "CREATE INDEX CONCURRENTLY events_kind_idx ON events (kind)"
        quiet, _ = _documents(user_dsn, sql, tmp_path / "quiet", "--write-sample-seconds", "1")
        assert quiet["escalations"] == []  # no writes in the window: no evidence, no escalation
        writer = threading.Thread(target=_writer, args=(user_dsn, stop))
        writer.start()
        plan, handoff = _documents(user_dsn, sql, tmp_path / "out", "--write-sample-seconds", "2")
        stop.set()
        writer.join()
        _check_one("performance", plan, handoff, tmp_path / "out", sql, "adds an index to a write-heavy table")
        evidence = plan["escalations"][0]["evidence"][0]
        assert "public.events:" in evidence and "inserts/s" in evidence and "sampling window" in evidence
        assert password not in json.dumps(plan) + json.dumps(handoff)
    finally:
        stop.set()
        with psycopg.connect(shop, autocommit=True) as conn:
            conn.execute(f"DROP OWNED BY {role}")
            conn.execute(f"DROP ROLE {role}")
