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

import subprocess
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any, Literal

import psycopg
from psycopg import sql
from psycopg.conninfo import make_conninfo
from psycopg.rows import dict_row

from agent19.config import AccessMode
from agent19.db.catalog import snapshot
from agent19.db.child_env import child_connection
from agent19.db.connection import Database
from agent19.errors import InputError
from agent19.migrate.schema_diff import diff_snapshots, errors_only
from agent19.migrate.scratch import _pg_bin, drop_leftovers, scratch_database
from agent19.ops import backup_compare as cmp
from agent19.ops.backup_model import Durations, Sizes, VerifyResult
from agent19.ops.backup_space import dir_bytes, require_free, server_free_bytes
from agent19.ops.backup_summary import finish
from agent19.ops.backup_workdir import WorkDir, run, wait_ready, work_dir

RestoreInto = Literal["auto", "scratch", "cluster"]
Progress = Callable[[float, float | None, str | None], None]


def _binary(tool: str, major: int) -> str:
    found = _pg_bin(tool, major)
    if not found:
        raise InputError(f"{tool} not found", f"install the PostgreSQL {major} client programs "
                         f"(Debian: postgresql-client-{major})")
    return found


def _snapshot_session(dsn: str, snapshot_id: str) -> psycopg.Connection[Any]:
    """A session that sees exactly the exported snapshot (for parallel checksums of the source)."""
    conn = psycopg.connect(dsn, autocommit=True, row_factory=dict_row, connect_timeout=10,
                           application_name="agent19 backup verify")
    cmp.prepare(conn)
    conn.execute("BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY")
    conn.execute(sql.SQL("SET TRANSACTION SNAPSHOT {}").format(sql.Literal(snapshot_id)))
    return conn


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


def _restore(kind: str, path: Path, dsn: str, env: dict[str, str], jobs: int, major: int) -> tuple[float, list[str]]:
    """Restore the dump into ``dsn``; returns (seconds, errors)."""
    start = time.monotonic()
    if kind == "plain":
        cmd = [_binary("psql", major), "-X", "-q", "-v", "ON_ERROR_STOP=1", "-f", str(path), "-d", dsn]
    else:
        cmd = [_binary("pg_restore", major), "--no-owner", "--no-privileges", "--jobs", str(jobs), "-d", dsn, str(path)]
    done = run(cmd, env=env)
    elapsed = time.monotonic() - start
    return elapsed, ([] if done.returncode == 0 else _restore_errors(done.stderr))


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
    has_binaries = bool(_pg_bin("initdb", major)) and bool(_pg_bin("postgres", major))
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


