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


async def test_files_named_by_path_count_against_the_input_limit(tmp_path):
    """The input limit's own error says to pass files by path, but a path was no limit at all: a 2 MB file took
    the server to 900 MB, an 8.6 MB one would have taken gigabytes. Over MCP the named migration files count
    (a directory: its .sql files), refused before anything is read, saying how to go on."""
    from agent19.tools.registry import MAX_ARGUMENT_CHARACTERS

    statement = "ALTER TABLE t ADD COLUMN c integer DEFAULT random();\n"
    big = tmp_path / "V1__big.sql"
    big.write_text(statement * (MAX_ARGUMENT_CHARACTERS // len(statement) + 1))
    small = tmp_path / "small" / "V1__small.sql"
    small.parent.mkdir()
    small.write_text(statement)
    async with stdio_session() as session:
        for tool, args in [("lint_migration", {"paths": [str(big)]}), ("lint_migration", {"paths": [str(tmp_path)]}),
                           ("plan_migration", {"file": str(big)}), ("generate_runbook", {"file": str(big)}),
                           ("lint_migration", {"paths": [str(small), str(big)]})]:
            refused = await session.call_tool(tool, args | {"pg_version": 15})
            assert refused.is_error, tool
            text = refused.content[0].text
            assert f"at most {MAX_ARGUMENT_CHARACTERS:,}" in text and "agent19 lint FILE" in text, text
            assert "nothing was run" in text and "ALTER" not in text, text
        linted = await session.call_tool("lint_migration", {"paths": [str(small.parent)], "pg_version": 15})
        assert not linted.is_error, linted.content[0].text
        assert linted.structured_content["summary"]["statements"] == 1


def test_a_summary_names_only_what_it_really_cut():
    """capacity_plan's summary said "growth.fit.method: first 40 of 16 characters": a string shorter than what it
    may keep was listed as cut, and such notes took the places of real cuts among the six ``shortened`` shows."""
    import re

    from pydantic import BaseModel

    from agent19.responses import ResultStore, shape

    class Plan(BaseModel):  # the shape of capacity_plan's result
        current: dict[str, object]
        growth: dict[str, object]
        projections: list[dict[str, object]]
        triggers: list[dict[str, object]]
        markdown: str

    plan = Plan(current={"largest": [{"name": f"t{i}", "bytes": i * 1000, "rows": i} for i in range(8)]},
                growth={"evidence": ["y" * 230] * 2,
                        "observed": [{"at": f"2026-01-0{i + 1}", "bytes": i} for i in range(6)],
                        "fit": {"method": "compound_growth", "error": 0.1, "rate": 0.5}},
                projections=[{"months": i, "bytes": i * 10, "note": "n" * 80} for i in range(12)],
                triggers=[{"what": "w" * 120, "when": "x" * 60} for i in range(10)], markdown="m" * 6000)
    for budget in (2600, 3000, 3600):
        shaped = shape(plan, "t" * 2400, ResultStore(), budget=budget)
        notes = shaped.structured["truncated"]["shortened"]
        for kept, whole in re.findall(r"first (\d+) of (\d+) characters", " ".join(notes)):
            assert int(kept) < int(whole), (budget, notes)
        assert shaped.structured["growth"]["fit"]["method"] == "compound_growth", budget


async def test_a_migration_given_twice_is_refused_not_half_ignored(dsn, tmp_path):
    """plan_migration and generate_runbook given a file and sql planned the file and dropped the sql without a word
    (verify_rollback: up_sql won over up); test_migration already refused. A model that sends both learns it."""
    migration = tmp_path / "V1__add.sql"
    migration.write_text("ALTER TABLE t ADD COLUMN b integer;\n")
    sql = "DROP TABLE t;"
    run_sql(dsn, "CREATE TABLE t (a int)")
    async with stdio_session("--dsn", dsn, "--mode", "dry-run") as session:
        for tool, args in [("plan_migration", {"file": str(migration), "sql": sql}),
                           ("generate_runbook", {"file": str(migration), "sql": sql, "handoff": False}),
                           ("plan_migration", {"sql": sql, "changes": [{"type": "add_column", "table": "t",
                                                                         "column": {"name": "c", "type": "int"}}]})]:
            refused = await session.call_tool(tool, args)
            assert refused.is_error, (tool, refused.content[0].text[:200])
            assert "give exactly one of: a file, sql, or changes (this call gave" in refused.content[0].text
        refused = await session.call_tool("verify_rollback", {"up": str(migration), "up_sql": sql,
                                                              "down_sql": "ALTER TABLE t DROP COLUMN b;"})
        assert refused.is_error and "give up (a file) or up_sql, not both" in refused.content[0].text
        one = await session.call_tool("plan_migration", {"file": str(migration)})
        assert not one.is_error and "add column" in one.content[0].text, one.content[0].text[:300]


async def test_a_call_within_the_limit_is_accepted_over_http_whatever_its_characters():
    """The limit counts characters; HTTP counted 2 bytes a character: a 6,000,000-character migration with CJK
    comments (18 MB of UTF-8) got an opaque "Server returned an error response" (413) where stdio linted it.
    Over the limit, in 4-byte characters, the tool's own error still says what to do."""
    from agent19.tools.registry import MAX_ARGUMENT_CHARACTERS
    from tests.mcp_client import http_server, http_session

    statement = "\nALTER TABLE t ADD COLUMN c integer;\n"
    with http_server() as url:
        async with http_session(url) as session:
            wide = await session.call_tool("lint_migration", {"sql": "-- " + "語" * 6_000_000 + statement,
                                                              "pg_version": 15})
            assert not wide.is_error, wide.content[0].text[:300]
            assert wide.structured_content["summary"]["statements"] == 1
            over = await session.call_tool("lint_migration", {"sql": "-- " + "😀" * MAX_ARGUMENT_CHARACTERS + statement,
                                                              "pg_version": 15})
            assert over.is_error and f"at most {MAX_ARGUMENT_CHARACTERS:,}" in over.content[0].text


def test_a_result_larger_than_the_store_keeps_what_fits_and_says_what_it_did_not():
    """A 2 MB migration's lint (64 M characters in all, 49 M of text) was kept whole, over the server's 64 M, then
    evicted by the next call of any session (its links answered "no result" before a model could read them) after
    evicting every other result. Now the largest parts that do not fit are left out, named with their sizes, and
    the rest stays readable after other calls."""
    from pydantic import BaseModel

    from agent19.responses import ResultStore, shape

    class Lint(BaseModel):
        statements: list[str]

    store = ResultStore(characters=30_000)
    earlier = store.put({"full": ("application/json", "x" * 100)})
    lint = Lint(statements=[f"statement {i}: " + "y" * 200 for i in range(200)])  # ~45,000 characters
    shaped = shape(lint, "t" * 20_000, store, budget=8_000)
    note = shaped.structured["truncated"]
    assert set(note["not_kept"]) == {"full"} and note["not_kept"]["full"] > 30_000, note
    assert "whole_result" not in note and "run it at a terminal" in note["how"], note
    assert [a.part for a in shaped.artifacts] == ["text"]
    assert note["moved_to_resources"] == {"text": shaped.artifacts[0].uri}
    store.put({"full": ("application/json", "z" * 100)})  # another call
    key = shaped.artifacts[0].uri.split("/")[-2]
    assert store.get(key, "text") == ("text/plain", "t" * 20_000)  # still readable
    assert store.get(earlier, "full") is not None  # and what other calls kept was not swept away


async def test_a_nul_character_cannot_hide_the_rest_of_a_migration(tmp_path):
    """PostgreSQL's parser reads up to a NUL: ``…;\\0`` then ``DROP TABLE important;`` linted clean (1 statement,
    exit 0) while psql runs the DROP too. The NUL is refused where it is, at the CLI and over MCP."""
    import subprocess
    import sys

    sql = "ALTER TABLE t ADD COLUMN a integer;\x00\nDROP TABLE important;\n"
    migration = tmp_path / "V1__nul.sql"
    migration.write_text(sql)
    cli = subprocess.run([sys.executable, "-m", "agent19", "lint", str(migration), "--pg-version", "15"],
                         capture_output=True, text=True)
    assert cli.returncode == 2 and "V1__nul.sql:1:36: syntax error: a NUL character" in cli.stderr, cli
    async with stdio_session() as session:
        for tool, args in [("lint_migration", {"sql": sql}), ("lint_migration", {"paths": [str(migration)]}),
                           ("plan_migration", {"sql": sql})]:
            refused = await session.call_tool(tool, args | {"pg_version": 15})
            assert refused.is_error and "1:36: syntax error: a NUL character" in refused.content[0].text, tool


def test_pg_local_stops_its_server_on_sigterm():
    """tools/pg-local stopped its PostgreSQL on Ctrl-C only: SIGTERM (kill, a job stopped in the background)
    killed it before its sigwait and left the server running with its data directory."""
    import os
    import signal
    import subprocess
    import sys
    import time
    from pathlib import Path

    from tests.conftest import need, until
    from tools.throwaway import system_versions

    need(bool(system_versions()), "no system PostgreSQL")
    script = Path(__file__).parent.parent / "tools" / "pg-local"
    proc = subprocess.Popen([sys.executable, str(script)], stdout=subprocess.PIPE, text=True)
    postmaster = None
    try:
        assert proc.stdout is not None and "DATABASE_URL" in proc.stdout.readline() + proc.stdout.readline()
        postmaster = until("its server", lambda: _postgres_child_of(proc.pid))
        data = Path(f"/proc/{postmaster}/cwd").resolve()
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=60) == 0
        time.sleep(0.5)
        assert not Path(f"/proc/{postmaster}").exists(), "the PostgreSQL server outlived pg-local"
        assert not data.exists(), "its data directory was left behind"
    finally:
        if proc.poll() is None:
            proc.kill()
        if postmaster is not None and Path(f"/proc/{postmaster}").exists():
            os.kill(postmaster, signal.SIGQUIT)  # a failed run must not leave its server behind either


def _postgres_child_of(parent: int) -> int | None:
    import os
    from pathlib import Path

    for pid in filter(str.isdigit, os.listdir("/proc")):
        try:
            status = Path(f"/proc/{pid}/status").read_text()
            cmd = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")[0]
        except OSError:
            continue
        if f"\nPPid:\t{parent}\n" in status and cmd.endswith(b"/postgres"):
            return int(pid)
    return None
