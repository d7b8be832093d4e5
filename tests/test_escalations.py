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
from tests.mcp_client import stdio_session
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


def test_index_write_cost_shows_hot_updates_lost_for_an_index_on_an_updated_column(shop, tmp_path):
    """Under an insert/update load (UPDATE sets n only), an index on n loses the HOT updates, one on kind
    keeps them; both are costed from the measured rates, and the self-review cites the numbers."""
    run(shop, "CREATE EXTENSION IF NOT EXISTS pg_stat_statements")
    run(shop, "CREATE TABLE events (id bigserial PRIMARY KEY, kind text, n int)")
    run(shop, "INSERT INTO events (kind, n) SELECT 'k' || g % 7, 0 FROM generate_series(1, 2000) g; ANALYZE events")
    stop = threading.Event()
    writer = threading.Thread(target=_writer, args=(shop, stop))
    writer.start()
    try:
        sql = ("CREATE INDEX CONCURRENTLY events_n_idx ON events (n);\n"
               "CREATE INDEX CONCURRENTLY events_kind_idx ON events (kind);")
        out = agent19("plan", "--sql", sql, "--dsn", shop, "--format", "json", "--write-sample-seconds", "2")
        made = agent19("runbook", "--sql", sql, "--dsn", shop, "--write", str(tmp_path / "out"), "--no-handoff")
    finally:
        stop.set()
        writer.join()
    assert out.returncode == 0, out.stderr
    assert made.returncode == 0, made.stderr
    costs = {c["index"]: c for c in json.loads(out.stdout)["index_costs"]}
    on_n, on_kind = costs["events_n_idx"], costs["events_kind_idx"]
    assert on_n["hot_lost"] is True and on_kind["hot_lost"] is False
    assert on_n["inserts_per_second"] > 0 and on_n["updates_per_second"] > 0
    assert on_n["hot_updates_per_second"] > 0 and on_n["hot_updates_lost_per_second"] == on_n["hot_updates_per_second"]
    assert on_kind["hot_updates_lost_per_second"] == 0
    assert on_n["index_entries_per_second"] > on_kind["index_entries_per_second"]
    assert on_n["estimated_size_bytes"] > 0 and "sampling window" in on_n["window"]
    assert "UPDATEs set n" in on_n["summary"] and "HOT updates stay HOT" in on_kind["summary"]
    handoff = json.loads((tmp_path / "out" / "handoff.json").read_text())
    jsonschema.validate(handoff, shipped_schema())
    review = {i["name"]: i for i in handoff["checklist"]}["Index impact on write performance is measured"]
    assert review["status"] == "satisfied" and "new index entries/s" in review["evidence"]


def test_without_a_database_the_write_cost_is_unknown_not_satisfied(tmp_path):
    made = agent19("runbook", "--sql", "CREATE INDEX CONCURRENTLY e_idx ON events (n)", "--write",
                   str(tmp_path / "o"), "--no-handoff")
    assert made.returncode == 0, made.stderr
    handoff = json.loads((tmp_path / "o" / "handoff.json").read_text())
    review = {i["name"]: i for i in handoff["checklist"]}["Index impact on write performance is measured"]
    assert review["status"] == "unknown" and "--dsn" in review["evidence"]
    assert "write rates not measured" in handoff["escalation_summary"]


