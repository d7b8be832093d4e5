"""A dry run's fixed costs in round trips and sessions, with the same results: the kept schema dump's digest read
with the catalog snapshot on the dry run's own session, the dump taken again when what it names changes, the shared
catalog check read with each statement's locks. (How fast: ``tools/bench/bench_dryrun.py``.)"""

from __future__ import annotations

import os
import re
from pathlib import Path
from typing import Any

import psycopg
import pytest
from psycopg.conninfo import conninfo_to_dict, make_conninfo

from agent19.db.connection import Database
from agent19.migrate.dryrun import dump_cache
from agent19.migrate.dryrun.run import dry_run
from agent19.migrate.dryrun.scratch import list_scratch
from agent19.migrate.parse import parse_sql
from tests import scratch_dryruns
from tests.conftest import session_settings
from tests.scratch_dryruns import owner

# statement 2 takes a lock statement 1 holds: re-observed in a schema-only copy, made from the schema dump
MIGRATION = "ALTER TABLE t ADD COLUMN u int DEFAULT 0;\nCREATE INDEX t_a ON t (a);\nALTER TABLE t ADD COLUMN v int;\n"


def _setup(dsn: str) -> None:
    with psycopg.connect(dsn, autocommit=True) as c:
        c.execute("CREATE TABLE t (id int PRIMARY KEY, a int NOT NULL)")
        c.execute("INSERT INTO t SELECT g, g FROM generate_series(1, 100) g")


def _dry_run(dsn: str, data_dir: Path, sql: str = MIGRATION, opened: list[str] | None = None,
             **settings: Any) -> Any:
    """The dry run; with ``opened``, the databases of the sessions it opens are appended to it."""
    db = Database(session_settings(dsn=dsn, mode="dry-run", data_dir=str(data_dir), **settings))
    real = psycopg.connect

    def counting(conninfo: str = "", **kwargs: Any) -> Any:
        assert opened is not None
        opened.append(conninfo_to_dict(conninfo).get("dbname", ""))
        return real(conninfo, **kwargs)

    if opened is not None:
        psycopg.connect = counting  # type: ignore[assignment]
    try:
        result = dry_run(db, parse_sql(sql))
    finally:
        psycopg.connect = real  # type: ignore[assignment]
        db.close()
    assert result.passed and result.target_unchanged, result.summary
    assert result.scratch is not None and result.scratch.dropped and list_scratch(dsn) == []
    assert [s.isolated for s in result.statements] == [False, True, True], result.statements
    return result


def _how(result: Any) -> str:
    return next(n for n in result.scratch.notes if n.startswith("schema dump"))


