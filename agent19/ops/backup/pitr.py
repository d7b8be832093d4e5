"""Point-in-time recovery drill: a base backup plus a directory WAL archive, recovered to a moment.

The base backup (``base_backup``: a pg_basebackup directory, plain or tar, never modified — or a fresh
one) is copied into the work directory, checked with pg_verifybackup, given ``recovery.signal``,
``restore_command = 'cp <archive>/%f %p'``, ``recovery_target_time`` (when given; else recovery
replays the whole archive) and ``recovery_target_action = 'promote'``, and started on a private
socket. Then:

* recovery stopped at the target → the ``checks`` (queries that must return true, e.g. "the row
  committed before the target exists and the one committed after does not") run in the recovered
  database, and the point reached is read from the server's log;
* recovery ended before the target (PostgreSQL 13+ stops with "recovery ended before configured
  recovery target was reached") → point-in-time recovery to that moment is impossible from this
  backup and archive; the archive's gaps say where the chain breaks.

Nothing is compared with the live source: the recovered copy is, by design, in the past.

``target_time`` is checked before any work starts (:func:`check_target_time`): PostgreSQL must parse
it, it must not lie in the future (recovery would replay everything and then fail), and it must not
precede the base backup's start (recovery cannot stop before the backup is consistent). It is passed
to the recovery in UTC, as the target server read it, so the copy's TimeZone cannot shift it.

The checks run as a role created in the recovered copy for them — LOGIN, BYPASSRLS, member of
``pg_read_all_data``, nothing more — never as the copy's superuser: a view or function a check
reaches was written by the database's owners, and as a superuser it could run shell commands.
"""

from __future__ import annotations

import re
import secrets
import shlex
import time
from collections.abc import Callable
from datetime import UTC
from pathlib import Path

import psycopg
from psycopg import sql
from psycopg.conninfo import conninfo_to_dict, make_conninfo

from agent19.db import catalog_first
from agent19.db.connection import Database
from agent19.errors import InputError
from agent19.migrate.patterns.sqlnames import conf_value
from agent19.ops.backup.archive import label_start, scan_archive
from agent19.ops.backup.model import CheckOutcome, Durations, Sizes, VerifyResult
from agent19.ops.backup.physical import (
    cluster_facts,
    copy_existing,
    prepare_copy,
    start_copy,
    take_base_backup,
    verify_files,
)
from agent19.ops.backup.space import dir_bytes, require_free
from agent19.ops.backup.summary import finish
from agent19.ops.backup.workdir import give_to_server_user, work_dir
from agent19.safety import gate

Progress = Callable[[float, float | None, str | None], None]
_STOPPED = re.compile(r"recovery stopping (?:before|after) (?:commit|abort) of transaction \d+, time (.+)")
_LAST = re.compile(r"last completed transaction was at log time (.+)")
_NOT_REACHED = "recovery ended before configured recovery target was reached"


_WORDS = {"now", "today", "tomorrow", "yesterday", "epoch", "infinity", "-infinity", "allballs"}
_EXAMPLE = "write it as a moment with its time zone, e.g. '2026-11-30 14:00:00+00'"


