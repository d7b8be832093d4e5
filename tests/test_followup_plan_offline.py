"""plan_migration and generate_runbook over MCP degrade like lint_migration when the configured database cannot
be used (hostile review: plan failed outright): they work on the SQL alone and say why, without the password."""

from __future__ import annotations

import asyncio
import socket
from urllib.parse import urlsplit

from tests.mcp_client import stdio_session

SQL = "ALTER TABLE orders ADD COLUMN note text"


def _calls(dsn: str) -> dict[str, tuple[bool, str, dict]]:  # type: ignore[type-arg]
    async def run() -> dict[str, tuple[bool, str, dict]]:  # type: ignore[type-arg]
        out = {}
        async with stdio_session("--dsn", dsn) as s:
            for tool, args in [("plan_migration", {"sql": SQL}), ("generate_runbook", {"sql": SQL, "handoff": False}),
                               ("lint_migration", {"sql": SQL})]:
                r = await s.call_tool(tool, args)
                out[tool] = (r.is_error, " ".join(c.text for c in r.content if hasattr(c, "text")),
                             r.structured_content or {})
        return out
    return asyncio.run(run())


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _check(out: dict[str, tuple[bool, str, dict]], secret: str) -> None:  # type: ignore[type-arg]
    for tool, (error, text, _) in out.items():
        assert not error, (tool, text)
        assert secret not in text, tool
    plan = out["plan_migration"][2]
    assert plan["live"] is False and plan["operations"][0]["table"].endswith("orders")
    assert any("could not be used" in n and "SQL alone" in n for n in plan["notes"]), plan["notes"]
    assert any("database not reachable" in n for n in out["generate_runbook"][2]["notes"])
    assert any("could not be used" in a for a in out["lint_migration"][2]["summary"]["assumptions"])


def test_nothing_listens_on_the_port() -> None:
    _check(_calls(f"postgresql://app:s3cret-pw@127.0.0.1:{_free_port()}/shop?connect_timeout=3"), "s3cret-pw")


def test_the_server_refuses_the_login(dsn: str) -> None:
    u = urlsplit(dsn)
    # a real server that answers, but not for this role (whichever way its pg_hba authenticates)
    refused = f"postgresql://no_such_role_x:s3cret-pw@{u.hostname}:{u.port}/no_such_db_x?connect_timeout=3"
    _check(_calls(refused), "s3cret-pw")
