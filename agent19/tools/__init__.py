"""The tools agent19 offers, one module each.

To add a tool: write a module in this package with a function decorated by
:func:`agent19.tools.registry.tool`. :func:`load_all` (called by ``all_tools()``) imports every module
here, so it appears in the MCP server and in the CLI; the CLI's index of commands (:mod:`agent19.tools._index`,
regenerated with ``python -m agent19.tools._index --write``; a test says when it is due) lists it in
``agent19 --help``. Importing the package itself imports no tool: a CLI command imports only the modules the index
names for it (``agent19 lint`` starts fast), ``agent19 --help`` none. A tool module
imports at module level what its declaration needs (argument and result models, renderers); the engine code its
call runs is imported inside the function (tests/test_tool_implementation_imports.py resolves each such import).
"""

import importlib
import pkgutil


def tool_modules() -> list[str]:
    """Every module of this package that declares tools (private helpers start with ``_``)."""
    return sorted(m.name for m in pkgutil.iter_modules(__path__) if m.name != "registry" and not m.name.startswith("_"))


def load_all() -> None:
    """Declare every tool (and the resources that go with them)."""
    for module in tool_modules():
        importlib.import_module(f"{__name__}.{module}")
