"""What a model pays for: tools/list and tool results measured through the official MCP client."""

from __future__ import annotations

import json

import pytest
from mcp.shared.exceptions import MCPError

from tests.mcp_client import stdio_session

LISTING_BUDGET = 40_000
"""Characters of tools/list a client reads each conversation: descriptions + input schemas + output schemas
(compact JSON). It was 266,915 for these 33 tools before listings were compacted."""


def _size(schema: dict | None) -> int:
    return len(json.dumps(schema, separators=(",", ":"), ensure_ascii=False)) if schema else 0


async def test_tool_listing_stays_within_its_budget():
    async with stdio_session() as session:
        tools = (await session.list_tools()).tools
        sizes = {t.name: len(t.description or "") + _size(t.input_schema) + _size(t.output_schema) for t in tools}
        total = sum(sizes.values())
        biggest = sorted(sizes.items(), key=lambda kv: -kv[1])[:5]
        assert total <= LISTING_BUDGET, f"tools/list is {total} characters (budget {LISTING_BUDGET}), most: {biggest}"
        for t in tools:
            schema = json.dumps(t.input_schema)
            assert '"title"' not in schema.replace('"title":{', ""), f"{t.name}: generated titles are listed"
            assert "user_sql" not in schema, f"{t.name}: agent19's own schema markers reach the client"
            assert t.annotations.title is None, f"{t.name}: the title is listed twice"

        # what the listing leaves out is one read away, for every tool
        for t in tools:
            docs = json.loads((await session.read_resource(f"agent19://tools/{t.name}")).contents[0].text)
            assert docs["description"].startswith(t.description.split("\n\n")[0][:60]), t.name
            assert docs["output_schema"]["type"] == "object", t.name
            assert set(t.input_schema["properties"]) == set(docs["input_schema"]["properties"]), t.name
        with pytest.raises(MCPError, match="no tool 'nope'"):
            await session.read_resource("agent19://tools/nope")


async def test_optional_arguments_may_still_be_sent_as_null_and_unknown_ones_are_refused():
    """The listing drops the ``null`` branch of optional arguments; the server still accepts an explicit null
    (clients send it) and still refuses an argument the tool does not declare."""
    async with stdio_session() as session:
        tools = {t.name: t for t in (await session.list_tools()).tools}
        assert tools["lint_migration"].input_schema["properties"]["sql"] == {
            "type": "string", "description": tools["lint_migration"].input_schema["properties"]["sql"]["description"]}
        ok = await session.call_tool("lint_migration", {"sql": "CREATE INDEX i ON t (a);", "config": None,
                                                        "pg_version": 15})
        assert not ok.is_error, ok.content
        bad = await session.call_tool("lint_migration", {"sql": "SELECT 1", "pg_versoin": 15})
        assert bad.is_error and "pg_versoin" in bad.content[0].text


async def test_text_content_is_the_rendering_and_the_data_comes_once():
    async with stdio_session() as session:
        result = await session.call_tool("lint_migration", {"sql": "CREATE INDEX i ON t (a);", "pg_version": 15})
        assert not result.is_error, result.content
        [text] = [c.text for c in result.content if c.type == "text"]
        finding = result.structured_content["statements"][0]["findings"][0]
        # what agent19 lint prints for a person: the rule and its message, not the JSON a second time
        assert finding["rule"] in text and "1 statements in" in text
        assert not text.lstrip().startswith("{") and '"findings"' not in text
