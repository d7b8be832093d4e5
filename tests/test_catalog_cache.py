"""The advisory tools' catalog snapshot is reused for a few seconds, never in execute mode; the calls within those
seconds share it, read-only (a plan never writes what its migration does into it); tools that decide whether a
statement may run read the catalog afresh. Observed on a real server, as the
application login too."""

from __future__ import annotations

import time

import pytest

from agent19.config import AccessMode, Settings
from agent19.db import catalog_cache
from agent19.db.catalog_cache import SNAPSHOT_TTL_S
from agent19.db.connection import Database
from agent19.tools.registry import ToolContext
from tests.conftest import owner_login, run_sql


def context(dsn: str, mode: AccessMode) -> ToolContext:
    settings = Settings.load(dsn=dsn, mode=mode.value)
    return ToolContext(settings, Database(settings))


def tables(ctx: ToolContext) -> set[str]:
    catalog, why = ctx.live_catalog_or_why()
    assert catalog is not None, why
    return {t.name for t in catalog.tables}


@pytest.mark.parametrize("login", ["superuser", "application"])
@pytest.mark.parametrize("mode", [AccessMode.READ_ONLY, AccessMode.DRY_RUN])
def test_a_snapshot_is_reused_for_a_few_seconds_then_read_again(dsn: str, mode: AccessMode, login: str):
    url = owner_login(dsn) if login == "application" else dsn
    catalog_cache.forget()
    ctx = context(url, mode)
    run_sql(url, "CREATE TABLE cached_a (id int)")
    assert "cached_a" in tables(ctx)
    started = time.monotonic()
    run_sql(url, "CREATE TABLE cached_b (id int)")  # a change made outside this process
    seen = tables(context(url, mode))  # another call (another context) of the same process, same database
    if time.monotonic() - started < SNAPSHOT_TTL_S * 0.8:  # (a very slow machine may take longer than the TTL)
        assert "cached_b" not in seen, "reused within the TTL"
    time.sleep(SNAPSHOT_TTL_S)
    assert "cached_b" in tables(ctx)  # older than the TTL: read again


def test_execute_mode_and_the_policy_reads_always_read_afresh(dsn: str):
    catalog_cache.forget()
    ctx = context(dsn, AccessMode.EXECUTE)
    assert "fresh_a" not in tables(ctx)
    run_sql(dsn, "CREATE TABLE fresh_a (id int)")
    assert "fresh_a" in tables(ctx)  # execute mode: agent19's own writes change the schema, no reuse

    reader = context(dsn, AccessMode.READ_ONLY)
    tables(reader)
    run_sql(dsn, "CREATE TABLE fresh_b (id int)")
    assert reader.live_catalog().table("fresh_b") is not None  # type: ignore[union-attr]


RENAMES = ("DROP TABLE shared_a;\nALTER TABLE shared_b RENAME TO shared_c;\n"
           "CREATE TABLE shared_a (id bigint PRIMARY KEY, v text);\nCREATE TABLE shared_new (id int);\n"
           "CREATE INDEX shared_new_id ON shared_new (id);\nALTER TABLE shared_c ADD COLUMN w int;")
READS = ("CREATE TABLE IF NOT EXISTS shared_b (id int);\nALTER TABLE shared_a ALTER COLUMN v SET NOT NULL;\n"
         "ALTER TABLE shared_a ALTER COLUMN v TYPE varchar(20);\nCREATE TABLE IF NOT EXISTS shared_new (id int);")
"""What READS plans depends on what the catalog holds: shared_b exists (nothing to undo), shared_a is an old table
of rows (a scan, a rewrite), shared_new does not (DROP TABLE undoes it). RENAMES would make each untrue if what it
does were written into the snapshot."""


TIMED = ("estimated_duration", "estimated_seconds", "duration_basis")
"""a plan's figures measured on the server as it plans (a scan timed on sampled rows): they vary from call to call"""


def plan_of(ctx: ToolContext, sql: str) -> object:
    """The plan the tool gives, its measured timings left out."""
    from agent19.tools.plan import PlanArgs, plan_migration_tool

    def untimed(value: object) -> object:
        if isinstance(value, dict):
            return {k: untimed(v) for k, v in value.items() if k not in TIMED}
        return [untimed(v) for v in value] if isinstance(value, list) else value

    return untimed(plan_migration_tool(ctx, PlanArgs(sql=sql)).model_dump(mode="json"))


def test_calls_share_the_snapshot_and_never_change_it(dsn: str, monkeypatch: pytest.MonkeyPatch):
    monkeypatch.setattr(catalog_cache, "SNAPSHOT_TTL_S", 600.0)  # one snapshot for the whole test, however slow
    run_sql(dsn, "CREATE TABLE shared_a (id int PRIMARY KEY, v text); CREATE TABLE shared_b (id int);"
                 "INSERT INTO shared_a SELECT g, 'x' FROM generate_series(1, 1000) g; ANALYZE shared_a")
    alone = {}
    for sql in (RENAMES, READS):  # each planned alone, on a snapshot of its own
        catalog_cache.forget()
        alone[sql] = plan_of(context(dsn, AccessMode.READ_ONLY), sql)
    reads = {o["sql"]: o for o in alone[READS]["operations"]}  # type: ignore[index]  # what the test relies on READS to show
    assert reads["CREATE TABLE IF NOT EXISTS shared_new (id int)"]["reverse_sql"].startswith("DROP TABLE")
    assert not reads["CREATE TABLE IF NOT EXISTS shared_b (id int)"]["reverse_sql"]
    assert reads["ALTER TABLE shared_a ALTER COLUMN v SET NOT NULL"]["estimated_rows"] == 1000

    catalog_cache.forget()
    ctx = context(dsn, AccessMode.READ_ONLY)
    shared, _ = ctx.live_catalog_or_why()
    assert shared is not None
    before = shared.model_dump_json()
    answers = [plan_of(ctx, sql) for sql in (READS, RENAMES, READS, RENAMES)]  # one snapshot, calls interleaved
    assert context(dsn, AccessMode.READ_ONLY).live_catalog_or_why()[0] is shared, "the calls shared one snapshot"
    assert answers == [alone[READS], alone[RENAMES], alone[READS], alone[RENAMES]]
    assert shared.model_dump_json() == before, "a plan that drops, renames and creates tables changed the snapshot"
    assert shared.table("shared_b") is not None and shared.table("shared_c") is None
    assert not shared.has_relation("public", "shared_new") and shared.has_relation("public", "shared_a_pkey")


def test_a_database_down_is_not_cached_and_says_why(dsn: str):
    catalog_cache.forget()
    ctx = context("postgresql://nobody@127.0.0.1:1/none", AccessMode.READ_ONLY)
    catalog, why = ctx.live_catalog_or_why()
    assert catalog is None and why and "refused" in why
    assert context(dsn, AccessMode.READ_ONLY).live_catalog_or_why()[0] is not None
