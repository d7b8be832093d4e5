"""test_migration end to end: a real server, a real MCP client, nothing left behind."""

from __future__ import annotations

import uuid

import psycopg
import pytest
from psycopg.conninfo import conninfo_to_dict, make_conninfo
from psycopg.rows import dict_row

from agent19.config import AccessMode, Settings
from agent19.db.catalog import snapshot
from agent19.db.connection import Database
from agent19.db.observe import observe
from agent19.migrate.dryrun.run import dry_run
from agent19.migrate.dryrun.schema_diff import diff_snapshots, errors_only
from agent19.migrate.dryrun.scratch import list_scratch
from agent19.migrate.parse import parse_sql
from tests.conftest import run_sql, session_settings
from tests.mcp_client import stdio_session

ROWS = 100_000
SETUP = f"""
CREATE TABLE t (id bigint PRIMARY KEY, a int NOT NULL, b int, note text);
INSERT INTO t SELECT g, g % 1000, g % 97, 'n' || g FROM generate_series(1, {ROWS}) g;
ALTER TABLE t ADD CONSTRAINT t_a_nonneg CHECK (a >= 0) NOT VALID;
ANALYZE t;
"""
MIGRATION = """-- the done-when migration
ALTER TABLE t ADD COLUMN u uuid DEFAULT gen_random_uuid();

CREATE INDEX t_a_idx ON t (a);
CREATE INDEX CONCURRENTLY t_b_idx ON t (b);
ALTER TABLE t ALTER COLUMN u SET NOT NULL;
ALTER TABLE t VALIDATE CONSTRAINT t_a_nonneg;
"""


def populate(dsn: str) -> None:
    with psycopg.connect(dsn, autocommit=True) as conn:
        conn.execute(SETUP)


def state(dsn: str) -> tuple[object, str]:
    with psycopg.connect(dsn, autocommit=True, row_factory=dict_row) as conn:
        snap = snapshot(conn)
        row = conn.execute("SELECT md5(string_agg(t::text, ',' ORDER BY id)) AS sum FROM t").fetchone()
    return snap, row["sum"] if row else ""


def oracle(dsn: str, statements: list[str]) -> list[tuple[str | None, bool]]:
    """What the server shows for each statement alone, in its own transaction, on a copy of the target
    where the earlier statements were committed: the independent truth the dry run must match."""
    copy = "oracle_" + uuid.uuid4().hex[:8]
    run_sql(dsn, f'CREATE DATABASE "{copy}" TEMPLATE "{conninfo_to_dict(dsn)["dbname"]}"')
    out = []
    try:
        with psycopg.connect(make_conninfo(dsn, dbname=copy)) as conn:
            for sql in statements:
                if "CONCURRENTLY" in sql:
                    out.append((None, False))
                else:
                    obs = observe(conn, sql)
                    conn.rollback()
                    out.append((obs.strongest("public.t"), "public.t" in obs.rewritten))
                conn.autocommit = True
                conn.execute(sql)
                conn.autocommit = False
    finally:
        run_sql(dsn, f'DROP DATABASE "{copy}" WITH (FORCE)')
    return out


def settings(dsn: str, mode: AccessMode = AccessMode.DRY_RUN) -> Settings:
    return session_settings(dsn=dsn, mode=mode.value)


async def test_dry_run_through_mcp_reports_observed_locks_and_leaves_nothing(dsn, tmp_path):
    populate(dsn)
    path = tmp_path / "0001_add_u.up.sql"
    path.write_text(MIGRATION)
    before, checksum = state(dsn)
    async with stdio_session("--dsn", dsn, "--mode", "dry-run") as session:
        # every statement's observed locks: the whole result (the default one is sized for a model)
        result = await session.call_tool("test_migration", {"files": [str(path)], "detail": "full"})
    assert not result.is_error, result.content
    r = result.structured_content
    stmts = r["statements"]
    assert [s["line"] for s in stmts] == [2, 4, 5, 6, 7]
    assert [s["ran_in"] for s in stmts] == ["transaction", "transaction", "scratch", "transaction", "transaction"]
    texts = [s.sql for s in parse_sql(MIGRATION)]
    truth = oracle(dsn, texts)
    for i in (0, 1, 3, 4):
        mode, rewrite = truth[i]
        compare = {c["relation"]: c for c in stmts[i]["lock_comparison"]}
        assert compare["public.t"]["observed"] == mode, (i, compare)
        assert stmts[i]["observed_rewrite"] is rewrite, i
    assert stmts[0]["observed_rewrite"] is True and stmts[1]["observed_rewrite"] is False
    assert stmts[3]["isolated"] is True  # AccessExclusiveLock was already held by statement 1
    cic = {c["relation"]: c for c in stmts[2]["lock_comparison"]}["public.t"]
    assert cic["observed"] == "ShareUpdateExclusiveLock" and cic["agrees"]
    assert r["scratch"]["dropped"] is True and r["scratch"]["name"] not in list_scratch(dsn)
    assert r["target_unchanged"] is True and r["passed"] is True, r["findings"]
    assert r["longest_lock"]["relation"] == "public.t"
    after, checksum_after = state(dsn)
    assert errors_only(diff_snapshots(before, after)) == [] and checksum_after == checksum
    assert list_scratch(dsn) == []


