"""An argument a tool does not declare is refused, naming it and the accepted ones (hostile review: MCP
silently dropped `index_health {"table": "nope"}` and reported on every table)."""

from __future__ import annotations

import asyncio
import subprocess
import sys

import pytest
from pydantic import ValidationError

from agent19 import records
from agent19.tools.registry import all_tools
from tests.conftest import run_sql
from tests.mcp_client import stdio_session


@pytest.mark.parametrize("spec", all_tools(), ids=lambda s: s.name)
def test_every_tool_refuses_an_undeclared_argument(spec) -> None:  # type: ignore[no-untyped-def]
    with pytest.raises(ValidationError) as err:
        records.validate(spec.args, {"no_such_argument_x": 1})
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


def test_lint_migration_arguments_a_dataclass_are_checked_over_mcp() -> None:
    """lint_migration's arguments are a dataclass (its CLI runs without pydantic): over MCP a value of the wrong kind
    or an undeclared name is still refused, saying which, and a good call still lints."""

    async def calls() -> list[object]:
        async with stdio_session() as s:
            return [await s.call_tool("lint_migration", args) for args in (
                {"sql": "SELECT 1", "fail_on": "sometimes"}, {"sql": "SELECT 1", "pg_versoin": 15},
                {"sql": "ALTER TABLE t ADD COLUMN c int", "pg_version": 15, "fail_on": "never"})]

    wrong, unknown, good = asyncio.run(calls())
    texts = [" ".join(c.text for c in r.content if hasattr(c, "text")) for r in (wrong, unknown, good)]  # type: ignore[attr-defined]
    assert wrong.is_error and "fail_on" in texts[0] and "'never'" in texts[0], texts[0]  # type: ignore[attr-defined]
    assert unknown.is_error and "no argument 'pg_versoin'" in texts[1] and "pg_version" in texts[1], texts[1]  # type: ignore[attr-defined]
    assert not good.is_error and "PostgreSQL 15" in texts[2], texts[2]  # type: ignore[attr-defined]
