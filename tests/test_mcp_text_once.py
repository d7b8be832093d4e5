"""The text content is the compact rendering, the structured content the data: a document a tool returns (a pattern's
SQL, schema.prisma, pgbouncer.ini, a runbook) comes once, not as both, and stays whole (structured or linked)."""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

from tests.conftest import run_sql
from tests.mcp_client import stdio_session
from tests.test_mcp_budget_output_schemas import CALLS, SCENARIO

LONG = 500
"""A string this long found in both contents is the same thing said twice."""
DOCUMENTS = {
    "zero_downtime_pattern": "sql", "prisma_schema": "schema_prisma", "restore_runbook": "markdown",
    "setup_role": "sql", "pgbouncer_config": "ini", "capacity_plan": "markdown", "generate_runbook": "runbook",
}
"""The tools that return a document, and its field: each was returned twice (text and structured content)."""


def _strings(value: Any) -> Iterator[str]:
    if isinstance(value, str):
        yield value
    elif isinstance(value, dict):
        for v in value.values():
            yield from _strings(v)
    elif isinstance(value, list):
        for v in value:
            yield from _strings(v)


async def _document(session: Any, result: Any, field: str) -> str | None:
    """The document ``field`` as a client can read it whole: in the structured content (unless shortened there),
    else in the resource linked for it or for the whole result."""
    data = result.structured_content
    shortened = " ".join(data.get("truncated", {}).get("shortened", []))
    if isinstance(data.get(field), str) and field not in shortened:
        return data[field]
    for link in (c for c in result.content if c.type == "resource_link"):
        body = (await session.read_resource(link.uri)).contents[0].text
        if link.name.endswith(f"-{field}"):
            return body
        if link.name.endswith("-full"):
            return json.loads(body).get(field)
    return None


async def test_a_document_comes_once_and_whole(dsn: str) -> None:
    run_sql(dsn, SCENARIO + "CREATE TABLE customers (id bigint PRIMARY KEY, full_name text NOT NULL, email text UNIQUE,"
                           " created_at timestamptz NOT NULL DEFAULT now(), note text);")  # schema.prisma ≥ LONG
    calls = {**CALLS, "restore_runbook": {}}
    async with stdio_session("--dsn", dsn, "--mode", "dry-run", "--allow-privileged-reads") as session:
        for name, args in calls.items():
            for detail in ("summary", "full"):
                result = await session.call_tool(name, {**args, **({"detail": "full"} if detail == "full" else {})})
                assert not result.is_error, f"{name}: {result.content[0].text[:300]}"
                [text] = [c.text for c in result.content if c.type == "text"]
                twice = [s[:80] for s in _strings(result.structured_content) if len(s) >= LONG and s.strip() in text]
                assert not twice, f"{name} ({detail}) says in its text what its structured content holds: {twice}"
                if name not in DOCUMENTS:
                    continue
                document = await _document(session, result, DOCUMENTS[name])
                assert document and len(document) >= LONG, f"{name} ({detail}): the document is lost"
                # the text still tells a reader where it is
                assert DOCUMENTS[name] in text, f"{name} ({detail}): the text does not say where the document is"
