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
from typing import Any

from agent19.config import AccessMode
from agent19.db.connection import Database
from agent19.ops.capacity import infer as capacity_infer
from agent19.ops.capacity import samples as capacity_samples
from agent19.ops.capacity.doc import document, measured
from agent19.ops.capacity.fit import MIN_POINTS, MIN_SPAN_DAYS, choose, parse_at, project, too_little
from agent19.ops.capacity.measure import measure
from agent19.ops.capacity.model import CapacityPlan, CurrentState, Growth, Point
from agent19.ops.capacity.samples import SampleResult
from agent19.ops.health.probe import Probe
from agent19.ops.health.thresholds import HealthThresholds
from agent19.optimize.assess import Measured

QUERY_TIMEOUT_MS = 30_000
"""Capacity queries may scan a creation column (sampled past a million rows): more time than health checks,
still never waiting on a lock (lock_timeout 500 ms)."""


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
        stored, _ = _table_samples(db)
        return SampleResult(path=capacity_samples.TABLE, key=key, sample=sample, samples_for_database=len(stored))
    path = capacity_samples.samples_path(data_dir, key)
    capacity_samples.append(path, sample)
    samples, skipped = capacity_samples.load(path, state.database)
    return SampleResult(path=str(path), key=key, sample=sample, samples_for_database=len(samples),
                        skipped_lines=skipped)


def _table_samples(db: Database | Probe) -> tuple[list[capacity_samples.Sample], str | None]:
    with (db.db if isinstance(db, Probe) else db).read() as conn:
        return capacity_samples.read_table(conn)


def row_scanner(db: Database) -> tuple[capacity_infer.Rows | None, str | None]:
    """Where the creation columns' rows are counted: as the login user reads run as (``--read-dsn``, or agent19's
    own reader on its embedded server), else nowhere and why. Planning and scanning a table runs code its owner
    wrote — index expressions folded at plan time, row level security policies — as the login that reads it: a
    privileged one (a superuser, pg_execute_server_program...) would run it with those powers (review r29 F4),
    unless the user accepted it (``--allow-privileged-reads``)."""
    from agent19.safety import gate

    facts = gate.reader_login(db)
    if facts.privileged and not facts.allowed_by_opt_in:
        return None, (f"creation timestamp columns not counted: counting scans the tables' rows, and as "
                      f"{facts.login} ({facts.powers()}) that would run code the tables' owners wrote (index "
                      "expressions, row level security policies) with its powers; give agent19 a least-privilege "
                      "reader (--read-dsn, `agent19 setup-role` prints the SQL) or accept it with "
                      "--allow-privileged-reads")
    reader = gate.reader_database(db)
    return (lambda q: reader.execute_read(q.encode())), None  # type: ignore[arg-type]


def guarded_tables(db: Database, found: list[dict[str, Any]]) -> tuple[list[dict[str, Any]], list[str]]:
    """The creation-column tables whose rows may be counted, and a note for each left out: counting plans and scans
    a table as the reader login, which runs the code its owner put in its definitions (index expressions, partition
    keys, CHECKs, policies...); the read guard judges it as it judges a user's read (review r31 F12)."""
    from agent19.safety import gate, readonly

    with gate.reader(db) as conn:
        try:
            readonly.check_relations_read(conn, readonly.relation_oids(conn, [c["table_name"] for c in found]))
            return found, []
        except readonly.ReadOnlyViolation:
            pass
        kept: list[dict[str, Any]] = []
        notes: list[str] = []
        for c in found:  # which ones: each on its own
            try:
                readonly.check_relations_read(conn, readonly.relation_oids(conn, [c["table_name"]]))
                kept.append(c)
            except readonly.ReadOnlyViolation as exc:
                notes.append(f"{c['table_name']}: rows not counted - {exc.message}")
    return kept, notes


HOW_TO_GET_HISTORY = ("run `agent19 capacity sample` daily (cron) and re-plan after a week; a creation "
                      "timestamp column counts once its data spans two month ends")


def _not_yet(source: str, evidence: list[str], pts: list[Point], why: str, notes: list[str]) -> Growth:
    """Growth with too little history: what was observed, no fit, no projection — and how to get enough."""
    text = f"growth is not known yet from {source}: {why}; {HOW_TO_GET_HISTORY}"
    return Growth(source=source, evidence=evidence, observed=pts, not_known_yet=text, notes=[text, *notes])


