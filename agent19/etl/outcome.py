"""What an ETL run reports: counts, the watermark, schema drift since the last run, the first rejections."""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, Field


class Drift(BaseModel):
    column: str
    change: str = Field(description="added, removed or retyped (since the previous run)")
    detail: str
    action: str = Field(description="what this run does about it")


class Rejection(BaseModel):
    source_key: dict[str, Any] = Field(description="the record's source key (data from the database)")
    reason: str


class EtlResult(BaseModel):
    pipeline: str
    dry_run: bool
    strategy: str
    destination_table: str
    extracted: int = 0
    valid: int = Field(default=0, description="extracted records that passed validation")
    inserted: int = 0
    updated: int = 0
    unchanged: int = 0
    rejected: int = Field(default=0, description="records that failed validation (in the dead-letter table)")
    resolved: int = Field(default=0, description="dead letters removed: their records passed and loaded this time")
    replaced: int = Field(default=0, description="strategy replace: the destination's rows removed (all of them) "
                          "in the transaction that loaded the new ones")
    replace_by: str | None = Field(default=None, description="strategy replace: swap (a new table loaded while "
                                   "readers read the old one) or truncate (in place, readers wait)")
    swap: list[str] = Field(default=[], description="replace by swap: what was carried to the new table, and what "
                            "was not")
    batches: int = 0
    retries: int = 0
    elapsed_s: float = 0
    rows_per_s: float = 0
    resumed_from: list[str] | None = Field(default=None, description="the watermark the run started after")
    watermark: list[str] | None = Field(default=None, description="the watermark after the run")
    lag_window: str | None = None
    drift: list[Drift] = []
    rejections: list[Rejection] = Field(default=[], description="the first rejections (all are in the "
                                        "dead-letter table)")
    dead_letter_table: str | None = None


def drift(before: dict[str, str] | None, now: dict[str, str], columns: list[str],
           model: type[BaseModel] | None, dest: dict[str, str] | None = None) -> list[Drift]:
    if not before:
        return []
    out: list[Drift] = []
    sources = {(f.validation_alias if isinstance(f.validation_alias, str) else name): (name, f.is_required())
               for name, f in (model.model_fields.items() if model else [])}
    for col, typ in now.items():
        if col not in before:
            loaded = col in sources or (model is None and col in columns)
            out.append(Drift(column=col, change="added", detail=f"new source column of type {typ}",
                             action="loaded" if loaded else "ignored: not in the pipeline's [transform] or not "
                             "in the destination"))
        elif before[col] != typ:
            out.append(Drift(column=col, change="retyped", detail=f"{before[col]} -> {typ}",
                             action="the transform coerces it; values it cannot coerce become dead letters"
                             if model else "loaded as is: the destination's cast decides (a failing value stops "
                             "the batch, which is retried, then the run)"))
    for col, typ in before.items():
        if col not in now:
            name, required = sources.get(col, (col, False))
            action = ("every record is rejected (a required field): fix the source or the pipeline" if required
                      else "loaded as NULL" if col in sources
                      else f"no longer loaded: rows updated from now on keep the old {col} of the destination, "
                           "new rows get its default" if model is None and col in (dest or {})
                      else "nothing: it was not loaded")
            out.append(Drift(column=col, change="removed", detail=f"was {typ}", action=action))
    return out