def test_guardrails_cite_a_real_backup_verification_and_dry_run(shop, tmp_path):
    """A verify_backup result and a dry run from the CLI turn the pre-migration guardrails satisfied."""
    sql = "ALTER TABLE accounts ADD COLUMN note text;\n"
    (tmp_path / "m.sql").write_text(sql)
    backup = agent19("backup", "verify", "--dsn", shop, "--mode", "dry-run", "--format", "json")
    assert backup.returncode == 0, backup.stderr
    (tmp_path / "backup.json").write_text(backup.stdout)
    dry = agent19("dry-run", str(tmp_path / "m.sql"), "--dsn", shop, "--mode", "dry-run", "--format", "json")
    assert dry.returncode == 0, dry.stderr
    (tmp_path / "dry.json").write_text(dry.stdout)
    before = agent19("runbook", str(tmp_path / "m.sql"), "--dsn", shop, "--write", str(tmp_path / "a"),
                     "--no-handoff")
    assert before.returncode == 0, before.stderr
    made = agent19("runbook", str(tmp_path / "m.sql"), "--dsn", shop, "--write", str(tmp_path / "b"),
                   "--no-handoff", "--backup-verify-result", str(tmp_path / "backup.json"),
                   "--dry-run-result", str(tmp_path / "dry.json"))
    assert made.returncode == 0, made.stderr

    def guards(folder: str) -> dict:
        handoff = json.loads((tmp_path / folder / "handoff.json").read_text())
        jsonschema.validate(handoff, shipped_schema())
        return {g["name"]: g for g in handoff["guardrails"]}

    a, b = guards("a"), guards("b")
    assert a["Backup verified by a restore"]["status"] == "unknown"
    assert "not verified" in a["Backup verified by a restore"]["evidence"]
    assert a["Tested on a non-production copy"]["status"] == "unknown"
    assert b["Backup verified by a restore"]["status"] == "satisfied"
    assert json.loads(backup.stdout)["summary"] in b["Backup verified by a restore"]["evidence"]
    assert b["Tested on a non-production copy"]["status"] == "satisfied"
    assert json.loads(dry.stdout)["ran_at"] in b["Tested on a non-production copy"]["evidence"]
    assert {g["phase"] for g in b.values()} == {"pre", "during", "post"}
    runbook = (tmp_path / "b" / "runbook.md").read_text()
    assert "## 10. Guardrails" in runbook and "| Backup verified by a restore | [ok] satisfied |" in runbook


async def test_mcp_plan_migration_returns_the_escalation_with_its_evidence(shop):
    async with stdio_session("--dsn", shop) as session:
        res = await session.call_tool("plan_migration", {
            "sql": "ALTER TABLE accounts DROP COLUMN legacy", "write_sample_seconds": 0})
        assert not res.is_error, res.content
        plan = res.structured_content
    kinds = {e["kind"]: e for e in plan["escalations"]}
    # a dropped column both destroys data and breaks the clients that still read it
    assert set(kinds) == {"data_loss", "breaking_change"}
    assert "~1,000 rows" in kinds["data_loss"]["evidence"][0]
    assert kinds["breaking_change"]["statements"] == ["ALTER TABLE accounts DROP COLUMN legacy"]
    assert "A19014" in kinds["breaking_change"]["evidence"][0]
    assert "DBA" in kinds["data_loss"]["reviewers"] and "application engineers" in kinds["breaking_change"]["reviewers"]


async def test_mcp_execute_refuses_an_untested_migration_when_the_policy_requires_a_dry_run(shop, tmp_path):
    """AGENT19_REQUIRE_DRY_RUN=1: run_sql in execute mode refuses a change until test_migration passed with it
    on the same database; reads are never refused; without the policy the change runs directly."""
    sql = "ALTER TABLE accounts ADD COLUMN note text"
    env = {"AGENT19_REQUIRE_DRY_RUN": "1", "AGENT19_DATA_DIR": str(tmp_path / "state")}
    async with stdio_session("--dsn", shop, "--mode", "execute", env=env) as session:
        refused = await session.call_tool("run_sql", {"sql": sql})
        assert not refused.is_error, refused.content
        assert refused.structured_content["executed"] is False
        assert "require_dry_run" in refused.structured_content["message"]
        assert "test_migration" in refused.structured_content["message"]
        read = await session.call_tool("run_sql", {"sql": "SELECT count(*) AS n FROM accounts"})
        assert read.structured_content["executed"] is True
        other = await session.call_tool("test_migration", {"sql": "ALTER TABLE accounts ADD COLUMN other text"})
        assert other.structured_content["passed"] is True
        still = await session.call_tool("run_sql", {"sql": sql})
        assert still.structured_content["executed"] is False  # a dry run of another statement does not count
        dry = await session.call_tool("test_migration", {"sql": sql + ";"})
        assert dry.structured_content["passed"] is True
        ran = await session.call_tool("run_sql", {"sql": sql})
        assert ran.structured_content["executed"] is True, ran.structured_content
    cols = [r["column_name"] for r in run(shop, "SELECT column_name FROM information_schema.columns "
                                                "WHERE table_name = 'accounts' ORDER BY ordinal_position")]
    assert "note" in cols and "other" not in cols
    async with stdio_session("--dsn", shop, "--mode", "execute",
                             env={"AGENT19_DATA_DIR": str(tmp_path / "other")}) as session:
        free = await session.call_tool("run_sql", {"sql": "ALTER TABLE accounts ADD COLUMN free text"})
        assert free.structured_content["executed"] is True


