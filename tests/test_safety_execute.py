"""Execute mode on a real server through the MCP client: writes are measured in a savepoint, kinds
not known to lose nothing go through the protocol, the phrase comes from a human at a terminal, and a
token runs one statement across processes."""

from __future__ import annotations

import asyncio
import json
import subprocess
import sys

import psycopg
import pytest
from psycopg.conninfo import make_conninfo

from tests.mcp_client import stdio_session
from tests.terminal import ROOT, at_terminal

SETUP = """
CREATE TABLE items (id int PRIMARY KEY, v int, note text);
INSERT INTO items SELECT g, g, 'n' || g FROM generate_series(1, 100) g;
CREATE TABLE parents (id int PRIMARY KEY);
CREATE TABLE kids (id int PRIMARY KEY, parent_id int REFERENCES parents ON DELETE CASCADE);
INSERT INTO parents SELECT generate_series(1, 10);
INSERT INTO kids SELECT g, g FROM generate_series(1, 10) g;
CREATE TABLE inbox (id int);
CREATE FUNCTION wipe_items() RETURNS trigger LANGUAGE plpgsql AS $$ BEGIN DELETE FROM items; RETURN NEW; END $$;
CREATE TRIGGER inbox_wipes AFTER INSERT ON inbox FOR EACH ROW EXECUTE FUNCTION wipe_items();
CREATE FUNCTION purge() RETURNS int LANGUAGE sql AS $$ DELETE FROM items RETURNING 1 $$;
CREATE TABLE spare (id int);
CREATE TABLE inbox_t (id int);
CREATE FUNCTION truncate_items() RETURNS trigger LANGUAGE plpgsql AS $$ BEGIN TRUNCATE items; RETURN NEW; END $$;
CREATE TRIGGER inbox_truncates AFTER INSERT ON inbox_t FOR EACH ROW EXECUTE FUNCTION truncate_items();
CREATE TABLE inbox_d (id int);
CREATE FUNCTION drop_spare() RETURNS trigger LANGUAGE plpgsql AS $$ BEGIN DROP TABLE spare; RETURN NEW; END $$;
CREATE TRIGGER inbox_drops AFTER INSERT ON inbox_d FOR EACH ROW EXECUTE FUNCTION drop_spare();
CREATE TABLE victim2 (id int, v text DEFAULT 'a');
CREATE INDEX victim2_v_idx ON victim2 (v);
CREATE VIEW report_v AS SELECT id FROM victim2;
CREATE TABLE inbox_ddl (id int);
CREATE FUNCTION hidden_ddl() RETURNS trigger LANGUAGE plpgsql AS $$ BEGIN
  DROP VIEW report_v; DROP INDEX victim2_v_idx; ALTER TABLE victim2 ALTER COLUMN v SET DEFAULT 'x'; RETURN NEW; END $$;
CREATE TRIGGER inbox_ddls AFTER INSERT ON inbox_ddl FOR EACH ROW EXECUTE FUNCTION hidden_ddl();
"""
# What a trigger does out of sight to whole tables: seen in the relation list, rolled back, challenged.
HIDDEN = {
    "INSERT INTO inbox_t VALUES (1)": "truncated or rewrote table public.items",
    "INSERT INTO inbox_d VALUES (1)": "dropped table public.spare",
    # no table or row lost: a view, an index and a column default, each named
    "INSERT INTO inbox_ddl VALUES (1)": "dropped view public.report_v (through a trigger, rule or function)"
                                        "|dropped index public.victim2_v_idx"
                                        "|changed the default of column public.victim2.v",
}

