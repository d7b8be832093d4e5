"""The target's schema dump (``pg_dump --schema-only``), kept while its catalogs are unchanged.

A dump is kept under a digest of the target's catalogs (:data:`Q_CATALOG_STATE`) — in this process (a running
``agent19 serve``) and in ``<data_dir>/schema-dumps/`` (mode 0600, directory 0700), so that a dry run from the
CLI, a new process each time, skips pg_dump too while the schema is the one it dumped.

What the digest covers: every catalog whose rows ``pg_dump --schema-only --no-owner --no-privileges
--no-publications --no-subscriptions`` turns into SQL (``_CATALOGS``; pg_user_mapping is left out: only a
superuser may read it), by each row version's ``ctid`` and ``xmin``. A committed DDL inserts, updates or deletes
rows of some of them, and a new row version has a new ctid and xmin, so the digest changes; a rolled-back DDL,
ANALYZE and VACUUM's in-place updates leave it as it was (VACUUM FULL of a catalog moves rows: a new digest, a
dump taken again — never a stale one). A ctid and xmin name one row version only within one running server:
a cluster made again by the same script, or a backup restored and then changed otherwise, can give other rows
the same ctids and xmins. So the digest also covers the server's ``system_identifier`` (when this login may
read ``pg_control_system()``) and its start time (a restore, a new cluster or a restart: a new digest). Within
one running server a row version is what the transaction that made it wrote, in whichever database: a
database copied from a template has the template's rows, and the template's dump.

A file is read only when it is a regular file owned by this OS user that no other user may read or write
(psql loads it into the scratch database). Four dumps are kept in memory; on disk four per target (its connection
parameters without the password, and the major version) and 64 in all; the least recently used go first. A
file that cannot be written or read is skipped: the dump is then taken again.
"""

from __future__ import annotations

import hashlib
import logging
import os
import re
import stat
import threading
from collections import OrderedDict
from pathlib import Path
from typing import Any

import psycopg

log = logging.getLogger(__name__)

_CATALOGS = (
    "pg_namespace", "pg_class", "pg_attribute", "pg_attrdef", "pg_constraint", "pg_index", "pg_trigger",
    "pg_rewrite", "pg_proc", "pg_type", "pg_enum", "pg_range", "pg_extension", "pg_sequence", "pg_inherits",
    "pg_partitioned_table", "pg_description", "pg_policy", "pg_collation", "pg_operator", "pg_opclass",
    "pg_opfamily", "pg_amop", "pg_amproc", "pg_cast", "pg_conversion", "pg_language", "pg_aggregate",
    "pg_statistic_ext", "pg_foreign_data_wrapper", "pg_foreign_server", "pg_foreign_table", "pg_event_trigger",
    "pg_ts_config", "pg_ts_config_map", "pg_ts_dict", "pg_ts_parser", "pg_ts_template", "pg_transform",
    "pg_seclabel", "pg_default_acl", "pg_init_privs", "pg_am", "pg_depend",
)
Q_CATALOG_STATE = (
    "SELECT md5(concat_ws('|', pg_postmaster_start_time(), "
    "CASE WHEN has_function_privilege('pg_catalog.pg_control_system()', 'EXECUTE') "
    "THEN (SELECT system_identifier FROM pg_catalog.pg_control_system()) END, "
    "(SELECT string_agg(c || ':' || n || ':' || h, ',' ORDER BY c) FROM ("
    + " UNION ALL ".join(f"SELECT '{c}' AS c, count(*) AS n, coalesce(sum(hashtext(ctid::text || ' ' || "
                         f"xmin::text)), 0) AS h FROM pg_catalog.{c}" for c in _CATALOGS)
    + ") s))) AS catalog_state")

KEPT = 4
KEPT_FILES = 64  # on disk, all targets together
_DUMPS: OrderedDict[tuple[str, int, str], bytes] = OrderedDict()  # (target, major, catalog state) -> its dump
_LOCK = threading.Lock()
_STATE = re.compile(r"[0-9a-f]{32}")


