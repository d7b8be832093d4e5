"""A batch pipeline's declaration (``PIPELINE.toml``) and the pydantic model its transform builds.

A pipeline names a source (a table, or a query that is user SQL and goes through the safety gate),
cursor columns walked as a keyset, a lag window, the destination table with its key, the load strategy,
and a transform: typed fields with constraints, turned into a pydantic model that validates and coerces
every record (the library API also accepts any pydantic model class instead).
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import decimal
import os
import re
import tomllib
import uuid
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    StringConstraints,
    TypeAdapter,
    ValidationError,
    create_model,
    field_validator,
    model_validator,
)
from pydantic_core import SchemaError

from agent19.config import Settings
from agent19.db.connection import Database
from agent19.errors import InputError

FIELD_TYPES: dict[str, Any] = {
    "int": int, "float": float, "decimal": decimal.Decimal, "str": str, "bool": bool, "date": dt.date,
    "datetime": dt.datetime, "uuid": uuid.UUID, "json": Any,
}
_DURATION = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*(ms|s|sec|second|seconds|min|minute|minutes|h|hour|hours|"
                       r"d|day|days)?\s*$")
_UNITS = {"ms": 0.001, "s": 1, "sec": 1, "second": 1, "seconds": 1, "min": 60, "minute": 60, "minutes": 60,
          "h": 3600, "hour": 3600, "hours": 3600, "d": 86400, "day": 86400, "days": 86400}
_STRICT = ConfigDict(extra="forbid")


def parse_lag(value: str | float | int | None) -> float | dt.timedelta | None:
    """A lag as a number (numeric cursors) or a duration such as ``"5 minutes"`` (timestamp cursors)."""
    if value is None or isinstance(value, int | float):
        return value
    m = _DURATION.match(value)
    if not m:
        raise InputError(f"lag {value!r} is neither a number nor a duration", "e.g. lag = \"10 minutes\" or lag = 100")
    if m.group(2) is None:
        return float(m.group(1))
    return dt.timedelta(seconds=float(m.group(1)) * _UNITS[m.group(2)])


class Source(BaseModel):
    model_config = _STRICT
    dsn: str | None = Field(default=None, description="libpq DSN, or env:VAR to read it from the environment; "
                            "default: agent19's own database (--dsn / DATABASE_URL)")
    table: str | None = Field(default=None, description="schema.table to extract from")
    query: str | None = Field(default=None, description="a SELECT to extract from instead of a table (user SQL: "
                              "checked by the safety gate and run as the reader login)")
    cursor: list[str] = Field(min_length=1, description="cursor columns, walked as a keyset in this order, e.g. "
                              "[\"updated_at\", \"id\"]; they must be NOT NULL and the last should be unique")
    lag: str | float | None = Field(default=None, description="re-read this much below the watermark on each run "
                                    "(late-committing transactions): a duration for a timestamp cursor, a number "
                                    "for a numeric one; upsert only")
    key: list[str] = Field(default=[], description="source key recorded with dead letters (default: the "
                           "destination key)")


class Destination(BaseModel):
    model_config = _STRICT
    dsn: str | None = Field(default=None, description="libpq DSN or env:VAR; default: agent19's own database")
    table: str = Field(description="schema.table to load into (it must exist)")
    key: list[str] = Field(default=[], description="key columns (a unique index or primary key must cover "
                           "exactly them); required for upsert")
    strategy: Literal["upsert", "append", "replace", "merge"] = Field(
        default="upsert", description="upsert (by key: insert new rows, update changed ones), append (insert "
        "only), merge (as upsert, with MERGE: PostgreSQL 15+), replace (each run loads the whole source into a new "
        "table and swaps it in for the destination: the destination's rows that are not in the source are LOST; "
        "never the default, name it yourself)")
    replace_by: Literal["swap", "truncate"] = Field(
        default="swap", description="strategy replace: swap (load a shadow table while readers read the old rows, "
        "then swap it in under a short ACCESS EXCLUSIVE lock; refused when views, rules or other tables' foreign "
        "keys depend on the table) or truncate (TRUNCATE and load in place in one transaction: readers wait for "
        "the whole load)")
    state_schema: str = Field(default="agent19_etl", description="schema of the watermark and dead-letter "
                              "tables, created in the destination when missing")


class FieldSpec(BaseModel):
    model_config = _STRICT
    type: Literal["int", "float", "decimal", "str", "bool", "date", "datetime", "uuid", "json"]
    source: str | None = Field(default=None, description="source column (default: the field's name)")
    required: bool = Field(default=True, description="false: NULL (or a missing column) is accepted")
    ge: float | None = None
    gt: float | None = None
    le: float | None = None
    lt: float | None = None
    min_length: int | None = None
    max_length: int | None = None
    pattern: str | None = None
    choices: list[str | int] | None = None
    strip: bool = Field(default=False, description="strings: strip surrounding white space first")
    lower: bool = Field(default=False, description="strings: lower-case")

    @model_validator(mode="after")
    def _fits_type(self) -> FieldSpec:
        """A constraint the type cannot take is refused here (pydantic would raise TypeError on the first record,
        in the middle of a run, instead of rejecting it)."""
        allowed = {"ge", "gt", "le", "lt"} if self.type in ("int", "float", "decimal") else set()
        if self.type == "str":
            allowed = {"min_length", "max_length", "pattern", "strip", "lower"}
        given = [k for k in ("ge", "gt", "le", "lt", "min_length", "max_length", "pattern")
                 if getattr(self, k) is not None]
        given += [k for k in ("strip", "lower") if getattr(self, k)]
        wrong = [k for k in given if k not in allowed]
        if wrong:
            raise ValueError(f"{', '.join(wrong)} cannot apply to type {self.type} (bounds ge/gt/le/lt: int, float, "
                             "decimal; min_length, max_length, pattern, strip, lower: str)")
        if self.choices is not None:
            kind = int if self.type == "int" else str if self.type == "str" else None
            if kind is None or any(type(c) is not kind for c in self.choices):
                raise ValueError(f"choices must all be of the field's type ({self.type}; choices apply to int and str)")
        if self.pattern is not None:
            try:
                TypeAdapter(Annotated[str, StringConstraints(pattern=self.pattern)])
            except SchemaError as exc:
                raise ValueError(f"pattern {self.pattern!r} is not a regular expression: "
                                 f"{str(exc).strip().splitlines()[-1]}") from None
        return self


class Retry(BaseModel):
    model_config = _STRICT
    attempts: int = Field(default=5, ge=1, description="tries of a batch on a transient error")
    backoff_s: float = Field(default=0.5, gt=0, description="first wait; doubled after each failure")
    max_backoff_s: float = Field(default=30, gt=0)


class Pipeline(BaseModel):
    model_config = _STRICT
    name: str = Field(pattern=r"^[A-Za-z0-9_.-]{1,100}$", description="the watermark's name in the destination")
    batch_size: int = Field(default=5000, ge=1, le=1_000_000)
    source: Source
    destination: Destination
    transform: dict[str, FieldSpec] = Field(default={}, description="destination column -> typed field; empty: "
                                            "every source column that the destination has, unvalidated")
    retry: Retry = Retry()

    @field_validator("source")
    @classmethod
    def _one_source(cls, v: Source) -> Source:
        if (v.table is None) == (v.query is None):
            raise ValueError("give source.table or source.query, one of them")
        return v

    def source_key(self) -> list[str]:
        return self.source.key or self.destination.key

    def check(self) -> None:
        d = self.destination
        if d.strategy in ("upsert", "merge") and not d.key:
            raise InputError(f"strategy {d.strategy} needs destination.key (the columns of its unique index)",
                             "add key = [\"id\"] under [destination], or use strategy = \"append\"")
        if d.strategy == "append" and self.source.lag:
            raise InputError("a lag window re-reads rows, which append would load twice",
                             "use strategy = \"upsert\" with a key, or remove lag")
        if d.strategy == "replace" and self.source.lag:
            raise InputError("strategy replace reloads the whole source on every run: a lag window means nothing "
                             "there", "remove lag")
        parse_lag(self.source.lag)


def resolve_dsn(value: str | None) -> str | None:
    """``env:VAR`` → the variable's value (a password need not be written in the pipeline file)."""
    if value is None or not value.startswith("env:"):
        return value
    var = value[4:]
    found = os.environ.get(var)
    if not found:
        raise InputError(f"the pipeline reads its DSN from ${var}, which is not set", f"export {var}=postgresql://...")
    return found


