"""Logical backup verification: pg_dump the target, restore it elsewhere, and compare with the source.

How it stays exact on a busy server: one ``REPEATABLE READ READ ONLY`` transaction on the target
exports its snapshot (``pg_export_snapshot()``); ``pg_dump --snapshot`` dumps exactly that snapshot
while agent19's own sessions import it and checksum every table in it, in parallel with the dump.
The restored copy is then compared with what the dump saw, not with whatever the target has become.

Where it restores (``restore_into``):

* ``scratch`` — a scratch database on the target's server (:mod:`agent19.migrate.dryrun.scratch`: dropped
  in ``finally``, on SIGTERM, and by the next run after a SIGKILL); needs mode ``dry-run``, the
  CREATEDB privilege and a login that is no superuser (see below);
* ``cluster`` — a throwaway cluster (``initdb``) in the local work directory, on a private socket;
  needs the server binaries of the target's major version here; works in ``read-only`` mode;
* ``auto`` — ``scratch`` when the mode and the login allow it and the target's disk (when agent19
  can see it) would keep at least 10% and 1 GB free after the copy; ``cluster`` otherwise.

The dump's SQL never runs as a superuser (its CHECK constraints, defaults, index expressions and
triggers call functions whoever owned them wrote): :mod:`agent19.ops.backup.restorer`.

Only reads reach the target (the dump and the checksums); ``statement_timeout`` is lifted for
agent19's own read sessions (a checksum reads whole tables); ``lock_timeout`` is passed to pg_dump
as ``--lock-wait-timeout``.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from psycopg.conninfo import make_conninfo

from agent19.config import AccessMode
from agent19.db import rls, throwaway_cluster
from agent19.db.binaries import pg_binary
from agent19.db.catalog import snapshot
from agent19.db.child_env import child_connection
from agent19.db.connection import Database
from agent19.errors import InputError
from agent19.migrate.dryrun.scratch import drop_leftovers, scratch_database
from agent19.ops.backup import compare as cmp
from agent19.ops.backup import restorer, rowdiff
from agent19.ops.backup.dump import Dump, restore_errors
from agent19.ops.backup.model import Durations, Sizes, VerifyResult
from agent19.ops.backup.plain import restore_plain
from agent19.ops.backup.space import EMPTY_CLUSTER, dir_bytes, require_free, server_free_bytes
from agent19.ops.backup.summary import finish
from agent19.ops.backup.workdir import WorkDir, run, work_dir

RestoreInto = Literal["auto", "scratch", "cluster"]
Progress = Callable[[float, float | None, str | None], None]


def _binary(tool: str, major: int) -> str:
    found = pg_binary(tool, major)
    if not found:
        raise InputError(f"{tool} not found", f"install the PostgreSQL {major} client programs "
                         f"(Debian: postgresql-client-{major})")
    return found


def _dump_kind(path: Path) -> str:
    if path.is_dir():
        if not (path / "toc.dat").exists():
            raise InputError(f"{path} is a directory without toc.dat", "give a pg_dump file or directory-format dump")
        return "directory"
    if not path.is_file():
        raise InputError(f"dump file {path} not found")
    with open(path, "rb") as f:
        head = f.read(5)
    return "custom" if head == b"PGDMP" else "plain"


def _restore_cmd(major: int, jobs: int, dsn: str, path: Path | None, toc: Path | None = None) -> list[str]:
    cmd = [_binary("pg_restore", major), "--no-owner", "--no-privileges", "-d", dsn]
    cmd += ["-L", str(toc)] if toc is not None else []
    return cmd + (["--jobs", str(jobs), str(path)] if path is not None else [])


@dataclass
class _Target:
    dsn: str            # where the restore logs in (never a superuser), with password
    where: str
    admin_dsn: str | None = None  # a throwaway cluster's superuser, for what only it may create


@dataclass
class _Plan:
    """What the restorer runs: a pg_restore table of contents or a plain-dump filter (see backup_restorer)."""
    toc: Path | None = None
    plain: restorer.PlainFilter | None = None
    errors: list[str] = field(default_factory=list)


def _plan(kind: str, path: Path, target: _Target, wd: WorkDir, major: int, notes: list[str],
          installed: set[str]) -> _Plan:
    """``installed``: the target's extensions — the only ones the cluster's superuser creates for a dump (a
    dump file does not choose what a superuser installs)."""
    made: list[str] = []
    schemas: list[str] = []
    plan = _Plan()
    if kind == "plain":
        if target.admin_dsn:
            made, schemas, plan.errors = restorer.precreate(
                target.admin_dsn, [e for e in restorer.plain_extensions(path) if e[0] in installed])
        plan.plain = restorer.PlainFilter(made, schemas)
        return plan
    tool = _binary("pg_restore", major)
    listing = restorer.archive_listing(tool, path)
    if not listing:
        return plan  # unreadable: pg_restore itself will say why
    if target.admin_dsn:
        found = restorer.archive_extensions(tool, path, listing, wd.path)
        made, schemas, plan.errors = restorer.precreate(target.admin_dsn, [e for e in found if e[0] in installed])
    toc, toc_notes = restorer.restore_list(listing, made, schemas)
    notes += toc_notes
    plan.toc = wd.path / "restore.list"
    plan.toc.write_text("\n".join(toc) + "\n")
    return plan


def _restore(kind: str, path: Path, dsn: str, env: dict[str, str], jobs: int, major: int,
             plan: _Plan) -> tuple[float, list[str]]:
    """Restore the dump into ``dsn``; returns (seconds, errors)."""
    start = time.monotonic()
    if kind == "plain":
        code, stderr = restore_plain(_binary("psql", major), path, dsn, env, major,
                                      plan.plain or restorer.PlainFilter([], []))
    else:
        done = run(_restore_cmd(major, jobs, dsn, path, plan.toc), env=env)
        code, stderr = done.returncode, done.stderr
    elapsed = time.monotonic() - start
    return elapsed, plan.errors + ([] if code == 0 else restore_errors(stderr))


def _choose(db: Database, restore_into: RestoreInto, size: int, major: int, notes: list[str],
            unsafe: str | None, createdb: tuple[str, bool]) -> str:
    login, may_create = createdb
    can_scratch = db.mode.allows(AccessMode.DRY_RUN) and unsafe is None and may_create
    free, total = server_free_bytes(db)
    has_binaries = bool(pg_binary("initdb", major)) and bool(pg_binary("postgres", major))
    if restore_into == "scratch":
        db.require(AccessMode.DRY_RUN, "restoring into a scratch database")
        if unsafe:
            raise restorer.unsafe_scratch(unsafe)
        if not may_create:
            raise restorer.no_createdb(login, major, has_binaries)
        if free is not None and free < size * 1.1:
            raise InputError(f"the target's disk has {free} bytes free; a scratch copy needs about {int(size * 1.1)}",
                             "use --restore-into cluster (a throwaway cluster in --work-dir)")
        return "scratch"
    if restore_into == "cluster":
        return "cluster"
    tight = free is not None and total is not None and (free - size < max(total * 0.1, 1024**3))
    if can_scratch and not tight:
        if free is None:
            notes.append("free space on the target's disk is not visible to agent19 (remote server or no "
                         "pg_read_all_settings): restored into a scratch database there")
        return "scratch"
    if not has_binaries:
        if can_scratch:
            return "scratch"
        if unsafe and db.mode.allows(AccessMode.DRY_RUN):
            raise restorer.unsafe_scratch(unsafe + f", and there are no PostgreSQL {major} server binaries here "
                                          "for a throwaway cluster")
        if not may_create and db.mode.allows(AccessMode.DRY_RUN):
            raise restorer.no_createdb(login, major, has_binaries)
        raise InputError("no local PostgreSQL server binaries for a throwaway cluster, and mode read-only forbids "
                         "a scratch database", f"install postgresql-{major} here, or use --mode dry-run")
    notes.append("restored into a throwaway cluster: " + (
        "the target's disk would be too full after a scratch copy" if tight else
        f"the login may not run the dump's SQL in a scratch database ({unsafe})" if unsafe else
        f"login {login} lacks CREATEDB (a scratch database needs it)" if not may_create and
        db.mode.allows(AccessMode.DRY_RUN) else "read-only mode"))
    return "cluster"


def _cluster_database(wd: WorkDir, major: int) -> _Target:
    """initdb + start a throwaway cluster in the work directory, with an empty database owned by the
    restoring role (no superuser)."""
    cluster = throwaway_cluster.start(wd, Path(_binary("initdb", major)), "postgres")
    restorer.create_restorer(cluster.dsn(), "restored")
    return _Target(make_conninfo(cluster.dsn("restored"), user=restorer.RESTORER),
                   f"throwaway cluster in {wd.path} (restored by role {restorer.RESTORER}, no superuser)",
                   cluster.dsn("restored"))


@contextmanager
def _stopped_first(stopped: list[str]) -> Iterator[list[Dump]]:
    """The dumps started in the block, stopped (pg_dump, pg_restore) when it exits — before the contexts entered
    ahead of this one: the restore target's drop would wait for a pg_dump blocked on a pipe (agent19.children)."""
    dumps: list[Dump] = []
    try:
        yield dumps
    finally:
        for dump in dumps:
            stopped += dump.stop()


