"""The tools agent19 offers. Importing this package declares them all.

To add a tool: write a module in this package with a function decorated by
:func:`agent19.tools.registry.tool`. Every module here is imported, so nothing else is needed for
it to appear in the MCP server and in the CLI.
"""

import importlib
import pkgutil

from agent19.tools.registry import REGISTRY, ToolContext, ToolSpec, all_tools, tool

for _module in sorted(m.name for m in pkgutil.iter_modules(__path__)):
    if _module != "registry" and not _module.startswith("_"):
        importlib.import_module(f"{__name__}.{_module}")

__all__ = ["REGISTRY", "ToolContext", "ToolSpec", "all_tools", "tool"]