def database_at(settings: Settings, dsn: str) -> Database:
    """Another database (a pipeline's source or destination, a CDC destination) with agent19's settings (mode,
    timeouts) and no reader login of its own."""
    return Database(dataclasses.replace(settings, dsn=dsn, read_dsn=None))


def parse_pipeline(text: str, where: str = "pipeline") -> Pipeline:
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise InputError(f"{where} is not valid TOML: {exc}", "see the README's ETL section for the format") from None
    try:
        pipeline = Pipeline.model_validate(data)
    except ValidationError as exc:
        problems = "; ".join(f"{'.'.join(str(p) for p in e['loc'])}: {e['msg']}" for e in exc.errors())
        raise InputError(f"{where}: {problems}", "see the README's ETL section for the format") from None
    pipeline.check()
    return pipeline


def load_pipeline(path: str | Path) -> Pipeline:
    p = Path(path)
    try:
        text = p.read_text()
    except OSError as exc:
        raise InputError(f"cannot read the pipeline file {p}: {exc.strerror}",
                         "give the path of a .toml file") from None
    return parse_pipeline(text, str(p))


def _annotation(spec: FieldSpec) -> Any:
    base: Any = FIELD_TYPES[spec.type]
    if spec.choices is not None:
        base = Literal[tuple(spec.choices)]  # type: ignore[misc]
    constraints = {k: getattr(spec, k) for k in ("ge", "gt", "le", "lt", "min_length", "max_length", "pattern")
                   if getattr(spec, k) is not None}
    if spec.type == "str":
        constraints.update({"strip_whitespace": spec.strip, "to_lower": spec.lower})
    if constraints:
        if spec.type == "str":
            base = Annotated[base, StringConstraints(**{k: v for k, v in constraints.items()
                                                        if k in ("min_length", "max_length", "pattern",
                                                                 "strip_whitespace", "to_lower")})]
            constraints = {k: v for k, v in constraints.items() if k in ("ge", "gt", "le", "lt")}
        if constraints:
            base = Annotated[base, Field(**constraints)]
    return base if spec.required else base | None


def build_model(pipeline: Pipeline) -> type[BaseModel] | None:
    """The transform's pydantic model (None when the pipeline declares no fields)."""
    if not pipeline.transform:
        return None
    fields: dict[str, Any] = {}
    for name, spec in pipeline.transform.items():
        default = ... if spec.required else None
        fields[name] = (_annotation(spec), Field(default, validation_alias=spec.source or name))
    model_name = "Record_" + re.sub(r"\W", "_", pipeline.name)
    return create_model(model_name, __config__=ConfigDict(extra="ignore"), **fields)


def error_reason(exc: ValidationError) -> str:
    """A validation failure as text, without echoing the input values (data, not instructions)."""
    return "; ".join(f"{'.'.join(str(p) for p in e['loc']) or 'record'}: {e['msg']}" for e in exc.errors())
