"""The verdict of a backup verification: verified or not, why, and the restore-time estimate."""

from __future__ import annotations

from agent19.ops.backup.model import TableCheck, VerifyResult
from agent19.textsafe import visible
from agent19.units import human_duration, human_size


def estimate(result: VerifyResult) -> None:
    """RTO estimate: the measured restore time scaled linearly by bytes, from what was restored to the
    whole database (physical: the whole cluster). Says so in :attr:`VerifyResult.estimate_method`."""
    measured = result.durations_s.restore
    if result.kind != "logical":
        total = result.durations_s.dump + measured
        result.restore_estimate_s = round(total, 3)
        result.estimate_method = (
            f"copying the whole cluster ({human_size(result.sizes.backup_bytes)}; measured as the base backup's "
            f"{human_duration(result.durations_s.dump)}) + recovery to consistency ({human_duration(measured)}); "
            "replaying archived WAL to a later point adds to it")
        return
    whole, restored = result.sizes.database_bytes, result.sizes.restored_bytes
    if whole and restored:
        factor = whole / restored
        result.restore_estimate_s = round(measured * factor, 3)
        result.estimate_method = (
            f"measured restore {human_duration(measured)} for {human_size(restored)} restored, scaled linearly "
            f"to {human_size(whole)} (the database; x{factor:.2f}); same hardware and parallelism assumed, WAL "
            "replay beyond the backup not included")
    else:
        result.restore_estimate_s = round(measured, 3)
        result.estimate_method = "the measured restore time (sizes unknown, not scaled)"


def finish(result: VerifyResult, display_dsn: str) -> VerifyResult:
    result.database = display_dsn
    bad_tables = [t for t in result.tables if not t.checksum_match]
    bad_sequences = [s for s in result.sequences if not s.match]
    failed_checks = [c for c in result.checks if not c.passed]
    result.verified = not (result.errors or result.damaged_files or result.schema_differences or bad_tables
                           or bad_sequences or failed_checks)
    estimate(result)
    rows = sum(t.rows_restored or 0 for t in result.tables)
    if result.verified and result.kind == "pitr":
        result.summary = (
            f"point-in-time recovery verified: recovered to {result.recovered_to or 'the end of the archive'} in "
            f"{human_duration(result.durations_s.restore)}; {len(result.checks)} check(s) passed")
        return result
    if result.verified:
        result.summary = (
            f"{result.kind} backup verified: {len(result.tables)} table(s), {rows} row(s), schema and "
            f"{len(result.sequences)} sequence(s) identical to the source; restore took "
            f"{human_duration(result.durations_s.restore)} (whole-database estimate "
            f"{human_duration(result.restore_estimate_s)})")
        if result.checks:
            result.summary += f"; {len(result.checks)} check(s) passed"
        return result
    reasons: list[str] = []
    if result.damaged_files:
        reasons.append(f"pg_verifybackup found {len(result.damaged_files)} damaged or missing file(s): "
                       + ", ".join(result.damaged_files[:5]))
    reasons += result.errors[:3]
    for t in bad_tables[:5]:
        reasons.append(f"table {t.table}: {t.note or 'checksum differs'} ({t.rows_source} -> {t.rows_restored} rows)"
                       + _rows(t))
    reasons += [f"schema: {d}" for d in result.schema_differences[:5]]
    for s in bad_sequences[:5]:
        reasons.append(f"sequence {s.sequence}: {s.source} -> {s.restored}" + (f" ({s.note})" if s.note else ""))
    for c in failed_checks[:5]:
        reasons.append(f"check failed: {c.query} -> {c.error or c.value}")
    result.summary = f"{result.kind} backup NOT verified: " + "; ".join(reasons)
    return result


def _rows(t: TableCheck, most: int = 5) -> str:
    """The rows that differ, for a sentence: by key, or the one-side counts of a table without one."""
    if t.differing_rows:
        listed = ", ".join(f"{r.key} {r.difference}" for r in t.differing_rows[:most])
        more = len(t.differing_rows) > most or t.differing_rows_truncated
        return f"; rows by ({', '.join(t.key_columns)}): {listed}" + (", ..." if more else "")
    if t.rows_only_in_source is not None:
        return (f"; no primary key: {t.rows_only_in_source} row(s) only in the source, {t.rows_only_in_restored} "
                "only in the restored copy")
    return ""


# control characters and bidi overrides in names and keys read from the database (terminal escapes, line
# breaks that would forge a report line) are shown escaped in the text report; JSON escapes them already
def render(result: VerifyResult) -> str:
    """Text for people: the verdict first, then what differs, the timings and what was cleaned up."""
    lines = [result.summary, f"source: {result.database}; restored into: {result.restored_into or '-'}"]
    for t in result.tables:
        mark = "ok" if t.checksum_match else "MISMATCH"
        lines.append(f"  {mark:8} {t.table}: {t.rows_source} -> {t.rows_restored} rows" + (
            f" ({t.note})" if t.note else ""))
        if t.differing_rows:
            lines.append(f"           differing rows by ({', '.join(t.key_columns)}): " + ", ".join(
                f"{r.key} {r.difference}" for r in t.differing_rows) + (", ... (more)" if t.differing_rows_truncated
                                                                         else ""))
        elif t.rows_only_in_source is not None:
            lines.append(f"           {_rows(t)[2:]}")
    for s in result.sequences:
        if not s.match:
            lines.append(f"  MISMATCH sequence {s.sequence}: {s.source} -> {s.restored}")
    lines += [f"  schema: {d}" for d in result.schema_differences]
    lines += [f"  error: {e}" for e in result.errors]
    lines += [f"  damaged: {f}" for f in result.damaged_files]
    for c in result.checks:
        lines.append(f"  check {'passed' if c.passed else 'FAILED'}: {c.query}" + (
            f" -> {c.error or c.value}" if not c.passed else ""))
    if result.recovered_to:
        lines.append(f"recovered to: {result.recovered_to}")
    d, z = result.durations_s, result.sizes
    lines.append(f"durations: backup {human_duration(d.dump)}, restore {human_duration(d.restore)}, "
                 f"verify {human_duration(d.verify)}; sizes: database {human_size(z.database_bytes)}, "
                 f"backup {human_size(z.backup_bytes)}, restored {human_size(z.restored_bytes)}")
    lines.append(f"restore estimate: {human_duration(result.restore_estimate_s)} - {result.estimate_method}")
    lines += [f"note: {n}" for n in result.notes]
    lines += [f"removed: {r}" for r in result.removed]
    return "\n".join(visible(line) for line in lines)
