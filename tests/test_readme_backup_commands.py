"""README's own commands follow its advice (r25c L7): "Pass your DSN through DATABASE_URL rather than --dsn" (a
password on a command line is readable through ps), yet the Backups commands passed ``--dsn "$DATABASE_URL"``.
Every ``agent19`` command in a sh block takes its DSN from the environment, and the Backups section's commands
parse as written (DATABASE_URL is --dsn's default)."""

from __future__ import annotations

import re
import shlex
from pathlib import Path

from agent19.cli_parser import build_parser

README = (Path(__file__).resolve().parent.parent / "README.md").read_text()


def _commands(text: str) -> list[str]:
    out: list[str] = []
    for block in re.findall(r"```sh\n(.*?)```", text, flags=re.S):
        for cmd in block.replace("\\\n", " ").splitlines():
            if cmd.startswith("agent19 "):
                out.append(cmd)
    return out


def test_no_agent19_command_puts_an_environment_dsn_on_its_command_line():
    bad = [c for c in _commands(README) if re.search(r"--dsn\s+\"?\$", c)]
    assert bad == [], bad


def test_the_backup_commands_parse_as_written():
    section = README.split("\n## Backups\n", 1)[1].split("\n## ", 1)[0]
    commands = _commands(section)
    assert len(commands) >= 8, commands
    parser = build_parser()
    for cmd in commands:
        args = shlex.split(cmd, comments=True)[1:]
        if ">" in args:
            args = args[:args.index(">")]
        parser.parse_args(args)  # exits (SystemExit) on a flag the CLI does not have
        assert "--dsn" not in args, cmd