def _interrupted(stopped: list[str], where: str, wd: WorkDir | None) -> str:
    """What an interrupted verification cleaned up, for its message."""
    done = [f"stopped {', '.join(stopped)}"] if stopped else []
    done += [f"removed {where}"] if where.startswith("scratch database") else []
    cluster = " and its throwaway cluster" if where.startswith("throwaway cluster") else ""
    done += [f"removed work directory {wd.path}{cluster}"] if wd is not None and not wd.path.exists() else []
    return "cleaned up: " + ("; ".join(done) or "nothing had been created yet")


@contextmanager
def _restore_target(db: Database, wd: WorkDir, target: str, major: int) -> Iterator[_Target]:
    """An empty database to restore into; removed afterwards."""
    if target == "scratch":
        drop_leftovers(db)
        with scratch_database(db, copy="empty") as scratch:
            yield _Target(make_conninfo(db.dsn, dbname=scratch.name, application_name="agent19 backup verify"),
                          f"scratch database {scratch.name}")
        return
    yield _cluster_database(wd, major)


def verify_logical(
    db: Database, *, from_file: str | None = None, jobs: int = 1, restore_into: RestoreInto = "auto",
    work_base: str | None = None, progress: Progress | None = None,
    after_restore: Callable[[str], None] | None = None,
) -> VerifyResult:
    """Dump (or take ``from_file``), restore, compare; see the module docstring.

    With one job and no ``from_file`` the dump is streamed into pg_restore (both run at once, as
    ``pg_dump | pg_restore`` would); with ``jobs > 1`` it is written in directory format and restored
    in parallel. ``after_restore`` is called with the restored copy's DSN before the comparison
    (drills: damage the copy on purpose and watch the verification fail).
    """
    say = progress or (lambda *a: None)
    notes: list[str] = []
    removed: list[str] = []
    stopped: list[str] = []  # child processes an interruption ended
    started = time.monotonic()
    wd: WorkDir | None = None
    where = ""
    src = db.connect()
    try:
        cmp.prepare(src)
        src.execute("BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY")
        info = src.execute(
            "SELECT pg_catalog.pg_export_snapshot() AS snap,"
            " pg_catalog.pg_database_size(pg_catalog.current_database()) AS size,"
            " pg_catalog.current_setting('server_version_num')::pg_catalog.int4 OPERATOR(pg_catalog./) 10000 AS major,"
            " (SELECT COALESCE(pg_catalog.sum(pg_catalog.pg_table_size(oid)), 0) FROM pg_catalog.pg_class"
            " WHERE relkind OPERATOR(pg_catalog.=) ANY ('{r,m}'::pg_catalog.\"char\"[]))::pg_catalog.int8 AS data"
        ).fetchone()
        assert info is not None
        snap_id, size, major, data = info["snap"], int(info["size"]), int(info["major"]), int(info["data"])
        target = _choose(db, restore_into, size, major, notes, restorer.scratch_objection(src, bool(from_file)),
                         restorer.may_create_databases(src))
        dump_path = Path(from_file) if from_file else None
        hidden = [] if dump_path else rls.hidden_in_database(src)
        if hidden:  # pg_dump refuses them (row_security off): said before any work, with what to do
            more = f" (and {len(hidden) - 3} more)" if len(hidden) > 3 else ""
            raise InputError("cannot dump the database: " + "; ".join(rls.message(t) for t in hidden[:3]) + more,
                             "verify as a login with BYPASSRLS (ALTER ROLE <login> BYPASSRLS) or as the tables' "
                             "owner (pg_dump refuses to dump only the rows a policy shows)")
        # streamed only when the restorer can run every entry (else: a file, its table of contents filtered)
        whole = target == "scratch" or not (restorer.source_has_event_triggers(src) or any(
            restorer.needs_superuser(src, name) for name, _ in restorer.source_extensions(src)))
        kind = _dump_kind(dump_path) if dump_path else ("custom" if jobs == 1 and whole else "directory")
        stream = dump_path is None and kind == "custom"
        with work_dir(Path(work_base) if work_base else None) as wd:
            # a throwaway cluster is an initdb (~40 MB: template databases, a 16 MB WAL segment) before any data
            room = (0 if from_file or stream else data) + (size + EMPTY_CLUSTER if target == "cluster" else 0)
            require_free(wd.path, room, "the dump" + (" and the throwaway cluster" if target == "cluster" else ""))
            with _restore_target(db, wd, target, major) as into, _stopped_first(stopped) as dumps:
                restored_dsn, where = into.dsn, into.where
                source_dsn, env = child_connection(db.dsn, application_name="agent19 backup verify")
                r_dsn, r_env = child_connection(restored_dsn)
                dump = None
                if dump_path is None:
                    cmd = [_binary("pg_dump", major), f"--format={kind}", "--snapshot", snap_id,
                           f"--lock-wait-timeout={db.settings.lock_timeout_ms}"]
                    if stream:
                        say(0, None, f"dumping (pg_dump) and restoring into {where} (pg_restore)")
                        dump = Dump([*cmd, "-d", source_dsn], env, wd.path / "pg_dump.stderr",
                                     _restore_cmd(major, jobs, r_dsn, None), r_env)
                        dumps.append(dump)
                    else:
                        dump_path = wd.path / "dump.dir"
                        say(0, None, "dumping (pg_dump)")
                        dump = Dump([*cmd, "--no-sync", "--jobs", str(jobs), "-f", str(dump_path), "-d",
                                      source_dsn], env, wd.path / "pg_dump.stderr")
                        dumps.append(dump)
                before = snapshot(src)
                objects_before = cmp.objects(src)
                seq_before = cmp.sequences(src)
                names = cmp.tables(src)
                src_sums = cmp.sums_parallel(lambda: cmp.snapshot_session(db.dsn, snap_id), list(names), jobs, say,
                                             "source: ")
                source_done = time.monotonic()
                dump_s = restore_s = 0.0
                errors: list[str] = []
                if dump is not None:
                    failure = dump.wait(say, data)
                    if failure:
                        raise InputError("pg_dump failed: " + db.redact(failure),
                                         f"row-level security may hide rows from this login: {rls.HINT}"
                                         if rls.explains(failure) else "the role needs SELECT on every table "
                                         "and sequence it dumps (or use a role that has it)")
                    dump_s = (dump.dump_end or time.monotonic()) - dump.start
                    if stream:
                        restore_s = (dump.restore_end or time.monotonic()) - dump.start
                        errors = dump.restore_errors
                        notes.append("the dump was streamed into pg_restore: the measured restore includes waiting "
                                     "for pg_dump, an upper bound of a restore from a file")
                seq_after = cmp.sequences(src)
                installed = {name for name, _ in restorer.source_extensions(src)}
                if not stream:
                    assert dump_path is not None
                    say(0, None, f"restoring into {where} (pg_restore)")
                    plan = _plan(kind, dump_path, into, wd, major, notes, installed)
                    restore_s, errors = _restore(kind, dump_path, r_dsn, r_env, jobs, major, plan)
                if after_restore:
                    after_restore(restored_dsn)
                compare_start = time.monotonic()
                result = _compare(restored_dsn, jobs, say, before=before, seq_before=seq_before,
                                  seq_after=seq_after, names=names, src_sums=src_sums,
                                  objects_before=objects_before)
                rowdiff.describe(result.tables, src, restored_dsn)  # in the dump's snapshot, still open
                src.execute("ROLLBACK")
                result.restored_into = where
                result.errors = [db.redact(e) for e in errors]
                extra_wait = max(0.0, source_done - dump.start - dump_s) if dump is not None else 0.0
                result.durations_s = Durations(dump=round(dump_s, 3), restore=round(restore_s, 3),
                                               verify=round(time.monotonic() - compare_start + extra_wait, 3))
                backup_bytes = dump.bytes if stream and dump else dir_bytes(dump_path) if dump_path else None
                result.sizes = Sizes(database_bytes=size, backup_bytes=backup_bytes,
                                     restored_bytes=result.sizes.restored_bytes)
            removed.append(where if target == "scratch" else "throwaway cluster (stopped)")
            removed.append(f"work directory {wd.path}")
        if from_file:
            notes.append("compared with the target as it is now: changes made since the dump show as differences")
    except KeyboardInterrupt as exc:  # the cleanup ran (else its error would be here): say what it did
        exc.add_note(_interrupted(stopped, where, wd))
        raise
    finally:
        src.close()
    result.notes = [*notes, f"total {time.monotonic() - started:.1f} s"]
    result.removed = removed
    return finish(result, db.display_dsn)


def _compare(restored_dsn: str, jobs: int, say: Progress, *, before: Any, seq_before: dict[str, int | None],
             seq_after: dict[str, int | None], names: dict[str, bool], src_sums: dict[str, Any],
             objects_before: dict[str, str]) -> VerifyResult:
    with cmp.dict_connect(restored_dsn) as rconn:
        after = snapshot(rconn)
        objects_after = cmp.objects(rconn)
        restored_names = cmp.tables(rconn)
        seq_restored = cmp.sequences(rconn)
        restored_size = rconn.execute("SELECT pg_database_size(current_database()) AS s").fetchone()
    r_sums = cmp.sums_parallel(lambda: cmp.dict_connect(restored_dsn), sorted(restored_names), jobs, say,
                               "restored: ")
    return VerifyResult(
        verified=False, kind="logical", summary="", database="",
        tables=cmp.compare_tables(src_sums, r_sums, set(), unlogged_expected_empty=False),
        schema_differences=cmp.schema_differences(before, after, objects_before, objects_after),
        sequences=cmp.compare_sequences(seq_before, seq_after, seq_restored),
        sizes=Sizes(restored_bytes=int(restored_size["s"]) if restored_size else None),
    )
