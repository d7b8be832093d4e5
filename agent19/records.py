"""Records: the engine's results and a tool's arguments, as pydantic models or as plain dataclasses.

The engine's own records (statements, operations, lint reports) are stdlib dataclasses: a command that
only lints never imports pydantic, which was half of its start-up. pydantic stays at the boundaries —
validating what an MCP client sends, writing JSON Schemas, dumping results — and this module is where
those boundaries read a record without caring which kind it is. pydantic is imported inside the
functions that need it, never at import time.

A dataclass field says what pydantic's ``Field`` would through its metadata, which pydantic reads too::

    @dataclass
    class Args:
        paths: list[str] = field(default_factory=list, metadata={"description": "files to lint"})
        sql: str | None = field(default=None, metadata={"description": "…", "json_schema_extra": {"user_sql": "text"}})
"""

from __future__ import annotations

import dataclasses
import typing
from collections.abc import Callable
from functools import cache
from typing import TYPE_CHECKING, Any, Literal

if TYPE_CHECKING:
    from pydantic import TypeAdapter

_MISSING = dataclasses.MISSING


class FieldDoc:
    """A dataclass field described as pydantic's ``FieldInfo`` describes a model's: the attributes and the
    ``is_required()`` the CLI and the MCP server read (``annotation`` resolved, not a string)."""

    __slots__ = ("annotation", "alias", "description", "default", "default_factory", "json_schema_extra", "_required")

    def __init__(self, f: dataclasses.Field[Any], annotation: Any) -> None:
        meta = f.metadata
        self.annotation = annotation
        self.alias: str | None = meta.get("alias")
        self.description: str | None = meta.get("description")
        self.default: Any = None if f.default is _MISSING else f.default
        self.default_factory: Callable[[], Any] | None = (
            None if f.default_factory is _MISSING else f.default_factory)  # type: ignore[misc]
        self.json_schema_extra: dict[str, Any] | None = meta.get("json_schema_extra")
        self._required = f.default is _MISSING and f.default_factory is _MISSING


    def is_required(self) -> bool:
        return self._required


def is_record_class(cls: Any) -> bool:
    return isinstance(cls, type) and (dataclasses.is_dataclass(cls) or hasattr(cls, "model_fields"))


@cache
def fields(cls: type) -> dict[str, Any]:
    """``cls.model_fields`` for a pydantic model; for a dataclass, :class:`FieldDoc` s by field name (its init
    fields, in order)."""
    model_fields = getattr(cls, "model_fields", None)
    if model_fields is not None:
        return dict(model_fields)
    if not dataclasses.is_dataclass(cls):
        raise TypeError(f"{cls!r} is neither a pydantic model nor a dataclass")
    hints = typing.get_type_hints(cls)
    return {f.name: FieldDoc(f, hints.get(f.name, Any)) for f in dataclasses.fields(cls) if f.init}


@cache
def _adapter(cls: type) -> TypeAdapter[Any]:
    from pydantic import TypeAdapter

    return TypeAdapter(cls)


def validate(cls: type, data: Any) -> Any:
    """An instance of ``cls`` from ``data`` (a mapping, or an instance already), validated by pydantic: raises
    pydantic's ``ValidationError`` as ``cls.model_validate`` would."""
    if hasattr(cls, "model_validate"):
        return cls.model_validate(data)  # type: ignore[attr-defined]
    return _adapter(cls).validate_python(data)


def dump(obj: Any, *, mode: Literal["json", "python"] = "json", exclude: set[str] | None = None) -> Any:
    """``obj.model_dump(mode=…, by_alias=True)`` for a model or a dataclass (nested ones too)."""
    if hasattr(obj, "model_dump"):
        return obj.model_dump(mode=mode, by_alias=True, exclude=exclude)
    return _adapter(type(obj)).dump_python(obj, mode=mode, by_alias=True, exclude=exclude)


def dump_json(obj: Any, *, indent: int | None = 2) -> str:
    """``obj.model_dump_json(by_alias=True, indent=…)`` for a model or a dataclass: pydantic's JSON writer, which
    writes NaN and ±Infinity as null (json.dumps would write bare words that are not JSON)."""
    if hasattr(obj, "model_dump_json"):
        return obj.model_dump_json(by_alias=True, indent=indent)  # type: ignore[no-any-return]
    return _adapter(type(obj)).dump_json(obj, by_alias=True, indent=indent).decode()


def json_schema(cls: type, *, mode: Literal["validation", "serialization"] = "validation") -> dict[str, Any]:
    """``cls.model_json_schema(by_alias=True, mode=…)`` for a model or a dataclass."""
    if hasattr(cls, "model_json_schema"):
        return cls.model_json_schema(by_alias=True, mode=mode)  # type: ignore[no-any-return]
    return _adapter(cls).json_schema(by_alias=True, mode=mode)
