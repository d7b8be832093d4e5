"""The advisory tools' catalog snapshot is reused for a few seconds, never in execute mode, never shared as one
object; tools that decide whether a statement may run read the catalog afresh. Observed on a real server, as the
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


def test_each_call_gets_its_own_copy(dsn: str):
    catalog_cache.forget()
    run_sql(dsn, "CREATE TABLE copied (id int)")
    ctx = context(dsn, AccessMode.READ_ONLY)
    first, _ = ctx.live_catalog_or_why()
    assert first is not None
    first.tables.clear()
    second, _ = ctx.live_catalog_or_why()
    assert second is not None and second.table("copied") is not None


def test_a_database_down_is_not_cached_and_says_why(dsn: str):
    catalog_cache.forget()
    ctx = context("postgresql://nobody@127.0.0.1:1/none", AccessMode.READ_ONLY)
    catalog, why = ctx.live_catalog_or_why()
    assert catalog is None and why and "refused" in why
    assert context(dsn, AccessMode.READ_ONLY).live_catalog_or_why()[0] is not None
