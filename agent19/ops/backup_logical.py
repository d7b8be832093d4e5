"""Logical backup verification: pg_dump the target, restore it elsewhere, and compare with the source.

How it stays exact on a busy server: one ``REPEATABLE READ READ ONLY`` transaction on the target
exports its snapshot (``pg_export_snapshot()``); ``pg_dump --snapshot`` dumps exactly that snapshot
while agent19's own sessions import it and checksum every table in it, in parallel with the dump.
The restored copy is then compared with what the dump saw, not with whatever the target has become.

Where it restores (``restore_into``):

* ``scratch`` — a scratch database on the target's server (:mod:`agent19.migrate.scratch`: dropped
  in ``finally``, on SIGTERM, and by the next run after a SIGKILL); needs mode ``dry-run`` and the
  CREATEDB privilege;
* ``cluster`` — a throwaway cluster (``initdb``) in the local work directory, on a private socket;
  needs the server binaries of the target's major version here; works in ``read-only`` mode;
* ``auto`` — ``scratch`` when the mode allows it and the target's disk (when agent19 can see it)
  would keep at least 10% and 1 GB free after the copy; ``cluster`` otherwise.

Only reads reach the target (the dump and the checksums); ``statement_timeout`` is lifted for
agent19's own read sessions (a checksum reads whole tables); ``lock_timeout`` is passed to pg_dump
as ``--lock-wait-timeout``.
"""

from __future__ import annotations

import re
import secrets
import subprocess
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Literal

import psycopg
from psycopg.conninfo import make_conninfo

from agent19.config import AccessMode
from agent19.db.binaries import pg_binary
from agent19.db.catalog import snapshot
from agent19.db.child_env import child_connection
from agent19.db.connection import Database
from agent19.errors import InputError
from agent19.migrate.scratch import drop_leftovers, scratch_database
from agent19.ops import backup_compare as cmp
from agent19.ops.backup_model import Durations, Sizes, VerifyResult
from agent19.ops.backup_space import dir_bytes, require_free, server_free_bytes
from agent19.ops.backup_summary import finish
from agent19.ops.backup_workdir import WorkDir, run, wait_ready, work_dir
from agent19.units import human_duration, human_size

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


def _restore_errors(stderr: bytes) -> list[str]:
    lines = [ln.strip() for ln in stderr.decode(errors="replace").splitlines()]
    errors = [ln for ln in lines if "error" in ln.lower() or ln.startswith("ERROR") or "FATAL" in ln]
    return errors[:20] or [ln for ln in lines if ln][-5:]


def _restore_cmd(major: int, jobs: int, dsn: str, path: Path | None) -> list[str]:
    cmd = [_binary("pg_restore", major), "--no-owner", "--no-privileges", "-d", dsn]
    return cmd + (["--jobs", str(jobs), str(path)] if path is not None else [])


def _restore(kind: str, path: Path, dsn: str, env: dict[str, str], jobs: int, major: int) -> tuple[float, list[str]]:
    """Restore the dump into ``dsn``; returns (seconds, errors)."""
    start = time.monotonic()
    if kind == "plain":
        code, stderr = _restore_plain(path, dsn, env, major)
    else:
        done = run(_restore_cmd(major, jobs, dsn, path), env=env)
        code, stderr = done.returncode, done.stderr
    elapsed = time.monotonic() - start
    return elapsed, ([] if code == 0 else _restore_errors(stderr))


_RESTRICT_LINE = re.compile(rb"^\\(un)?restrict\s+\S+\s*$")


def _restore_plain(path: Path, dsn: str, env: dict[str, str], major: int) -> tuple[int, bytes]:
    """Run a plain SQL dump with psql, its backslash commands refused.

    A plain dump is a psql script: ``\\!`` would run shell commands here, ``\\connect`` reach other
    databases with the target's password. psql first gets ``\\restrict`` with a key only this run knows
    (every later backslash command fails the restore); the file's own ``\\restrict``/``\\unrestrict``
    lines (pg_dump 15.14+ writes them) are dropped on the way in.
    """
    cmd = [_binary("psql", major), "-X", "-q", "-v", "ON_ERROR_STOP=1", "-c", f"\\restrict {secrets.token_hex(16)}",
           "-f", "-", "-d", dsn]
    with tempfile.TemporaryFile() as err, open(path, "rb") as src:
        proc = subprocess.Popen(cmd, stdin=subprocess.PIPE, stdout=subprocess.DEVNULL, stderr=err, env=env)
        assert proc.stdin is not None
        try:
            for line in src:
                if not _RESTRICT_LINE.match(line):
                    proc.stdin.write(line)
            proc.stdin.close()
        except BrokenPipeError:
            pass
        proc.wait()
        err.seek(0)
        stderr = err.read()
    if b"invalid command \\restrict" in stderr:
        raise InputError(f"psql {major} here is older than 15.14 and cannot refuse a plain dump's backslash commands",
                         "update the PostgreSQL client programs, or verify a custom-format dump (pg_dump -Fc)")
    if b"backslash commands are restricted" in stderr:
        stderr += b"\nerror: the plain dump contains psql backslash commands (such as \\! or \\connect); not run\n"
    return proc.returncode, stderr


