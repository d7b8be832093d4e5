"""Physical backup verification: pg_basebackup, pg_verifybackup, then start the copy and compare.

1. ``pg_basebackup -Fp -X stream -c fast`` of the cluster into the local work directory (or a copy of
   an existing base backup given with ``from_dir``: a plain directory, or ``base.tar[.gz]`` with
   ``pg_wal.tar[.gz]``), with its backup manifest;
2. ``pg_verifybackup``: every file against the manifest's checksums and sizes, and the WAL needed for
   consistency parsed; a damaged, missing or extra file fails the verification by name and the copy
   is not started;
3. the copy started as a throwaway server on a private socket in the work directory (its
   ``pg_hba.conf`` replaced by ``local all all trust``: only this user can reach the socket),
   recovering to consistency from its ``backup_label``;
4. the target database compared with the live source like a logical verification. The source
   keeps changing during and after the backup: on a busy server, rows written since show as
   differences — verify against a quiet server, or read the differences with that in mind.

Durations: ``dump`` is the base backup, ``restore`` the copy's recovery to consistency, ``verify``
pg_verifybackup plus the comparison.
"""

from __future__ import annotations

import re
import shutil
import tarfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from psycopg.conninfo import conninfo_to_dict

from agent19.db.binaries import pg_binary
from agent19.db.catalog import snapshot
from agent19.db.child_env import child_connection
from agent19.db.connection import Database
from agent19.errors import InputError
from agent19.ops.backup import compare as cmp
from agent19.ops.backup import rowdiff
from agent19.ops.backup.model import Durations, Sizes, VerifyResult
from agent19.ops.backup.space import dir_bytes, require_free
from agent19.ops.backup.summary import finish
from agent19.ops.backup.workdir import LocalCluster, WorkDir, give_to_server_user, run, wait_ready, work_dir

Progress = Callable[[float, float | None, str | None], None]
_QUOTED = re.compile(r'"([^"]+)"')


def binary(tool: str, major: int) -> Path:
    found = pg_binary(tool, major)
    if not found:
        raise InputError(f"{tool} not found",
                         f"install the PostgreSQL {major} server programs (Debian: postgresql-{major})")
    return Path(found)


def cluster_facts(db: Database) -> dict[str, Any]:
    with db.read() as conn:
        row = conn.execute(
            "SELECT current_setting('server_version_num')::int / 10000 AS major, current_database() AS dbname,"
            " current_user AS usr,"
            " (SELECT sum(pg_database_size(oid)) FROM pg_database WHERE has_database_privilege(oid, 'CONNECT'))"
            "::bigint AS cluster_bytes").fetchone()
    assert row is not None
    return dict(row)


def take_base_backup(db: Database, wd: WorkDir, major: int) -> tuple[Path, float]:
    """pg_basebackup into ``wd/base``; returns (directory, seconds)."""
    target = wd.path / "base"
    give_to_server_user(wd.path)
    dsn, env = child_connection(db.dsn, application_name="agent19 backup verify")
    start = time.monotonic()
    done = run([binary("pg_basebackup", major), "-D", target, "-Fp", "-X", "stream", "-c", "fast", "--no-sync",
                "-d", dsn], env=env, as_server_user=True, cwd=wd.path)
    if done.returncode != 0:
        raise InputError("pg_basebackup failed: " + db.redact(done.stderr.decode(errors="replace").strip()[-800:]),
                         "the role needs the REPLICATION attribute and pg_hba.conf a 'replication' entry for it")
    return target, time.monotonic() - start


def copy_existing(source: Path, wd: WorkDir) -> Path:
    """Copy an existing base backup (plain directory or tar format) into the work directory."""
    target = wd.path / "base"
    if not source.is_dir():
        raise InputError(f"base backup directory {source} not found")
    tars = sorted(source.glob("base.tar*"))
    if tars:
        target.mkdir()
        with tarfile.open(tars[0]) as tar:
            tar.extractall(target, filter="tar")
        for wal in source.glob("pg_wal.tar*"):
            with tarfile.open(wal) as tar:
                tar.extractall(target / "pg_wal", filter="tar")
        if (source / "backup_manifest").exists():
            shutil.copy2(source / "backup_manifest", target / "backup_manifest")
    elif (source / "PG_VERSION").exists():
        shutil.copytree(source, target, symlinks=True)
    else:
        raise InputError(f"{source} is not a base backup", "give a pg_basebackup directory (plain or tar format)")
    give_to_server_user(wd.path)
    return target


def verify_files(base: Path, major: int) -> tuple[float, list[str], list[str]]:
    """pg_verifybackup; returns (seconds, damaged file names, error lines)."""
    if not (base / "backup_manifest").exists():
        return 0.0, [], ["no backup_manifest: the backup cannot be checked file by file (pg_basebackup 13+ writes one)"]
    start = time.monotonic()
    done = run([binary("pg_verifybackup", major), base], as_server_user=True, cwd=base.parent)
    elapsed = time.monotonic() - start
    if done.returncode == 0:
        return elapsed, [], []
    lines = [ln.strip() for ln in done.stderr.decode(errors="replace").splitlines() if ln.strip()]
    damaged: list[str] = []
    for ln in lines:
        for name in _QUOTED.findall(ln):
            if name not in damaged and not name.startswith("/"):
                damaged.append(name)
    return elapsed, damaged, [f"pg_verifybackup: {ln.split('error: ', 1)[-1]}" for ln in lines[:10]]


