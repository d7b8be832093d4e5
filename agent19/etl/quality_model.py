"""The checks file: what a data team writes to say what "good data" means, per table.

A checks file is YAML (parsed with PyYAML's safe loader) or TOML (``tomllib``)::

    tables:
      orders:                       # or schema.table; names are quoted, so "order" or "user" work
        sample: 10%                 # optional: TABLESAMPLE BERNOULLI (10), said in every result
        filter: "created_at > now() - interval '30 days'"   # optional, for every check of the table
        checks:
          - check: missing_count
            column: user_id
          - check: orphans
            columns: [user_id]
            references_table: users         # references_columns default to its primary key
          - check: sum
            column: amount
            filter: "created_at > current_date - interval '1 day'"
            warn: "<= 0 or >= 10000000"

Every check has ``warn`` and ``fail`` thresholds: conditions on the measured value that make it
warn or fail (``> 0``, ``>= 5``, ``between 1 and 10``, ``not between 0 and 100``, clauses joined
with ``or``; freshness thresholds are durations: ``> 1 day``, ``> 2h``). Kinds that count bad rows
fail on ``> 0`` unless told otherwise.
"""

from __future__ import annotations

import re
import tomllib
from datetime import date, datetime
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from agent19.errors import InputError

COLUMN_METRICS = {"row_count", "missing_count", "missing_percent", "invalid_count", "invalid_percent",
                  "freshness", "sum", "avg", "min", "max"}
"""Kinds measured by the table's single aggregate query."""

# -- thresholds -------------------------------------------------------------------------------

_DURATION_UNITS = {
    "ms": 0.001, "s": 1, "sec": 1, "secs": 1, "second": 1, "seconds": 1,
    "m": 60, "min": 60, "mins": 60, "minute": 60, "minutes": 60,
    "h": 3600, "hour": 3600, "hours": 3600, "d": 86400, "day": 86400, "days": 86400,
    "w": 604800, "week": 604800, "weeks": 604800,
}
_NUMBER = r"[-+]?(?:\d+(?:\.\d*)?|\.\d+)(?:[eE][-+]?\d+)?"
_VALUE = rf"({_NUMBER})\s*([a-z]+)?"
_COMPARE = re.compile(rf"^(<=|>=|!=|<>|=|<|>)\s*{_VALUE}$")
_BETWEEN = re.compile(rf"^(not\s+)?between\s+{_VALUE}\s+and\s+{_VALUE}$")


class Clause(BaseModel):
    op: Literal["<", "<=", ">", ">=", "=", "!=", "between", "not between"]
    values: list[float]

    def holds(self, value: float) -> bool:
        a = self.values[0]
        match self.op:
            case "<":
                return value < a
            case "<=":
                return value <= a
            case ">":
                return value > a
            case ">=":
                return value >= a
            case "=":
                return value == a
            case "!=":
                return value != a
            case "between":
                return a <= value <= self.values[1]
            case _:
                return not (a <= value <= self.values[1])


class Threshold(BaseModel):
    """A condition on the measured value; the check warns or fails when it holds."""

    text: str = Field(description="as written, e.g. '> 0' or '<= 0 or >= 10000000'")
    clauses: list[Clause]

    def holds(self, value: float) -> bool:
        return any(c.holds(value) for c in self.clauses)


def _number(text: str, unit: str | None, durations: bool, written: str) -> float:
    value = float(text)
    if unit is None:
        return value
    if not durations:
        raise InputError(f"threshold {written!r}: a unit ({unit!r}) only makes sense for freshness checks",
                         "write a plain number, e.g. '> 0'")
    if unit not in _DURATION_UNITS:
        raise InputError(f"threshold {written!r}: unknown duration unit {unit!r}",
                         "use s, min, h, d or w (or second(s), minute(s), hour(s), day(s), week(s))")
    return value * _DURATION_UNITS[unit]