# Statements that touch every row without saying so: measured, rolled back, challenged.
MEASURED = {
    "DELETE FROM items WHERE id > 0": ("mass_delete", "public.items", 100),
    "DELETE FROM items WHERE EXISTS (SELECT 1)": ("mass_delete", "public.items", 100),
    "DELETE FROM items WHERE id::text::int = id": ("mass_delete", "public.items", 100),
    "DELETE FROM items WHERE id IN (SELECT id FROM items)": ("mass_delete", "public.items", 100),
    "DELETE FROM items WHERE ctid IS NOT NULL": ("mass_delete", "public.items", 100),
    "UPDATE items SET note = 'x' WHERE v::numeric >= 0": ("mass_update", "public.items", 100),
    "MERGE INTO items USING (SELECT id FROM items) s ON items.id = s.id WHEN MATCHED THEN DELETE":
        ("mass_delete", "public.items", 100),
    "INSERT INTO items SELECT id, 0 FROM items ON CONFLICT (id) DO UPDATE SET v = excluded.v":
        ("mass_update", "public.items", 100),
    "WITH d AS (DELETE FROM items WHERE id > 0 RETURNING 1) SELECT count(*) FROM d":
        ("mass_delete", "public.items", 100),
    "INSERT INTO inbox VALUES (1)": ("mass_delete", "public.items", 100),  # a trigger deletes
    "DELETE FROM parents WHERE id < 100": ("mass_delete", "public.kids", 10),  # and the cascade
}
# Kinds not on the allowlist, or calls that cannot be verified: refused before anything runs.
NOT_KNOWN_SAFE = [
    "DROP OWNED BY victim_role",
    "CREATE RULE wipe AS ON INSERT TO inbox DO ALSO DELETE FROM items",
    "DROP ROLE victim_role",
    "ALTER SYSTEM SET work_mem = '1MB'",
    "COPY items TO PROGRAM 'cat > /dev/null'",
    "CREATE TABLE snap AS SELECT purge()",
    "SELECT purge()",
    "GRANT pg_read_server_files TO victim_role",
    "CREATE TRIGGER again AFTER INSERT ON items FOR EACH ROW EXECUTE FUNCTION wipe_items()",
    "CREATE OR REPLACE FUNCTION purge() RETURNS int LANGUAGE sql AS $$ SELECT 1 $$",
    "ALTER TABLE items DISABLE TRIGGER ALL",
    "SELECT somedb.pg_catalog.pg_sleep(0)",
]
ALLOWED = {
    "UPDATE items SET v = 0 WHERE id = 5": 1,
    "DELETE FROM items WHERE id <= 10": 10,
    "INSERT INTO items VALUES (1000, 1, 'new')": 1,
    "CREATE INDEX items_v ON items (v)": None,
}


def _state(dsn: str) -> tuple:
    with psycopg.connect(dsn, autocommit=True) as c:
        return c.execute(
            "SELECT (SELECT count(*) FROM items), (SELECT count(*) FROM kids), (SELECT count(*) FROM parents),"
            " (SELECT count(*) FROM pg_rewrite WHERE rulename = 'wipe'),"
            " (SELECT count(*) FROM pg_roles WHERE rolname = 'victim_role'),"
            " (SELECT count(*) FROM pg_trigger WHERE tgname = 'again'), to_regclass('snap') IS NULL,"
            " (SELECT sum(v) FROM items), (SELECT bool_and(tgenabled = 'O') FROM pg_trigger WHERE NOT tgisinternal)"
        ).fetchone()


@pytest.fixture
def logins(dsn):
    """The database twice: as the superuser of the test server and as an application role owning the tables."""
    with psycopg.connect(dsn, autocommit=True) as c:
        c.execute("DO $$ BEGIN CREATE ROLE victim_role; EXCEPTION WHEN duplicate_object THEN NULL; END $$")
        c.execute("DO $$ BEGIN CREATE ROLE exec_app LOGIN; EXCEPTION WHEN duplicate_object THEN NULL; END $$")
        c.execute("GRANT CREATE ON SCHEMA public TO exec_app")
        # where agent19 keeps its ledgers: the app may not create a schema (agent19.safety.tally refuses its writes
        # until an administrator made this one, test_mass_write_tally)
        c.execute("CREATE SCHEMA agent19 AUTHORIZATION exec_app")
    return {"superuser": dsn, "app": make_conninfo(dsn, user="exec_app")}


