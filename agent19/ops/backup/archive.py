"""Backup catalogs and WAL archives read from files: gaps in a directory archive, newest backup times.

* **Gaps**: WAL segment files (``TTTTTTTTXXXXXXXXYYYYYYYY``, optionally ``.gz``/``.zst``/``.lz4``…
  as archivers compress them) are ordered per timeline; a missing number between the first and
  the last is a gap, and point-in-time recovery cannot replay past the segment before it.
* **Newest backup**: from pgBackRest's ``info --output=json``, WAL-G's ``backup-list --json``
  (with or without ``--detail``), or a directory of base backups (``backup_label``'s
  ``START TIME``, in a plain backup or inside ``base.tar``; else ``backup_manifest``'s time on disk).
"""

from __future__ import annotations

import json
import re
import tarfile
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from pydantic import BaseModel, Field

from agent19.errors import InputError

SEGMENT = re.compile(r"^([0-9A-F]{8})([0-9A-F]{8})([0-9A-F]{8})(\.[a-z0-9]+)?$")


class Gap(BaseModel):
    timeline: int
    after: str = Field(description="the last segment present before the gap: recovery cannot go past it")
    missing_first: str
    missing_count: int


class ArchiveScan(BaseModel):
    directory: str
    segments: int
    first: str | None = None
    last: str | None = None
    gaps: list[Gap] = []
    damaged: list[str] = Field(default=[], description="uncompressed segments whose size is not the server's "
                               "wal_segment_size (a truncated copy): recovery cannot replay them")


def segment_name(timeline: int, number: int, per_log: int) -> str:
    return f"{timeline:08X}{number // per_log:08X}{number % per_log:08X}"


def scan_archive(directory: Path, wal_segment_bytes: int = 16 * 1024**2) -> ArchiveScan:
    """Segments in a directory archive and the gaps between them."""
    if not directory.is_dir():
        raise InputError(f"WAL archive directory {directory} not found")
    per_log = 0x100000000 // wal_segment_bytes
    by_timeline: dict[int, list[int]] = {}
    damaged = []
    for entry in directory.iterdir():
        m = SEGMENT.match(entry.name)
        if m and m[4] == ".partial":  # pg_receivewal's unfinished segment: not replayable from the archive
            continue
        if m and m[4] is None and entry.stat().st_size != wal_segment_bytes:
            damaged.append(entry.name)  # still counted as present: a gap is what is missing altogether
        if m:
            by_timeline.setdefault(int(m[1], 16), []).append(int(m[2], 16) * per_log + int(m[3], 16))
    names = sorted(segment_name(t, n, per_log) for t, ns in by_timeline.items() for n in ns)
    gaps = []
    for timeline, numbers in sorted(by_timeline.items()):
        numbers = sorted(set(numbers))
        for a, b in zip(numbers, numbers[1:], strict=False):
            if b - a > 1:
                gaps.append(Gap(timeline=timeline, after=segment_name(timeline, a, per_log),
                                missing_first=segment_name(timeline, a + 1, per_log), missing_count=b - a - 1))
    return ArchiveScan(directory=str(directory), segments=len(names), first=names[0] if names else None,
                       last=names[-1] if names else None, gaps=gaps, damaged=sorted(damaged))


class BackupEntry(BaseModel):
    label: str
    finished: datetime | None = Field(description="when the backup ended (or started, when that is all we know)")
    source: str = Field(description="pgbackrest, wal-g or directory")
    kind: str | None = None


def _ts(value: Any) -> datetime | None:
    if value is None or value == "":
        return None
    if isinstance(value, int | float):
        return datetime.fromtimestamp(value, UTC)
    text = str(value).strip().replace("Z", "+00:00")
    text = re.sub(r" (UTC|GMT)$", "+00:00", text)
    try:
        moment = datetime.fromisoformat(text)
    except ValueError:
        return None
    return moment if moment.tzinfo else moment.replace(tzinfo=UTC)


