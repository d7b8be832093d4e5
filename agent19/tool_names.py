"""How a message names one of agent19's tools: the MCP tool to a model, the command to a person at the CLI.

The engine's messages are shared by both faces ("check the name (describe_database lists tables)"): they name a
tool through :func:`tool`, which gives the MCP name unless the CLI is running the call (:func:`cli_names`, entered by
``agent19 <command>`` with the index of commands, :data:`agent19.tools._index.TOOLS`), and then the command a person
types (`` `agent19 describe` ``). A tool's argument is named the same way by :func:`argument`: ``--set`` at the CLI,
the MCP argument (`` `set` ``) to a model. Neither face is imported here: the engine may use it.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from contextvars import ContextVar

_COMMANDS: ContextVar[Mapping[str, str] | None] = ContextVar("agent19_cli_commands", default=None)


@contextmanager
def cli_names(commands: Mapping[str, str]) -> Iterator[None]:
    """Within: messages name tools by their CLI commands (``commands``: tool name → command)."""
    token = _COMMANDS.set(commands)
    try:
        yield
    finally:
        _COMMANDS.reset(token)


def tool(name: str) -> str:
    """``name`` (an MCP tool's name) as the reader of this message calls it."""
    commands = _COMMANDS.get()
    if commands is None:
        return name
    return f"`agent19 {commands.get(name, name.replace('_', '-'))}`"


def at_cli() -> bool:
    """The CLI runs this call: its reader is a person at a terminal, not a model."""
    return _COMMANDS.get() is not None


def argument(name: str, cli: str | None = None) -> str:
    """The tool argument ``name`` (its MCP name) as the reader of this message gives it: the CLI flag (``cli``, else
    ``--`` and the name with dashes) at the CLI, the argument's name to a model."""
    if at_cli():
        return cli or "--" + name.replace("_", "-")
    return f"`{name}`"
