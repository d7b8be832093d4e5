"""A dry run's fixed costs, shrunk or overlapped, with the same results: the cluster fingerprint read in one
query, the cluster-wide work on a session of its own, pg_dump started with the catalogs' digest taken in the
snapshot it dumps. (How fast: ``tools/bench/bench_dryrun.py``; here only that nothing changed.)"""

from __future__ import annotations

import threading

import psycopg
from psycopg.conninfo import conninfo_to_dict

from agent19.db.connection import Database
from agent19.migrate.dryrun import early_scratch
from agent19.migrate.dryrun.cluster_state import _part_by_part, fingerprint
from agent19.migrate.dryrun.early_scratch import cached_dump, catalog_state
from agent19.migrate.dryrun.run import dry_run
from agent19.migrate.dryrun.scratch import list_scratch
from agent19.migrate.parse import parse_sql
from tests.conftest import owner_login, session_settings


def _db(dsn: str, **settings: object) -> Database:
    return Database(session_settings(dsn=dsn, mode="dry-run", **settings))


# a DO block that builds its SQL at run time runs only when the operator opted in (agent19.safety.trial);
# then the server's lock on pg_authid catches it at run time
OPTED_IN = {"allow_unreadable_code": True}


def test_the_fingerprint_in_one_query_is_the_fingerprint_part_by_part(dsn):
    app_login = owner_login(dsn)
    with psycopg.connect(dsn, autocommit=True) as c:
        c.execute("CREATE ROLE fp_member NOLOGIN; CREATE ROLE fp_group NOLOGIN; GRANT fp_group TO fp_member")
        c.execute("COMMENT ON ROLE fp_member IS 'a shared comment'")
        try:
            whole, parts = fingerprint(c), _part_by_part(c)
            assert whole == parts
            assert "fp_member in fp_group" in whole.parts["membership"] and not whole.unreadable
            assert any(v == "a shared comment" for v in whole.parts["shared_comment"].values())
            # a login that may not read pg_authid: every part it may read, the passwords named as unreadable
            with psycopg.connect(app_login, autocommit=True) as app:
                limited, limited_parts = fingerprint(app), _part_by_part(app)
            assert limited == limited_parts
            assert "role passwords (pg_authid)" in limited.unreadable
            assert limited.parts["role"].keys() == whole.parts["role"].keys()
        finally:
            c.execute("DROP ROLE fp_member; DROP ROLE fp_group")


def test_the_first_dump_is_keyed_by_the_state_it_dumped(dsn):
    """No dump kept: pg_dump runs at once in an exported snapshot, the digest read there is its key — the same
    digest a later run reads while nothing changed (reused), a different one after a DDL (taken again)."""
    with psycopg.connect(dsn, autocommit=True) as c:
        c.execute("CREATE TABLE first_dump (id int PRIMARY KEY, note text)")
        major = c.info.server_version // 10000
        state = catalog_state(c)
    db = _db(dsn)
    early_scratch._DUMPS.clear()
    try:
        (dump, failure), how = cached_dump(db, major)
        assert failure is None and dump is not None and b"CREATE TABLE public.first_dump" in dump, failure
        assert how == "schema dump taken (pg_dump)"
        assert [k[1] for k in early_scratch._DUMPS] == [state]  # keyed by exactly the dumped state
        (again, _), how = cached_dump(db, major)
        assert how.startswith("schema dump reused") and again == dump
        with psycopg.connect(dsn, autocommit=True) as c:
            c.execute("ALTER TABLE first_dump ADD COLUMN later int")
        (changed, _), how = cached_dump(db, major)
        assert how == "schema dump taken (pg_dump)" and changed is not None and b"later integer" in changed
    finally:
        early_scratch._DUMPS.clear()
        db.close()


