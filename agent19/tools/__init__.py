"""The tools agent19 offers. Importing this package declares them all.

To add a tool: write a module here with a function decorated by
:func:`agent19.tools.registry.tool`, and import it below. Nothing else is needed for it to
appear in the MCP server and in the CLI.
"""

from agent19.tools import describe, info  # noqa: F401
from agent19.tools.registry import REGISTRY, ToolContext, ToolSpec, all_tools, tool

__all__ = ["REGISTRY", "ToolContext", "ToolSpec", "all_tools", "tool"]