def parse_threshold(written: str, *, durations: bool = False) -> Threshold:
    """``'> 0'``, ``'between 1 and 10'``, ``'<= 0 or >= 1e7'``; with ``durations``, ``'> 1 day'`` (seconds)."""
    clauses = []
    for part in re.split(r"\s+or\s+", written.strip().lower()):
        part = part.strip()
        if m := _COMPARE.match(part):
            op = "!=" if m.group(1) == "<>" else m.group(1)
            clauses.append(Clause(op=op, values=[_number(m.group(2), m.group(3), durations, written)]))
        elif m := _BETWEEN.match(part):
            low = _number(m.group(2), m.group(3), durations, written)
            high = _number(m.group(4), m.group(5), durations, written)
            clauses.append(Clause(op="not between" if m.group(1) else "between", values=[low, high]))
        else:
            example = "'> 1 day'" if durations else "'> 0'"
            raise InputError(f"threshold {written!r} is not a condition",
                             f"write e.g. {example}, '>= 5', 'between 1 and 10', 'not between 0 and 100', "
                             "or clauses joined with 'or'")
    return Threshold(text=written.strip(), clauses=clauses)


# -- checks -----------------------------------------------------------------------------------

class _Check(BaseModel):
    model_config = ConfigDict(extra="forbid")

    check: str = Field(description="the kind of check")
    name: str | None = Field(default=None, description="shown in results; default: the kind and its columns")
    filter: str | None = Field(default=None, description="SQL condition: only rows where it holds are checked")
    warn: str | None = Field(default=None, description="condition on the value that makes the check warn")
    fail: str | None = Field(default=None, description="condition on the value that makes the check fail")

    @field_validator("warn", "fail", mode="before")
    @classmethod
    def _condition_text(cls, v: Any) -> Any:
        if isinstance(v, bool) or isinstance(v, int | float):
            raise ValueError(f"{v!r} is a bare value; write a condition such as '> {v}' or '= {v}'")
        return v

    def subject(self) -> str:
        return ""

    def display_name(self) -> str:
        kind = self.check
        return self.name or (f"{kind}({self.subject()})" if self.subject() else kind)

    def thresholds(self) -> tuple[Threshold | None, Threshold | None]:
        """(warn, fail), with the kind's default fail condition when neither is given."""
        durations = self.check == "freshness"
        fail_text = self.fail if (self.fail or self.warn) else self._default_fail()
        warn = parse_threshold(self.warn, durations=durations) if self.warn else None
        fail = parse_threshold(fail_text, durations=durations) if fail_text else None
        return warn, fail

    def _default_fail(self) -> str | None:
        return "> 0"


class RowCount(_Check):
    check: Literal["row_count"]

    def _default_fail(self) -> str | None:
        return "= 0"


class Missing(_Check):
    check: Literal["missing_count", "missing_percent"]
    column: str
    missing_values: list[Any] = Field(default=[], description="values that also count as missing, e.g. ''")

    def subject(self) -> str:
        return self.column


class Invalid(_Check):
    check: Literal["invalid_count", "invalid_percent"]
    column: str
    valid_values: list[Any] | None = None
    valid_regex: str | None = None
    valid_min: int | float | datetime | date | str | None = Field(default=None, description="a number, date or text")
    valid_max: int | float | datetime | date | str | None = Field(default=None, description="a number, date or text")

    @model_validator(mode="after")
    def _some_rule(self) -> Invalid:
        if self.valid_values is None and self.valid_regex is None and self.valid_min is None and self.valid_max is None:
            raise ValueError("an invalid check needs valid_values, valid_regex, valid_min or valid_max")
        return self

    def subject(self) -> str:
        return self.column


class Freshness(_Check):
    check: Literal["freshness"]
    column: str

    def subject(self) -> str:
        return self.column

    def _default_fail(self) -> str | None:
        raise InputError(f"freshness({self.column}) needs a threshold", "add e.g. fail: '> 1 day'")


class Aggregate(_Check):
    check: Literal["sum", "avg", "min", "max"]
    column: str

    def subject(self) -> str:
        return self.column

    def _default_fail(self) -> str | None:
        raise InputError(f"{self.check}({self.column}) needs a threshold",
                         "add warn and/or fail, e.g. fail: 'not between 0 and 1000'")


def _as_list(v: Any) -> Any:
    return [v] if isinstance(v, str) else v


class Duplicates(_Check):
    check: Literal["duplicate_count"]
    columns: list[str] = Field(min_length=1)
    case_insensitive: bool = Field(default=False, description="compare lower(value): 'A@x.io' duplicates 'a@x.io'")

    @field_validator("columns", mode="before")
    @classmethod
    def _one_or_many(cls, v: Any) -> Any:
        return _as_list(v)

    def subject(self) -> str:
        return ", ".join(self.columns)


