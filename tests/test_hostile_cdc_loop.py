"""A hostile review of cdc_run: a destination that is the source database itself.

`cdc run public.items --destination env:DATABASE_URL` emptied the table, copied it back, and every later
run applied its own deletes and inserts again (1,000 deletes + 1,000 inserts per run for a 1,000-row
table, never caught up, WAL growing). It must be refused before a slot is created; teardown still works.
"""

from __future__ import annotations

import psycopg
import pytest

from tests.mcp_client import stdio_session


def _text(result) -> str:
    return " ".join(getattr(c, "text", "") for c in result.content)


@pytest.mark.asyncio
async def test_cdc_into_its_own_source_is_refused_and_leaves_no_slot(dsn):
    with psycopg.connect(dsn, autocommit=True) as conn:
        conn.execute("CREATE TABLE loop_items (id int PRIMARY KEY, v text)")
        conn.execute("INSERT INTO loop_items SELECT g, 'v' FROM generate_series(1, 1000) g")
    try:
        async with stdio_session("--mode", "execute", env={"DATABASE_URL": dsn, "SELF_URL": dsn}) as session:
            args = {"tables": ["loop_items"], "destination": "env:SELF_URL", "slot": "agent19_loop"}
            refused = await session.call_tool("cdc_run", args)
            again = await session.call_tool("cdc_run", args)
        for r in (refused, again):
            assert r.is_error and "the source database itself" in _text(r), _text(r)
        with psycopg.connect(dsn) as conn:
            assert conn.execute("SELECT count(*) FROM loop_items").fetchone() == (1000,)
            slots = conn.execute("SELECT slot_name FROM pg_replication_slots").fetchall()
            assert conn.execute("SELECT to_regnamespace('agent19_cdc')").fetchone() == (None,)
        assert slots == []
    finally:
        with psycopg.connect(dsn, autocommit=True) as conn:
            for (slot,) in conn.execute("SELECT slot_name FROM pg_replication_slots WHERE database = "
                                        "current_database()").fetchall():
                conn.execute("SELECT pg_drop_replication_slot(%s)", (slot,))