def _load_json(text_or_path: str) -> Any:
    path = Path(text_or_path)
    text = path.read_text() if not text_or_path.lstrip().startswith(("[", "{")) and path.exists() else text_or_path
    try:
        return json.loads(text)
    except json.JSONDecodeError as exc:  # from a file: no position or fragment of its content
        raise InputError(f"{text_or_path} is not a JSON document" if text is not text_or_path else f"not JSON: {exc}",
                         "pass the output of `pgbackrest info --output=json` or "
                         "`wal-g backup-list --json --detail` (a file or the text)") from None


def from_pgbackrest(text_or_path: str) -> list[BackupEntry]:
    """Backups in ``pgbackrest info --output=json`` (every stanza)."""
    out = []
    for stanza in _load_json(text_or_path):
        for b in stanza.get("backup", []):
            stamp = b.get("timestamp", {})
            out.append(BackupEntry(label=f"{stanza.get('name', '?')}/{b.get('label', '?')}",
                                   finished=_ts(stamp.get("stop") or stamp.get("start")),
                                   source="pgbackrest", kind=b.get("type")))
    return out


def from_walg(text_or_path: str) -> list[BackupEntry]:
    """Backups in ``wal-g backup-list --json`` (``--detail`` adds ``finish_time``)."""
    return [BackupEntry(label=b.get("backup_name", "?"), source="wal-g",
                        finished=_ts(b.get("finish_time") or b.get("time") or b.get("modified")),
                        kind="full" if "_D_" not in b.get("backup_name", "") else "delta")
            for b in _load_json(text_or_path)]


def _label_time(text: str) -> datetime | None:
    m = re.search(r"^START TIME: (.+)$", text, re.M)
    return _ts(m[1]) if m else None


def label_start(backup: Path) -> datetime | None:
    """When a base backup started (its ``backup_label``'s START TIME; plain or inside ``base.tar``), if it says."""
    if (backup / "backup_label").exists():
        return _label_time((backup / "backup_label").read_text(errors="replace"))
    for tar_path in sorted(backup.glob("base.tar*"))[:1]:
        try:
            with tarfile.open(tar_path) as tar:
                member = tar.extractfile("backup_label")
                return _label_time(member.read().decode(errors="replace")) if member else None
        except (tarfile.TarError, KeyError, OSError):
            return None
    return None


def from_directory(directory: Path) -> list[BackupEntry]:
    """Base backups in ``directory`` (itself one, or one per subdirectory)."""
    if not directory.is_dir():
        raise InputError(f"backup directory {directory} not found")
    out = []
    for d in [directory, *sorted(p for p in directory.iterdir() if p.is_dir())]:
        moment: datetime | None = None
        if (d / "backup_label").exists():
            if not (d / "backup_manifest").exists() and not (d / "global" / "pg_control").exists():
                # pg_basebackup copies global/pg_control last and writes backup_manifest after everything: an
                # interrupted copy (killed, disk full, --no-clean) has a backup_label but neither, and cannot restore
                out.append(BackupEntry(label=str(d), finished=None, source="directory",
                                       kind="incomplete: no backup_manifest and no global/pg_control (interrupted?)"))
                continue
            moment = _label_time((d / "backup_label").read_text(errors="replace"))
        elif tars := sorted(d.glob("base.tar*")):
            try:
                with tarfile.open(tars[0]) as tar:
                    member = tar.extractfile("backup_label")
                    moment = _label_time(member.read().decode(errors="replace")) if member else None
            except (tarfile.TarError, KeyError, OSError):
                moment = None
        elif not (d / "backup_manifest").exists():
            continue
        if moment is None and (d / "backup_manifest").exists():
            moment = datetime.fromtimestamp((d / "backup_manifest").stat().st_mtime, UTC)
        out.append(BackupEntry(label=str(d), finished=moment, source="directory", kind="base backup"))
    return out
