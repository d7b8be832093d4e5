"""The engine's modules import each other without cycles, counting imports inside functions too: a cycle hidden
behind a local import breaks start-up as soon as someone moves the import (annotation-only imports under
TYPE_CHECKING do not count)."""

from __future__ import annotations

import ast
from pathlib import Path

ROOT = Path(__file__).parent.parent / "agent19"
# Deliberate call-backs, each a function-level import of the module that called in. To remove: pass the callable.
CALLBACKS = {
    ("agent19.safety.execution", "agent19.safety.protocol"),  # the confirmed execution builds the Confirmation
    ("agent19.safety.page", "agent19.safety.protocol"),  # the loopback page approves through the protocol
}


def _imports(tree: ast.AST) -> list[ast.Import | ast.ImportFrom]:
    """Every import in ``tree`` except those under ``if TYPE_CHECKING:``."""
    found: list[ast.Import | ast.ImportFrom] = []
    for node in ast.iter_child_nodes(tree):
        if isinstance(node, ast.If) and "TYPE_CHECKING" in ast.unparse(node.test):
            found += [n for child in node.orelse for n in _imports(ast.Module(body=[child], type_ignores=[]))]
            continue
        if isinstance(node, ast.Import | ast.ImportFrom):
            found.append(node)
        found += _imports(node)
    return found


def _graph() -> dict[str, set[str]]:
    files = {".".join(f.relative_to(ROOT.parent).with_suffix("").parts).removesuffix(".__init__"): f
             for f in ROOT.rglob("*.py")}
    graph: dict[str, set[str]] = {}
    for name, f in files.items():
        deps: set[str] = set()
        for node in _imports(ast.parse(f.read_text())):
            if isinstance(node, ast.ImportFrom) and node.module and node.module.startswith("agent19"):
                subs = {f"{node.module}.{a.name}" for a in node.names} & files.keys()
                # `from agent19.safety import kinds` imports the submodule; the package only when a name is its own
                deps |= subs or {node.module}
                if len(subs) < len(node.names):
                    deps.add(node.module)
            elif isinstance(node, ast.Import):
                deps |= {a.name for a in node.names if a.name.startswith("agent19")}
        graph[name] = {d for d in deps if d in files and d != name and not name.startswith(d + ".")
                       and (name, d) not in CALLBACKS}
    return graph


def test_no_import_cycles() -> None:
    graph = _graph()
    cycles: list[list[str]] = []
    state: dict[str, int] = {}

    def visit(node: str, path: list[str]) -> None:
        state[node] = 1
        path.append(node)
        for dep in sorted(graph[node]):
            if state.get(dep) == 1:
                cycles.append(path[path.index(dep):] + [dep])
            elif dep not in state:
                visit(dep, path)
        path.pop()
        state[node] = 2

    for module in sorted(graph):
        if module not in state:
            visit(module, [])
    assert not cycles, "import cycles:\n" + "\n".join(" -> ".join(c) for c in cycles)


ENGINE = ("agent19.db", "agent19.migrate", "agent19.optimize", "agent19.safety", "agent19.report", "agent19.ops",
          "agent19.etl")
# The faces: MCP, HTTP and the CLI. The engine never imports them, not even inside a function.
FACES = ("mcp", "starlette", "uvicorn", "agent19.server", "agent19.cli", "agent19.cli_parser", "agent19.tools",
         "agent19.resources", "agent19.responses", "agent19.http_auth", "agent19.prompts_loader", "tests", "tools")


def test_the_engine_imports_no_face() -> None:
    """The engine (db, migrate, optimize, safety, report, ops, etl) is a library: no module of it imports the MCP SDK,
    the HTTP stack, the CLI, the tool registry or test support, at module level or in a function."""
    offences: list[str] = []
    for f in ROOT.rglob("*.py"):
        name = ".".join(f.relative_to(ROOT.parent).with_suffix("").parts).removesuffix(".__init__")
        if not name.startswith(ENGINE):
            continue
        for node in _imports(ast.parse(f.read_text())):
            targets = [node.module or ""] if isinstance(node, ast.ImportFrom) else [a.name for a in node.names]
            offences += [f"{name}:{node.lineno} imports {t}" for t in targets
                         if any(t == face or t.startswith(face + ".") for face in FACES)]
    assert len(list(ROOT.glob("migrate/*.py"))) <= 3, "migrate/ holds packages named for their job, not flat modules"
    assert [p.name for p in ROOT.glob("ops/*.py")] == ["__init__.py"], "ops/ holds one package per job"
    assert not offences, "\n".join(offences)


def test_test_support_does_not_ship_in_the_package() -> None:
    """Throwaway servers for tests, benchmarks and tools/pg-local live in tools/, not in the installed package: no
    module of agent19 starts one, and none imports tools/ or tests/."""
    assert not list(ROOT.rglob("throwaway.py"))
    offences = []
    for f in ROOT.rglob("*.py"):
        for node in _imports(ast.parse(f.read_text())):
            targets = [node.module or ""] if isinstance(node, ast.ImportFrom) else [a.name for a in node.names]
            offences += [f"{f.relative_to(ROOT.parent)}:{node.lineno} imports {t}" for t in targets
                         if t.split(".")[0] in ("tests", "tools")]
    assert not offences, offences