async def test_mcp_execute_refuses_data_changes_without_a_verified_backup_when_required(shop, tmp_path):
    """AGENT19_REQUIRE_VERIFIED_BACKUP=24: an UPDATE is refused until verify_backup restored and compared a
    fresh backup of the same database; INSERT and DDL are not data changes for this policy."""
    env = {"AGENT19_REQUIRE_VERIFIED_BACKUP": "24", "AGENT19_DATA_DIR": str(tmp_path / "state")}
    update = "UPDATE accounts SET name = 'renamed' WHERE id = 1"
    async with stdio_session("--dsn", shop, "--mode", "execute", env=env) as session:
        refused = await session.call_tool("run_sql", {"sql": update})
        assert not refused.is_error, refused.content
        assert refused.structured_content["executed"] is False
        assert "require_verified_backup" in refused.structured_content["message"]
        insert = await session.call_tool("run_sql", {"sql": "INSERT INTO accounts VALUES (5000, 'n', 'x')"})
        assert insert.structured_content["executed"] is True
        verified = await session.call_tool("verify_backup", {})
        assert not verified.is_error, verified.content
        assert verified.structured_content["verified"] is True
        ran = await session.call_tool("run_sql", {"sql": update})
        assert ran.structured_content["executed"] is True, ran.structured_content
    assert run(shop, "SELECT name FROM accounts WHERE id = 1") == [{"name": "renamed"}]


async def test_mcp_execute_refuses_lock_warnings_until_each_is_acknowledged(shop, tmp_path):
    """AGENT19_REQUIRE_LOCK_ACK=1: a blocking CREATE INDEX on a populated table is refused, naming the
    warning; it runs once its rule code is acknowledged. A statement without lock warnings runs."""
    env = {"AGENT19_REQUIRE_LOCK_ACK": "1", "AGENT19_DATA_DIR": str(tmp_path / "state")}
    sql = "CREATE INDEX accounts_name_idx ON accounts (name)"
    async with stdio_session("--dsn", shop, "--mode", "execute", env=env) as session:
        refused = await session.call_tool("run_sql", {"sql": sql})
        assert not refused.is_error, refused.content
        message = refused.structured_content["message"]
        assert refused.structured_content["executed"] is False and "A19001" in message, message
        assert "require_lock_ack" in message
        harmless = await session.call_tool("run_sql", {"sql": "ALTER TABLE accounts ADD COLUMN IF NOT EXISTS z text"})
        assert harmless.structured_content["executed"] is True, harmless.structured_content
        ran = await session.call_tool("run_sql", {"sql": sql, "acknowledge": ["A19001"]})
        assert ran.structured_content["executed"] is True, ran.structured_content
    assert run(shop, "SELECT to_regclass('accounts_name_idx') IS NOT NULL AS ok") == [{"ok": True}]


def test_a_narrowing_type_change_is_data_loss_from_the_live_catalog(shop, tmp_path):
    """The safety check's narrowing verdict (text → varchar(3) on the live column) becomes data-loss evidence;
    the type change also breaks clients. A plan made without a database has no such evidence."""
    sql = "ALTER TABLE accounts ALTER COLUMN name TYPE varchar(3)"
    plan, handoff = _documents(shop, sql, tmp_path / "out")
    kinds = {e["kind"]: e for e in plan["escalations"]}
    assert set(kinds) == {"data_loss", "breaking_change"}
    assert any("narrows the type" in x for x in kinds["data_loss"]["evidence"]), kinds["data_loss"]
    assert [e["kind"] for e in handoff["escalations"]] == [e["kind"] for e in plan["escalations"]]
    assert "<!-- agent19:escalation data_loss -->" in (tmp_path / "out" / "devops.md").read_text()
    offline = agent19("plan", "--sql", sql, "--format", "json")
    assert offline.returncode == 0, offline.stderr
    assert "data_loss" not in {e["kind"] for e in json.loads(offline.stdout)["escalations"]}


def test_no_escalation_is_not_read_as_plans_checked_when_an_index_goes(tmp_path):
    """Without a dry run that compared query plans, dropping an index says the plans were not compared (and how to
    compare them) instead of a bare "no escalation needed"; a migration that drops nothing says nothing of plans."""
    dropped = json.loads(agent19("plan", "--sql", "CREATE TABLE n (id int); DROP INDEX t_x", "--format",
                                 "json").stdout)["escalation_summary"]
    assert "query plans not compared after operation(s) 2" in dropped and "--top-queries" in dropped
    created = json.loads(agent19("plan", "--sql", "CREATE TABLE n (id int)", "--format",
                                 "json").stdout)["escalation_summary"]
    assert "query plans" not in created