@pytest.mark.parametrize("login", ["superuser", "app"])
async def test_every_class_is_measured_or_refused_and_nothing_is_kept(logins, tmp_path, login):
    dsn = logins[login]
    with psycopg.connect(dsn, autocommit=True) as c:
        c.execute(SETUP)
    before = _state(logins["superuser"])
    async with stdio_session("--dsn", dsn, "--mode", "execute", "--data-dir", str(tmp_path)) as session:
        for sql, (kind, table, rows) in MEASURED.items():
            out = (await session.call_tool("run_sql", {"sql": sql})).structured_content
            assert out["executed"] is False, (sql, out)
            report = out["confirmation"]["report"]
            assert report["measured"] is True and report["findings"][0]["kind"] == kind, (sql, report["findings"])
            target = next(t for t in report["impact"]["targets"] if t["name"] == table)
            assert target["rows"] == target["rows_touched"] == rows and target["rows_exact"], (sql, target)
            assert f"{table} has {rows} rows and the statement" in report["phrase"]
            assert report["token"] and report["confirm_url"], sql
            assert _state(logins["superuser"]) == before, f"kept: {sql}"
        for sql, why in HIDDEN.items():
            out = (await session.call_tool("run_sql", {"sql": sql})).structured_content
            assert out["executed"] is False, (sql, out)
            reasons = " ".join(f["reason"] for f in out["confirmation"]["report"]["findings"])
            assert all(part in reasons for part in why.split("|")), (sql, out)
        with psycopg.connect(logins["superuser"], autocommit=True) as c:
            assert c.execute("SELECT to_regclass('spare') IS NOT NULL").fetchone()[0]
            assert c.execute("SELECT to_regclass('report_v') IS NOT NULL AND to_regclass('victim2_v_idx') IS NOT NULL"
                             " AND pg_get_expr(adbin, adrelid) = '''a''::text' FROM pg_attrdef"
                             " WHERE adrelid = 'victim2'::regclass").fetchone()[0]
        assert _state(logins["superuser"]) == before
        for sql in NOT_KNOWN_SAFE:
            result = await session.call_tool("run_sql", {"sql": sql})
            if result.is_error:  # refused outright by an earlier layer (e.g. a name the server would resolve)
                assert "refused" in result.content[0].text, (sql, result.content)
            else:
                out = result.structured_content
                assert out["executed"] is False, (sql, out)
                kinds = {f["kind"] for f in out["confirmation"]["report"]["findings"]}
                assert kinds & {"not_known_safe", "unverifiable"}, (sql, kinds)
            assert _state(logins["superuser"]) == before, f"ran: {sql}"
        for sql, rows in ALLOWED.items():
            out = (await session.call_tool("run_sql", {"sql": sql})).structured_content
            assert out["executed"] is True, (sql, out)
            assert rows is None or out["result"]["row_count"] == rows
    assert _state(logins["superuser"])[0] == 91  # 100 - 10 deleted + 1 inserted


def _approve(token: str, dsn: str, data_dir, answer=lambda phrase: phrase) -> tuple[int, str]:
    return at_terminal(["confirm", "--token", token, "--mode", "execute", "--dsn", dsn, "--data-dir", str(data_dir)],
                       answer)