async def test_read_only_mode_refuses_naming_the_mode(dsn):
    async with stdio_session("--dsn", dsn) as session:
        result = await session.call_tool("test_migration", {"sql": "CREATE TABLE x (id int)"})
    assert result.is_error and "needs mode dry-run" in result.content[0].text


def test_errors_have_file_positions_and_later_statements_are_not_run(dsn):
    """As a migration in one transaction, the dry run stops at the first error and rolls back (r27 k05: it ran
    the rest under the failed migration's locks)."""
    populate(dsn)
    sql = ("ALTER TABLE t ADD COLUMN c int;\nSELECT 1;\n\nALTER TABLE t\n  ADD COLUMN d nosuchtype;\n"
           "CREATE INDEX ON t (c)")
    db = Database(settings(dsn))
    try:
        r = dry_run(db, parse_sql(sql, "m.sql"))
    finally:
        db.close()
    assert not r.passed
    err = r.statements[2].error
    assert err is not None and err.file == "m.sql" and err.line == 5 and err.sqlstate == "42704"
    assert r.statements[3].error is None and r.statements[3].duration_ms is None
    assert r.statements[3].ran_in == "skipped" and r.statements[3].note.startswith("not run: statement 3 failed")
    assert r.target_unchanged


def test_commit_in_the_file_is_never_sent(dsn):
    populate(dsn)
    db = Database(settings(dsn))
    try:
        r = dry_run(db, parse_sql("BEGIN; ALTER TABLE t ADD COLUMN z int; COMMIT;"))
    finally:
        db.close()
    assert [s.ran_in for s in r.statements] == ["skipped", "transaction", "skipped"]
    with psycopg.connect(dsn) as conn:
        assert conn.execute("SELECT count(*) FROM pg_attribute WHERE attrelid = 't'::regclass "
                            "AND attname = 'z'").fetchone() == (0,)


def test_failing_blocking_check_fails_the_dry_run(dsn):
    populate(dsn)
    from agent19.migrate.planning.model import ValidationCheck

    db = Database(settings(dsn))
    try:
        bad = ValidationCheck(name="no rows", query="SELECT count(*) FROM t", expected="0", blocking=True)
        good = ValidationCheck(name="column there", query="SELECT count(*) FROM information_schema.columns "
                               "WHERE table_name = 't' AND column_name = 'k'", expected="1", blocking=True)
        r = dry_run(db, parse_sql("ALTER TABLE t ADD COLUMN k int"), checks=[bad, good])
    finally:
        db.close()
    assert [c.passed for c in r.checks] == [False, True]
    assert not r.passed and any(f.kind == "check_failed" for f in r.findings)


@pytest.mark.parametrize("mode", [AccessMode.READ_ONLY])
def test_library_refuses_in_read_only(dsn, mode):
    from agent19.errors import ModeError

    db = Database(settings(dsn, mode))
    with pytest.raises(ModeError, match="needs mode dry-run"):
        dry_run(db, parse_sql("SELECT 1"))


def test_result_feeds_the_runbook_evidence(dsn):
    from agent19.report.model import DryRunEvidence

    populate(dsn)
    db = Database(settings(dsn))
    try:
        r = dry_run(db, parse_sql("CREATE INDEX t_b ON t (b)"))
    finally:
        db.close()
    evidence = DryRunEvidence.model_validate(r.to_evidence())
    assert evidence.passed and evidence.statements[0].observed_lock == "ShareLock"
    assert evidence.longest_lock and evidence.longest_lock.startswith("ShareLock on public.t")


async def test_a_summarised_dry_run_names_the_failing_statement_and_its_error(dsn):
    """A long migration's default (summarised) result still says which statement failed and why, first: its
    statements list and text are shortened from the end, where the failing statement of a long migration is."""
    run_sql(dsn, "CREATE TABLE wide (id int PRIMARY KEY)")
    statements = [f"ALTER TABLE wide ADD COLUMN c{i} integer DEFAULT {i} NOT NULL;" for i in range(80)]
    statements[70] = "ALTER TABLE wide ADD COLUMN c3 integer;"  # already added by statement 4
    async with stdio_session("--dsn", dsn, "--mode", "dry-run") as session:
        result = await session.call_tool("test_migration", {"sql": "\n".join(statements)})
    assert not result.is_error, result.content[0].text[:300]
    data = result.structured_content
    assert "truncated" in data and len(data["statements"]) < 80  # summarised: the case this is about
    assert not data["passed"]
    error = 'column "c3" of relation "wide" already exists'
    for said in (data["summary"], result.content[0].text.splitlines()[0]):
        assert "statement 71" in said and "sql:71" in said and error in said, said
