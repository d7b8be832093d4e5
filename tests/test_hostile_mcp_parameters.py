"""Parameter values as MCP clients send them: JSON numbers (also as floats, 4242.0) and booleans.

Found by a hostile review: explain_query bound 4242.0 as the text '4242.0', which an integer column
refuses ("invalid input syntax for type integer"), and advise_indexes refused any number
("Input should be a valid string").
"""

from __future__ import annotations

import asyncio

from tests.conftest import run_sql
from tests.mcp_client import stdio_session


def test_numbers_and_booleans_are_bound_as_postgresql_reads_them(dsn: str) -> None:
    run_sql(dsn, "CREATE TABLE orders (id int PRIMARY KEY, customer_id bigint, total numeric, paid boolean);"
                 "INSERT INTO orders SELECT g, g % 100, g, g % 2 = 0 FROM generate_series(1, 5000) g; ANALYZE orders")
    sql = "SELECT * FROM orders WHERE id = $1 AND total > $2 AND paid = $3"

    async def calls() -> list[tuple[bool, str, object]]:
        out = []
        async with stdio_session("--dsn", dsn) as s:
            for tool, args in [("explain_query", {"sql": sql, "parameters": [4242.0, 1.5, True]}),
                               ("explain_query", {"sql": sql, "parameters": [4242, 0, True]}),
                               ("advise_indexes", {"sql": "SELECT * FROM orders WHERE customer_id = $1",
                                                   "parameters": [42]}),
                               ("advise_indexes", {"sql": "SELECT * FROM orders WHERE customer_id = $1",
                                                   "parameters": [42.0]})]:
                r = await s.call_tool(tool, args)
                out.append((r.is_error, " ".join(c.text for c in r.content if hasattr(c, "text")),
                            r.structured_content))
        return out

    (e1, t1, r1), (e2, t2, r2), (e3, t3, r3), (e4, t4, r4) = asyncio.run(calls())
    assert not e1 and not e2 and not e3 and not e4, (t1, t2, t3, t4)
    assert r1 and "id = 4242" in str(r1["plan_text"]) and "1.5" in str(r1["plan_text"])
    assert r2 and "id = 4242" in str(r2["plan_text"])
    assert r3 and r4 and r3["recommendations"] == r4["recommendations"]  # 42 and 42.0 are the same number
