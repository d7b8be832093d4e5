"""agent19.records: the boundaries read a dataclass record as they read a pydantic model."""

from __future__ import annotations

import math
import subprocess
import sys
from dataclasses import dataclass, field
from typing import Literal

import pytest
from pydantic import BaseModel, Field, ValidationError

from agent19 import records


@dataclass
class Args:
    paths: list[str] = field(default_factory=list, metadata={"description": "files to lint"})
    sql: str | None = field(default=None,
                            metadata={"description": "SQL text", "json_schema_extra": {"user_sql": "text"}})
    fail_on: Literal["error", "never"] | None = None
    count: int = field(default=3, metadata={"alias": "n"})
    name: str = field(default="x", init=False)


@dataclass
class Needs:
    table: str


class Model(BaseModel):
    paths: list[str] = Field(default=[], description="files to lint")
    value: float = 0.0


def test_dataclass_fields_read_like_a_models():
    f = records.fields(Args)
    assert list(f) == ["paths", "sql", "fail_on", "count"]  # init fields only
    assert f["paths"].description == "files to lint" and f["paths"].default_factory() == []
    assert f["paths"].annotation == list[str] and not f["paths"].is_required()
    assert f["sql"].json_schema_extra == {"user_sql": "text"} and f["sql"].default is None
    assert f["count"].alias == "n" and f["count"].default == 3
    assert records.fields(Needs)["table"].is_required()
    assert records.fields(Model) == Model.model_fields


def test_validate_checks_types_and_unknown_names():
    assert records.validate(Args, {"paths": ["a.sql"], "n": "5"}) == Args(paths=["a.sql"], count=5)
    with pytest.raises(ValidationError):
        records.validate(Args, {"fail_on": "sometimes"})
    with pytest.raises(ValidationError):
        records.validate(Needs, {})
    assert records.validate(Model, {"paths": ["x"]}).paths == ["x"]


def test_dump_and_schema_use_descriptions_and_aliases():
    a = Args(paths=["a.sql"], count=2)
    assert records.dump(a) == {"paths": ["a.sql"], "sql": None, "fail_on": None, "n": 2, "name": "x"}
    schema = records.json_schema(Args)
    assert schema["properties"]["paths"]["description"] == "files to lint"
    assert schema["properties"]["sql"]["user_sql"] == "text"
    assert "n" in schema["properties"]
    assert records.json_schema(Model) == Model.model_json_schema(by_alias=True)


def test_dump_json_writes_non_finite_numbers_as_null():
    @dataclass
    class Measured:
        seconds: float

    assert records.dump_json(Measured(math.inf), indent=None) == '{"seconds":null}'
    assert records.dump_json(Model(value=math.nan), indent=None) == '{"paths":[],"value":null}'


def test_importing_records_does_not_import_pydantic():
    code = "import sys, agent19.records; print('pydantic' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "False"
