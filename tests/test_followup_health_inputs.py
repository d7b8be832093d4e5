"""health_check takes the shapes MCP clients send (hostile review): `checks` as one string, `set` as an object;
the CLI keeps its list flags."""

from __future__ import annotations

import asyncio
import json
import subprocess
import sys

from tests.mcp_client import stdio_session


def test_mcp_checks_as_a_string_and_set_as_an_object(dsn: str) -> None:
    async def calls() -> list[tuple[bool, str, object]]:
        out = []
        async with stdio_session("--dsn", dsn) as s:
            for args in [{"checks": "connections", "set": {"connections_warning_pct": 0}},
                         {"checks": "connections, prepared_transactions"},
                         {"checks": ["connections"], "set": ["connections_warning_pct=0"]},
                         {"checks": "connections", "set": {"no_such_threshold": 1}}]:
                r = await s.call_tool("health_check", args)
                out.append((r.is_error, " ".join(c.text for c in r.content if hasattr(c, "text")),
                            r.structured_content))
        return out

    (e1, t1, r1), (e2, t2, r2), (e3, t3, r3), (e4, t4, _) = asyncio.run(calls())
    assert not e1 and not e2 and not e3, (t1, t2, t3)
    assert r1 and r3 and r2
    # the object's threshold was applied: 0 % of max_connections in use is already a warning
    assert [(c["check"], c["status"]) for c in r1["checks"]] == [("connections", "warning")]
    assert [c["check"] for c in r1["checks"]] == [c["check"] for c in r3["checks"]]
    assert r1["checks"][0]["status"] == r3["checks"][0]["status"]
    assert sorted(c["check"] for c in r2["checks"]) == ["connections", "prepared_transactions"]
    assert e4 and "no_such_threshold" in t4


def test_cli_list_flags_still_work(dsn: str) -> None:
    out = subprocess.run([sys.executable, "-m", "agent19", "health", "--checks", "connections", "prepared_transactions",
                          "--set", "connections_warning_pct=0", "--dsn", dsn, "--format", "json", "--fail-on", "never"],
                         capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    checks = {c["check"]: c["status"] for c in json.loads(out.stdout)["checks"]}
    assert checks == {"connections": "warning", "prepared_transactions": "ok"}
