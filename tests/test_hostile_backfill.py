"""A backfill whose WHERE matches every row without saying so goes through the confirmation protocol.

Found by a hostile review: through the MCP client in execute mode, `run_backfill` with
`set: "note = NULL", where: "id > 0"` wiped a column of every row with no confirmation (only a
missing or literally-true WHERE was caught; run_sql measures, the backfill did not). The backfill
now counts, exactly and before anything runs, the values it would overwrite (rows matching its WHERE
whose SET columns are not NULL) and applies the same thresholds as run_sql. A backfill that fills
NULLs (the usual kind) still runs at once. As a non-superuser application login.
"""

from __future__ import annotations

import psycopg

from tests.conftest import owner_login
from tests.mcp_client import stdio_session
from tests.terminal import at_terminal


def _app(dsn: str) -> str:
    app = owner_login(dsn)
    with psycopg.connect(app, autocommit=True) as c:
        c.execute("CREATE TABLE items (id int PRIMARY KEY, note text, filled int)")
        c.execute("INSERT INTO items SELECT g, 'keep ' || g, NULL FROM generate_series(1, 300) g")
    return app


def _count(app: str, sql: str) -> int:
    with psycopg.connect(app) as c:
        return int(c.execute(sql).fetchone()[0])


async def test_overwriting_every_value_needs_a_human(dsn, tmp_path):
    app = _app(dsn)
    wipe = {"table": "items", "set": "note = NULL", "where": "id > 0"}
    async with stdio_session("--dsn", app, "--mode", "execute", "--data-dir", str(tmp_path)) as s:
        first = (await s.call_tool("run_backfill", wipe)).structured_content
        confirmation = first["confirmation"]
        assert confirmation["outcome"] == "challenge" and first["rows_updated"] == 0, first
        assert "300 of the 300 rows" in " ".join(f["reason"] for f in confirmation["report"]["findings"])
        assert _count(app, "SELECT count(note) FROM items") == 300
        token = confirmation["report"]["token"]
        # without a human, the token alone runs nothing
        again = (await s.call_tool("run_backfill", {**wipe, "confirm_token": token})).structured_content
        assert again["rows_updated"] == 0 and _count(app, "SELECT count(note) FROM items") == 300
        status, shown = at_terminal(["confirm", "--token", token, "--mode", "execute", "--dsn", app,
                                     "--data-dir", str(tmp_path)], lambda phrase: phrase)
        assert status == 0 and "outcome: approved" in shown, shown
        done = (await s.call_tool("run_backfill", {**wipe, "confirm_token": token})).structured_content
        assert done["rows_updated"] == 300, done
        assert _count(app, "SELECT count(note) FROM items") == 0

        # filling NULLs loses nothing: it runs at once, and so does overwriting a small share
        fill = (await s.call_tool("run_backfill", {"table": "items", "set": "filled = id",
                                                   "where": "filled IS NULL"})).structured_content
        assert fill["confirmation"] is None and fill["rows_updated"] == 300, fill
        few = (await s.call_tool("run_backfill", {"table": "items", "set": "filled = 0",
                                                  "where": "id <= 10"})).structured_content
        assert few["confirmation"] is None and few["rows_updated"] == 10, few
