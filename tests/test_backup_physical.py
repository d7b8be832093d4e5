"""Physical backups and point-in-time recovery with the real pg_basebackup, pg_verifybackup and WAL archiving.

One server per module with ``archive_mode = on`` and ``archive_command`` copying into a directory,
as a user would configure it.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import psycopg
import pytest

from agent19.config import Settings
from agent19.db.binaries import as_postgres_user
from agent19.db.connection import Database
from agent19.ops.backup.physical import verify_physical
from agent19.ops.backup.pitr import verify_pitr
from agent19.ops.backup.status import backup_status
from agent19.safety.gate import PrivilegedReader
from agent19.safety.readonly import ReadOnlyViolation
from tests.conftest import need
from tools.throwaway import ThrowawayServer, start_system, system_versions

BIN = Path("/usr/lib/postgresql/15/bin")


@pytest.fixture(scope="module")
def archived() -> Iterator[tuple[ThrowawayServer, Path]]:
    need(15 in system_versions(), "PostgreSQL 15 server binaries are not installed")
    archive = Path(tempfile.mkdtemp(prefix="agent19-test-archive-"))
    os.chmod(archive, 0o777)
    server = start_system(15, settings={"archive_mode": "on", "archive_command": f"'cp %p {archive}/%f'"})
    try:
        yield server, archive
    finally:
        server.stop()
        shutil.rmtree(archive, ignore_errors=True)


def _sql(dsn: str, sql: str) -> list[tuple]:
    with psycopg.connect(dsn, autocommit=True) as conn:
        cur = conn.execute(sql)
        return cur.fetchall() if cur.description else []


def _switch_and_wait(dsn: str) -> str:
    """Close the current WAL segment and wait until the archiver has copied it; returns its name."""
    segment = _sql(dsn, "SELECT pg_walfile_name(pg_current_wal_lsn())")[0][0]
    _sql(dsn, "SELECT pg_switch_wal()")
    deadline = time.monotonic() + 30
    while True:
        last = _sql(dsn, "SELECT last_archived_wal FROM pg_stat_archiver")[0][0]
        if last and last[:24] >= segment:
            return segment
        assert time.monotonic() < deadline, "the archiver did not archive the segment"
        time.sleep(0.1)


def _base_backup(server: ThrowawayServer, into: Path) -> Path:
    into.parent.mkdir(parents=True, exist_ok=True)
    os.chmod(into.parent, 0o777)  # inside public_tmp
    subprocess.run([BIN / "pg_basebackup", "-D", into, "-X", "stream", "-c", "fast", "-d", server.dsn],
                   check=True, capture_output=True, **as_postgres_user())  # type: ignore[arg-type]
    return into


def _db(server: ThrowawayServer, **settings: object) -> Database:
    return Database(Settings.load(dsn=server.dsn, **settings))


def test_physical_backup_is_verified_and_unlogged_tables_come_back_empty(archived):
    server, _ = archived
    _sql(server.dsn, "CREATE TABLE IF NOT EXISTS accounts (id int PRIMARY KEY, owner text, balance numeric);"
         "TRUNCATE accounts; INSERT INTO accounts SELECT g, 'owner ' || g, g * 10 FROM generate_series(1, 1000) g;"
         "CREATE UNLOGGED TABLE IF NOT EXISTS sessions (token text); INSERT INTO sessions VALUES ('t')")
    result = verify_physical(_db(server))
    assert result.verified, result.summary
    tables = {t.table: t for t in result.tables}
    assert (tables["public.accounts"].rows_source, tables["public.accounts"].rows_restored) == (1000, 1000)
    assert tables["public.sessions"].rows_restored == 0 and tables["public.sessions"].checksum_match
    assert result.durations_s.dump > 0 and result.durations_s.restore > 0
    assert result.restore_estimate_s >= result.durations_s.restore and "recovery to consistency" in \
        result.estimate_method
    work = Path(result.removed[0].split()[2])
    assert not work.exists()


def test_a_flipped_byte_in_a_base_backup_is_caught_by_pg_verifybackup_and_named(archived):
    server, _ = archived
    _sql(server.dsn, "CREATE TABLE IF NOT EXISTS accounts (id int PRIMARY KEY, owner text, balance numeric);"
         "INSERT INTO accounts SELECT g, 'x', 1 FROM generate_series(100001, 100100) g ON CONFLICT DO NOTHING;"
         "CHECKPOINT")
    relpath = _sql(server.dsn, "SELECT pg_relation_filepath('accounts')")[0][0]

    def flip(base: Path) -> None:
        f = base / relpath
        data = bytearray(f.read_bytes())
        data[len(data) // 2] ^= 0x01
        f.write_bytes(bytes(data))

    result = verify_physical(_db(server), after_backup=flip)
    assert not result.verified
    assert result.damaged_files == [relpath]
    assert any("checksum mismatch" in e and relpath in e for e in result.errors)
    assert relpath in result.summary


def test_an_existing_tar_format_base_backup_is_verified(archived, public_tmp):
    server, _ = archived
    target = public_tmp / "tarbackup"
    subprocess.run([BIN / "pg_basebackup", "-D", target, "-Ft", "-X", "stream", "-c", "fast", "-d", server.dsn],
                   check=True, capture_output=True, **as_postgres_user())  # type: ignore[arg-type]
    before = sorted(p.name for p in target.iterdir())
    result = verify_physical(_db(server), from_dir=str(target))
    assert result.verified, result.summary
    assert sorted(p.name for p in target.iterdir()) == before     # the user's backup is untouched


def test_point_in_time_drill_recovers_before_a_row_and_not_after(archived, public_tmp):
    server, archive = archived
    base = _base_backup(server, public_tmp / "pitr" / "base")
    _sql(server.dsn, "CREATE TABLE orders_pitr (id int PRIMARY KEY, note text);"
         "INSERT INTO orders_pitr VALUES (1, 'committed before the target')")
    time.sleep(1.2)
    target = _sql(server.dsn, "SELECT now()::text")[0][0]
    time.sleep(1.2)
    _sql(server.dsn, "INSERT INTO orders_pitr VALUES (2, 'committed after the target')")
    _switch_and_wait(server.dsn)
    check = ("SELECT exists(SELECT 1 FROM orders_pitr WHERE id = 1)"
             " AND NOT exists(SELECT 1 FROM orders_pitr WHERE id = 2)")
    # the checks are user SQL: read-only mode runs them as a superuser login only with the explicit opt-in
    # (tests/conftest.py opts in for the whole run; the refusal without it is asserted below)
    db = _db(server, allow_privileged_reads=True)
    result = verify_pitr(db, archive_dir=str(archive), base_backup=str(base), target_time=target, checks=[check])
    assert result.verified, result.summary
    assert result.kind == "pitr"
    assert [c.passed for c in result.checks] == [True]
    assert result.recovered_to and result.recovered_to[:19] > target[:19]   # stopped before the later commit
    # the same drill with the opposite claim fails: the check is really evaluated
    wrong = verify_pitr(db, archive_dir=str(archive), base_backup=str(base), target_time=target,
                        checks=["SELECT exists(SELECT 1 FROM orders_pitr WHERE id = 2)"])
    assert not wrong.verified and wrong.checks[0].passed is False
    # a check that is not a plain read never reaches any server, the copy included
    with pytest.raises(ReadOnlyViolation, match="pg_read_file"):
        verify_pitr(db, archive_dir=str(archive), base_backup=str(base), target_time=target,
                    checks=["SELECT pg_read_file('/etc/hostname') IS NOT NULL"])
    with pytest.raises(PrivilegedReader):
        verify_pitr(_db(server, allow_privileged_reads=False), archive_dir=str(archive), base_backup=str(base),
                    checks=[check])


def test_a_missing_segment_is_a_gap_and_recovery_past_it_is_impossible(archived, public_tmp):
    server, archive = archived
    base = _base_backup(server, public_tmp / "gap" / "base")
    _sql(server.dsn, "CREATE TABLE IF NOT EXISTS gap_rows (id int)")
    for i in range(3):
        _sql(server.dsn, f"INSERT INTO gap_rows VALUES ({i})")
        _switch_and_wait(server.dsn)
    time.sleep(1.1)
    target = _sql(server.dsn, "SELECT now()::text")[0][0]
    _sql(server.dsn, "INSERT INTO gap_rows VALUES (99)")
    _switch_and_wait(server.dsn)
    broken = public_tmp / "broken-archive"
    shutil.copytree(archive, broken)
    segments = sorted(p.name for p in broken.iterdir() if len(p.name) == 24)
    missing, before = segments[-3], segments[-4]      # written after the base backup, before the target
    (broken / missing).unlink()

    status = backup_status(_db(server), archive_dir=str(broken))
    gap = next(c for c in status.checks if c.check == "archive_gaps")
    assert gap.status == "critical" and missing in gap.message and before in gap.message
    assert status.archive and status.archive.gaps[0].missing_first == missing

    result = verify_pitr(_db(server), archive_dir=str(broken), base_backup=str(base), target_time=target)
    assert not result.verified
    assert any("impossible" in e and before in e for e in result.errors), (result.errors, segments)
    # with the whole archive the same recovery works
    assert verify_pitr(_db(server), archive_dir=str(archive), base_backup=str(base), target_time=target).verified


def test_runbook_for_an_archiving_server_gives_the_point_in_time_recovery_settings(archived):
    from agent19.ops.backup.runbook import restore_runbook

    server, archive = archived
    book = restore_runbook(_db(server), archive_dir=str(archive), backup_dir="/srv/base")
    assert "archive_mode = `on`" in book.markdown
    assert "recovery.signal" in book.markdown and "recovery.conf" not in book.markdown    # PostgreSQL 12+
    assert f"restore_command = 'cp {archive}/%f \"%p\"'" in book.markdown
    assert "recovery_target_action = 'promote'" in book.markdown


def test_a_role_without_replication_is_told_what_it_needs(archived):
    from agent19.errors import InputError

    server, _ = archived
    _sql(server.dsn, "DROP ROLE IF EXISTS no_repl; CREATE ROLE no_repl LOGIN")
    try:
        db = Database(Settings.load(dsn=server.dsn.replace("postgres@", "no_repl@")))
        with pytest.raises(InputError, match="REPLICATION"):
            verify_physical(db)
    finally:
        _sql(server.dsn, "DROP ROLE no_repl")


def test_a_target_time_no_recovery_can_reach_is_refused_before_any_work(archived, public_tmp):
    from agent19.errors import InputError

    server, archive = archived
    base = _base_backup(server, public_tmp / "when" / "base")
    work = public_tmp / "when-work"   # nothing may be created here: each refusal comes first
    db = _db(server)
    cases = {
        "half past nine-ish": "is not a time PostgreSQL reads",
        "2999-01-01 00:00:00+00": "is in the future",
        "2000-01-01 00:00:00+00": "is before the base backup started",
        "now": "is not a fixed moment",
    }
    for given, said in cases.items():
        with pytest.raises(InputError, match=said) as err:
            verify_pitr(db, archive_dir=str(archive), base_backup=str(base), target_time=given,
                        work_base=str(work))
        assert err.value.hint, f"{given}: no hint saying what to do"
    with pytest.raises(InputError, match="needs a base backup taken before it") as err:
        verify_pitr(db, archive_dir=str(archive), target_time="2000-01-01 00:00:00+00", work_base=str(work))
    assert "--from" in (err.value.hint or "")
    assert not work.exists()
    # the CLI says it the same way, with what to do, and no traceback
    done = subprocess.run([sys.executable, "-m", "agent19", "backup", "verify", "--dsn", server.dsn, "--kind", "pitr",
                           "--from", str(base), "--archive-dir", str(archive), "--target-time", "2999-01-01"],
                          capture_output=True, text=True, timeout=60, cwd=Path(__file__).parent.parent)
    assert done.returncode == 2 and "in the future" in done.stderr and "Traceback" not in done.stderr, done.stderr


def test_point_in_time_checks_never_run_as_a_superuser_in_the_copy(archived, public_tmp):
    """At the target time a view an application role owns calls its function, which runs a shell command when
    the session user is a superuser; afterwards the owner makes the view harmless. The read-only guard judges
    the check against the live catalog (harmless) — the recovered copy holds the past one: the check must not
    set it off there."""
    server, archive = archived
    marker = Path(f"/tmp/agent19-planted-{uuid.uuid4().hex}")
    base = _base_backup(server, public_tmp / "planted" / "base")
    _sql(server.dsn, "DROP ROLE IF EXISTS planter_pitr; CREATE ROLE planter_pitr LOGIN;"
         "CREATE SCHEMA planted AUTHORIZATION planter_pitr")
    planter = server.dsn.replace("postgres@", "planter_pitr@")
    try:
        _sql(planter, f"""
            CREATE FUNCTION planted.escape() RETURNS int LANGUAGE plpgsql AS $f$
            BEGIN
              IF (SELECT rolsuper FROM pg_roles WHERE rolname = session_user) THEN
                BEGIN
                  EXECUTE 'RESET ROLE';
                  EXECUTE $c$COPY (SELECT 1) TO PROGRAM 'touch {marker}'$c$;
                EXCEPTION WHEN OTHERS THEN NULL;
                END;
              END IF;
              RETURN 1;
            END $f$;
            CREATE TABLE planted.orders (id int PRIMARY KEY);
            INSERT INTO planted.orders VALUES (1);
            CREATE VIEW planted.order_view AS SELECT id, planted.escape() AS x FROM planted.orders;""")
        _sql(server.dsn, "SELECT * FROM planted.order_view")   # the weapon works for a superuser session
        assert marker.exists(), "the planted view did not run its command as a superuser: the test proves nothing"
        marker.unlink()
        time.sleep(1.2)
        target = _sql(server.dsn, "SELECT now()::text")[0][0]
        time.sleep(1.2)
        _sql(planter, "CREATE OR REPLACE VIEW planted.order_view AS SELECT id, 1 AS x FROM planted.orders")
        _switch_and_wait(server.dsn)
        result = verify_pitr(_db(server), archive_dir=str(archive), base_backup=str(base), target_time=target,
                             checks=["SELECT count(*) = 1 AND min(x) = 1 FROM planted.order_view"])
        assert not marker.exists(), "a point-in-time check ran the owner's function as a superuser"
        assert result.verified, result.summary
        assert [c.passed for c in result.checks] == [True]
    finally:
        marker.unlink(missing_ok=True)
        _sql(server.dsn, "DROP SCHEMA IF EXISTS planted CASCADE; DROP ROLE IF EXISTS planter_pitr")


def test_rows_written_after_the_base_backup_are_listed_by_key(archived):
    """The physical copy is compared with the live source: rows written after the backup are named, by key."""
    server, _ = archived
    _sql(server.dsn, "DROP TABLE IF EXISTS ledger; CREATE TABLE ledger (id int PRIMARY KEY, amount numeric);"
         "INSERT INTO ledger SELECT g, g FROM generate_series(1, 100) g")

    def write_after(_: Path) -> None:
        _sql(server.dsn, "INSERT INTO ledger VALUES (5001, 1), (5002, 2); UPDATE ledger SET amount = 0 WHERE id = 7;"
             "DELETE FROM ledger WHERE id = 50")

    try:
        result = verify_physical(_db(server), after_backup=write_after)
        assert not result.verified
        ledger = next(t for t in result.tables if t.table == "public.ledger")
        assert ledger.key_columns == ["id"]
        assert [(r.key, r.difference) for r in ledger.differing_rows] == [
            ("(50)", "extra"), ("(5001)", "missing"), ("(5002)", "missing"), ("(7)", "changed")]
        assert "(50) extra" in result.summary
    finally:
        _sql(server.dsn, "DROP TABLE IF EXISTS ledger")