class Orphans(_Check):
    check: Literal["orphans"]
    columns: list[str] = Field(min_length=1)
    references_table: str
    references_columns: list[str] | None = Field(default=None, description="default: the referenced primary key")

    @field_validator("columns", "references_columns", mode="before")
    @classmethod
    def _one_or_many(cls, v: Any) -> Any:
        return _as_list(v)

    def subject(self) -> str:
        return ", ".join(self.columns)


class SchemaCheck(_Check):
    check: Literal["schema"]
    columns: list[str] = Field(default=[], description="columns that must exist")
    types: dict[str, str] = Field(default={}, description="column -> type as format_type() prints it, e.g. bigint")


class CustomSql(_Check):
    check: Literal["sql"]
    sql: str = Field(description="one SELECT returning the failing rows (first columns name each row)")


Check = Annotated[
    RowCount | Missing | Invalid | Freshness | Aggregate | Duplicates | Orphans | SchemaCheck | CustomSql,
    Field(discriminator="check"),
]


class TableChecks(BaseModel):
    model_config = ConfigDict(extra="forbid")

    sample: str | float | None = Field(default=None, description="percent of rows to read, e.g. '10%'")
    sample_method: Literal["bernoulli", "system"] = "bernoulli"
    filter: str | None = None
    key: list[str] | None = Field(default=None, description="columns naming failing rows (default: the primary key)")
    checks: list[Check] = Field(min_length=1)

    @field_validator("key", mode="before")
    @classmethod
    def _one_or_many(cls, v: Any) -> Any:
        return _as_list(v)

    @field_validator("sample", mode="before")
    @classmethod
    def _percent(cls, v: Any) -> Any:
        if v is None:
            return None
        text = str(v).strip().removesuffix("%").strip()
        try:
            value = float(text)
        except ValueError:
            raise ValueError(f"sample {v!r} is not a percentage; write e.g. '10%'") from None
        if not 0 < value <= 100:
            raise ValueError(f"sample {v!r} must be more than 0% and at most 100%")
        return value


class ChecksFile(BaseModel):
    model_config = ConfigDict(extra="forbid")

    tables: dict[str, TableChecks] = Field(min_length=1)


def parse_checks(text: str, source: str = "checks", fmt: str | None = None) -> ChecksFile:
    """Parse a checks file's text; ``fmt`` is 'yaml' or 'toml' (default: from ``source``'s suffix)."""
    import yaml  # here: the MCP server declares data_quality without reading any checks file

    fmt = fmt or ("toml" if source.endswith(".toml") else "yaml")
    try:
        data = tomllib.loads(text) if fmt == "toml" else yaml.safe_load(text)
    except (tomllib.TOMLDecodeError, yaml.YAMLError) as exc:
        # PyYAML's message quotes the offending line: the file may not be a checks file at all (a path given by
        # mistake, or by a model), so only the problem and where it is are said, never the file's text
        where = getattr(exc, "problem_mark", None)
        said = (f"{getattr(exc, 'problem', None) or 'syntax error'} at line {where.line + 1}, column {where.column + 1}"
                if where is not None else str(exc) if isinstance(exc, tomllib.TOMLDecodeError) else "syntax error")
        raise InputError(f"{source}: not valid {fmt.upper()}: {said}", "fix the syntax; nothing was checked") from None
    if not isinstance(data, dict) or "tables" not in data:
        raise InputError(f"{source}: expected a mapping with 'tables:' at the top",
                         "see `agent19 check --help` or examples/quality/checks.yml")
    try:
        checks = ChecksFile.model_validate(data)
    except ValidationError as exc:
        problems = "; ".join(f"{'.'.join(str(p) for p in e['loc'])}: {e['msg']}" for e in exc.errors()[:8])
        raise InputError(f"{source}: {problems}", "fix the checks file; nothing was checked") from None
    for name, table in checks.tables.items():
        for i, check in enumerate(table.checks):
            try:
                check.thresholds()  # threshold syntax errors surface before anything runs
            except InputError as exc:
                raise InputError(f"{source}: tables.{name}.checks.{i} ({check.display_name()}): {exc.message}",
                                 exc.hint) from None
    return checks


def load_checks(path: str | Path) -> ChecksFile:
    p = Path(path)
    try:
        text = p.read_text(encoding="utf-8")
    except OSError as exc:
        raise InputError(f"cannot read checks file {p}: {exc.strerror}", "give the path of a .yml/.yaml/.toml file") \
            from None
    return parse_checks(text, str(p))