def check_target_time(db: Database, target_time: str, base_backup: str | None) -> tuple[str, list[str]]:
    """The target time as recovery will get it (UTC) and notes; InputError when no recovery could stop there."""
    text = target_time.strip()
    if not text or text.lower() in _WORDS:
        raise InputError(f"--target-time {target_time!r} is not a fixed moment (recovery would read it when the copy "
                         "starts)", _EXAMPLE)
    if not base_backup:
        raise InputError("--target-time needs a base backup taken before it (--from DIR): a base backup taken now "
                         "can only recover to later moments",
                         "pass --from with an earlier pg_basebackup directory, or omit --target-time to replay the "
                         "whole archive onto a fresh base backup")
    try:
        with db.read() as conn:
            row = conn.execute("SELECT %s::timestamptz AS t, now() AS now, current_setting('TimeZone') AS tz",
                               (text,)).fetchone()
    except psycopg.errors.DataError as exc:
        raise InputError(f"--target-time {target_time!r} is not a time PostgreSQL reads: "
                         f"{str(exc).strip().splitlines()[0]}", _EXAMPLE) from None
    assert row is not None
    moment, now = row["t"], row["now"]
    if moment > now:
        raise InputError(f"--target-time {moment.astimezone(UTC):%Y-%m-%d %H:%M:%S%z} is in the future (the server's "
                         f"clock says {now.astimezone(UTC):%Y-%m-%d %H:%M:%S%z}): recovery would replay the whole "
                         "archive and then fail, never reaching it", "give a moment in the past, or omit "
                         "--target-time to replay the whole archive")
    started = label_start(Path(base_backup))
    if started is not None and moment < started:
        raise InputError(f"--target-time {moment.astimezone(UTC):%Y-%m-%d %H:%M:%S%z} is before the base backup "
                         f"started ({started.astimezone(UTC):%Y-%m-%d %H:%M:%S%z}): recovery cannot stop before the "
                         "backup is consistent", "use a base backup taken before that moment, or a later target")
    notes = [] if re.search(r"([+-]\d{1,2}(:?\d\d)?|[a-z]{3,}|z)\s*$", text, re.I) else [
        f"--target-time has no time zone: read in the server session's TimeZone ({row['tz']})"]
    return moment.astimezone(UTC).strftime("%Y-%m-%d %H:%M:%S.%f+00"), notes


def _checker(dsn: str, major: int) -> str:
    """A role in the recovered copy that may read everything and do nothing else; returns its DSN."""
    with catalog_first.connect(dsn, autocommit=True) as conn:
        row = conn.execute("SELECT rolname FROM pg_roles WHERE oid = 10").fetchone()  # the bootstrap superuser
    assert row is not None
    name = f"agent19_checker_{secrets.token_hex(4)}"
    with catalog_first.connect(make_conninfo(dsn, user=row[0]), autocommit=True) as conn:
        conn.execute(sql.SQL("CREATE ROLE {} LOGIN NOSUPERUSER NOCREATEDB NOCREATEROLE BYPASSRLS").format(
            sql.Identifier(name)))
        if major >= 14:
            conn.execute(sql.SQL("GRANT pg_read_all_data TO {}").format(sql.Identifier(name)))
        else:
            schemas = [r[0] for r in conn.execute(
                "SELECT nspname FROM pg_namespace WHERE nspname <> 'information_schema' AND nspname NOT LIKE 'pg\\_%'")]
            for schema in schemas:
                for grant in ("GRANT USAGE ON SCHEMA {0} TO {1}", "GRANT SELECT ON ALL TABLES IN SCHEMA {0} TO {1}",
                              "GRANT SELECT ON ALL SEQUENCES IN SCHEMA {0} TO {1}"):
                    conn.execute(sql.SQL(grant).format(sql.Identifier(schema), sql.Identifier(name)))
    return make_conninfo(dsn, user=name)


def _run_checks(dsn: str, checks: list[str], timeout_ms: int) -> list[CheckOutcome]:
    """Each check (already admitted by the gate as one read) in a READ ONLY transaction on the copy."""
    out = []
    with catalog_first.connect(dsn, autocommit=True) as conn:
        conn.execute(sql.SQL("SET statement_timeout = {}").format(sql.Literal(f"{timeout_ms}ms")))
        for query in checks:
            try:
                with conn.transaction():
                    conn.execute("SET TRANSACTION READ ONLY")
                    row = conn.execute(query).fetchone()
                value = row[0] if row else None
                out.append(CheckOutcome(query=query, passed=bool(value), value=None if value is None else str(value)))
            except psycopg.Error as exc:
                out.append(CheckOutcome(query=query, passed=False, error=str(exc).strip().splitlines()[0]))
    return out


