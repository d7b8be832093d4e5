"""``capacity_plan`` and ``capacity_sample``: capacity planning from measured growth.

* :mod:`agent19.ops.capacity.measure` — the current state (sizes, rows, connections, cache, statements, rates
  over a sampling window);
* growth from evidence, in this order: samples recorded by ``agent19 capacity sample``
  (:mod:`agent19.ops.capacity.samples`), else a creation timestamp column, else net inserts since the
  statistics reset (:mod:`agent19.ops.capacity.infer`); never a made-up rate — with none of them the plan
  says so and how to start sampling;
* :mod:`agent19.ops.capacity.fit` — linear vs compound fit, projections at 3, 6, 12 months, days to fill a disk;
* :mod:`agent19.ops.capacity.doc` — scaling triggers, the premature-optimization table
  (:func:`agent19.optimize.assess.charter_thresholds`), options, recommendations and the Markdown document.
"""

from __future__ import annotations

from pathlib import Path

from agent19.config import AccessMode
from agent19.db.connection import Database
from agent19.ops.capacity import infer as capacity_infer
from agent19.ops.capacity import samples as capacity_samples
from agent19.ops.capacity.doc import document, measured
from agent19.ops.capacity.fit import choose, parse_at, project
from agent19.ops.capacity.measure import measure
from agent19.ops.capacity.model import CapacityPlan, CurrentState, Growth
from agent19.ops.capacity.samples import SampleResult
from agent19.ops.health.probe import Probe
from agent19.ops.health.thresholds import HealthThresholds
from agent19.optimize.assess import Measured

QUERY_TIMEOUT_MS = 30_000
"""Capacity queries may scan a creation column (sampled past a million rows): more time than health checks,
still never waiting on a lock (lock_timeout 500 ms)."""


MIN_SAMPLE_SPAN_DAYS = 1.0
"""Samples closer together than this give no trend (the plan falls back to the data's own evidence)."""


def _probe(db: Database) -> Probe:
    return Probe.open(db, HealthThresholds(statement_timeout_ms=QUERY_TIMEOUT_MS))


def _largest_tables(state: CurrentState) -> list[tuple[str, int, int]]:
    return [(o.name, o.bytes, o.rows or 0) for o in state.largest if o.kind == "table"]


def capacity_sample(db: Database, data_dir: Path, *, store: str = "file") -> SampleResult:
    """Record one size sample of ``db``'s database in agent19's data directory (``store="table"``: in the
    table ``agent19.capacity_samples`` of the target, which needs execute mode)."""
    if store == "table":
        db.require(AccessMode.EXECUTE, "storing capacity samples in a table of the target (--store table)")
    probe = _probe(db)
    try:
        state = measure(probe, window_s=0, largest=50, statements=0)
    finally:
        probe.close()
    key = capacity_samples.sample_key(state, db.dsn)
    sample = capacity_samples.from_state(state, _largest_tables(state))
    if store == "table":
        with db.session() as conn:
            with conn.transaction():
                capacity_samples.append_table(conn, sample)
        stored = _table_samples(db)
        return SampleResult(path=capacity_samples.TABLE, key=key, sample=sample, samples_for_database=len(stored))
    path = capacity_samples.samples_path(data_dir, key)
    capacity_samples.append(path, sample)
    samples, skipped = capacity_samples.load(path, state.database)
    return SampleResult(path=str(path), key=key, sample=sample, samples_for_database=len(samples),
                        skipped_lines=skipped)


def _table_samples(db: Database | Probe) -> list[capacity_samples.Sample]:
    rows = db.rows if isinstance(db, Probe) else db.execute_read
    if not rows(capacity_samples.Q_TABLE_EXISTS)[0]["readable"]:
        return []
    return capacity_samples.from_rows(rows(capacity_samples.Q_TABLE_SAMPLES))