async def test_a_human_at_a_terminal_confirms_then_the_models_retry_runs(dsn, tmp_path):
    with psycopg.connect(dsn, autocommit=True) as c:
        c.execute(SETUP)
    sql = "DELETE FROM items WHERE id > 0"
    async with stdio_session("--dsn", dsn, "--mode", "execute", "--data-dir", str(tmp_path)) as session:
        report = (await session.call_tool("run_sql", {"sql": sql})).structured_content["confirmation"]["report"]
        token = report["token"]
        # without a terminal the command refuses: a person must type the phrase
        piped = subprocess.run([sys.executable, "-m", "agent19", "confirm", "--token", token, "--mode", "execute",
                                "--dsn", dsn, "--data-dir", str(tmp_path)], capture_output=True, text=True,
                               cwd=ROOT, stdin=subprocess.DEVNULL)
        assert piped.returncode == 2 and "needs a person at a terminal" in piped.stderr, piped.stderr
        # a mistyped phrase approves nothing
        status, shown = _approve(token, dsn, tmp_path, lambda phrase: phrase.upper())
        assert status == 1 and "does not match exactly" in shown, shown
        out = (await session.call_tool("confirm_destructive", {"sql": sql, "token": token})).structured_content
        assert out["outcome"] == "refused" and "not confirmed by a human yet" in out["reasons"][0]
        # the terminal shows the statement and the measured numbers, the human types the phrase
        status, shown = _approve(token, dsn, tmp_path)
        assert status == 0 and "outcome: approved" in shown and "confirmed through terminal" in shown, shown
        assert sql in shown and "100 of them touched (measured)" in shown
        # the person at the terminal is told the command that runs it (and what the model that asked calls)
        assert f"agent19 confirm '...' --token {token} --mode execute" in shown and "The model can now" not in shown
        done = (await session.call_tool("confirm_destructive", {"sql": sql, "token": token})).structured_content
        assert done["outcome"] == "executed" and done["channel"] == "terminal", done
        assert done["result"]["row_count"] == 100
        again = (await session.call_tool("confirm_destructive", {"sql": sql, "token": token})).structured_content
        assert again["outcome"] == "refused"
    with psycopg.connect(dsn, autocommit=True) as c:
        assert c.execute("SELECT count(*) FROM items").fetchone()[0] == 0
        row = c.execute("SELECT approved_by, used_at IS NOT NULL FROM agent19.confirmations "
                        "WHERE approved_by IS NOT NULL").fetchall()
        assert row == [("terminal", True)]
    log = [json.loads(line) for line in (tmp_path / "audit.jsonl").read_text().splitlines()]
    assert [(e["outcome"], e.get("channel")) for e in log if e["outcome"] in {"approved", "executed"}] == [
        ("approved", "terminal"), ("executed", "terminal")]


async def test_rows_added_after_the_challenge_refuse_the_confirmation(dsn, tmp_path):
    """Exact counts in both steps, also above 64 MB (where the planner's estimate used to be trusted)."""
    with psycopg.connect(dsn, autocommit=True) as c:
        c.execute("CREATE TABLE big (id bigint PRIMARY KEY, pad text)")
        c.execute("INSERT INTO big SELECT g, repeat('x', 200) FROM generate_series(1, 330000) g")
        c.execute("ANALYZE big")
        assert c.execute("SELECT pg_relation_size('big') > 64 * 1024 * 1024").fetchone()[0]
    async with stdio_session("--dsn", dsn, "--mode", "execute", "--data-dir", str(tmp_path),
                             "--allow-model-confirmation") as session:
        progress: list[str] = []

        async def on_progress(done: float, total: float | None, message: str | None) -> None:
            progress.append(message or "")

        step1 = (await session.call_tool("confirm_destructive", {"sql": "TRUNCATE big"},
                                         progress_callback=on_progress)).structured_content["report"]
        target = step1["impact"]["targets"][0]
        assert target["rows"] == 330000 and target["rows_exact"] is True
        assert any(m.startswith("counting public.big exactly") for m in progress), progress  # in block ranges
        with psycopg.connect(dsn, autocommit=True) as c:
            c.execute("INSERT INTO big SELECT g, 'late' FROM generate_series(330001, 330500) g")
        out = (await session.call_tool("confirm_destructive", {"sql": "TRUNCATE big", "token": step1["token"],
                                                               "phrase": step1["phrase"]})).structured_content
        assert out["outcome"] == "refused" and "330000 -> 330500" in out["reasons"][0], out
    with psycopg.connect(dsn, autocommit=True) as c:
        assert c.execute("SELECT count(*) FROM big").fetchone()[0] == 330500