def verify_pitr(
    db: Database, *, archive_dir: str, base_backup: str | None = None, target_time: str | None = None,
    checks: list[str] | None = None, work_base: str | None = None, progress: Progress | None = None,
) -> VerifyResult:
    say = progress or (lambda *a: None)
    for query in checks or []:  # the choke point for user SQL, before anything starts
        gate.admit(db, query, gate.Purpose.READ)
    target_notes: list[str] = []
    if target_time:
        target_time, target_notes = check_target_time(db, target_time, base_backup)
    facts = cluster_facts(db)
    major, dbname = int(facts["major"]), str(facts["dbname"])
    user = conninfo_to_dict(db.dsn).get("user") or str(facts["usr"])
    archive = Path(archive_dir).resolve()
    scan = scan_archive(archive)
    notes: list[str] = list(target_notes)
    result = VerifyResult(verified=False, kind="pitr", summary="", database="")
    with work_dir(Path(work_base) if work_base else None) as wd:
        if base_backup:
            require_free(wd.path, dir_bytes(Path(base_backup)), "the copy of the base backup")
            base, backup_s = copy_existing(Path(base_backup), wd), 0.0
        else:
            require_free(wd.path, int(facts["cluster_bytes"] or 0), "the base backup")
            say(0, None, "taking a base backup (pg_basebackup)")
            base, backup_s = take_base_backup(db, wd, major)
            notes.append("a fresh base backup: only WAL archived after now can be replayed")
        backup_bytes = dir_bytes(base)
        say(0, None, "pg_verifybackup")
        verify_s, damaged, errors = verify_files(base, major)
        startup_s = 0.0
        if damaged or errors:
            result.damaged_files, result.errors = damaged, [*errors, "recovery not attempted: pg_verifybackup failed"]
        else:
            prepare_copy(base)
            (base / "recovery.signal").touch()
            settings = {"restore_command": conf_value(f"cp {shlex.quote(str(archive))}/%f %p"),
                        "recovery_target_action": "'promote'", "log_min_messages": "'log'"}
            if target_time:
                settings["recovery_target_time"] = conf_value(target_time)
            give_to_server_user(wd.path)
            say(0, None, f"recovering to {target_time or 'the end of the archive'}")
            cluster, startup_s, failure = start_copy(wd, base, major, str(user), settings)
            log_text = cluster.log_tail(200_000)
            stopped = _STOPPED.findall(log_text) or _LAST.findall(log_text)
            result.recovered_to = stopped[-1].strip() if stopped else None
            if failure:
                if _NOT_REACHED in failure or _NOT_REACHED in log_text:
                    where = f"; the archive has a gap after {scan.gaps[0].after}" if scan.gaps else \
                        f"; the archive ends at {scan.last}"
                    result.errors.append(f"point-in-time recovery to {target_time} is impossible from this backup "
                                         f"and archive: recovery ended before the target{where}")
                else:
                    result.errors.append(f"recovery failed: {failure}")
            else:
                start = time.monotonic()
                checker = _checker(cluster.dsn(dbname), major) if checks else cluster.dsn(dbname)
                result.checks = _run_checks(checker, checks or [], db.settings.statement_timeout_ms)
                verify_s += time.monotonic() - start
        for gap in scan.gaps:
            notes.append(f"archive gap: {gap.missing_count} segment(s) missing from {gap.missing_first} "
                         f"(timeline {gap.timeline}); recovery cannot pass {gap.after}")
        result.restored_into = f"throwaway server recovered in {wd.path}"
        result.removed = [f"work directory {wd.path} (base backup copy and throwaway server)"]
    result.durations_s = Durations(dump=round(backup_s, 3), restore=round(startup_s, 3), verify=round(verify_s, 3))
    result.sizes = Sizes(database_bytes=int(facts["cluster_bytes"] or 0) or None, backup_bytes=backup_bytes)
    result.notes = [f"archive {archive}: {scan.segments} segment(s), {scan.first} ... {scan.last}", *notes]
    return finish(result, db.display_dsn)
