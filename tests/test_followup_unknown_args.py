"""An argument a tool does not declare is refused, naming it and the accepted ones (hostile review: MCP
silently dropped `index_health {"table": "nope"}` and reported on every table)."""

from __future__ import annotations

import asyncio
import subprocess
import sys

import pytest
from pydantic import ValidationError

from agent19.tools.registry import all_tools
from tests.conftest import run_sql
from tests.mcp_client import stdio_session


@pytest.mark.parametrize("spec", all_tools(), ids=lambda s: s.name)
def test_every_tool_refuses_an_undeclared_argument(spec) -> None:  # type: ignore[no-untyped-def]
    with pytest.raises(ValidationError) as err:
        spec.args.model_validate({"no_such_argument_x": 1})
    assert "no_such_argument_x" in str(err.value)


def test_mcp_refuses_an_unknown_argument_and_names_the_accepted_ones(dsn: str) -> None:
    run_sql(dsn, "CREATE TABLE orders (id int PRIMARY KEY, note text); CREATE INDEX ON orders (note)")

    async def calls() -> tuple[object, object, list[str]]:
        async with stdio_session("--dsn", dsn) as s:
            bad = await s.call_tool("index_health", {"table": "nope"})
            good = await s.call_tool("index_health", {"schema": "public"})
            tools = await s.list_tools()
            return bad, good, [t.name for t in tools.tools if "detail" in t.input_schema["properties"]]

    bad, good, open_schemas = asyncio.run(calls())
    text = " ".join(c.text for c in bad.content if hasattr(c, "text"))  # type: ignore[attr-defined]
    assert bad.is_error, text  # type: ignore[attr-defined]
    assert "'table'" in text and "schema" in text and "unused_min_mb" in text
    assert not good.is_error  # type: ignore[attr-defined]
    # every tool's own `detail` is said once in the server's instructions, not listed 33 times: the server, not the
    # listing, is what refuses an undeclared argument (and names detail among the accepted ones)
    assert "detail" in text.split("accepts:")[1] and open_schemas == ["describe_database"]


def test_the_cli_still_builds_arguments_from_its_flags(dsn: str) -> None:
    run_sql(dsn, "CREATE TABLE orders (id int PRIMARY KEY)")
    out = subprocess.run([sys.executable, "-m", "agent19", "index-health", "--schema", "public", "--dsn", dsn,
                          "--format", "json"], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    out = subprocess.run([sys.executable, "-m", "agent19", "lint", "--sql", "CREATE INDEX i ON t (a)",
                          "--pg-version", "15", "--format", "json"], capture_output=True, text=True, timeout=120)
    assert out.returncode == 1 and "concurrently" in out.stdout.lower(), out.stderr