def _choose(db: Database, restore_into: RestoreInto, size: int, major: int, notes: list[str]) -> str:
    can_scratch = db.mode.allows(AccessMode.DRY_RUN)
    free, total = server_free_bytes(db)
    if restore_into == "scratch":
        db.require(AccessMode.DRY_RUN, "restoring into a scratch database")
        if free is not None and free < size * 1.1:
            raise InputError(f"the target's disk has {free} bytes free; a scratch copy needs about {int(size * 1.1)}",
                             "use --restore-into cluster (a throwaway cluster in --work-dir)")
        return "scratch"
    if restore_into == "cluster":
        return "cluster"
    tight = free is not None and total is not None and (free - size < max(total * 0.1, 1024**3))
    has_binaries = bool(pg_binary("initdb", major)) and bool(pg_binary("postgres", major))
    if can_scratch and not tight:
        if free is None:
            notes.append("free space on the target's disk is not visible to agent19 (remote server or no "
                         "pg_read_all_settings): restored into a scratch database there")
        return "scratch"
    if not has_binaries:
        if can_scratch:
            return "scratch"
        raise InputError("no local PostgreSQL server binaries for a throwaway cluster, and mode read-only forbids "
                         "a scratch database", f"install postgresql-{major} here, or use --mode dry-run")
    notes.append("restored into a throwaway cluster: " + (
        "the target's disk would be too full after a scratch copy" if tight else "read-only mode"))
    return "cluster"


def _cluster_database(wd: WorkDir, major: int) -> str:
    """initdb + start a throwaway cluster in the work directory; returns the DSN of an empty database."""
    pgdata = wd.path / "restore"
    initdb = Path(_binary("initdb", major))
    from agent19.ops.backup_workdir import give_to_server_user

    give_to_server_user(wd.path)
    done = run([initdb, "-D", pgdata, "-U", "postgres", "--auth=trust", "-E", "UTF8", "--locale=C.UTF-8",
                "--no-sync"], as_server_user=True, cwd=wd.path)
    if done.returncode != 0:
        raise InputError("initdb failed for the throwaway cluster: " + done.stderr.decode(errors="replace")[-500:])
    cluster = wd.start_cluster(pgdata, initdb.parent, "postgres", {"fsync": "off", "wal_level": "minimal",
                                                                   "max_wal_senders": "0"})
    failure = wait_ready(cluster, timeout=120)
    if failure:
        raise InputError("the throwaway cluster did not start: " + failure)
    with psycopg.connect(cluster.dsn(), autocommit=True) as conn:
        conn.execute("CREATE DATABASE restored")
    return cluster.dsn("restored")


@contextmanager
def _restore_target(db: Database, wd: WorkDir, target: str, major: int) -> Iterator[tuple[str, str]]:
    """An empty database to restore into: ``(dsn with password, description)``; removed afterwards."""
    if target == "scratch":
        drop_leftovers(db)
        with scratch_database(db, copy="empty") as scratch:
            yield (make_conninfo(db.dsn, dbname=scratch.name, application_name="agent19 backup verify"),
                   f"scratch database {scratch.name}")
        return
    yield _cluster_database(wd, major), f"throwaway cluster in {wd.path}"