def test_a_dry_run_drops_leftovers_and_compares_the_cluster_from_its_own_session(dsn):
    name = f"agent19_scratch_1_dead_{conninfo_to_dict(dsn)['dbname']}"
    with psycopg.connect(dsn, autocommit=True) as c:
        c.execute(f"CREATE DATABASE {name}")
        c.execute("CREATE TABLE t (id int PRIMARY KEY, a int NOT NULL)")
        c.execute("INSERT INTO t SELECT g, g FROM generate_series(1, 100) g")
    db = _db(dsn)
    try:
        # statement 2 takes the lock statement 1 holds: re-observed in a schema copy, the last one not replayed
        result = dry_run(db, parse_sql("ALTER TABLE t ADD COLUMN u int DEFAULT 0;\nCREATE INDEX t_a ON t (a);\n"
                                       "ALTER TABLE t ALTER COLUMN u SET NOT NULL;\n"))
    finally:
        db.close()
    assert name in result.leftovers_dropped and name not in list_scratch(dsn)
    assert result.passed and result.target_unchanged and not result.target_differences, result.summary
    assert [s.isolated for s in result.statements] == [False, True, True]
    assert result.statements[2].lock_comparison[0].observed == "AccessExclusiveLock"
    assert result.scratch is not None and result.scratch.dropped and not any(
        "failed" in n for n in result.scratch.notes), result.scratch
    assert list_scratch(dsn) == []


def test_a_statement_skipped_at_run_time_makes_the_replay_ahead_give_way(dsn):
    """The re-observation ran ahead in the scratch database while the target's transaction ran; the target then
    skipped statement 2 (a DO block wrote pg_authid): that replay is not what the one after the rollback would
    have been, so it is done again after the rollback — same result as ever, nothing of the skipped one kept."""
    role = f"ahead_{conninfo_to_dict(dsn)['dbname']}"
    with psycopg.connect(dsn, autocommit=True) as c:
        c.execute("CREATE TABLE t (id int PRIMARY KEY, a int NOT NULL)")
        c.execute("INSERT INTO t SELECT g, g FROM generate_series(1, 100) g")
    db = _db(dsn, **OPTED_IN)
    try:
        result = dry_run(db, parse_sql(f"ALTER TABLE t ADD COLUMN u int DEFAULT 0;\n"
                                       f"DO $$ BEGIN EXECUTE 'CREATE ROLE {role}'; END $$;\n"
                                       "CREATE INDEX t_a ON t (a);\n"))
    finally:
        db.close()
    assert result.statements[1].ran_in == "skipped" and "wrote pg_authid" in (result.statements[1].note or "")
    assert [s.isolated for s in result.statements] == [False, False, True], result.summary
    assert result.statements[2].lock_comparison[0].observed == "ShareLock"
    assert result.scratch is not None and result.scratch.dropped
    assert not any("wrote" in n or "failed" in n for n in result.scratch.notes), result.scratch.notes
    assert result.target_unchanged and list_scratch(dsn) == []
    with psycopg.connect(dsn, autocommit=True) as c:
        assert c.execute("SELECT count(*) FROM pg_roles WHERE rolname = %s", (role,)).fetchone() == (0,)


def test_a_dry_run_that_fails_midway_leaves_no_scratch_database_from_the_replay_ahead(dsn):
    with psycopg.connect(dsn, autocommit=True) as c:
        c.execute("CREATE TABLE t (id int PRIMARY KEY, a int NOT NULL)")
    calls: list[str | None] = []

    def progress(done: float, total: float | None, message: str | None) -> None:
        calls.append(message)
        if len(calls) == 2:  # statement 2 is about to run: the replay ahead is under way
            raise KeyboardInterrupt

    db = _db(dsn)
    try:
        dry_run(db, parse_sql("ALTER TABLE t ADD COLUMN u int DEFAULT 0;\nCREATE INDEX t_a ON t (a);\n"),
                progress=progress)
    except KeyboardInterrupt:
        pass
    else:
        raise AssertionError("the progress callback's interruption did not stop the dry run")
    finally:
        db.close()
    # the replay ahead was stopped and its scratch database dropped before dry_run returned, not later
    assert not [t for t in threading.enumerate() if t.name == "agent19-ahead" and t.is_alive()]
    assert list_scratch(dsn) == []
    with psycopg.connect(dsn, autocommit=True) as c:
        assert c.execute("SELECT count(*) FROM pg_attribute WHERE attrelid = 't'::regclass AND attname = 'u'"
                         ).fetchone() == (0,)