def growth_evidence(probe: Probe, state: CurrentState, data_dir: Path | None, dsn: str) -> tuple[Growth, bool]:
    """Growth from samples, else the data; and whether the largest table has a creation column."""
    found = capacity_infer.creation_columns(probe)
    largest = next((o.name for o in state.largest if o.kind == "table"), None)
    timed = any(c["table_name"] == largest for c in found) if largest else None
    notes: list[str] = []
    if data_dir is not None:
        path = capacity_samples.samples_path(data_dir, capacity_samples.sample_key(state, dsn))
        samples, skipped = capacity_samples.load(path, state.database)
        if skipped:
            notes.append(f"{skipped} unreadable line(s) in {path} skipped")
        in_table = _table_samples(probe)
        where = str(path) + (f" and {capacity_samples.TABLE}" if in_table else "")
        merged = {s.at: s for s in samples + in_table}
        pts = capacity_samples.points([merged[at] for at in sorted(merged)])
        now = parse_at(state.measured_at)
        if future := [p for p in pts if parse_at(p.at) > now]:
            notes.append(f"{len(future)} sample(s) dated after the server's time now ({state.measured_at}) left "
                         "out: the server's clock went back, or they were not taken on this server")
            pts = [p for p in pts if parse_at(p.at) <= now]
        span = (parse_at(pts[-1].at) - parse_at(pts[0].at)).total_seconds() / 86400 if pts else 0.0
        if len(pts) >= 2 and span > 0:
            fit, rows_fit = choose(pts), choose(pts, rows=True)
            if span < MIN_SAMPLE_SPAN_DAYS:  # minutes of samples read as a year's trend: a bulk load, autovacuum
                notes.insert(0, f"WARNING: the samples span only {span * 24:.2f} h — too short for a trend: the "
                             "projections and days to fill the disk below are not evidence; sample daily (cron) "
                             "for a week before relying on them")
            elif len(pts) == 2:
                notes.insert(0, "two samples: a line through two points has no error to measure; three or more "
                             "give the fit's error")
            return Growth(source="samples", evidence=[f"{len(pts)} samples in {where}"], observed=pts, fit=fit,
                          rows_fit=rows_fit, notes=notes), timed
        notes.append(f"{len(pts)} sample(s) of this database in {where}: two or more are needed for a fit "
                     "(run `agent19 capacity sample` daily, e.g. from cron)")
    if found:
        pts, evidence = capacity_infer.from_creation_columns(probe, state, found)
        if len(pts) >= 2:
            fit, rows_fit = choose(pts), choose(pts, rows=True)
            notes.append("tables without a creation timestamp column are taken as static; bytes per row are "
                         "today's (updates, bloat and TOAST growth are not in this estimate)")
            return Growth(source="creation timestamp columns", evidence=evidence, observed=pts, fit=fit,
                          rows_fit=rows_fit, notes=notes), timed
        notes += [f"creation column with less than two months of data: {e}" for e in evidence]
    bytes_fit, rows_fit, why = capacity_infer.from_inserts(probe, state)
    if bytes_fit is not None:
        notes.append("one average rate since the statistics reset: no fit error can be computed; record samples "
                     "for a measured trend")
        return Growth(source="inserts since the statistics reset", evidence=[why], fit=bytes_fit,
                      rows_fit=rows_fit, notes=notes), timed
    notes.append(why)
    notes.append("no growth evidence: run `agent19 capacity sample` daily (cron) — the plan fits the samples "
                 "once there are two")
    return Growth(source="none", notes=notes), timed


def capacity_plan(db: Database, *, window_s: float = 5, disk_size: int | None = None,
                  data_dir: Path | None = None) -> CapacityPlan:
    """The capacity plan of ``db``'s database: current state, growth, triggers, thresholds, document."""
    probe = _probe(db)
    try:
        state = measure(probe, window_s=window_s)
        growth, timed = growth_evidence(probe, state, data_dir, db.dsn)
    finally:
        probe.close()
    growth = project(growth, state.database_bytes, state.cluster_bytes, state.rows, disk_size)
    return document(state, growth, timed, disk_size)


def measured_numbers(db: Database, window_s: float = 2) -> tuple[Measured, CurrentState]:
    """The numbers ``assess_optimization`` judges, measured on ``db`` (the same as ``capacity_plan``'s)."""
    probe = _probe(db)
    try:
        state = measure(probe, window_s=window_s)
        found = capacity_infer.creation_columns(probe)
    finally:
        probe.close()
    largest = max((o for o in state.largest if o.kind == "table"), key=lambda o: o.rows or 0, default=None)
    timed = any(c["table_name"] == largest.name for c in found) if largest else None
    return measured(state, timed), state
