"""Declare an MCP resource once; ``server.py`` serves every declared one.

A resource is a plain function ``read(settings, **uri_parameters) -> str``. Its URI may be a
template (``agent19://handoffs/{migration_id}``): each ``{name}`` becomes a keyword argument.
Raise :class:`~agent19.errors.InputError` when there is nothing at that URI.

    @resource(uri="agent19://handoffs/{migration_id}", name="handoff", title="Handoff of a migration",
              mime_type="application/json")
    def read_handoff(settings: Settings, migration_id: str) -> str: ...

Modules in :mod:`agent19.tools` declare the resources that go with their tools.
"""

from __future__ import annotations

import inspect
import re
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import anyio
import anyio.to_thread

from agent19.config import Settings

ReadFn = Callable[..., str]


@dataclass(frozen=True)
class ResourceSpec:
    uri: str
    name: str
    title: str
    description: str
    mime_type: str
    read: ReadFn


RESOURCES: dict[str, ResourceSpec] = {}


def resource(*, uri: str, name: str, title: str, mime_type: str = "text/plain") -> Callable[[ReadFn], ReadFn]:
    """Register ``read`` as the resource at ``uri``; its docstring is the description a client shows."""

    def decorator(read: ReadFn) -> ReadFn:
        if uri in RESOURCES:
            raise ValueError(f"resource {uri!r} is declared twice")
        RESOURCES[uri] = ResourceSpec(uri=uri, name=name, title=title, description=inspect.cleandoc(read.__doc__ or ""),
                                      mime_type=mime_type, read=read)
        return read

    return decorator


def all_resources() -> list[ResourceSpec]:
    """Every declared resource (importing :mod:`agent19.tools` declares them)."""
    from agent19.tools import load_all

    load_all()  # declares the tools and their resources

    return list(RESOURCES.values())


def add_resources(server: Any, settings: Settings) -> None:
    """Serve every declared resource on an MCP server (``MCPServer.resource``)."""
    from mcp.server.mcpserver.exceptions import ResourceError

    from agent19.errors import Agent19Error

    for spec in all_resources():
        params = re.findall(r"\{(\w+)\}", spec.uri)

        def make(spec: ResourceSpec = spec) -> Callable[..., Any]:
            async def read(**values: str) -> str:
                try:
                    return await anyio.to_thread.run_sync(lambda: spec.read(settings, **values))
                except Agent19Error as exc:
                    raise ResourceError(str(exc)) from None

            return read

        fn = make()
        fn.__signature__ = inspect.Signature(  # type: ignore[attr-defined]
            [inspect.Parameter(p, inspect.Parameter.KEYWORD_ONLY, annotation=str) for p in params],
            return_annotation=str)
        fn.__annotations__ = dict.fromkeys(params, str) | {"return": str}
        fn.__name__ = spec.name.replace("-", "_")
        server.resource(spec.uri, name=spec.name, title=spec.title, description=spec.description,
                        mime_type=spec.mime_type)(fn)
