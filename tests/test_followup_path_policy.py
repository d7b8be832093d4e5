"""Over MCP a path argument is no file-reading oracle (hostile review: lint_migration's `config` and
plan_migration's `dry_run_result` read any file the model named and echoed parse positions of it).

Policy (agent19/tools/paths.py, README "Files an MCP client may name"): paths under the server's working
directory, the handoff directory or AGENT19_MCP_PATHS; never agent19's data directory; the CLI reads what
the person at the terminal names.
"""

from __future__ import annotations

import asyncio
import re
import subprocess
import sys
from pathlib import Path

from agent19 import records
from agent19.tools.paths import NOT_PATHS, PATH_ARGS
from agent19.tools.registry import all_tools
from tests.mcp_client import stdio_session

SECRET = "TOPSECRET-7f3a"
PATHISH = re.compile(r"path|file|dir$|^config$|^write($|_dir|_to)|output|_to$|_result$|_info$|_list$|^pipeline|"
                     r"^up$|^down$")


def test_every_path_argument_is_declared() -> None:
    specs = {s.name: s for s in all_tools()}
    for tool, fields in PATH_ARGS.items():
        assert tool in specs, tool
        for name in fields:
            assert name in records.fields(specs[tool].args), (tool, name)
    undeclared = [(s.name, n) for s in specs.values() for n in records.fields(s.args)
                  if PATHISH.search(n) and n not in PATH_ARGS.get(s.name, {}) and (s.name, n) not in NOT_PATHS
                  and n not in ("write_sample_seconds", "on_failure")]
    assert undeclared == [], "declare these in agent19/tools/paths.py (PATH_ARGS or NOT_PATHS)"


def _call_all(calls: list[tuple[str, dict]], env: dict[str, str]) -> list[tuple[bool, str]]:  # type: ignore[type-arg]
    async def run() -> list[tuple[bool, str]]:
        out = []
        async with stdio_session(env=env) as s:
            for tool, args in calls:
                r = await s.call_tool(tool, args)
                out.append((r.is_error, " ".join(c.text for c in r.content if hasattr(c, "text"))))
        return out
    return asyncio.run(run())


def test_mcp_refuses_paths_outside_the_project_and_never_echoes_content(tmp_path: Path) -> None:
    outside = tmp_path / "outside"
    outside.mkdir()
    secret = outside / "shadow"
    secret.write_text(f"root:{SECRET}:19000:0:99999:7:::\n[x]\n{{\"a\": 1}}\n")
    handoffs = tmp_path / "handoffs"
    handoffs.mkdir()
    (handoffs / "link.json").symlink_to(secret)  # inside an allowed directory, pointing out of it
    (handoffs / "broken.json").write_text(f"{{\"target_unchanged\": {SECRET}")
    written = outside / "phases"
    sql = "ALTER TABLE orders ADD COLUMN note text"
    calls: list[tuple[str, dict]] = [  # type: ignore[type-arg]
        ("lint_migration", {"sql": sql, "config": str(secret)}),
        ("lint_migration", {"paths": [str(secret)]}),
        ("lint_migration", {"paths": ["../../" + str(secret)]}),
        ("plan_migration", {"sql": sql, "dry_run_result": str(secret)}),
        ("plan_migration", {"file": str(secret)}),
        ("generate_runbook", {"sql": sql, "dry_run_result": str(handoffs / "link.json"), "handoff": False}),
        ("health_check", {"config": str(secret)}),
        ("zero_downtime_pattern", {"kind": "create_index", "table": "orders", "columns": ["note"],
                                   "write_to": str(written)}),
        # allowed (the handoff directory), but not JSON: the error names the file, shows none of it
        ("plan_migration", {"sql": sql, "dry_run_result": str(handoffs / "broken.json")}),
    ]
    results = _call_all(calls, {"AGENT19_HANDOFF_DIR": str(handoffs), "AGENT19_MCP_PATHS": ""})
    for (tool, args), (error, text) in zip(calls, results, strict=True):
        assert error, (tool, args, text)
        assert SECRET not in text and "column" not in text.lower().replace("add column", ""), (tool, text)
    for error_text in [t for _, t in results[:-1]]:
        assert "outside the directories this MCP server may use" in error_text and "AGENT19_MCP_PATHS" in error_text
    assert "broken.json is not a JSON document" in results[-1][1]
    assert not written.exists()


def test_the_operator_can_allow_a_directory_but_never_the_data_dir(tmp_path: Path) -> None:
    migration = tmp_path / "V1__note.sql"
    migration.write_text("ALTER TABLE orders ADD COLUMN note text;\n")
    data_dir = tmp_path / "state"
    data_dir.mkdir()
    (data_dir / "x.sql").write_text("SELECT 1;\n")
    results = _call_all([("lint_migration", {"paths": [str(migration)], "pg_version": 15}),
                         ("lint_migration", {"paths": [str(data_dir / "x.sql")]})],
                        {"AGENT19_MCP_PATHS": str(tmp_path), "AGENT19_DATA_DIR": str(data_dir)})
    (ok, text), (refused, why) = results
    assert not ok and "ADD COLUMN note" in text, text
    assert refused and "data directory" in why


def test_the_cli_reads_what_the_person_names(tmp_path: Path) -> None:
    migration = tmp_path / "V1__note.sql"
    migration.write_text("CREATE INDEX orders_note ON orders (note);\n")
    out = subprocess.run([sys.executable, "-m", "agent19", "lint", str(migration), "--pg-version", "15",
                          "--format", "json"], capture_output=True, text=True, timeout=120, cwd="/")
    assert out.returncode == 1 and "orders_note" in out.stdout, out.stderr