def prepare_copy(base: Path) -> None:
    """Make the copy startable here: no standby.signal, a private trust-only pg_hba.conf."""
    (base / "standby.signal").unlink(missing_ok=True)
    (base / "pg_hba.conf").write_text("# agent19 backup verification: private socket only\n"
                                      "local all all trust\n")


def start_copy(wd: WorkDir, base: Path, major: int, user: str, settings: dict[str, str] | None = None,
               until_primary: bool = True, timeout: float = 1800) -> tuple[LocalCluster, float, str | None]:
    start = time.monotonic()
    cluster = wd.start_cluster(base, binary("postgres", major).parent, user, settings)
    failure = wait_ready(cluster, timeout=timeout, until_primary=until_primary)
    return cluster, time.monotonic() - start, failure


def compare_live(db: Database, copy_dsn: str, jobs: int, say: Progress, physical: bool) -> VerifyResult:
    """Compare the target database of the live source with the same database in a started copy."""
    src = db.connect()
    try:
        cmp.prepare(src)
        src.execute("BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY")
        snap_id = src.execute("SELECT pg_export_snapshot() AS s").fetchone()["s"]  # type: ignore[index]
        before, seqs, names = snapshot(src), cmp.sequences(src), cmp.tables(src)
        objects_before = cmp.objects(src)
        src_sums = cmp.sums_parallel(lambda: cmp.snapshot_session(db.dsn, snap_id), list(names), jobs, say, "source: ")
        with cmp.dict_connect(copy_dsn) as rconn:
            after, restored_names, seq_restored = snapshot(rconn), cmp.tables(rconn), cmp.sequences(rconn)
            objects_after = cmp.objects(rconn)
            size = rconn.execute("SELECT pg_database_size(current_database()) AS s").fetchone()
        r_sums = cmp.sums_parallel(lambda: cmp.dict_connect(copy_dsn), sorted(restored_names), jobs, say,
                                   "restored: ")
        unlogged = {n for n, u in names.items() if u}
        tables = cmp.compare_tables(src_sums, r_sums, unlogged, unlogged_expected_empty=physical)
        rowdiff.describe(tables, src, copy_dsn)  # in the source's snapshot, still open
        src.execute("ROLLBACK")
    finally:
        src.close()
    return VerifyResult(
        verified=False, kind="physical", summary="", database="", tables=tables,
        schema_differences=cmp.schema_differences(before, after, objects_before, objects_after),
        sequences=cmp.compare_sequences(seqs, seqs, seq_restored),
        sizes=Sizes(restored_bytes=int(size["s"]) if size else None),
    )


def verify_physical(
    db: Database, *, from_dir: str | None = None, jobs: int = 1, work_base: str | None = None,
    progress: Progress | None = None, after_backup: Callable[[Path], None] | None = None,
) -> VerifyResult:
    """Base backup (or ``from_dir``), pg_verifybackup, start the copy, compare; see the module docstring.

    ``after_backup`` is called with the backup directory before pg_verifybackup (drills: damage it).
    """
    say = progress or (lambda *a: None)
    facts = cluster_facts(db)
    major, dbname = int(facts["major"]), str(facts["dbname"])
    user = conninfo_to_dict(db.dsn).get("user") or str(facts["usr"])
    removed: list[str] = []
    with work_dir(Path(work_base) if work_base else None) as wd:
        if from_dir:
            require_free(wd.path, dir_bytes(Path(from_dir)), "the copy of the base backup")
            say(0, None, "copying the base backup")
            base, backup_s = copy_existing(Path(from_dir), wd), 0.0
        else:
            require_free(wd.path, int(facts["cluster_bytes"] or 0), "the base backup")
            say(0, None, "taking a base backup (pg_basebackup)")
            base, backup_s = take_base_backup(db, wd, major)
        if after_backup:
            after_backup(base)
        backup_bytes = dir_bytes(base)
        say(0, None, "pg_verifybackup")
        verify_s, damaged, errors = verify_files(base, major)
        result: VerifyResult
        if damaged or errors:
            result = VerifyResult(verified=False, kind="physical", summary="", database="", damaged_files=damaged,
                                  errors=[*errors, "the copy was not started: pg_verifybackup failed"])
            startup_s = 0.0
        else:
            prepare_copy(base)
            say(0, None, "starting the copy (recovery to consistency)")
            cluster, startup_s, failure = start_copy(wd, base, major, str(user))
            if failure:
                result = VerifyResult(verified=False, kind="physical", summary="", database="",
                                      errors=[f"the copy did not start: {failure}"])
            else:
                compare_start = time.monotonic()
                result = compare_live(db, cluster.dsn(dbname), jobs, say, physical=True)
                verify_s += time.monotonic() - compare_start
                result.notes.append("compared with the live source: writes made during or after the backup show "
                                    "as differences")
                result.notes.append(f"database {dbname} compared row by row; the cluster's other databases are "
                                    "covered by pg_verifybackup's file checksums and the copy's startup")
            result.restored_into = f"throwaway server on the base backup in {wd.path}"
        result.durations_s = Durations(dump=round(backup_s, 3), restore=round(startup_s, 3), verify=round(verify_s, 3))
        result.sizes.database_bytes = int(facts["cluster_bytes"] or 0) or None
        result.sizes.backup_bytes = backup_bytes
        removed.append(f"work directory {wd.path} (base backup and throwaway server)")
    result.removed = removed
    if from_dir:
        result.notes.append(f"base backup copied from {from_dir} (left untouched)")
    else:
        result.notes.append("pg_basebackup asked the target for an immediate checkpoint (-c fast): a burst of writes "
                            "there, as with any base backup taken now")
    return finish(result, db.display_dsn)

