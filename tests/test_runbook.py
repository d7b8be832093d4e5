"""generate_runbook end to end: the CLI and an MCP client on a real server; every SQL block of the
runbook runs; handoff.json validates against the shipped schema; no placeholder text."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import jsonschema
import psycopg
import pytest

from agent19.report.schema import shipped_schema
from tests.mcp_client import hint, stdio_session

SETUP = """
CREATE TABLE users (id bigint PRIMARY KEY, email text, created_at timestamptz NOT NULL DEFAULT now(),
                    legacy_code text);
INSERT INTO users SELECT g, 'u' || g || '@mail.test', now(), 'L' || g FROM generate_series(1, 1000) g;
CREATE TABLE _prisma_migrations (id text PRIMARY KEY, migration_name text NOT NULL, finished_at timestamptz,
                                 rolled_back_at timestamptz, started_at timestamptz NOT NULL DEFAULT now());
INSERT INTO _prisma_migrations VALUES ('a', '20240101000000_init', now(), NULL, now());
ANALYZE;
"""
MIGRATION = """ALTER TABLE users ADD COLUMN nickname text;
ALTER TABLE users ALTER COLUMN email SET NOT NULL;
CREATE INDEX CONCURRENTLY users_created_at_idx ON users (created_at);
ALTER TABLE users DROP COLUMN legacy_code;
"""
DOCUMENTS = ["runbook.md", "specification.md", "rollback-plan.md", "devops.md", "application.md", "qa.md",
             "security.md", "handoff.json", "migration.sql", "rollback.sql"]
BLOCK = re.compile(r"<!-- agent19:(?P<marker>[^>]+?) -->\n```sql\n(?P<sql>.*?)\n```", re.DOTALL)
PLACEHOLDERS = re.compile(r"\[X\]|(?-i:\[[A-Z][A-Z _]*\])|\bTODO\b|\bTBD\b|\bFIXME\b|your-app|example\.com|lorem ipsum",
                          re.IGNORECASE)


def agent19(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "agent19", *args], capture_output=True, text=True, timeout=120,
                          env={**os.environ, "DATABASE_URL": ""})


def blocks(text: str) -> list[tuple[str, str]]:
    return [(m["marker"], m["sql"]) for m in BLOCK.finditer(text)]


def run(dsn: str, sql: str) -> list[dict]:
    with psycopg.connect(dsn, autocommit=True) as conn:
        cur = conn.execute(sql)
        if cur.description is None:
            return []
        names = [d.name for d in cur.description]
        return [dict(zip(names, row, strict=True)) for row in cur.fetchall()]


def check_documents(folder: Path) -> dict:
    for name in DOCUMENTS:
        assert (folder / name).is_file(), f"{name} missing in {folder}"
        text = (folder / name).read_text()
        found = PLACEHOLDERS.findall(text)
        assert not found, f"placeholder text in {name}: {found}"
    handoff = json.loads((folder / "handoff.json").read_text())
    jsonschema.validate(handoff, shipped_schema())
    return handoff


def prove_on_server(dsn: str, folder: Path) -> None:
    """Run the runbook as a DBA would: checks, the migration, verifications, QA, then the rollback."""
    runbook = (folder / "runbook.md").read_text()
    qa = blocks((folder / "qa.md").read_text())
    found = blocks(runbook)
    markers = {m.split()[0] for m, _ in found}
    assert {"check", "migration", "verify", "rollback", "monitor"} <= markers
    for marker, sql in found:
        if marker == "check before":
            run(dsn, sql)
    before = {sql: run(dsn, sql) for marker, sql in qa if marker == "qa before_and_after"}
    for marker, sql in found:
        if marker.startswith("migration "):
            run(dsn, sql)
    for marker, sql in found:
        if marker.startswith("verify "):
            assert run(dsn, sql) == [{"ok": True}], (marker, sql)
        elif marker in ("check after", "monitor"):
            run(dsn, sql)
    for marker, sql in qa:
        run(dsn, sql)  # the DO blocks raise when the expectation fails
        if marker == "qa before_and_after":
            assert run(dsn, sql) == before[sql]
    rollback = [(m, s) for m, s in blocks((folder / "rollback-plan.md").read_text()) if m.startswith("rollback ")]
    assert [m for m, _ in rollback] == ["rollback 3", "rollback 2", "rollback 1"]
    for _, sql in rollback:
        run(dsn, sql)
    cols = {r["column_name"]: r["is_nullable"] for r in run(
        dsn, "SELECT column_name, is_nullable FROM information_schema.columns WHERE table_name = 'users'")}
    assert "nickname" not in cols and cols["email"] == "YES"
    assert run(dsn, "SELECT to_regclass('users_created_at_idx') AS ix") == [{"ix": None}]


def test_cli_writes_documents_that_run_on_a_real_server(dsn, tmp_path):
    run(dsn, SETUP)
    (tmp_path / "m.sql").write_text(MIGRATION)
    out = agent19("runbook", str(tmp_path / "m.sql"), "--write", str(tmp_path / "out"), "--dsn", dsn,
                  "--handoff-dir", str(tmp_path / "handoffs"), "--requirements", "Users choose a nickname.",
                  "--performance-issues", "SELECT * FROM users WHERE created_at > now() - interval '1 day'")
    assert out.returncode == 0, out.stderr
    handoff = check_documents(tmp_path / "out")
    mid = handoff["migration"]["id"]
    assert f"wrote {tmp_path / 'handoffs' / mid / 'handoff.json'}" in out.stdout
    assert check_documents(tmp_path / "handoffs" / mid) == handoff
    runbook = (tmp_path / "out" / "runbook.md").read_text()
    # live facts: row counts, the Prisma schema version, the real lock modes
    assert "~1,000 (planner estimate" in runbook
    assert "20240101000000_init" in runbook and "Users choose a nickname." in runbook
    assert "AccessExclusiveLock (predicted): blocks reads and writes" in runbook
    assert "| Downtime | yes - blocks reads and writes |" in runbook
    assert "explain_query" in runbook
    steps = {s["order"]: s for s in handoff["steps"]}
    assert steps[4]["data_loss"] is True and steps[4]["rollback_sql"] is None
    assert handoff["devops"]["outside_transaction"] == [3]
    assert any("nickname String?" in line for line in handoff["application"]["prisma"])
    assert {g["name"]: g["status"] for g in handoff["gates"]}["rollback"] == "unknown"
    spec = (tmp_path / "out" / "specification.md").read_text()
    assert "| dry run (test_migration) | not run | not run | not run |" in spec
    rollback = (tmp_path / "out" / "rollback-plan.md").read_text()
    assert "Restore from backup" in rollback and "pg_restore" in rollback
    assert json.loads((tmp_path / "out" / "runbook.json").read_text())["header"]["id"] == mid
    prove_on_server(dsn, tmp_path / "out")


async def test_mcp_generate_runbook_then_read_the_handoff_resource(dsn, tmp_path):
    run(dsn, SETUP)
    handoffs = tmp_path / "handoffs"
    async with stdio_session("--dsn", dsn, "--handoff-dir", str(handoffs)) as session:
        tool = {t.name: t for t in (await session.list_tools()).tools}["generate_runbook"]
        assert hint(tool, "readOnlyHint") is False
        result = await session.call_tool("generate_runbook", {"sql": MIGRATION, "write_dir": str(tmp_path / "out")})
        assert not result.is_error, result.content
        data = result.structured_content
        mid = data["migration_id"]
        assert data["handoff_dir"] == str((handoffs / mid).resolve())
        assert str((tmp_path / "out" / "qa.md").resolve()) in data["written"]
        # the documents are resources, linked from the result (which stays within the response budget)
        assert "runbook" not in data and len(result.content[0].text) + len(json.dumps(data)) <= 8_000
        link = next(c for c in result.content if c.type == "resource_link" and c.uri.endswith("/runbook"))
        runbook = (await session.read_resource(link.uri)).contents[0].text
        assert runbook.startswith("# Deployment runbook") and link.size == len(runbook)
        templates = (await session.list_resource_templates()).resource_templates
        assert "agent19://handoffs/{migration_id}" in {t.uri_template for t in templates}
        read = await session.read_resource(f"agent19://handoffs/{mid}")
        handoff = json.loads(read.contents[0].text)
        jsonschema.validate(handoff, shipped_schema())
        assert handoff == json.loads((handoffs / mid / "handoff.json").read_text())
        assert handoff["migration"]["live"] is True
        with pytest.raises(Exception, match="no handoff for migration"):
            await session.read_resource("agent19://handoffs/nosuchid")
    check_documents(tmp_path / "out")
    prove_on_server(dsn, tmp_path / "out")


def test_without_a_database_unknown_facts_say_how_to_find_them(tmp_path):
    out = agent19("runbook", "--sql", MIGRATION, "--handoff-dir", str(tmp_path / "h"), "--write", str(tmp_path / "o"))
    assert out.returncode == 0, out.stderr
    assert "no database given" in out.stdout
    check_documents(tmp_path / "o")
    runbook = (tmp_path / "o" / "runbook.md").read_text()
    assert "run with a database (--dsn / DATABASE_URL)" in runbook
    assert "confirm with your migration tool that the previous migration is applied" in runbook
    assert runbook.count("no long transactions**") == 1


def test_an_unreachable_database_still_gives_documents(tmp_path):
    out = agent19("runbook", "--sql", MIGRATION, "--dsn", "postgresql://nobody:S3cretPw@127.0.0.1:1/db",
                  "--no-handoff", "--format", "json")
    assert out.returncode == 0, out.stderr
    data = json.loads(out.stdout)
    assert data["written"] == [] and data["handoff_dir"] is None
    assert any("database not reachable" in n for n in data["notes"])
    assert "S3cretPw" not in out.stdout


def test_a_dry_run_from_test_migration_becomes_the_evidence(dsn, tmp_path):
    """`agent19 dry-run --format json` output is accepted as is; the documents then cite it."""
    run(dsn, SETUP)
    up = tmp_path / "1_users.up.sql"
    up.write_text("ALTER TABLE users ADD COLUMN nickname text;\nCREATE INDEX users_email_idx ON users (email);\n")
    (tmp_path / "1_users.down.sql").write_text("DROP INDEX users_email_idx;\nALTER TABLE users DROP COLUMN nickname;\n")
    dry = agent19("dry-run", str(up), "--dsn", dsn, "--mode", "dry-run", "--format", "json")
    assert dry.returncode == 0, dry.stderr
    result = json.loads(dry.stdout)
    assert result["passed"] and result["rollback"]["verified"]
    (tmp_path / "dry.json").write_text(dry.stdout)
    out = tmp_path / "docs"
    made = agent19("runbook", str(up), "--dsn", dsn, "--dry-run-result", str(tmp_path / "dry.json"),
                   "--write", str(out), "--no-handoff")
    assert made.returncode == 0, made.stderr
    spec = (out / "specification.md").read_text()
    assert result["ran_at"] in spec and "not run" not in spec.split("Testing")[-1].split("##")[0]
    assert "ShareLock" in spec  # the observed lock of CREATE INDEX, cited from the dry run
    runbook = (out / "runbook.md").read_text()
    assert re.search(r"\| Rollback tested \| \[ok\] satisfied \| dry run " + re.escape(result["ran_at"]), runbook)
    handoff = json.loads((out / "handoff.json").read_text())
    assert handoff["dry_run"]["rollback_verified"] is True
    assert handoff["dry_run"]["statements"][1]["observed_lock"] == "ShareLock"
