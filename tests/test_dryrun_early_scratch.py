"""The scratch database made while the dry run's transaction runs: re-observed locks as before, the schema
dump reused only while the target's catalogs are unchanged, nothing left behind when it was not needed."""

from __future__ import annotations

import psycopg

from agent19.migrate.dryrun.early_scratch import catalog_state
from agent19.migrate.dryrun.scratch import list_scratch
from tests import scratch_dryruns as sd


def test_hidden_locks_are_re_observed_in_a_schema_copy_and_the_dump_is_reused_until_the_schema_changes(dsn):
    owner = sd.owner(dsn)
    first = sd.run(owner, sd.MIGRATION)
    assert first.passed and first.complete, first.summary
    assert [s.isolated for s in first.statements] == [False, True, True]
    # the exact modes, seen in a transaction of their own (the transaction's AccessExclusiveLock hid them)
    assert first.statements[1].lock_comparison[0].observed == "ShareLock"
    assert first.statements[2].lock_comparison[0].observed == "ShareUpdateExclusiveLock"
    # only to re-observe locks: a schema-only copy (locks do not depend on rows), not a TEMPLATE copy
    assert first.scratch is not None and first.scratch.strategy == "schema_copy", first.scratch
    assert "schema dump taken (pg_dump)" in first.scratch.notes and first.scratch.dropped
    assert list_scratch(dsn) == []

    again = sd.run(owner, sd.MIGRATION)
    assert again.scratch is not None and any("schema dump reused" in n for n in again.scratch.notes)
    assert [s.isolated for s in again.statements] == [False, True, True] and again.complete

    # the schema changes: the dump is taken again, so the new column exists in the scratch database
    with psycopg.connect(owner, autocommit=True) as c:
        c.execute("ALTER TABLE t ADD COLUMN c int DEFAULT 1")
    changed = sd.run(owner, "ALTER TABLE t ADD COLUMN u int DEFAULT 0;\nALTER TABLE t ALTER COLUMN c SET NOT NULL;\n")
    assert changed.scratch is not None and "schema dump taken (pg_dump)" in changed.scratch.notes
    assert not any("failed" in n for n in changed.scratch.notes), changed.scratch.notes
    assert changed.statements[1].isolated and changed.complete, changed.summary
    assert list_scratch(dsn) == []


def test_the_catalog_state_follows_committed_ddl_only(dsn):
    owner = sd.owner(dsn)
    with psycopg.connect(owner, autocommit=True) as c:
        c.execute("CREATE FUNCTION f() RETURNS int LANGUAGE sql AS 'SELECT 1'")
        start = catalog_state(c)
        c.execute("ANALYZE t")
        assert catalog_state(c) == start  # statistics are not schema
        with c.transaction(force_rollback=True):
            c.execute("ALTER TABLE t ADD COLUMN gone int")
        assert catalog_state(c) == start  # rolled back: as it was
        c.execute("CREATE OR REPLACE FUNCTION f() RETURNS int LANGUAGE sql AS 'SELECT 2'")
        assert catalog_state(c) != start  # a function's new body


def test_a_scratch_database_made_in_vain_is_dropped(dsn):
    """Predicted (statement 2 takes the lock statement 1 holds) but not needed: statement 2 fails."""
    owner = sd.owner(dsn)
    result = sd.run(owner, "ALTER TABLE t ADD COLUMN u int;\nALTER TABLE t ADD COLUMN u int;\n")
    assert not result.passed and result.statements[1].error is not None
    assert "already exists" in result.statements[1].error.message
    assert result.scratch is None and result.target_unchanged
    assert list_scratch(dsn) == []
