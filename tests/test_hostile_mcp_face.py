"""The MCP face as a model meets it, found by a hostile review (issue 20): names as other tools print them,
what a summary says it cut, inputs named by path."""

from __future__ import annotations

from tests.conftest import owner_login, run_sql
from tests.mcp_client import stdio_session

HOSTILE = '"Sales Ünit"."Order ""Items"""'


async def test_describe_database_finds_a_table_written_as_sql_like_other_tools_print_it(dsn):
    """capacity_plan, index_health and zero_downtime_pattern print names as SQL (``HOSTILE``): describe_database
    reads that spelling as the same table (it answered "not found"), as well as the raw one."""
    app = owner_login(dsn)
    run_sql(app, f'CREATE SCHEMA "Sales Ünit"; CREATE TABLE {HOSTILE} (id int PRIMARY KEY, "select" int);'
                 "CREATE TABLE orders (id int PRIMARY KEY)")
    async with stdio_session("--dsn", app) as session:
        for spelling, schema in [(HOSTILE, None), ('Sales Ünit.Order "Items"', None),
                                 ('"Order ""Items"""', "Sales Ünit"), ('Order "Items"', "Sales Ünit")]:
            args = {"table": spelling} | ({"schema": schema} if schema else {})
            found = await session.call_tool("describe_database", args)
            assert not found.is_error, (spelling, found.content[0].text)
            assert [t["name"] for t in found.structured_content["tables"]] == ['Order "Items"'], spelling
        quoted = await session.call_tool("describe_database", {"table": '"public"."orders"'})
        assert not quoted.is_error, quoted.content[0].text
        assert [t["schema"] for t in quoted.structured_content["tables"]] == ["public"]
        clash = await session.call_tool("describe_database", {"table": '"public".orders', "schema": "Sales Ünit"})
        assert clash.is_error and "names schema 'public', but schema is 'Sales Ünit'" in clash.content[0].text