def test_each_statement_s_rewrites_are_its_own_when_the_file_nodes_are_read_once_between_statements(dsn):
    """Between two statements the file nodes are read once (after the first, before the second): statement 2
    rewrites nothing although statement 1 rewrote t; after a stand-in the next statement still compares with what
    is really there. A statement that fails is rolled back to its savepoint and nothing after it runs (r27 k05)."""
    with psycopg.connect(dsn, autocommit=True) as c:
        c.execute("CREATE TABLE t (id int PRIMARY KEY, a int NOT NULL); CREATE TABLE v (id int PRIMARY KEY, b int)")
        c.execute("INSERT INTO t SELECT g, g FROM generate_series(1, 100) g; INSERT INTO v SELECT id, a FROM t")
    db = _db(dsn)
    try:
        result = dry_run(db, parse_sql(
            "ALTER TABLE t ALTER COLUMN a TYPE bigint;\n"  # rewrites t and its primary key
            "ALTER TABLE t ADD COLUMN c int;\n"  # rewrites nothing
            "CREATE INDEX CONCURRENTLY v_b ON v (b);\n"  # in the target, the plain CREATE INDEX stands in
            "ALTER TABLE v ALTER COLUMN b TYPE bigint;\n"  # rewrites v, rebuilds the index the stand-in made
            "ALTER TABLE v ALTER COLUMN b TYPE bigint USING b / (b - b);\n"  # rewrites v, then fails: rolled back
            "ALTER TABLE v ADD COLUMN d int;\n"),  # not run: statement 5 failed
            scratch_copy="schema")
    finally:
        db.close()
    rewritten = [s.rewritten for s in result.statements]
    assert "public.t" in rewritten[0] and "public.t_pkey" in rewritten[0], rewritten
    assert rewritten[1] == [] and rewritten[4] == [], rewritten
    assert result.statements[4].error is not None and result.statements[4].error.sqlstate == "22012"
    assert result.statements[5].ran_in == "skipped" and result.statements[5].duration_ms is None
    assert "public.v" in rewritten[3], rewritten
    # the index the stand-in made is rebuilt under a new oid: the lock on the old one is named as it was
    assert "public.v_b (dropped)" in {lk.relation for lk in result.statements[3].locks}, result.statements[3].locks
    assert result.target_unchanged and list_scratch(dsn) == []


def test_with_a_schema_copy_a_statement_outside_a_transaction_runs_in_the_scratch_database_meanwhile(dsn):
    """Asked for a schema-only copy, CREATE INDEX CONCURRENTLY is watched in the scratch database while the target's
    transaction runs (nothing of the scratch database is left for after the rollback): its locks are read there
    from another session as ever, the statement after it re-observed; when the target then skips a statement,
    that replay gives way to the one after the rollback, with the same results."""
    role = f"ahead_cic_{conninfo_to_dict(dsn)['dbname']}"
    with psycopg.connect(dsn, autocommit=True) as c:
        c.execute("CREATE TABLE t (id int PRIMARY KEY, a int NOT NULL)")
        c.execute("INSERT INTO t SELECT g, g FROM generate_series(1, 100) g")
    migration = ("ALTER TABLE t ADD COLUMN u int DEFAULT 0;\n{}CREATE INDEX CONCURRENTLY t_a ON t (a);\n"
                 "ALTER TABLE t ALTER COLUMN u SET NOT NULL;\n")
    for extra in ("", f"DO $$ BEGIN EXECUTE 'CREATE ROLE {role}'; END $$;\n"):
        messages: list[str | None] = []
        db = _db(dsn, **OPTED_IN)
        try:
            result = dry_run(db, parse_sql(migration.format(extra)), scratch_copy="schema",
                             progress=lambda done, total, message, seen=messages: seen.append(message))
        finally:
            db.close()
        cic, last = result.statements[-2], result.statements[-1]
        assert cic.ran_in == "scratch" and not cic.error, cic
        assert ("public.t", "ShareUpdateExclusiveLock") in {(lk.relation, lk.mode) for lk in cic.locks}, cic.locks
        assert "empty copy of the schema" in (cic.extrapolation or "")
        assert last.isolated and last.lock_comparison[0].observed == "AccessExclusiveLock"
        assert result.target_unchanged and result.scratch is not None and result.scratch.dropped
        assert list_scratch(dsn) == []
        # the scratch database's part after the rollback reports its statements' progress: none, unless it gave way
        after_rollback = [m for m in messages if m and "in the scratch database" in m]
        assert bool(after_rollback) == bool(extra), messages
    with psycopg.connect(dsn, autocommit=True) as c:
        assert c.execute("SELECT count(*) FROM pg_roles WHERE rolname = %s", (role,)).fetchone() == (0,)
