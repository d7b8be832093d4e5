"""What a backfill is asked to do and what it reports: :class:`BackfillSpec` (the table, SET and WHERE, and
how fast), :func:`check_fragments` (the SET and WHERE are one UPDATE's, nothing more),
:class:`BackfillResult` and :data:`Progress` (the callback a run reports its progress to). Run by
:func:`agent19.migrate.backfill.executor.run_backfill`, emitted by :mod:`agent19.migrate.backfill.scripts`.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable

from pydantic import BaseModel, Field, field_validator

from agent19.errors import InputError
from agent19.migrate.patterns.sqlnames import split_name, table_arg
from agent19.sqltree import parse_json


class BackfillSpec(BaseModel):
    """What to update and how fast."""

    table: str = Field(description="table to update: name or schema.name, as the catalog stores it (Order, "
                       "My Schema.order items) or as SQL with double quotes (\"My Schema\".\"a.b\")")
    set: str = Field(description="the SET list, e.g. `amount_new = amount::numeric(12,2)`",
                     json_schema_extra={"user_sql": "expression"})  # agent19.safety.gate.user_sql
    where: str | None = Field(default=None, description="only rows matching this condition (those still to do)",
                              json_schema_extra={"user_sql": "expression"})
    key: list[str] | None = Field(default=None, description="key columns to walk (default: the primary key)")
    batch_size: int = Field(default=1000, ge=1, description="rows in the first batch")
    min_batch_size: int = Field(default=10, ge=1)
    max_batch_size: int = Field(default=50_000, ge=1)
    target_batch_ms: int = Field(default=20, ge=1, description="aim for batches this long (size adapts); a batch holds "
                                 "the rows it updated until it commits, so writers to them wait up to this long")
    pause_ms: int = Field(default=0, ge=0, description="sleep between batches")
    lock_timeout_ms: int = Field(default=2000, ge=1, description="lock_timeout of each batch")
    max_replication_lag_s: float | None = Field(
        default=10.0, description="wait while a replica's replay lag exceeds this (null: never wait)")
    max_retries: int = Field(default=10, ge=0, description="retries of one batch on lock timeout or deadlock")
    name: str | None = Field(default=None, description="checkpoint name (default: derived from table/set/where)")
    restart: bool = Field(default=False, description="forget a finished or stopped run and start from the beginning")
    validate_end: bool = Field(default=True, description="count the rows still matching `where` at the end")

    @field_validator("table")
    @classmethod
    def _one_reading(cls, value: str) -> str:
        # the same reading as agent19 pattern's table (sqlnames.table_arg), kept as SQL text from here on; a
        # ValueError, so MCP and the CLI report it as an invalid argument (with what to write instead)
        try:
            return table_arg(value)
        except InputError as exc:
            raise ValueError(str(exc)) from None

    def checkpoint_name(self) -> str:
        if self.name:
            return self.name
        digest = hashlib.sha1(f"{self.table}\0{self.set}\0{self.where}".encode()).hexdigest()[:12]
        return f"{split_name(self.table)[1][:40]}_{digest}"


class BackfillResult(BaseModel):
    name: str
    table: str
    rows_updated: int = Field(description="rows updated, over every run of this backfill")
    rows_scanned: int = Field(description="keys visited, over every run")
    batches: int
    resumed: bool = Field(description="continued a run that had stopped")
    already_done: bool = Field(default=False, description="a previous run had finished; nothing was done")
    rows_updated_this_run: int
    elapsed_s: float
    rows_per_s: float
    last_batch_size: int
    retries: int = 0
    replication_wait_s: float = 0.0
    remaining: int | None = Field(default=None, description="rows still matching `where` at the end (expect 0)")


Progress = Callable[[float, float | None, str | None], None]


def check_fragments(spec: BackfillSpec) -> None:
    """Refuse SET/WHERE text that is not exactly one UPDATE's SET list and condition."""
    text = f"UPDATE t SET {spec.set}\n WHERE ({spec.where or 'true'}\n)"
    try:
        stmts = parse_json(text)
    except Exception as exc:  # pglast ParseError
        raise InputError(f"the backfill's SET or WHERE does not parse: {exc}",
                         "give a SET list like `col = expr` and a boolean condition") from None
    if len(stmts) != 1 or "UpdateStmt" not in stmts[0].get("stmt", {}):
        raise InputError("the backfill's SET or WHERE must not contain other statements")
