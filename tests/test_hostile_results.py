"""What run_sql hands back to a model: no role password, and not more than a model can take in.

Found by a hostile review, through the real MCP client:
* the reader login `agent19 setup-role` creates is granted pg_read_all_stats, which shows every
  statement's text in pg_stat_statements and pg_stat_activity — including ``CREATE ROLE … PASSWORD
  '…'`` verbatim: `SELECT query FROM pg_stat_statements` returned the plain-text passwords of roles;
* values were cut at 10,000 characters but rows were not bounded by size: 5,000 rows of 100 kB came
  back as a 50 MB tool result after two minutes.
"""

from __future__ import annotations

import json
import uuid

import psycopg

from tests.conftest import need
from tests.mcp_client import stdio_session
from tests.reader_login import reader_login


async def test_role_passwords_in_statistics_are_masked(dsn, tmp_path):
    secret = f"S3cret-{uuid.uuid4().hex}"
    role = f"victim_{uuid.uuid4().hex[:8]}"
    with psycopg.connect(dsn, autocommit=True) as c:
        loaded = c.execute("SELECT count(*) FROM pg_settings WHERE name = 'shared_preload_libraries' "
                           "AND setting LIKE '%pg_stat_statements%'").fetchone()[0]
        need(loaded == 1, "pg_stat_statements is not preloaded on the test server")
        c.execute("CREATE EXTENSION IF NOT EXISTS pg_stat_statements")
        c.execute(f"CREATE ROLE {role} LOGIN PASSWORD '{secret}'")
        c.execute(f"ALTER ROLE {role} ENCRYPTED PASSWORD '{secret}x'")
    try:
        with reader_login(dsn, tmp_path) as reader:
            async with stdio_session("--dsn", dsn, "--read-dsn", reader) as s:
                r = await s.call_tool("run_sql", {"sql": "SELECT query FROM pg_stat_statements "
                                                         f"WHERE query LIKE '%{role}%' AND query NOT LIKE '%SELECT%'"})
                assert not r.is_error, r.content
                text = json.dumps(r.structured_content)
                queries = [row[0] for row in r.structured_content["result"]["rows"]]
                assert any("PASSWORD '***'" in q for q in queries), queries
                assert secret not in text
    finally:
        with psycopg.connect(dsn, autocommit=True) as c:
            c.execute(f"DROP ROLE {role}")


async def test_a_huge_result_is_cut_by_size_saying_so(dsn):
    async with stdio_session("--dsn", dsn, "--allow-privileged-reads") as s:
        r = await s.call_tool("run_sql", {"sql": "SELECT g, repeat('y', 100000) FROM generate_series(1, 5000) g",
                                          "max_rows": 10000})
    assert not r.is_error, r.content
    result = r.structured_content["result"]
    assert result["capped"] is True and 0 < result["row_count"] < 5000
    assert "limited to" in result["cap_note"] and "characters" in result["cap_note"]
    assert len(r.content[0].text) < 3_000_000