async def test_a_measured_write_is_measured_again_under_the_lock(dsn, tmp_path):
    with psycopg.connect(dsn, autocommit=True) as c:
        c.execute(SETUP)
    sql = "UPDATE items SET note = 'gone' WHERE id > 0"
    async with stdio_session("--dsn", dsn, "--mode", "execute", "--data-dir", str(tmp_path),
                             "--allow-model-confirmation") as session:
        report = (await session.call_tool("run_sql", {"sql": sql})).structured_content["confirmation"]["report"]
        with psycopg.connect(dsn, autocommit=True) as c:
            c.execute("INSERT INTO items VALUES (500, 1, 'late')")
        out = (await session.call_tool("confirm_destructive", {"sql": sql, "token": report["token"],
                                                               "phrase": report["phrase"]})).structured_content
        assert out["outcome"] == "refused" and "public.items rows 100 -> 101" in out["reasons"][0], out
        report = (await session.call_tool("run_sql", {"sql": sql})).structured_content["confirmation"]["report"]
        assert "has 101 rows and the statement updates 101 of them" in report["phrase"]
        out = (await session.call_tool("confirm_destructive", {"sql": sql, "token": report["token"],
                                                               "phrase": report["phrase"]})).structured_content
        assert out["outcome"] == "executed" and out["result"]["row_count"] == 101
    with psycopg.connect(dsn, autocommit=True) as c:
        assert c.execute("SELECT count(*) FROM items WHERE note = 'gone'").fetchone()[0] == 101


async def test_two_processes_sharing_the_key_run_a_token_once(dsn, tmp_path):
    """The token's single use lives in the target database: two agent19 processes with their own data
    directories and the same AGENT19_CONFIRM_KEY cannot both run it, even at the same moment."""
    with psycopg.connect(dsn, autocommit=True) as c:
        c.execute(SETUP)
    env = {"AGENT19_CONFIRM_KEY": "shared-key-" + "k" * 32}
    sql = "UPDATE items SET v = v + 1"  # its impact stays the same after it ran: only the ledger can stop a replay
    args = ("--dsn", dsn, "--mode", "execute", "--allow-model-confirmation")
    async with stdio_session(*args, "--data-dir", str(tmp_path / "a"), env=env) as a, \
            stdio_session(*args, "--data-dir", str(tmp_path / "b"), env=env) as b:
        report = (await a.call_tool("confirm_destructive", {"sql": sql})).structured_content["report"]
        call = {"sql": sql, "token": report["token"], "phrase": report["phrase"]}
        first, second = await asyncio.gather(a.call_tool("confirm_destructive", call),
                                             b.call_tool("confirm_destructive", call))
        outcomes = sorted([first.structured_content["outcome"], second.structured_content["outcome"]])
        assert outcomes == ["executed", "refused"], (first.structured_content, second.structured_content)
        refused = first if first.structured_content["outcome"] == "refused" else second
        assert "already used" in refused.structured_content["reasons"][0]
        replay = (await b.call_tool("confirm_destructive", call)).structured_content
        assert replay["outcome"] == "refused" and "already used" in replay["reasons"][0]
    with psycopg.connect(dsn, autocommit=True) as c:
        assert c.execute("SELECT sum(v) FROM items").fetchone()[0] == 5050 + 100  # once, not twice


