"""What a model pays for: tools/list and tool results measured through the official MCP client."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest
from jsonschema import Draft202012Validator
from mcp.shared.exceptions import MCPError

from agent19.tools._schema import PARAMETER_TEXT, SHARED
from tests.mcp_client import MCP_DEFAULT_HINTS, RESPONSE_BUDGET, hint, result_size, stdio_session

LISTING_BUDGET = 20_000
"""Characters of the whole tools/list response a client reads each conversation (the ListToolsResult as compact JSON,
as the SDK client receives it: names, titles, descriptions, input schemas, annotations). 266,915 for 33 tools'
descriptions and schemas alone before listings were compacted; 26,130 for the whole response with one-sentence
descriptions, declared parameter briefs, shared parameters described once in the server's instructions and no output
schemas (agent19://tools/{name} has them); 19,958 with annotations stating only what differs from the MCP spec's
defaults, short titles, no numeric bounds (the server checks them) and types said once (by an enum, a default or a
type list)."""


def _size(schema: dict | None) -> int:
    return len(json.dumps(schema, separators=(",", ":"), ensure_ascii=False)) if schema else 0


async def test_tool_listing_stays_within_its_budget():
    async with stdio_session() as session:
        listing = await session.list_tools()
        tools = listing.tools
        total = _size(listing.model_dump(mode="json", by_alias=True, exclude_none=True))
        sizes = {t.name: _size(t.model_dump(mode="json", by_alias=True, exclude_none=True)) for t in tools}
        biggest = sorted(sizes.items(), key=lambda kv: -kv[1])[:5]
        assert total <= LISTING_BUDGET, f"tools/list is {total} characters (budget {LISTING_BUDGET}), most: {biggest}"
        for t in tools:  # the hints a client acts on, each only when it says something the default does not
            hints = t.annotations.model_dump(by_alias=True, exclude_none=True)
            assert hints and all(MCP_DEFAULT_HINTS[k] != v for k, v in hints.items()), (t.name, hints)
            assert hints["openWorldHint"] is False, t.name
            if hints.get("readOnlyHint"):
                assert set(hints) == {"readOnlyHint", "openWorldHint"}, (t.name, hints)
        by_name = {t.name: t for t in tools}
        assert hint(by_name["run_sql"], "destructiveHint") and not hint(by_name["run_sql"], "readOnlyHint")
        assert by_name["run_sql"].annotations.destructive_hint is None  # the default says it
        backup = by_name["verify_backup"]
        assert not hint(backup, "destructiveHint") and hint(backup, "idempotentHint")
        instructions = session.initialize_result.instructions
        for name in SHARED:  # described once, where every tool's listing can rely on it
            assert f"- {name}: " in instructions, name
        for t in tools:
            schema = json.dumps(t.input_schema)
            assert all(len(p.get("description", "")) <= PARAMETER_TEXT for p in t.input_schema["properties"].values())
            assert '"title"' not in schema.replace('"title":{', ""), f"{t.name}: generated titles are listed"
            assert "user_sql" not in schema, f"{t.name}: agent19's own schema markers reach the client"
            assert t.annotations.title is None, f"{t.name}: the title is listed twice"

        # what the listing leaves out is one read away, for every tool
        for t in tools:
            docs = json.loads((await session.read_resource(f"agent19://tools/{t.name}")).contents[0].text)
            assert docs["description"].startswith(t.description.split("\n\n")[0][:60]), t.name
            assert docs["output_schema"]["type"] == "object", t.name
            assert set(t.input_schema["properties"]) | {"detail"} == set(docs["input_schema"]["properties"]), t.name
        run_sql = json.loads((await session.read_resource("agent19://tools/run_sql")).contents[0].text)
        assert run_sql["input_schema"]["properties"]["max_rows"]["maximum"] == 10_000  # the bound the listing omits
        assert "maximum" not in by_name["run_sql"].input_schema["properties"]["max_rows"]
        with pytest.raises(MCPError, match="no tool 'nope'"):
            await session.read_resource("agent19://tools/nope")


async def test_optional_arguments_may_still_be_sent_as_null_and_unknown_ones_are_refused():
    """The listing drops the ``null`` branch of optional arguments; the server still accepts an explicit null
    (clients send it) and still refuses an argument the tool does not declare."""
    async with stdio_session() as session:
        tools = {t.name: t for t in (await session.list_tools()).tools}
        assert tools["lint_migration"].input_schema["properties"]["sql"] == {"type": "string"}  # its name says enough
        ok = await session.call_tool("lint_migration", {"sql": "CREATE INDEX i ON t (a);", "config": None,
                                                        "pg_version": 15})
        assert not ok.is_error, ok.content
        bad = await session.call_tool("lint_migration", {"sql": "SELECT 1", "pg_versoin": 15})
        assert bad.is_error and "pg_versoin" in bad.content[0].text
    # a value inside a list cannot be left out: where null means something ($1 … as SQL NULL) the listing says so,
    # so that a client checking a call against the listed schema sends it (and one checking types keeps them)
    listed = tools["explain_query"].input_schema
    Draft202012Validator(listed).validate({"sql": "SELECT $1::int, $2", "parameters": [None, 1]})
    assert not Draft202012Validator(listed).is_valid({"sql": "SELECT $1", "parameters": [{"x": 1}]})


async def test_text_content_is_the_rendering_and_the_data_comes_once():
    async with stdio_session() as session:
        result = await session.call_tool("lint_migration", {"sql": "CREATE INDEX i ON t (a);", "pg_version": 15})
        assert not result.is_error, result.content
        [text] = [c.text for c in result.content if c.type == "text"]
        finding = result.structured_content["statements"][0]["findings"][0]
        # what agent19 lint prints for a person: the rule and its message, not the JSON a second time
        assert finding["rule"] in text and "1 statements in" in text
        assert not text.lstrip().startswith("{") and '"findings"' not in text


async def test_a_large_result_is_summarised_with_links_and_detail_full_returns_it_whole(dsn):
    sql = "SELECT g AS n, md5(g::text) AS digest FROM generate_series(1, 3000) g"
    async with stdio_session("--dsn", dsn) as session:
        summary = await session.call_tool("run_sql", {"sql": sql, "max_rows": 3000})
        assert not summary.is_error, summary.content
        assert result_size(summary) <= RESPONSE_BUDGET  # (also checked by the session for every call)
        data = summary.structured_content
        rows = data["result"]["rows"]
        assert 0 < len(rows) < 3000 and rows[0] == [1, "c4ca4238a0b923820dcc509a6f75849b"]
        assert any("of 3000" in s for s in data["truncated"]["shortened"]), data["truncated"]
        links = {c.uri: c for c in summary.content if c.type == "resource_link"}
        whole_uri = data["truncated"]["whole_result"]
        assert whole_uri in links and links[whole_uri].size > RESPONSE_BUDGET
        whole = json.loads((await session.read_resource(whole_uri)).contents[0].text)
        assert len(whole["result"]["rows"]) == 3000 and whole["result"]["rows"][-1][0] == 3000

        full = await session.call_tool("run_sql", {"sql": sql, "max_rows": 3000, "detail": "full"})
        assert len(full.structured_content["result"]["rows"]) == 3000 and "truncated" not in full.structured_content
        with pytest.raises(MCPError, match="recent calls only"):
            await session.read_resource(whole_uri.replace("/results/", "/results/x"))


def test_a_cli_command_imports_only_its_own_tool():
    """`agent19 lint` loads the lint engine, not the optimizer, operations, ETL, reports or the MCP SDK:
    start-up is most of a one-file lint's time (tools/bench/bench_mcp.py measures it)."""
    code = (
        "import sys, agent19.cli\n"
        "rc = agent19.cli.main(['lint', '--sql', 'CREATE INDEX i ON t (a)', '--pg-version', '15'])\n"
        "heavy = sorted(m for m in sys.modules if m.split('.')[0] == 'mcp' or m.startswith(\n"
        "    ('agent19.optimize', 'agent19.ops', 'agent19.etl', 'agent19.report', 'agent19.server', 'sqlglot')))\n"
        "print(rc, heavy)\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip().splitlines()[-1] == "1 []", out  # exit 1: the blocking index build is an error


async def test_input_over_the_size_limit_is_refused_before_anything_runs():
    """A call carrying more text than agent19 accepts is refused, saying the limit and what to do; a large
    migration under the limit is linted (summarised: the response stays within its budget)."""
    from agent19.tools.registry import MAX_ARGUMENT_CHARACTERS

    statement = "ALTER TABLE t ADD COLUMN c integer;\n"
    async with stdio_session() as session:
        big = statement * (MAX_ARGUMENT_CHARACTERS // len(statement) + 1)
        refused = await session.call_tool("lint_migration", {"sql": big, "pg_version": 15})
        assert refused.is_error
        text = refused.content[0].text
        assert f"at most {MAX_ARGUMENT_CHARACTERS:,}" in text and "split the input" in text and "ALTER" not in text
        one_mb = statement * (1_000_000 // len(statement))  # beyond the 1 MB a statement-running tool accepts
        linted = await session.call_tool("lint_migration", {"sql": one_mb, "pg_version": 15})
        assert not linted.is_error, linted.content[0].text[:300]
        assert linted.structured_content["summary"]["statements"] == one_mb.count(";")


async def test_a_large_call_over_http_does_not_stall_another_session():
    """While one session's large lint runs (in a worker thread, its result shaped there too), another session's
    call is answered before the lint ends (a stalled event loop would answer it only after)."""
    import anyio

    from tests.mcp_client import http_server, http_session

    big = "ALTER TABLE t ADD COLUMN c integer;\nCREATE INDEX i ON t (a);\n" * 5_000  # ~300 KB, 10,000 statements
    finished: list[str] = []
    with http_server() as url:
        async with http_session(url) as heavy, http_session(url) as light:
            # server_info's first call starts the embedded PostgreSQL (seconds under load): done before the race
            assert not (await light.call_tool("server_info", {})).is_error

            async def lint() -> None:
                result = await heavy.call_tool("lint_migration", {"sql": big, "pg_version": 15})
                assert not result.is_error, result.content[0].text[:300]
                finished.append("lint")

            async def info() -> None:
                await anyio.sleep(0.5)  # the lint is under way
                assert not (await light.call_tool("server_info", {})).is_error  # one call: answered, not queued
                finished.append("server_info")

            async with anyio.create_task_group() as tg:
                tg.start_soon(lint)
                tg.start_soon(info)
    assert finished == ["server_info", "lint"]


async def test_argument_errors_name_the_bound_without_pydantic_help_links():
    """Bounds are not listed (tools/list stays small): the server refuses a value out of bounds naming the bound,
    through the SDK's validation and agent19's own alike, without pydantic's help links (paid for, no help)."""
    async with stdio_session() as session:
        over = await session.call_tool("run_sql", {"sql": "SELECT 1", "max_rows": 100_000})  # the SDK's validation
        wrong = await session.call_tool("lint_migration", {"sql": ["SELECT 1"], "pg_version": 15})
        unparsable = await session.call_tool("capacity_plan", {"disk_size": "lots"})  # agent19's own validator
    for result, says in ((over, "less than or equal to 10000"), (wrong, "valid string"),
                         (unparsable, "invalid arguments for capacity_plan")):
        text = result.content[0].text
        assert result.is_error and says in text, text
        assert "pydantic.dev" not in text and "further information" not in text, text
    assert "max_rows" in over.content[0].text and "disk size 'lots' is not a size" in unparsable.content[0].text
