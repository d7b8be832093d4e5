"""Run by tests/test_http_auth.py, possibly inside another network namespace: call an agent19 MCP URL with
no token, a wrong token and the right one (``AGENT19_TEST_TOKEN``, from the environment: never argv), with
a raw POST and with the real MCP client; print one JSON object with what happened."""

from __future__ import annotations

import json
import os
import sys

import anyio
import httpx2
from mcp import ClientSession
from mcp.client.streamable_http import streamable_http_client

INIT = {"jsonrpc": "2.0", "id": 1, "method": "initialize",
        "params": {"protocolVersion": "2025-06-18", "capabilities": {},
                   "clientInfo": {"name": "probe", "version": "0"}}}


async def attempt(url: str, token: str | None) -> dict[str, object]:
    headers = {"Authorization": f"Bearer {token}"} if token is not None else {}
    async with httpx2.AsyncClient(timeout=20) as raw:
        resp = await raw.post(url, json=INIT, headers={**headers, "Accept": "application/json, text/event-stream"})
    out: dict[str, object] = {"status": resp.status_code, "www_authenticate": resp.headers.get("www-authenticate")}
    try:
        with anyio.fail_after(30):
            async with httpx2.AsyncClient(headers=headers, timeout=20) as client:
                async with streamable_http_client(url, http_client=client) as (read, write):
                    async with ClientSession(read, write) as session:
                        await session.initialize()
                        result = await session.call_tool("server_info", {})
                        out["mcp"] = "ok" if not result.is_error else "tool error"
                        out["mode"] = (result.structured_content or {}).get("mode")
    except BaseException as exc:  # noqa: BLE001 - a refused client raises a group of transport errors
        out["mcp"] = f"failed: {type(exc).__name__}"
    return out


async def main() -> None:
    url, token = sys.argv[1], os.environ["AGENT19_TEST_TOKEN"]
    results = {"none": await attempt(url, None), "wrong": await attempt(url, "x" * len(token)),
               "right": await attempt(url, token)}
    print(json.dumps(results))


if __name__ == "__main__":
    anyio.run(main)
