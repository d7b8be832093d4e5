"""explain_query and advise_indexes bind a JSON null as SQL NULL (hostile review: `[null]` failed validation)."""

from __future__ import annotations

import asyncio

from tests.conftest import run_sql
from tests.mcp_client import stdio_session


def test_null_is_bound_as_sql_null(dsn: str) -> None:
    run_sql(dsn, "CREATE TABLE orders (id int PRIMARY KEY, note text);"
                 "INSERT INTO orders SELECT g, CASE WHEN g % 4 = 0 THEN NULL ELSE 'x' END"
                 "  FROM generate_series(1, 400) g;"
                 "ANALYZE orders")
    # only a real NULL makes `$1::text IS NULL` true: the text 'None' or '' would return no row
    sql = "SELECT id FROM orders WHERE note IS NULL AND $1::text IS NULL AND id > $2"

    async def calls() -> list[tuple[bool, str, object]]:
        out = []
        async with stdio_session("--dsn", dsn) as s:
            for tool, args in [("explain_query", {"sql": sql, "parameters": [None, 0], "detail": "full"}),
                               ("advise_indexes", {"sql": sql, "parameters": [None, 0]})]:
                r = await s.call_tool(tool, args)
                out.append((r.is_error, " ".join(c.text for c in r.content if hasattr(c, "text")),
                            r.structured_content))
        return out

    (e1, t1, r1), (e2, t2, _) = asyncio.run(calls())
    assert not e1, t1
    assert not e2, t2
    assert r1 is not None
    assert r1["plan"]["root"]["actual_rows"] == 100, r1["plan_text"]
