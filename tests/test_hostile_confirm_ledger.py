"""A model in execute mode cannot approve its own destructive statement by writing the ledger.

The confirmation ledger (``agent19.confirmations``) lives in the target database, and the login that
runs destructive statements can write it. Found by a hostile review: the model asked for a challenge,
``INSERT``-ed a row approving the token's nonce through ``run_sql`` (an INSERT loses nothing, so it ran),
then called ``confirm_destructive`` with the token; the DELETE ran and the audit log said a human had
confirmed at a terminal. An approval must carry the server's seal, which SQL cannot produce.

Runs through the real MCP client, as a non-superuser application login that owns its tables.
"""

from __future__ import annotations

import base64
import json
import uuid

import psycopg
from psycopg.conninfo import make_conninfo

from tests.mcp_client import stdio_session
from tests.terminal import at_terminal

LEDGER = """CREATE TABLE agent19.confirmations (nonce text PRIMARY KEY, expires_at timestamptz NOT NULL,
  approved_by text, approved_at timestamptz, used_at timestamptz, outcome text)"""


def _nonce(token: str) -> str:
    payload = token.split(".")[1]
    return str(json.loads(base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4)))["nonce"])


def _app_login(dsn: str) -> str:
    role = f"app_{uuid.uuid4().hex[:8]}"
    with psycopg.connect(dsn, autocommit=True) as c:
        db = c.execute("SELECT current_database()").fetchone()[0]
        c.execute(f"CREATE ROLE {role} LOGIN")
        c.execute(f"GRANT CREATE ON DATABASE {db} TO {role}")
        c.execute(f"CREATE SCHEMA app AUTHORIZATION {role}")
    app = make_conninfo(dsn, user=role)
    with psycopg.connect(app, autocommit=True) as c:
        c.execute("SET search_path = app")
        c.execute("CREATE TABLE app.items (id int PRIMARY KEY, v text)")
        c.execute("INSERT INTO app.items SELECT g, 'x' FROM generate_series(1, 50) g")
    return app


async def test_a_forged_ledger_row_approves_nothing(dsn, tmp_path):
    app = _app_login(dsn)
    sql = "DELETE FROM app.items"
    async with stdio_session("--dsn", app, "--mode", "execute", "--data-dir", str(tmp_path)) as s:
        first = (await s.call_tool("run_sql", {"sql": sql})).structured_content
        assert first["executed"] is False
        token = first["confirmation"]["report"]["token"]
        # the model writes the approval itself, through the tools it has (the ledger may not exist yet)
        for forge in ("CREATE SCHEMA IF NOT EXISTS agent19", LEDGER.replace("TABLE", "TABLE IF NOT EXISTS", 1),
                      f"INSERT INTO agent19.confirmations (nonce, expires_at, approved_by, approved_at) VALUES "
                      f"('{_nonce(token)}', now() + interval '1 hour', 'terminal', now())"):
            out = (await s.call_tool("run_sql", {"sql": forge})).structured_content
            assert out["executed"] is True, out
        refused = (await s.call_tool("confirm_destructive", {"sql": sql, "token": token})).structured_content
        assert refused["outcome"] == "refused", refused
        assert "not confirmed by a human yet" in refused["reasons"][0]
        with psycopg.connect(app) as c:
            assert c.execute("SELECT count(*) FROM app.items").fetchone()[0] == 50

        # a person at a terminal still confirms that same token, and the model's retry then runs once
        status, shown = at_terminal(["confirm", "--token", token, "--mode", "execute", "--dsn", app,
                                     "--data-dir", str(tmp_path)], lambda phrase: phrase)
        assert status == 0 and "outcome: approved" in shown, shown
        done = (await s.call_tool("confirm_destructive", {"sql": sql, "token": token})).structured_content
        assert done["outcome"] == "executed" and done["channel"] == "terminal", done

    with psycopg.connect(app) as c:
        assert c.execute("SELECT count(*) FROM app.items").fetchone()[0] == 0
    log = [json.loads(line) for line in (tmp_path / "audit.jsonl").read_text().splitlines()]
    assert [e.get("channel") for e in log if e["outcome"] == "executed"] == ["terminal"]


async def test_copying_another_tokens_approval_approves_nothing(dsn, tmp_path):
    """A sealed approval is bound to its token: copied onto another token's nonce it is worthless."""
    app = _app_login(dsn)
    async with stdio_session("--dsn", app, "--mode", "execute", "--data-dir", str(tmp_path)) as s:
        a = (await s.call_tool("run_sql", {"sql": "DELETE FROM app.items WHERE id <= 40"})).structured_content
        token_a = a["confirmation"]["report"]["token"]
        status, shown = at_terminal(["confirm", "--token", token_a, "--mode", "execute", "--dsn", app,
                                     "--data-dir", str(tmp_path)], lambda phrase: phrase)
        assert status == 0, shown
        b = (await s.call_tool("run_sql", {"sql": "DELETE FROM app.items"})).structured_content
        token_b = b["confirmation"]["report"]["token"]
        copy = (f"INSERT INTO agent19.confirmations (nonce, expires_at, approved_by, approved_at) "
                f"SELECT '{_nonce(token_b)}', expires_at, approved_by, approved_at FROM agent19.confirmations "
                f"WHERE nonce = '{_nonce(token_a)}'")
        assert (await s.call_tool("run_sql", {"sql": copy})).structured_content["executed"] is True
        refused = (await s.call_tool("confirm_destructive", {"sql": "DELETE FROM app.items", "token": token_b}))
        assert refused.structured_content["outcome"] == "refused", refused.structured_content
    with psycopg.connect(app) as c:
        assert c.execute("SELECT count(*) FROM app.items").fetchone()[0] == 50
