"""The execute-mode policies an operator opted into (:mod:`agent19.safety.policy`), applied to a pipeline run
as run_sql and run_backfill apply them to a statement, judged against the pipeline's destination.

``require_dry_run``: the pipeline as it is now (its whole definition is what was tested) passed a dry run
into this destination, on the schema the destination still has, within the policy's age. A run's own state
tables are DDL: after a run that the policy let through, the ledger entry moves on to the schema the run
left, as a migration's next step does (:func:`agent19.safety.dry_run_ledger.advance`).
``require_verified_backup_hours``: a strategy that overwrites or removes rows needs a backup of the
destination verified by a restore.
"""

from __future__ import annotations

import hashlib

from agent19.db.connection import Database
from agent19.errors import ModeError
from agent19.etl.pipeline import Pipeline
from agent19.safety import dry_run_ledger as dry_runs
from agent19.safety import policy

OVERWRITES = {"upsert": "UpdateStmt", "merge": "MergeStmt", "replace": "DeleteStmt"}
"""Strategies that change or remove destination rows, as the data change the execute policies judge."""


def _fingerprint(pipeline: Pipeline) -> str:
    """What a dry run of this pipeline is recorded as (the whole pipeline: another table, key or strategy is
    another pipeline)."""
    # hashed here: the ledger reads what it is given as SQL tokens, which a pipeline's JSON is not
    return "etl pipeline " + hashlib.sha256(pipeline.model_dump_json().encode()).hexdigest()


def require(pipeline: Pipeline, destination: Database) -> dry_runs.Verdict:
    """The execute-mode policies the operator opted into, as for run_sql and run_backfill, judged against the
    destination: ``require_dry_run`` (this pipeline, as it is now, passed a dry run into this destination, on
    the schema it has now, within the policy's age), ``require_verified_backup_hours`` (a strategy that
    overwrites or removes rows needs a backup of the destination verified by a restore)."""
    settings = destination.settings
    d = pipeline.destination
    target = policy.target_of(settings)
    tested = dry_runs.Verdict(None)
    if settings.require_dry_run:
        tested = dry_runs.check(settings, policy.server_state(destination), _fingerprint(pipeline), target)
    if tested.refusal:
        why = tested.reason or tested.refusal
        raise ModeError(f"refused by policy require_dry_run (AGENT19_REQUIRE_DRY_RUN): pipeline {pipeline.name}: "
                        f"{why}; nothing was loaded",
                        "run it with --dry-run (dry_run=true over MCP) first, then run it again")
    node = OVERWRITES.get(d.strategy)
    if node is not None and policy.unbacked(settings, destination, node):
        hours = settings.require_verified_backup_hours or 0
        raise ModeError(f"refused by policy require_verified_backup (AGENT19_REQUIRE_VERIFIED_BACKUP): strategy "
                        f"{d.strategy} {'removes' if d.strategy == 'replace' else 'overwrites'} rows of {d.table}, "
                        f"and no backup of {target} was verified by a restore in the last {hours:g} h; nothing "
                        "was loaded",
                        "verify one first: agent19 backup verify --dsn <destination> (verify_backup over MCP, with "
                        "the same data directory), then run again; strategy append only inserts")
    return tested


def server_state(destination: Database) -> dry_runs.ServerState:
    return policy.server_state(destination)


def record_dry_run(pipeline: Pipeline, destination: Database, state: dry_runs.ServerState) -> None:
    """The pipeline's dry run passed (it started when the destination was in ``state``)."""
    dry_runs.record(destination.settings, state, [_fingerprint(pipeline)])


def ran(destination: Database, tested: dry_runs.Verdict) -> None:
    """A run the policy let through committed: its next run may run on the schema it left."""
    if tested.entry is not None:
        dry_runs.append_rows(destination.settings.data_dir / dry_runs.LEDGER,
                             [{**tested.entry, "catalog": policy.server_state(destination).catalog}])