def state_of(row: Any) -> str | None:
    """The digest in a row of :data:`Q_CATALOG_STATE`."""
    value = next(iter(row.values())) if isinstance(row, dict) else row[0] if row else None
    return str(value) if value is not None else None


def catalog_state(conn: psycopg.Connection[Any]) -> str | None:
    """A digest of the database's catalogs that changes with every committed DDL (see the module doc)."""
    return state_of(conn.execute(Q_CATALOG_STATE).fetchone())


def directory(data_dir: Path) -> Path:
    return data_dir / "schema-dumps"


def _prefix(target: str, major: int) -> str:
    return hashlib.sha256(f"{target}\0{major}".encode()).hexdigest()[:24]


def _path(data_dir: Path, target: str, major: int, state: str) -> Path | None:
    return directory(data_dir) / f"{_prefix(target, major)}-{state}.sql" if _STATE.fullmatch(state) else None


def _on_disk(data_dir: Path, target: str, major: int) -> list[Path]:
    try:
        return sorted(directory(data_dir).glob(f"{_prefix(target, major)}-*.sql"), key=lambda p: p.stat().st_mtime)
    except OSError:
        return []


def kept(data_dir: Path | None, target: str, major: int) -> bool:
    """Whether a dump of this target is kept (in this process, or on disk): then its digest is worth reading."""
    with _LOCK:
        if any(k[:2] == (target, major) for k in _DUMPS):
            return True
    return data_dir is not None and bool(_on_disk(data_dir, target, major))


def lookup(data_dir: Path | None, target: str, major: int, state: str) -> bytes | None:
    """The dump kept under ``state``, or None."""
    key = (target, major, state)
    with _LOCK:
        if (dump := _DUMPS.get(key)) is not None:
            _DUMPS.move_to_end(key)
            return dump
    path = _path(data_dir, target, major, state) if data_dir is not None else None
    if path is None:
        return None
    try:
        fd = os.open(path, os.O_RDONLY | getattr(os, "O_NOFOLLOW", 0))
    except OSError:
        return None
    try:
        info = os.fstat(fd)
        if not stat.S_ISREG(info.st_mode) or info.st_uid != os.getuid() or info.st_mode & 0o077:
            log.warning("ignored %s: not a file of this user's alone (it is loaded into the scratch database)", path)
            return None
        with os.fdopen(fd, "rb", closefd=False) as f:
            dump = f.read()
        try:
            os.utime(fd)  # the most recently used: pruned last
        except OSError:
            pass
    except OSError as exc:
        log.debug("could not read %s: %s", path, exc)
        return None
    finally:
        os.close(fd)
    _remember(key, dump)
    return dump


def store(data_dir: Path | None, target: str, major: int, state: str, dump: bytes) -> None:
    """Keep ``dump`` under ``state``, in this process and on disk."""
    _remember((target, major, state), dump)
    path = _path(data_dir, target, major, state) if data_dir is not None else None
    if path is None:
        return
    tmp = path.with_name(f".{path.name}.{os.getpid()}.{threading.get_ident()}")
    try:
        path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "wb") as f:
            f.write(dump)
        os.replace(tmp, path)
        for old in _on_disk(path.parent.parent, target, major)[:-KEPT] + _oldest(path.parent, KEPT_FILES):
            old.unlink(missing_ok=True)
    except OSError as exc:  # only the next dry run's pg_dump is not saved
        log.debug("could not keep the schema dump in %s: %s", path.parent, exc)
        tmp.unlink(missing_ok=True)


def _oldest(where: Path, keep: int) -> list[Path]:
    """The files of ``where`` beyond the ``keep`` most recently used (every target's)."""
    try:
        files = sorted(where.glob("*-*.sql"), key=lambda p: p.stat().st_mtime)
    except OSError:
        return []
    return files[:-keep] if len(files) > keep else []


def _remember(key: tuple[str, int, str], dump: bytes) -> None:
    with _LOCK:
        _DUMPS[key] = dump
        _DUMPS.move_to_end(key)
        while len(_DUMPS) > KEPT:
            _DUMPS.popitem(last=False)