def growth_evidence(probe: Probe, state: CurrentState, data_dir: Path | None, db: Database) -> tuple[Growth, bool]:
    """Growth from samples, else the data; and whether the largest table has a creation column.

    Each source is fitted only with enough history (:func:`agent19.ops.capacity.fit.too_little`); with too
    little the next source is tried, and when none has enough the first one seen is reported as not known yet.
    """
    found = capacity_infer.creation_columns(probe)
    largest = next((o.name for o in state.largest if o.kind == "table"), None)
    timed = any(c["table_name"] == largest for c in found) if largest else None
    notes: list[str] = []
    pending: Growth | None = None
    if data_dir is not None:
        path = capacity_samples.samples_path(data_dir, capacity_samples.sample_key(state, db.dsn))
        samples, skipped = capacity_samples.load(path, state.database)
        if skipped:
            notes.append(f"{skipped} unreadable line(s) in {path} skipped")
        in_table, unread = _table_samples(probe)
        if unread:
            notes.append(unread)
        where = str(path) + (f" and {capacity_samples.TABLE}" if in_table else "")
        merged = {s.at: s for s in samples + in_table}
        pts = capacity_samples.points([merged[at] for at in sorted(merged)])
        now = parse_at(state.measured_at)
        if future := [p for p in pts if parse_at(p.at) > now]:
            notes.append(f"{len(future)} sample(s) dated after the server's time now ({state.measured_at}) left "
                         "out: the server's clock went back, or they were not taken on this server")
            pts = [p for p in pts if parse_at(p.at) <= now]
        evidence = [f"{len(pts)} samples in {where}"]
        why = too_little(pts)
        if why is None:
            return Growth(source="samples", evidence=evidence, observed=pts, fit=choose(pts),
                          rows_fit=choose(pts, rows=True), notes=notes), timed
        if pts:
            pending = _not_yet("samples", evidence, pts, why, [])
        notes.append(f"samples of this database in {where}: {why} (run `agent19 capacity sample` daily, e.g. "
                     "from cron)")
    scan, refused = row_scanner(db) if found else (None, None)
    if refused:
        notes.append(refused)
    if found and scan is not None:
        found, guarded = guarded_tables(db, found)
        notes += guarded
    if found and scan is not None:
        pts, evidence = capacity_infer.from_creation_columns(probe, state, found, scan)
        why = too_little(pts)
        if why is None:
            notes.append("tables without a creation timestamp column are taken as static; bytes per row are "
                         "today's (updates, bloat and TOAST growth are not in this estimate)")
            return Growth(source="creation timestamp columns", evidence=evidence, observed=pts, fit=choose(pts),
                          rows_fit=choose(pts, rows=True), notes=notes), timed
        if pending is None and pts:
            pending = _not_yet("creation timestamp columns", evidence, pts, why, [])
        notes.append(f"creation timestamp columns: {why}")
    bytes_fit, rows_fit, why = capacity_infer.from_inserts(probe, state)
    if bytes_fit is not None:
        notes.append("one average rate since the statistics reset: no fit error can be computed; record samples "
                     "for a measured trend")
        return Growth(source="inserts since the statistics reset", evidence=[why], fit=bytes_fit,
                      rows_fit=rows_fit, notes=notes), timed
    notes.append(why)
    if pending is not None:
        pending.notes += [n for n in notes if n not in pending.notes]
        return pending, timed
    notes.append("no growth evidence: run `agent19 capacity sample` daily (cron) - the plan fits the samples "
                 f"once there are {MIN_POINTS} over {MIN_SPAN_DAYS:.0f} days")
    return Growth(source="none", notes=notes), timed


def capacity_plan(db: Database, *, window_s: float = 5, disk_size: int | None = None,
                  data_dir: Path | None = None) -> CapacityPlan:
    """The capacity plan of ``db``'s database: current state, growth, triggers, thresholds, document."""
    probe = _probe(db)
    try:
        state = measure(probe, window_s=window_s)
        growth, timed = growth_evidence(probe, state, data_dir, db)
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