async def test_a_login_that_cannot_create_the_ledger_is_told_what_to_run(dsn, tmp_path):
    with psycopg.connect(dsn, autocommit=True) as c:
        c.execute("DO $$ BEGIN CREATE ROLE ledgerless LOGIN; EXCEPTION WHEN duplicate_object THEN NULL; END $$")
        c.execute("GRANT CREATE ON SCHEMA public TO ledgerless")
    app = make_conninfo(dsn, user="ledgerless")
    with psycopg.connect(app, autocommit=True) as c:
        c.execute("CREATE TABLE scratch (id int); INSERT INTO scratch VALUES (1), (2)")
    args = ("--dsn", app, "--mode", "execute", "--data-dir", str(tmp_path), "--allow-model-confirmation")
    async with stdio_session(*args) as session:
        report = (await session.call_tool("confirm_destructive", {"sql": "TRUNCATE scratch"})).structured_content
        call = {"sql": "TRUNCATE scratch", "token": report["report"]["token"], "phrase": report["report"]["phrase"]}
        failed = await session.call_tool("confirm_destructive", call)
        assert failed.is_error and "CREATE SCHEMA agent19 AUTHORIZATION ledgerless" in failed.content[0].text
        with psycopg.connect(dsn, autocommit=True) as c:
            c.execute("CREATE SCHEMA agent19 AUTHORIZATION ledgerless")
            assert c.execute("SELECT count(*) FROM scratch").fetchone()[0] == 2  # nothing ran
        done = (await session.call_tool("confirm_destructive", call)).structured_content
        assert done["outcome"] == "executed"


async def test_step_two_waits_in_share_mode_for_writers_then_runs(dsn, tmp_path):
    """Observed from pg_locks: confirming takes SHARE on the table (writers wait, so the exact count
    holds until the statement) — here it queues behind an open writer, and runs once it is gone."""
    with psycopg.connect(dsn, autocommit=True) as c:
        c.execute(SETUP)
    async with stdio_session("--dsn", dsn, "--mode", "execute", "--data-dir", str(tmp_path), "--lock-timeout", "30s",
                             "--allow-model-confirmation") as session:
        step1 = (await session.call_tool("confirm_destructive", {"sql": "TRUNCATE items"})).structured_content
        report = step1["report"]
        writer = psycopg.connect(dsn)
        writer.execute("UPDATE items SET v = v WHERE id = 1")  # an open transaction holding ROW EXCLUSIVE
        call = asyncio.create_task(session.call_tool("confirm_destructive", {
            "sql": "TRUNCATE items", "token": report["token"], "phrase": report["phrase"]}))
        waiting = None
        with psycopg.connect(dsn, autocommit=True) as watch:
            for _ in range(100):
                await asyncio.sleep(0.1)
                waiting = watch.execute(
                    "SELECT l.mode FROM pg_locks l JOIN pg_stat_activity a ON a.pid = l.pid "
                    "WHERE a.application_name = 'agent19' AND l.relation = 'items'::regclass AND NOT l.granted"
                ).fetchone()
                if waiting:
                    break
        assert waiting == ("ShareLock",)
        assert not call.done()
        writer.rollback()
        writer.close()
        out = (await call).structured_content
        assert out["outcome"] == "executed", out
    with psycopg.connect(dsn, autocommit=True) as c:
        assert c.execute("SELECT count(*) FROM items").fetchone()[0] == 0


async def test_a_login_that_may_delete_but_not_count_is_refused(dsn, tmp_path):
    """Unknown is destructive: without SELECT the share of rows touched cannot be measured."""
    with psycopg.connect(dsn, autocommit=True) as c:
        c.execute(SETUP)
        c.execute("DO $$ BEGIN CREATE ROLE blind_deleter LOGIN; EXCEPTION WHEN duplicate_object THEN NULL; END $$")
        c.execute("GRANT DELETE ON items TO blind_deleter")
    blind = make_conninfo(dsn, user="blind_deleter")
    async with stdio_session("--dsn", blind, "--mode", "execute", "--data-dir", str(tmp_path)) as session:
        out = (await session.call_tool("run_sql", {"sql": "DELETE FROM items WHERE EXISTS (SELECT 1)"}))
        assert not out.is_error, out.content
        report = out.structured_content["confirmation"]["report"]
        assert out.structured_content["executed"] is False and "no SELECT privilege" in report["findings"][0]["reason"]
        assert "an unknown number of rows and the statement deletes 100 of them" in report["phrase"]
    with psycopg.connect(dsn, autocommit=True) as c:
        assert c.execute("SELECT count(*) FROM items").fetchone()[0] == 100
