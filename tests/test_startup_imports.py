"""What a command imports is what it needs: start-up is most of a one-file lint's time, and of the time an MCP
client waits for tools/list (tools/bench/bench_mcp.py measures both). These tests look at module presence in a
fresh interpreter, never at timings: each names the libraries and engine modules the path must not load.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).parent.parent


def _modules_after(code: str, tmp_path: Path, *, data_dir: bool = True) -> tuple[list[str], str]:
    """The modules loaded once ``code`` has run in a fresh interpreter (no DSN, no DATABASE_URL), and what it
    printed before them. ``data_dir=False``: without AGENT19_DATA_DIR, as a person runs agent19 (the per-user default
    is then the session's empty XDG_DATA_HOME, tests/conftest.py)."""
    env = {k: v for k, v in os.environ.items() if k not in ("DATABASE_URL", "AGENT19_READ_DSN", "AGENT19_DATA_DIR")}
    if data_dir:
        env["AGENT19_DATA_DIR"] = str(tmp_path / "data")  # never the person's embedded server
    out = subprocess.run([sys.executable, "-c", code + "\nprint(json.dumps(sorted(sys.modules)))"],
                         capture_output=True, text=True, check=True, cwd=ROOT, env=env).stdout
    printed, _, modules = out.rstrip("\n").rpartition("\n")
    return json.loads(modules), printed


def _cli_after(argv: list[str], tmp_path: Path, *, data_dir: bool = True) -> tuple[list[str], int, str]:
    """The modules loaded once ``agent19 <argv>`` has run in a fresh interpreter, its exit status (argparse's too:
    --help, a usage error) and its output."""
    code = ("import contextlib, io, json, sys\nfrom agent19.cli import main\n"
            "with contextlib.redirect_stdout(io.StringIO()) as text, contextlib.redirect_stderr(io.StringIO()):\n"
            "    try:\n"
            f"        rc = main({argv!r})\n"
            "    except SystemExit as stop:\n"
            "        rc = stop.code\n"
            "print(rc, json.dumps(text.getvalue()))")
    modules, printed = _modules_after(code, tmp_path, data_dir=data_dir)
    rc, _, output = printed.partition(" ")
    return modules, int(rc), json.loads(output)


def _fixes(output: str) -> list[str]:
    """The fixes of a ``--format json`` lint report."""
    return [f["fix"] for s in json.loads(output)["statements"] for f in s["findings"] if f.get("fix")]


def _loaded(modules: list[str], names: tuple[str, ...]) -> list[str]:
    """Which of ``names`` (packages or modules) are in ``modules``, with their submodules."""
    return sorted({n for n in names for m in modules if m == n or m.startswith(n + ".")})


LINT_NEVER = (
    "mcp", "starlette", "uvicorn", "anyio",  # the MCP SDK and its web stack: the CLI is not a server
    "psycopg", "psycopg_pool", "psycopg_binary", "asyncio",  # the driver (and the asyncio it brings): no DSN
    "jinja2", "sqlglot", "yaml",  # templates, the optimizer's SQL model, data-quality YAML
    "agent19.server", "agent19.db.connection", "agent19.db.embedded",  # no database is opened
    "agent19.migrate.backfill", "agent19.safety.detect", "agent19.safety.run", "agent19.safety.roles",
    "agent19.optimize", "agent19.ops", "agent19.etl", "agent19.report",
    "agent19.safety.readonly",  # the read-only checks: the gate loads them for SQL it checks; a lint's SQL is text
    "platformdirs",  # the default data directory: not looked up when AGENT19_DATA_DIR (here) or --data-dir names one
    # the catalog's models, its queries and the lock observer: read where a catalog is (the rules rank locks with
    # agent19.db.locks); the zero-downtime patterns and their models: loaded when a rule writes a fix with one
    "agent19.db.models", "agent19.db.catalog", "agent19.db.observe",
    "agent19.migrate.patterns.columns", "agent19.migrate.patterns.carry", "agent19.migrate.patterns.live",
    "agent19.migrate.patterns.model", "agent19.migrate.patterns.constraints", "agent19.migrate.patterns.indexes",
    "agent19.migrate.patterns.rename",
)


def test_a_one_statement_lint_without_a_database_imports_neither_the_driver_nor_the_sdk(tmp_path: Path) -> None:
    migration = tmp_path / "one.sql"
    migration.write_text("ALTER TABLE t ADD COLUMN c integer;\n")
    modules, rc, report = _cli_after(["lint", str(migration), "--pg-version", "15"], tmp_path)
    assert rc == 0 and "1 statements in 1 file(s): 0 error(s)" in report, report  # it did lint
    assert "agent19.migrate.lint.engine" in modules and "pglast" in modules  # the check sees the real path
    assert _loaded(modules, LINT_NEVER) == []


def test_the_default_data_directory_is_looked_up_where_it_is_read(tmp_path: Path) -> None:
    """Settings.data_dir's per-user default (platformdirs, which brings tempfile, random and shutil) is looked up
    when a command reads it, not when the settings are made: a lint, which keeps no state, never imports it; a
    command that reads the directory gets the same default as before."""
    migration = tmp_path / "one.sql"
    migration.write_text("ALTER TABLE t ADD COLUMN c integer;\n")
    modules, rc, report = _cli_after(["lint", str(migration), "--pg-version", "15"], tmp_path, data_dir=False)
    assert rc == 0 and "1 statements in 1 file(s)" in report, report  # it did lint
    assert _loaded(modules, ("platformdirs", "tempfile")) == []
    code = ("import json, sys\nfrom agent19.config import Settings, default_data_dir\n"
            "settings = Settings.load()\nbefore = 'platformdirs' in sys.modules\n"
            "print(json.dumps([before, str(settings.data_dir), str(default_data_dir())]))")
    modules, printed = _modules_after(code, tmp_path, data_dir=False)
    before, read, default = json.loads(printed)
    assert not before and read == default and "platformdirs" in modules  # looked up when read: the default
    assert Path(read).is_relative_to(os.environ["XDG_DATA_HOME"])  # the session's, never the person's (conftest)


def test_the_command_line_is_imported_with_the_collector_paused_and_runs_with_it_on(tmp_path: Path) -> None:
    """The entry point (pyproject.toml's ``agent19`` script and ``python -m agent19``) imports agent19.cli with the
    cyclic collector paused and freezes what the import made: no collection runs before the CLI is imported. The
    command itself runs with the collector on (a 5 MB lint's memory stays bounded by it)."""
    import tomllib

    scripts = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["scripts"]
    assert scripts["agent19"] == "agent19.__main__:main"
    migration = tmp_path / "one.sql"
    migration.write_text("ALTER TABLE t ADD COLUMN c integer;\n")
    code = ("import contextlib, gc, io, json, sys\nfrom agent19.__main__ import main\n"
            f"sys.argv = ['agent19', 'lint', {str(migration)!r}, '--pg-version', '15']\n"
            "early, during = [], []\n"
            "def seen(phase, info):\n"
            "    if phase == 'start':\n"
            "        cli = sys.modules.get('agent19.cli')  # there from the start of its import: whole once main is\n"
            "        (during if hasattr(cli, 'main') else early).append(info['generation'])\n"
            "gc.callbacks.append(seen)\n"
            "with contextlib.redirect_stdout(io.StringIO()) as out:\n"
            "    rc = main()\n"
            "linted = '1 statements' in out.getvalue()\n"
            "print(json.dumps([rc, early, gc.isenabled(), gc.get_freeze_count() > 0, linted]))")
    modules, printed = _modules_after(code, tmp_path)
    rc, early, enabled, frozen, linted = json.loads(printed)
    assert rc == 0 and linted and "agent19.cli" in modules
    assert early == []  # no collection while the CLI was imported
    assert enabled and frozen


def test_the_running_state_of_a_lint_compiles_no_comparison_nor_repr() -> None:
    """dataclasses writes each generated method as source and compiles it at import: a sixth of a one-statement
    lint's instructions. The states a lint and its classification change as they go (one object each, never
    compared: by identity) generate neither ``__eq__`` nor ``__repr__``."""
    from agent19.migrate.classification import state
    from agent19.migrate.lint.rules import _base

    for cls in (state.MigrationState, state.Context, _base.MigrationState, _base.StatementContext):
        assert "__eq__" not in vars(cls) and "__repr__" not in vars(cls), cls
        first, second = cls.__new__(cls), cls.__new__(cls)
        assert first == first and first != second  # identity


def test_the_lint_engine_and_its_records_run_without_pydantic(tmp_path: Path) -> None:
    """The engine's records (statements, operations, migrations, lint settings, reports) are plain dataclasses:
    pydantic, half of a one-file lint's start-up, belongs to the MCP boundary. Reading the settings from
    agent19.toml, linting a file and writing its JSON report load none of it."""
    (tmp_path / "agent19.toml").write_text('[lint]\nfail_on = "warning"\npg_version = "15"\n')
    migration = tmp_path / "one.sql"
    migration.write_text("ALTER TABLE t ADD COLUMN c integer;\n")
    code = ("import json, sys\nfrom pathlib import Path\nfrom agent19 import json_text\n"
            "from agent19.migrate.lint.config import load_config\nfrom agent19.migrate.lint.engine import lint_paths\n"
            f"config = load_config(start=Path({str(tmp_path)!r}))\n"
            f"report = lint_paths([{str(migration)!r}], config=config)\n"
            "print(json.dumps(json.loads(json_text.write(report))['summary']))")
    modules, printed = _modules_after(code, tmp_path)
    summary = json.loads(printed)
    assert (summary["statements"], summary["fail_on"], summary["pg_version"]) == (1, "warning", 150000)  # it linted
    assert "agent19.migrate.lint.engine" in modules and "agent19.migrate.layouts.files" in modules
    assert _loaded(modules, ("pydantic", "pydantic_core")) == []


@pytest.mark.parametrize(("argv", "says"), [
    (["lint", "{file}"], "1 statements in 1 file(s)"),
    (["lint", "{file}", "--format", "json"], '"statements": ['),
    (["lint", "{file}", "--format", "sarif"], '"version": "2.1.0"'),
    (["rules"], "A19001"),
    (["rules", "--format", "json"], '"code": "A19001"'),  # pydantic's JSON text, written by agent19.json_text
])
def test_lint_and_rules_never_import_pydantic(tmp_path: Path, argv: list[str], says: str) -> None:
    """pydantic's import and its first model were about half of a one-statement lint's CPU: the CLI builds lint's
    arguments, settings and records as plain dataclasses (agent19.records), and pydantic stays for the MCP server."""
    migration = tmp_path / "one.sql"
    migration.write_text("ALTER TABLE t ADD COLUMN c integer;\n")
    modules, rc, output = _cli_after([a.format(file=migration) for a in argv], tmp_path)
    assert rc == 0 and says in output, output  # it did lint (or list the rules)
    assert _loaded(modules, ("pydantic", "pydantic_core", "annotated_types")) == []


@pytest.mark.parametrize(("sql", "in_fix", "loaded", "still_not"), [
    # the pattern modules load where a rule writes its fix, not with the rules: SET NOT NULL still gets the
    # set_not_null pattern's phases (and only then loads the patterns)
    ("ALTER TABLE t ALTER COLUMN c SET NOT NULL;", ("NOT VALID", "VALIDATE CONSTRAINT"),
     ("agent19.migrate.patterns.constraints", "agent19.migrate.patterns.model"),
     ("agent19.db.models", "agent19.db.observe", "psycopg")),
])
def test_a_lint_whose_fix_needs_more_loads_it_then(tmp_path: Path, sql, in_fix, loaded, still_not) -> None:
    modules, _, output = _cli_after(["lint", "--sql", sql, "--pg-version", "15", "--format", "json"], tmp_path)
    fixes = _fixes(output)
    assert any(all(part in fix for part in in_fix) for fix in fixes), fixes
    assert all(m in modules for m in loaded), [m for m in loaded if m not in modules]
    assert _loaded(modules, still_not) == []


SERVE_NEVER = (
    "sqlglot",  # the index advisor's query model: loaded by advise_indexes / advise_workload calls
    "jinja2",  # runbook, specification and script templates: loaded when one is written
    "yaml",  # data-quality expectation files: loaded when one is read
    # engines a tool module imports where its call runs them (agent19.tools: only models at module level)
    "agent19.migrate.planning.plan", "agent19.report.build",  # the planner, the runbook's documents
    "agent19.migrate.dryrun.run", "agent19.ops.capacity.plan", "agent19.safety.policy",
    "agent19.etl.pipeline", "agent19.etl.batch", "agent19.etl.quality_run",  # the ETL and data-quality runs
    "platformdirs",  # the default data directory: not looked up when AGENT19_DATA_DIR (here) names one
)


def test_the_mcp_server_lists_every_tool_without_loading_what_only_calls_need(tmp_path: Path) -> None:
    """Building the server declares every tool (what tools/list shows) without the libraries only a call
    needs."""
    code = ("import json, sys\nfrom agent19.config import Settings\nfrom agent19.server import build_server\n"
            "from agent19.tools.registry import REGISTRY\n"
            "build_server(Settings.load())\nprint(len(REGISTRY))")
    modules, printed = _modules_after(code, tmp_path)
    assert int(printed) >= 30 and "agent19.tools.lint" in modules and "agent19.tools.advise" in modules
    assert _loaded(modules, SERVE_NEVER) == []


PYDANTIC = ("pydantic", "pydantic_core", "annotated_types")


@pytest.mark.parametrize(("sql", "in_fix"), [
    ("ALTER TABLE t ALTER COLUMN c SET NOT NULL;", "VALIDATE CONSTRAINT"),  # set_not_null's phases
    ("ALTER TABLE t ALTER COLUMN c TYPE bigint;", "agent19 backfill"),  # change_column_type: shadow column, backfill
    ("ALTER TABLE t RENAME COLUMN c TO d;", "CREATE OR REPLACE FUNCTION"),  # rename_column: the sync trigger
    ("ALTER TABLE t ADD CONSTRAINT f FOREIGN KEY (a) REFERENCES u (id);", "NOT VALID"),
    ("UPDATE t SET a = 1;", "agent19 backfill t --set"),  # the keyset backfill, in batches
    ("ALTER TABLE t ADD COLUMN c integer NOT NULL DEFAULT random();", "agent19 backfill"),  # volatile default
    ("ALTER TABLE t ADD COLUMN c integer NOT NULL;", "agent19 pattern set_not_null"),
])
def test_a_lint_whose_fix_is_a_pattern_imports_no_pydantic(tmp_path: Path, sql: str, in_fix: str) -> None:
    """A fix built from the zero-downtime patterns (their phases, steps and live-column records are dataclasses)
    keeps lint's start-up: without a database no catalog model, backfill executor, driver or pydantic is loaded
    (the keyset procedure's scripts load where a catalog knows the table's key)."""
    modules, _, output = _cli_after(["lint", "--sql", sql, "--pg-version", "15", "--format", "json"], tmp_path)
    fixes = _fixes(output)
    assert any(in_fix in fix for fix in fixes), fixes
    assert "agent19.migrate.patterns.live" in modules  # a rule looked the table up for its fix
    assert _loaded(modules, (*PYDANTIC, "psycopg", "agent19.db.models", "agent19.migrate.backfill.executor")) == []


def test_no_statement_of_the_rule_catalogue_makes_a_lint_load_pydantic(tmp_path: Path) -> None:
    """Every SQL example of docs/rules.md (each rule's bad and good forms) linted as one file: a rule that reads a
    DELETE's or UPDATE's WHERE (every_row) imported agent19.safety.detect, and with it pydantic, the catalog's
    facts and importlib.metadata — a tenth of a second, paid by any migration with an ``UPDATE … WHERE``."""
    import re

    from pglast.parser import ParseError, parse_sql_json

    blocks = re.findall(r"```sql\n(.*?)```", (ROOT / "docs" / "rules.md").read_text(), re.S)
    parsed = []
    for block in blocks:
        try:
            parse_sql_json(block)
        except ParseError:
            continue
        parsed.append(block.strip().rstrip(";") + ";")
    assert len(parsed) >= 80, len(parsed)  # the catalogue's examples, not a few of them
    assert any(re.search(r"(?is)^\s*(update|delete)\b.*\bwhere\b", b) for b in parsed)  # the kind that leaked
    migration = tmp_path / "catalogue.sql"
    migration.write_text("\n".join(parsed) + "\n")
    modules, rc, output = _cli_after(["lint", str(migration), "--pg-version", "15", "--format", "json"], tmp_path)
    summary = json.loads(output)["summary"]
    assert summary["statements"] >= len(parsed) and summary["errors"] > 0, summary  # it linted them all
    assert _loaded(modules, (*PYDANTIC, "importlib.metadata", "agent19.safety.detect", "agent19.safety.facts")) == []


TOP_LEVEL_NEVER = (*PYDANTIC, "psycopg", "agent19.optimize", "agent19.migrate.dryrun", "agent19.migrate.lint",
                   "pglast", "mcp")


@pytest.mark.parametrize(("argv", "rc", "says"), [
    (["--help"], 0, "Lint a migration"),
    (["--help", "lint"], 0, "Data-quality checks"),  # argparse prints the top level's help: every command
    ([], 2, "Data-quality checks"),  # no command: the help, exit 2
    (["--version"], 0, "agent19 "),
    (["lnt"], 2, ""),  # argparse's invalid choice (on stderr), every command listed (tests/test_cli_index.py)
], ids=lambda v: " ".join(v) if isinstance(v, list) else None)
def test_the_top_level_help_imports_no_tool_module(tmp_path: Path, argv: list[str], rc: int, says: str) -> None:
    """What names no command is answered from the index of commands (agent19/tools/_index.py): no tool module, so
    neither the driver, pydantic nor an engine (every tool module: 0.40 s of CPU where lint's --help took 0.09 s)."""
    modules, status, output = _cli_after(argv, tmp_path)
    assert status == rc and says in output, (status, output)
    assert [m for m in modules if m.startswith("agent19.tools.")] == ["agent19.tools._index", "agent19.tools.registry"]
    assert _loaded(modules, TOP_LEVEL_NEVER) == []


@pytest.mark.parametrize(("argv", "module"), [
    (["index-health", "--help"], "agent19.tools.indexes"),  # a command not named after its module
    (["--lock-t", "5s", "rules"], "agent19.tools.lint"),  # named past an (abbreviated) option's value
])
def test_a_command_imports_only_the_modules_the_index_names(tmp_path: Path, argv: list[str], module: str) -> None:
    modules, status, output = _cli_after(argv, tmp_path)
    assert status == 0 and output, output
    assert [m for m in modules if m.startswith("agent19.tools.") and m.count(".") == 2] == sorted(
        ["agent19.tools._index", "agent19.tools.registry", module])
