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
import sys
import types
import typing
from collections.abc import Callable
from functools import cache
from typing import TYPE_CHECKING, Any, Literal

if TYPE_CHECKING:
    from pydantic import TypeAdapter

_MISSING = dataclasses.MISSING
_DOCUMENTING = frozenset({"description", "alias", "json_schema_extra", "title", "examples", "exclude"})
"""What a dataclass field's metadata may say (pydantic reads these too); constraints belong in its annotation."""


class FieldDoc:
    """A dataclass field described as pydantic's ``FieldInfo`` describes a model's: the attributes and the
    ``is_required()`` the CLI and the MCP server read (``annotation`` resolved, not a string)."""

    __slots__ = ("annotation", "metadata", "alias", "description", "default", "default_factory", "json_schema_extra",
                 "_required")

    def __init__(self, f: dataclasses.Field[Any], annotation: Any) -> None:
        meta = f.metadata
        if set(meta) - _DOCUMENTING:  # a constraint there would be pydantic's alone: the CLI's build would skip it
            raise TypeError(f"{f.name}: field metadata {sorted(set(meta) - _DOCUMENTING)} - declare constraints in "
                            "the annotation (Annotated[int, Field(ge=1)]); metadata only documents")
        # as pydantic splits ``Annotated[int, Field(ge=1)]``: the type, and its constraints in ``metadata``
        if typing.get_origin(annotation) is typing.Annotated:
            annotation, self.metadata = annotation.__origin__, list(annotation.__metadata__)
        else:
            self.metadata = []
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
    hints = typing.get_type_hints(cls, include_extras=True)
    return {f.name: FieldDoc(f, hints.get(f.name, Any)) for f in dataclasses.fields(cls) if f.init}


@cache
def _adapter(cls: type) -> TypeAdapter[Any]:
    from pydantic import TypeAdapter

    return TypeAdapter(cls)


def validate(cls: type, data: Any) -> Any:
    """An instance of ``cls`` from ``data`` (a mapping, or an instance already), validated by pydantic: raises
    pydantic's ``ValidationError`` as ``cls.model_validate`` would.

    A dataclass given values that already have their declared types (what the CLI's parser hands over:
    ``str``, ``int``, ``bool``, a ``Literal``'s value, lists of them, ``None`` for an optional one) is built
    without pydantic — pydantic would return the same instance; anything else (a value to convert, an
    unknown or missing name, a constrained field) is pydantic's to judge, with its errors."""
    if hasattr(cls, "model_validate"):
        return cls.model_validate(data)  # type: ignore[attr-defined]
    if isinstance(data, cls):
        return data
    built = _as_declared(cls, data)
    return built if built is not None else _adapter(cls).validate_python(data)


def _as_declared(cls: type, data: Any) -> Any:
    """``cls(**data)`` when every value in ``data`` has its field's declared type exactly, else None."""
    if not isinstance(data, dict) or not dataclasses.is_dataclass(cls):
        return None
    docs = fields(cls)
    names = {(doc.alias or name): name for name, doc in docs.items()}
    if set(data) - set(names) or any(doc.is_required() and (doc.alias or name) not in data
                                     for name, doc in docs.items()):
        return None
    values: dict[str, Any] = {}
    for key, value in data.items():
        doc = docs[names[key]]
        if doc.metadata or not _has_type(doc.annotation, value):
            return None
        values[names[key]] = _copied(value)
    return cls(**values)


_EXACT = (str, int, float, bool)


def _has_type(annotation: Any, value: Any) -> bool:
    """``value`` is of type ``annotation`` as it is, with nothing to convert (``5`` is no ``float``: pydantic
    makes it ``5.0``); a type this does not know is never matched (pydantic decides)."""
    origin = typing.get_origin(annotation)
    if origin is Literal:
        return any(value == a and type(value) is type(a) for a in typing.get_args(annotation))
    if origin is typing.Union or origin is types.UnionType:
        return any(_has_type(a, value) for a in typing.get_args(annotation))
    if origin is list:
        (item,) = typing.get_args(annotation) or (Any,)
        return type(value) is list and all(_has_type(item, v) for v in value)
    if annotation is type(None) or annotation is None:
        return value is None
    return annotation in _EXACT and type(value) is annotation


def _copied(value: Any) -> Any:
    return [_copied(v) for v in value] if type(value) is list else value


def values(obj: Any) -> Any:
    """A record's values as dicts and lists by field name (a model's ``model_dump()``), nested records too —
    without pydantic for a dataclass: what a size limit counts (:func:`agent19.sizes.characters`)."""
    if hasattr(obj, "model_dump"):
        return obj.model_dump()
    if dataclasses.is_dataclass(obj) and not isinstance(obj, type):
        return {f.name: values(getattr(obj, f.name)) for f in dataclasses.fields(obj)}
    if isinstance(obj, list | tuple):
        return [values(v) for v in obj]
    if isinstance(obj, dict):
        return {k: values(v) for k, v in obj.items()}
    return obj


def is_validation_error(exc: BaseException) -> bool:
    """``exc`` is pydantic's ``ValidationError`` — asked without importing pydantic: a process that never loaded
    it cannot have raised one."""
    core = sys.modules.get("pydantic_core")
    return core is not None and isinstance(exc, core.ValidationError)


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
