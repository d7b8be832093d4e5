"""`agent19 --help`, `agent19 --version`, `agent19` alone and a mistyped command answer from the index of commands
(agent19/tools/_index.py) without importing the tool modules (tests/test_startup_imports.py checks which modules
load): what they print must be what the whole CLI's parser prints, and the index what the tools declare."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

import agent19
from agent19.cli_parser import build_index_parser, build_parser
from agent19.tools._index import COMMANDS, TOOLS, index_of, tools_of
from agent19.tools.registry import all_tools


def _agent19(tmp_path: Path, *args: str) -> subprocess.CompletedProcess[str]:
    environ = {k: v for k, v in os.environ.items() if k not in ("DATABASE_URL", "AGENT19_READ_DSN")}
    environ.update(AGENT19_DATA_DIR=str(tmp_path / "data"), COLUMNS="80", PYTHONIOENCODING="utf-8")
    return subprocess.run([sys.executable, "-m", "agent19", *args], capture_output=True, text=True, cwd=tmp_path,
                          env=environ, encoding="utf-8", timeout=120)


@pytest.fixture
def whole_help(monkeypatch: pytest.MonkeyPatch) -> str:
    """The top-level help of the parser with every tool module imported, 80 columns wide as in _agent19."""
    monkeypatch.setenv("COLUMNS", "80")
    return build_parser(None).format_help()


def test_the_index_is_what_the_tools_declare() -> None:
    """Every tool module imported, every declared command: a new tool, a renamed command or a changed title (the
    summary `agent19 --help` shows) makes the index stale."""
    declared = index_of(all_tools())
    stale = {name: (COMMANDS.get(name), declared.get(name)) for name in {*COMMANDS, *declared}
             if COMMANDS.get(name) != declared.get(name)}
    assert list(COMMANDS.items()) == list(declared.items()), (
        "agent19/tools/_index.py differs from the tool declarations (command: (index, declared)): "
        f"{stale or 'the order of the commands'}; regenerate it: python -m agent19.tools._index --write")


def test_each_tools_command_is_what_the_tools_declare() -> None:
    """Messages shared by the MCP server and the CLI name a tool by its command at the CLI (agent19.tool_names)."""
    assert TOOLS == tools_of(all_tools()), "regenerate the index: python -m agent19.tools._index --write"


def test_the_top_level_help_is_the_whole_parsers(whole_help: str) -> None:
    assert "Lint a migration" in whole_help and "backup commands (agent19 backup --help)" in whole_help
    assert build_index_parser().format_help() == whole_help


@pytest.mark.parametrize("args", [("--help",), ("-h",), ("--help", "lint"), ("--dsn", "postgresql:///x", "-h")],
                         ids=" ".join)
def test_agent19_help_prints_every_command(tmp_path: Path, whole_help: str, args: tuple[str, ...]) -> None:
    """Also a --help before the command: argparse prints the top level's (it listed only lint's commands)."""
    done = _agent19(tmp_path, *args)
    assert done.returncode == 0 and done.stderr == "", done.stderr
    assert done.stdout == whole_help


def test_agent19_alone_prints_the_help_and_exits_2(tmp_path: Path, whole_help: str) -> None:
    done = _agent19(tmp_path)
    assert done.returncode == 2 and done.stderr == "", done.stderr
    assert done.stdout == whole_help


def test_agent19_version(tmp_path: Path) -> None:
    done = _agent19(tmp_path, "--version")
    assert done.returncode == 0 and done.stdout == f"agent19 {agent19.__version__}\n", done


def test_a_mistyped_command_lists_every_command(tmp_path: Path, capsys: pytest.CaptureFixture[str],
                                                whole_help: str) -> None:
    with pytest.raises(SystemExit) as stopped:
        build_parser(None).parse_args(["lnt"])
    assert stopped.value.code == 2
    whole = capsys.readouterr().err
    assert "invalid choice: 'lnt'" in whole and all(f"'{name}'" in whole for name in ("serve", *COMMANDS))
    done = _agent19(tmp_path, "lnt", "m.sql")
    assert (done.returncode, done.stdout, done.stderr) == (2, "", whole)


def test_a_command_named_still_gets_its_own_parser(tmp_path: Path) -> None:
    """The index's commands are stand-ins: naming one builds its real parser, also past options argparse reads
    (an abbreviated --lock-timeout's value is not the command), and a group's sub-commands."""
    done = _agent19(tmp_path, "--lock-t", "5s", "rules", "--format", "json")
    assert done.returncode == 0 and '"code": "A19001"' in done.stdout, done.stderr
    done = _agent19(tmp_path, "backup", "--help")
    assert done.returncode == 0 and all(c in done.stdout for c in ("verify", "status", "runbook")), done.stderr
    done = _agent19(tmp_path, "lint", "--pg-version")
    assert done.returncode == 2 and "usage: agent19 lint" in done.stderr, done.stderr