@pytest.fixture
def traced(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> list[Path]:
    """The libpq protocol trace of every session a dry run opens with Database.connect (its own), one file each."""
    files: list[Path] = []
    connect = Database.connect

    def traced_connect(self: Database) -> Any:
        conn = connect(self)
        path = tmp_path / f"session{len(files)}.trace"
        files.append(path)
        fd = os.open(path, os.O_WRONLY | os.O_CREAT, 0o600)
        conn.pgconn.trace(fd)
        conn.pgconn.set_trace_flags(psycopg.pq.Trace.SUPPRESS_TIMESTAMPS | psycopg.pq.Trace.REGRESS_MODE)
        return conn

    monkeypatch.setattr(Database, "connect", traced_connect)
    return files


def _round_trips(trace: Path) -> list[list[str]]:
    """The messages the client sent, grouped by round trip (a simple Query, or everything up to a Sync); a message
    is its type and text (a query's text spans lines in the trace)."""
    trips: list[list[str]] = []
    current: list[str] = []
    for who, kind, text in re.findall(r"^([FB])\t\d+\t(\w+)(.*?)(?=^[FB]\t\d+\t|\Z)", trace.read_text(),
                                      re.MULTILINE | re.DOTALL):
        if who != "F":
            continue
        current.append(f"{kind}{text}".strip())
        if kind in ("Query", "Sync"):
            trips.append(current)
            current = []
    return trips


def test_a_repeated_dry_run_reads_the_kept_dump_s_digest_with_its_catalog_snapshot(dsn, tmp_path, traced):
    """A dump is kept: its key, the catalogs' digest, is read in the round trip of the dry run's catalog snapshot,
    on the dry run's own session (whose catalog caches that snapshot warmed), not on a session of its own."""
    _setup(dsn)
    dump_cache._DUMPS.clear()
    try:
        first = _dry_run(dsn, tmp_path)
        assert _how(first) == "schema dump taken (pg_dump)"
        opened: list[str] = []
        second = _dry_run(dsn, tmp_path, opened=opened)
        assert _how(second).startswith("schema dump reused"), second.scratch.notes
        # the dry run's own session and the scratch database's look at the target's extensions: none for the digest
        assert opened.count(conninfo_to_dict(dsn)["dbname"]) == 2, opened
        trips = _round_trips(traced[-1])
        with_digest = [t for t in trips if any("catalog_state" in m for m in t)]
        assert len(with_digest) == 1 and any("pg_available_extensions" in m for m in with_digest[0]), with_digest
        assert first.statements[1].locks == second.statements[1].locks
    finally:
        dump_cache._DUMPS.clear()


def test_a_kept_dump_is_taken_again_when_a_role_or_tablespace_it_names_changes(dsn, tmp_path):
    """A dump names cluster-wide objects — a policy's role — whose rows are in no catalog of the database: a role
    renamed between two dry runs must not leave the old name in the reused dump (the scratch load then failed:
    role "…" does not exist). Nothing is written to the data directory: a dump can hold user mappings' passwords."""
    _setup(dsn)
    role = f"agent19_dump_{os.getpid()}"
    with psycopg.connect(dsn, autocommit=True) as c:
        c.execute(f"DROP ROLE IF EXISTS {role}, {role}_b")
        c.execute(f"CREATE ROLE {role}")
        c.execute(f"CREATE POLICY p ON t TO {role} USING (true)")
    dump_cache._DUMPS.clear()
    try:
        assert _how(_dry_run(dsn, tmp_path)) == "schema dump taken (pg_dump)"
        assert _how(_dry_run(dsn, tmp_path)).startswith("schema dump reused")
        with psycopg.connect(dsn, autocommit=True) as c:
            c.execute(f"ALTER ROLE {role} RENAME TO {role}_b")
        renamed = _dry_run(dsn, tmp_path)  # passes: the scratch copy loaded the policy with the role's new name
        assert _how(renamed) == "schema dump taken (pg_dump)", renamed.scratch.notes
        assert not any(tmp_path.rglob("*.sql")), list(tmp_path.rglob("*"))
    finally:
        dump_cache._DUMPS.clear()
        with psycopg.connect(dsn, autocommit=True) as c:
            c.execute("DROP POLICY IF EXISTS p ON t")
            c.execute(f"DROP ROLE IF EXISTS {role}, {role}_b")


def test_each_statement_costs_four_round_trips_in_the_target_s_transaction(dsn, tmp_path, traced):
    """SAVEPOINT, the statement, its locks + file nodes + the shared-catalog write check in one pipeline, RELEASE:
    the check that no statement wrote a cluster-wide catalog is read in the round trip of its locks."""
    _setup(dsn)
    _dry_run(dsn, tmp_path)
    trips = _round_trips(traced[0])
    begin = next(i for i, t in enumerate(trips) if t == ['Query\t "BEGIN"'])
    end = next(i for i, t in enumerate(trips) if t == ['Query\t "ROLLBACK"'])
    inside = trips[begin + 1:end]
    assert len(inside) == 1 + 4 * 3, inside  # the locks held before the first statement, then 4 per statement
    checks = [t for t in inside if any("pg_locks" in m and "pg_authid" in m for m in t)]
    assert len(checks) == 3 and all(any("relfilenode" in m for m in t) for t in checks), checks


def test_a_kept_dump_is_not_reused_for_another_login_given_by_the_libpq_environment(dsn, tmp_path, monkeypatch):
    """The same DSN text is another target when PGUSER (or any libpq variable but PGPASSWORD) differs: the dump an
    owner login took is not handed to a dry run as the superuser (or the other way round) — each login's pg_dump
    runs once, and its own dump is reused after."""
    owner_dsn = owner(dsn)
    params = conninfo_to_dict(owner_dsn)
    logins = {"owner": params.pop("user"), "superuser": conninfo_to_dict(dsn)["user"]}
    text = make_conninfo(**params)  # no user: libpq takes PGUSER
    dump_cache._DUMPS.clear()
    try:
        for login, how in [("owner", "taken"), ("superuser", "taken"), ("owner", "reused"), ("superuser", "reused")]:
            monkeypatch.setenv("PGUSER", logins[login])
            # the superuser runs the owner's table's code only when opted in (agent19.safety.trial_owners)
            result = _dry_run(text, tmp_path, sql=scratch_dryruns.MIGRATION, allow_privileged_reads=True)
            assert _how(result).startswith(f"schema dump {how}"), (login, result.scratch.notes)
        assert len(dump_cache._DUMPS) == 2
    finally:
        dump_cache._DUMPS.clear()
