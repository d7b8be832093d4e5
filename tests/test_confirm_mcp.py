"""The confirmation protocol end to end through the official MCP client on a real server."""

import base64
import json
import os
import sys
from pathlib import Path

import psycopg
from mcp import ClientSession, StdioServerParameters
from mcp.client.stdio import stdio_client
from mcp.types import ElicitResult

from tests.mcp_client import hint, serve_args, stdio_session

SETUP = """
CREATE TABLE old_users (id int PRIMARY KEY, email text);
INSERT INTO old_users SELECT g, 'u' || g || '@x' FROM generate_series(1, 1234) g;
"""


def _setup(dsn):
    with psycopg.connect(dsn, autocommit=True) as conn:
        conn.execute(SETUP)


def _count(dsn):
    with psycopg.connect(dsn, autocommit=True) as conn:
        exists = conn.execute("SELECT to_regclass('old_users') IS NOT NULL").fetchone()[0]
        return conn.execute("SELECT count(*) FROM old_users").fetchone()[0] if exists else None


async def _confirm(session, **args):
    result = await session.call_tool("confirm_destructive", args)
    assert not result.is_error, result.content
    return result.structured_content


def _forge(token: str) -> str:
    prefix, body, mac = token.split(".")
    claims = json.loads(base64.urlsafe_b64decode(body + "=" * (-len(body) % 4)))
    claims["impact"]["targets"][0]["rows"] = 1
    forged = base64.urlsafe_b64encode(json.dumps(claims).encode()).rstrip(b"=").decode()
    return f"{prefix}.{forged}.{mac}"


async def test_a_phrase_from_the_model_is_refused_by_default(dsn, tmp_path):
    _setup(dsn)
    sql = "DROP TABLE old_users"
    async with stdio_session("--dsn", dsn, "--mode", "execute", "--data-dir", str(tmp_path)) as session:
        report = (await _confirm(session, sql=sql))["report"]
        assert report["confirm_url"].startswith("http://127.0.0.1:") and "/confirm/" in report["confirm_url"]
        assert report["confirm_command"] == f"agent19 confirm --token {report['token']} --mode execute"
        assert "Never type the phrase yourself" in report["next_step"]
        out = await _confirm(session, sql=sql, token=report["token"], phrase=report["phrase"])
        assert out["outcome"] == "refused" and "not accepted" in out["reasons"][0]
        assert report["confirm_url"] in out["reasons"][0]  # the same one-time page, offered again
        out = await _confirm(session, sql=sql, token=report["token"])
        assert out["outcome"] == "refused" and "not confirmed by a human yet" in out["reasons"][0]
        ran = (await session.call_tool("run_sql", {"sql": sql})).structured_content
        assert ran["executed"] is False and ran["confirmation"]["report"]["confirm_url"]
    assert _count(dsn) == 1234
    text = (tmp_path / "audit.jsonl").read_text()
    assert "a19." not in text and "Confirmed:" not in text and "/confirm/" not in text


async def test_drop_table_refused_five_ways_then_executed_with_the_exact_phrase(dsn, tmp_path):
    """With the operator's opt-in (an approver that is a program), the phrase may come as an argument."""
    _setup(dsn)
    sql = "DROP TABLE old_users"
    async with stdio_session("--dsn", dsn, "--mode", "execute", "--data-dir", str(tmp_path),
                             "--allow-model-confirmation") as session:
        tools = {t.name: t for t in (await session.list_tools()).tools}
        for name in ("run_sql", "confirm_destructive"):
            assert hint(tools[name], "destructiveHint") is True
            assert hint(tools[name], "readOnlyHint") is False

        # run_sql refuses and hands back the step-1 report
        ran = (await session.call_tool("run_sql", {"sql": sql})).structured_content
        assert ran["executed"] is False and ran["confirmation"]["outcome"] == "challenge"
        report = ran["confirmation"]["report"]
        phrase = report["phrase"]
        assert phrase == "Confirmed: old_users has 1234 rows, data is archived/not needed, proceed with drop."
        assert report["impact"]["targets"][0]["rows"] == 1234 and report["impact"]["targets"][0]["rows_exact"]
        assert {i["item"] for i in report["checklist"]} >= {"a recent backup exists", "tested in staging",
                                                           "rollback plan", "approval", "maintenance window"}
        assert report["archive"][0]["sql"].startswith('CREATE TABLE "public"."old_users_archive_')

        # 1. without the phrase (and no human approved it out of band)
        out = await _confirm(session, sql=sql, token=report["token"])
        assert out["outcome"] == "refused" and "not confirmed by a human yet" in out["reasons"][0]
        # 2. a near-miss phrase
        step1 = (await _confirm(session, sql=sql))["report"]
        out = await _confirm(session, sql=sql, token=step1["token"], phrase=phrase.rstrip("."))
        assert out["outcome"] == "refused" and "does not match exactly" in out["reasons"][0]
        # 3. the same token replayed, now with the exact phrase
        out = await _confirm(session, sql=sql, token=step1["token"], phrase=phrase)
        assert out["outcome"] == "refused" and "already used" in out["reasons"][0]
        # 4. a forged token (payload altered, and one made up)
        fresh = (await _confirm(session, sql=sql))["report"]["token"]
        for forged in (_forge(fresh), "a19.e30.AAAA", "not-a-token"):
            out = await _confirm(session, sql=sql, token=forged, phrase=phrase)
            assert out["outcome"] == "refused" and "not issued by this server" in out["reasons"][0]
        # a token for another statement
        other = (await _confirm(session, sql="TRUNCATE old_users"))["report"]["token"]
        out = await _confirm(session, sql=sql, token=other, phrase=phrase)
        assert out["outcome"] == "refused" and "another statement" in out["reasons"][0]
        # 5. the table gained rows since the challenge
        step1 = (await _confirm(session, sql=sql))["report"]
        with psycopg.connect(dsn, autocommit=True) as conn:
            conn.execute("INSERT INTO old_users VALUES (5000, 'late@x')")
        out = await _confirm(session, sql=sql, token=step1["token"], phrase=step1["phrase"])
        assert out["outcome"] == "refused" and "impact changed" in out["reasons"][0]
        assert "1234 -> 1235" in out["reasons"][0]
        assert _count(dsn) == 1235

        # executed with the exact phrase (whitespace and case of the SQL do not matter)
        step1 = (await _confirm(session, sql=sql, archive=True))["report"]
        assert "1235 rows" in step1["phrase"]
        out = await _confirm(session, sql="drop   table OLD_USERS;", token=step1["token"], phrase=step1["phrase"],
                             archive=True)
        assert out["outcome"] == "executed" and out["executed"] is True, out
        assert out["channel"] == "argument (operator opt-in)"
        assert out["archived"][0]["source_rows"] == out["archived"][0]["archive_rows"] == 1235
    assert _count(dsn) is None
    with psycopg.connect(dsn, autocommit=True) as conn:
        assert conn.execute(f"SELECT count(*) FROM {out['archived'][0]['archive']}").fetchone()[0] == 1235

    log = [json.loads(line) for line in (tmp_path / "audit.jsonl").read_text().splitlines()]
    outcomes = [e["outcome"] for e in log]
    assert outcomes.count("executed") == 1 and "challenged" in outcomes
    reasons = " | ".join(e["reason"] for e in log if e["outcome"] == "refused")
    assert [e["channel"] for e in log if e["outcome"] == "executed"] == ["argument (operator opt-in)"]
    for why in ("not confirmed by a human yet", "does not match exactly", "already used", "not issued by this server",
                "impact changed"):
        assert why in reasons
    text = (tmp_path / "audit.jsonl").read_text()
    assert "Confirmed:" not in text and "a19." not in text and dsn not in text and "@x" not in text
    assert oct((tmp_path / "audit.jsonl").stat().st_mode & 0o777) == "0o600"
    assert oct((tmp_path / "confirm.key").stat().st_mode & 0o777) == "0o600"