class _Dump:
    """pg_dump running in the background: to a file (or directory), or streamed into pg_restore."""

    def __init__(self, cmd: list[str], env: dict[str, str], stderr_path: Path,
                 restore_cmd: list[str] | None = None, restore_env: dict[str, str] | None = None) -> None:
        self.start = time.monotonic()
        self.stderr = open(stderr_path, "wb")
        self.stderr_path = stderr_path
        self.bytes = 0
        self.dump_end: float | None = None
        self.restore_end: float | None = None
        self.restore_errors: list[str] = []
        out = subprocess.PIPE if restore_cmd else subprocess.DEVNULL
        self.proc = subprocess.Popen(cmd, stdout=out, stderr=self.stderr, env=env)
        self.restore = None
        self.pump = None
        if restore_cmd:
            # pg_restore's messages go to a file: a pipe nobody reads while we feed its stdin could fill up
            self.restore_log = open(stderr_path.with_name("pg_restore.stderr"), "w+b")
            self.restore = subprocess.Popen(restore_cmd, stdin=subprocess.PIPE, stdout=subprocess.DEVNULL,
                                            stderr=self.restore_log, env=restore_env)
            self.restore_stderr = b""
            self.pump = threading.Thread(target=self._pump, daemon=True)
            self.pump.start()

    def _pump(self) -> None:
        """Copy pg_dump's output into pg_restore, counting the bytes (the dump's size)."""
        assert self.proc.stdout and self.restore and self.restore.stdin
        try:
            while block := self.proc.stdout.read(1 << 20):
                self.bytes += len(block)
                self.restore.stdin.write(block)
        except BrokenPipeError:
            pass
        finally:
            self.dump_end = time.monotonic()
            try:
                self.restore.stdin.close()
            except BrokenPipeError:
                pass
            self.restore.wait()
            self.restore_log.seek(0)
            self.restore_stderr = self.restore_log.read()
            self.restore_log.close()
            self.restore_end = time.monotonic()

    def wait(self, say: Progress, total: int) -> str | None:
        """Wait for pg_dump (and the streamed restore), reporting progress every second; returns
        pg_dump's error, if any."""
        while True:
            if self.pump is not None:
                self.pump.join(timeout=1)
                if not self.pump.is_alive():
                    break
                say(min(self.bytes, total), total or None, f"dump and restore: {human_size(self.bytes)} streamed")
                continue
            try:
                self.proc.wait(timeout=1)
                break
            except subprocess.TimeoutExpired:
                say(0, None, f"dumping: {human_duration(time.monotonic() - self.start)}")
        self.proc.wait()
        if self.pump:
            self.pump.join()
        else:
            self.dump_end = time.monotonic()
        self.stderr.close()
        if self.restore and self.restore.returncode != 0:
            self.restore_errors = _restore_errors(self.restore_stderr)
        if self.proc.returncode != 0:
            return self.stderr_path.read_text(errors="replace").strip()[-800:]
        return None


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
    started = time.monotonic()
    src = db.connect()
    try:
        cmp.prepare(src)
        src.execute("BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY")
        info = src.execute(
            "SELECT pg_export_snapshot() AS snap, pg_database_size(current_database()) AS size,"
            " current_setting('server_version_num')::int / 10000 AS major,"
            " (SELECT coalesce(sum(pg_table_size(oid)), 0) FROM pg_class WHERE relkind IN ('r', 'm'))::bigint AS data"
        ).fetchone()
        assert info is not None
        snap_id, size, major, data = info["snap"], int(info["size"]), int(info["major"]), int(info["data"])
        target = _choose(db, restore_into, size, major, notes)
        dump_path = Path(from_file) if from_file else None
        kind = _dump_kind(dump_path) if dump_path else ("directory" if jobs > 1 else "custom")
        stream = dump_path is None and kind == "custom"
        with work_dir(Path(work_base) if work_base else None) as wd:
            room = (0 if from_file or stream else data) + (size if target == "cluster" else 0)
            require_free(wd.path, room, "the dump" + (" and the throwaway cluster" if target == "cluster" else ""))
            with _restore_target(db, wd, target, major) as (restored_dsn, where):
                source_dsn, env = child_connection(db.dsn, application_name="agent19 backup verify")
                r_dsn, r_env = child_connection(restored_dsn)
                dump = None
                if dump_path is None:
                    cmd = [_binary("pg_dump", major), f"--format={kind}", "--snapshot", snap_id,
                           f"--lock-wait-timeout={db.settings.lock_timeout_ms}"]
                    if stream:
                        say(0, None, f"dumping (pg_dump) and restoring into {where} (pg_restore)")
                        dump = _Dump([*cmd, "-d", source_dsn], env, wd.path / "pg_dump.stderr",
                                     _restore_cmd(major, jobs, r_dsn, None), r_env)
                    else:
                        dump_path = wd.path / "dump.dir"
                        say(0, None, "dumping (pg_dump)")
                        dump = _Dump([*cmd, "--no-sync", "--jobs", str(jobs), "-f", str(dump_path), "-d",
                                      source_dsn], env, wd.path / "pg_dump.stderr")
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
                                         "the role needs SELECT on every table it dumps (or use a role that has it)")
                    dump_s = (dump.dump_end or time.monotonic()) - dump.start
                    if stream:
                        restore_s = (dump.restore_end or time.monotonic()) - dump.start
                        errors = dump.restore_errors
                        notes.append("the dump was streamed into pg_restore: the measured restore includes waiting "
                                     "for pg_dump, an upper bound of a restore from a file")
                seq_after = cmp.sequences(src)
                src.execute("ROLLBACK")
                if not stream:
                    assert dump_path is not None
                    say(0, None, f"restoring into {where} (pg_restore)")
                    restore_s, errors = _restore(kind, dump_path, r_dsn, r_env, jobs, major)
                if after_restore:
                    after_restore(restored_dsn)
                compare_start = time.monotonic()
                result = _compare(restored_dsn, jobs, say, before=before, seq_before=seq_before,
                                  seq_after=seq_after, names=names, src_sums=src_sums,
                                  objects_before=objects_before)
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
