"""agent19.records: the boundaries read a dataclass record as they read a pydantic model."""

from __future__ import annotations

import math
import subprocess
import sys
from dataclasses import dataclass, field
from typing import Annotated, Literal

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


def test_a_dataclass_given_its_declared_types_is_built_without_pydantic():
    """The CLI hands over values its parser typed already: `agent19 lint` builds its arguments without importing
    pydantic (half of its start-up), and gets what pydantic would have built."""
    code = ("import sys\nfrom dataclasses import dataclass, field\nfrom typing import Literal\n"
            "from agent19 import records\n"
            "@dataclass\nclass A:\n    paths: list[str] = field(default_factory=list)\n"
            "    fail_on: Literal['error', 'never'] | None = None\n    n: int = 3\n    style: bool = False\n"
            "a = records.validate(A, {'paths': ['x.sql'], 'fail_on': 'never', 'n': 5, 'style': True})\n"
            "print(a, 'pydantic' in sys.modules)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "A(paths=['x.sql'], fail_on='never', n=5, style=True) False"


@dataclass
class Measures:
    seconds: float = 0.0
    limit: Annotated[int, Field(ge=1)] = 1
    names: list[str] = field(default_factory=list)


def test_values_to_convert_or_bounded_go_to_pydantic():
    # 5 is no float: pydantic makes it 5.0, as for a model
    assert records.validate(Measures, {"seconds": 5}).seconds == 5.0
    assert type(records.validate(Measures, {"seconds": 5}).seconds) is float
    with pytest.raises(ValidationError, match="greater than or equal to 1"):
        records.validate(Measures, {"limit": 0})  # an int, but out of its bound
    with pytest.raises(ValidationError):
        records.validate(Measures, {"names": ["a", 1]})
    names = ["a"]
    assert records.validate(Measures, {"names": names}).names is not names  # a copy, as pydantic's
    info = records.fields(Measures)["limit"]
    assert info.annotation is int and info.metadata  # the constraint apart, as pydantic's FieldInfo has it


def test_values_and_validation_errors_without_pydantic():
    @dataclass
    class Outer:
        args: Args
        models: list[Model]

    outer = Outer(Args(paths=["a.sql"]), [Model(paths=["b"])])
    assert records.values(outer) == {
        "args": {"paths": ["a.sql"], "sql": None, "fail_on": None, "count": 3, "name": "x"},
        "models": [{"paths": ["b"], "value": 0.0}]}
    with pytest.raises(ValidationError) as err:
        records.validate(Needs, {})
    assert records.is_validation_error(err.value) and not records.is_validation_error(ValueError("x"))


def test_a_constraint_in_field_metadata_is_refused_where_it_would_go_unchecked():
    """pydantic reads ``ge`` from a dataclass field's metadata, but a CLI build of typed values skips pydantic:
    a constraint there would hold over MCP and not at the terminal. Declared so, the record is refused."""

    @dataclass
    class Rows:
        rows: int = field(default=1, metadata={"ge": 1, "description": "rows"})

    with pytest.raises(TypeError, match="declare constraints in the annotation"):
        records.fields(Rows)