async def test_read_only_server_reports_but_never_executes(dsn, tmp_path):
    _setup(dsn)
    async with stdio_session("--dsn", dsn, "--data-dir", str(tmp_path)) as session:
        tools = {t.name: t for t in (await session.list_tools()).tools}
        assert "read-only: reads only" in tools["run_sql"].description
        assert "only in execute mode" in tools["confirm_destructive"].description
        step1 = (await _confirm(session, sql="TRUNCATE old_users"))["report"]
        assert "needs mode execute" in step1["next_step"]
        out = await _confirm(session, sql="TRUNCATE old_users", token=step1["token"], phrase=step1["phrase"])
        assert out["outcome"] == "refused" and "needs mode execute" in out["reasons"][0]
        refused = await session.call_tool("run_sql", {"sql": "SELECT 1; TRUNCATE old_users"})
        assert refused.is_error and "one statement per call" in refused.content[0].text
        rows = (await session.call_tool("run_sql", {"sql": "SELECT email FROM old_users ORDER BY id LIMIT 2"}))
        assert rows.structured_content["result"]["untrusted_data"] is True
        assert rows.structured_content["result"]["rows"] == [["u1@x"], ["u2@x"]]
    assert _count(dsn) == 1234


def _answer_with(reply):
    async def callback(context, params):
        if reply == "decline":
            return ElicitResult(action="decline")
        lines = params.message.splitlines()
        phrase = lines[lines.index("To proceed, type exactly:") + 1]
        return ElicitResult(action="accept", content={"phrase": phrase if reply == "exact" else phrase.lower()})

    return callback


async def _with_elicitation(dsn, data_dir, reply, calls):
    params = StdioServerParameters(
        command=sys.executable, args=serve_args("--dsn", dsn, "--mode", "execute", "--data-dir", str(data_dir)),
        env=dict(os.environ), cwd=str(Path(__file__).parent.parent),
    )
    async with stdio_client(params) as (read, write):
        async with ClientSession(read, write, elicitation_callback=_answer_with(reply)) as session:
            await session.initialize()
            return [(await session.call_tool(name, args)).structured_content for name, args in calls]


async def test_elicitation_asks_the_human_and_ignores_the_models_phrase(dsn, tmp_path):
    _setup(dsn)
    declined, near_miss = await _with_elicitation(dsn, tmp_path, "decline", [
        ("confirm_destructive", {"sql": "DELETE FROM old_users"}),
        ("run_sql", {"sql": "DELETE FROM old_users"}),
    ])
    assert declined["outcome"] == "refused" and "declined" in declined["reasons"][0]
    assert near_miss["executed"] is False
    (wrong,) = await _with_elicitation(dsn, tmp_path, "lower", [("run_sql", {"sql": "DELETE FROM old_users"})])
    assert wrong["executed"] is False and "(from elicitation)" in wrong["message"]
    assert _count(dsn) == 1234
    (done,) = await _with_elicitation(dsn, tmp_path, "exact", [  # every row in disguise: measured, then asked
        ("run_sql", {"sql": "DELETE FROM old_users WHERE id > 0"}),
    ])
    assert done["executed"] is True and done["result"]["row_count"] == 1234
    assert done["confirmation"]["channel"] == "elicitation" and done["confirmation"]["report"]["measured"]
    assert _count(dsn) == 0