def verify_logical(
    db: Database, *, from_file: str | None = None, jobs: int = 1, restore_into: RestoreInto = "auto",
    work_base: str | None = None, progress: Progress | None = None,
    after_restore: Callable[[str], None] | None = None,
) -> VerifyResult:
    """Dump (or take ``from_file``), restore, compare; see the module docstring.

    ``after_restore`` is called with the restored copy's DSN before the comparison (drills: damage
    the copy on purpose and watch the verification fail).
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
        with work_dir(Path(work_base) if work_base else None) as wd:
            require_free(wd.path, (0 if from_file else data) + (size if target == "cluster" else 0),
                         "the dump" + (" and the throwaway cluster" if target == "cluster" else ""))
            source_dsn, env = child_connection(db.dsn, application_name="agent19 backup verify")
            dump_s = 0.0
            proc = None
            if dump_path is None:
                dump_path = wd.path / ("dump.dir" if kind == "directory" else "dump.custom")
                cmd = [_binary("pg_dump", major), f"--format={kind}", "-f", str(dump_path), "--snapshot", snap_id,
                       f"--lock-wait-timeout={db.settings.lock_timeout_ms}", "--no-sync"]
                if kind == "directory":
                    cmd += ["--jobs", str(jobs)]
                say(0, None, "dumping (pg_dump)")
                stderr = open(wd.path / "pg_dump.stderr", "wb")
                proc = subprocess.Popen([*cmd, "-d", source_dsn], stdout=subprocess.DEVNULL, stderr=stderr, env=env)
            dump_start = time.monotonic()
            before = snapshot(src)
            seq_before = cmp.sequences(src)
            names = cmp.tables(src)
            src_sums = cmp.sums_parallel(lambda: _snapshot_session(db.dsn, snap_id), list(names), jobs, say,
                                         "source: ")
            source_done = time.monotonic()
            if proc is not None:
                proc.wait()
                stderr.close()
                dump_s = time.monotonic() - dump_start
                if proc.returncode != 0:
                    text = (wd.path / "pg_dump.stderr").read_text(errors="replace")
                    raise InputError("pg_dump failed: " + db.redact(text.strip()[-800:]),
                                     "the role needs SELECT on every table it dumps (or use a role that has it)")
            seq_after = cmp.sequences(src)
            src.execute("ROLLBACK")
            extra_wait = max(0.0, source_done - max(dump_start + dump_s, dump_start))
            result = _restore_and_compare(
                db, wd, target, kind, dump_path, jobs, major, say, after_restore,
                before=before, seq_before=seq_before, seq_after=seq_after, names=names, src_sums=src_sums,
                notes=notes, removed=removed,
            )
            result.durations_s.dump = round(dump_s, 3)
            result.durations_s.verify = round(result.durations_s.verify + extra_wait, 3)
            result.sizes = Sizes(database_bytes=size, backup_bytes=dir_bytes(dump_path),
                                 restored_bytes=result.sizes.restored_bytes)
            removed.append(f"work directory {wd.path}")
        if from_file:
            notes.append("compared with the target as it is now: changes made since the dump show as differences")
    finally:
        src.close()
    result.notes = [*notes, f"total {time.monotonic() - started:.1f} s"]
    result.removed = removed
    return finish(result, db.display_dsn)


def _restore_and_compare(
    db: Database, wd: WorkDir, target: str, kind: str, dump_path: Path, jobs: int, major: int, say: Progress,
    after_restore: Callable[[str], None] | None, *, before: Any, seq_before: dict[str, int | None],
    seq_after: dict[str, int | None], names: dict[str, bool], src_sums: dict[str, Any], notes: list[str],
    removed: list[str],
) -> VerifyResult:
    def compare(full_dsn: str, where: str) -> VerifyResult:
        say(0, None, f"restoring into {where}")
        child_dsn, env = child_connection(full_dsn)
        restore_s, errors = _restore(kind, dump_path, child_dsn, env, jobs, major)
        if after_restore:
            after_restore(full_dsn)
        start = time.monotonic()
        with cmp.dict_connect(full_dsn) as rconn:
            after = snapshot(rconn)
            restored_names = cmp.tables(rconn)
            seq_restored = cmp.sequences(rconn)
            restored_size = rconn.execute("SELECT pg_database_size(current_database()) AS s").fetchone()
        all_names = sorted(set(names) | set(restored_names))
        r_sums = cmp.sums_parallel(lambda: cmp.dict_connect(full_dsn), all_names, jobs, say, "restored: ")
        r_sums = {k: v for k, v in r_sums.items() if k in restored_names}
        result = VerifyResult(
            verified=False, kind="logical", summary="", database="", restored_into=where,
            tables=cmp.compare_tables(src_sums, r_sums, set(), unlogged_expected_empty=False),
            schema_differences=[str(d) for d in errors_only(diff_snapshots(before, after))],
            sequences=cmp.compare_sequences(seq_before, seq_after, seq_restored),
            errors=[db.redact(e) for e in errors],
            durations_s=Durations(restore=round(restore_s, 3), verify=round(time.monotonic() - start, 3)),
            sizes=Sizes(restored_bytes=int(restored_size["s"]) if restored_size else None),
        )
        return result

    if target == "scratch":
        drop_leftovers(db)
        with scratch_database(db, copy="empty") as scratch:
            result = compare(make_conninfo(db.dsn, dbname=scratch.name, application_name="agent19 backup verify"),
                             f"scratch database {scratch.name}")
        removed.append(f"scratch database {scratch.name}")
        return result
    result = compare(_cluster_database(wd, major), f"throwaway cluster in {wd.path}")
    removed.append("throwaway cluster (stopped)")
    return result
