"""Tool modules import their engine code where a call needs it (inside the function), so that listing the tools
does not load every engine. Such an import runs only when the tool is called: a renamed or removed name would then
fail on a user's first call, not at start-up. This walks the registry and resolves every import written inside a
function of each tool's module (and of the helpers in agent19.tools), the way a call would, without a database.
"""

from __future__ import annotations

import ast
import importlib
import importlib.util
import pkgutil
from pathlib import Path

import pytest

import agent19.tools
from agent19.tools.registry import all_tools


def _deferred_imports(module: str) -> list[tuple[str, int, str, str | None]]:
    """(function, line, module, name or None for ``import module``) of each import inside a function of ``module``."""
    spec = importlib.util.find_spec(module)
    assert spec is not None and spec.origin is not None, module
    tree = ast.parse(Path(spec.origin).read_text(encoding="utf-8"))
    found: list[tuple[str, int, str, str | None]] = []
    for fn in ast.walk(tree):
        if not isinstance(fn, ast.FunctionDef | ast.AsyncFunctionDef):
            continue
        for node in ast.walk(fn):
            if isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
                found += [(fn.name, node.lineno, node.module, a.name) for a in node.names]
            elif isinstance(node, ast.Import):
                found += [(fn.name, node.lineno, a.name, None) for a in node.names]
    return found


def _modules() -> list[str]:
    """Every module that declares a tool (from the registry), and the private helpers tools share."""
    declared = {spec.module for spec in all_tools()}
    helpers = {f"agent19.tools.{m.name}" for m in pkgutil.iter_modules(agent19.tools.__path__)
               if m.name.startswith("_")}
    return sorted(declared | helpers)


def test_the_registry_walk_sees_the_deferred_imports() -> None:
    """The check below looks at something: the lint tool's engine is imported where lint_migration runs."""
    imports = _deferred_imports("agent19.tools.lint")
    assert ("lint_migration", "agent19.migrate.lint.engine", "lint") in {(f, m, n) for f, _, m, n in imports}
    assert len(_modules()) >= 20


@pytest.mark.parametrize("module", _modules())
def test_every_import_a_tool_defers_to_its_call_resolves(module: str) -> None:
    broken = []
    for function, line, target, name in _deferred_imports(module):
        try:
            imported = importlib.import_module(target)
            if name is not None and not hasattr(imported, name):
                importlib.import_module(f"{target}.{name}")  # ``from package import submodule``
        except ImportError as exc:
            broken.append(f"{module}:{line} in {function}(): from {target} import {name}: {exc}")
    assert broken == []
