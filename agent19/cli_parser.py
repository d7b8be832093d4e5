"""The command line's parsers, derived from the tool declarations (:mod:`agent19.tools`): the whole CLI
(:func:`build_parser`), one command's (``agent19 lint`` builds lint's alone), and the top-level parser from the index
of commands (:func:`build_index_parser`: ``agent19 --help`` imports no tool module). :mod:`agent19.cli` runs them."""

from __future__ import annotations

import argparse
import sys
import types
import typing
from typing import Any, Literal

import agent19
from agent19 import records
from agent19.cli_output import HELP, write
from agent19.config import AccessMode
from agent19.tools.registry import ToolSpec, all_tools, tools_of

DESCRIPTION = """\
agent19 — a PostgreSQL database engineer for LLM assistants and people.

It plans and lints migrations, proves them on a real server, explains queries, and guards
destructive statements. Run `agent19 serve` for MCP clients, or use the commands below.

Without --dsn (or DATABASE_URL) agent19 starts its own embedded PostgreSQL in a per-user data
directory and reuses it next time."""

EPILOG = """\
examples:
  agent19 info                                   which server, which mode, which features
  agent19 describe --dsn postgresql://app@localhost/shop
  agent19 describe orders --format json          one table, as JSON
  agent19 serve                                  MCP over stdio (for Claude Desktop, VS Code, …)
  agent19 serve --http --port 8019               MCP over streamable HTTP on 127.0.0.1

exit status: 0 success, 1 the command found problems (e.g. lint errors), 2 unusable input or
configuration, 3 the database could not be reached, 130 interrupted (Ctrl-C)."""


def _common_options(parser: argparse.ArgumentParser, suppress: bool) -> None:
    default = argparse.SUPPRESS if suppress else None
    g = parser.add_argument_group("connection and safety")
    g.add_argument("--dsn", default=default, help="PostgreSQL DSN or URI (env DATABASE_URL); "
                   "without one, the embedded server is used")
    g.add_argument("--read-dsn", default=default, help="DSN of a least-privilege login that user SQL reads run as "
                   "(env AGENT19_READ_DSN; `agent19 setup-role` prints the SQL that creates it)")
    g.add_argument("--allow-privileged-reads", action="store_const", const=True, default=default,
                   help="let user SQL reads run as a superuser or privileged login, and a dry run as one run in "
                   "a database where less privileged roles own objects (their code may run with its powers) (env "
                   "AGENT19_ALLOW_PRIVILEGED_READS=1); risk: a view, function or cast can then reach server files, "
                   "programs and other sessions")
    g.add_argument("--allow-unreadable-code", action="store_const", const=True, default=default,
                   help="let a dry run run on the target code agent19 cannot read: SQL built at run time (EXECUTE), "
                   "functions in other languages (env AGENT19_ALLOW_UNREADABLE_CODE=1); default: reported as not "
                   "tested; risk: what that code does outside the rolled-back transaction is not prevented")
    g.add_argument("--mode", default=default, choices=[m.value for m in AccessMode],
                   help="access mode (env AGENT19_MODE; default read-only): read-only only reads; "
                   "dry-run may run statements in transactions that are always rolled back; "
                   "execute may apply changes")
    g.add_argument("--data-dir", default=default, help="where the embedded server and agent19's state live "
                   "(env AGENT19_DATA_DIR)")
    g.add_argument("--handoff-dir", default=default, help="where handoff artifacts are written "
                   "(env AGENT19_HANDOFF_DIR; default ./handoffs)")
    g.add_argument("--statement-timeout", default=default, help="per statement, e.g. 30s (default 30s)")
    g.add_argument("--lock-timeout", default=default, help="waiting for a lock, e.g. 5s (default 5s)")
    g.add_argument("--allow-model-confirmation", action="store_const", const=True, default=default,
                   help="accept confirmation phrases passed as arguments (env AGENT19_ALLOW_MODEL_CONFIRMATION=1): "
                   "for pipelines whose approver is a program; risk: whoever calls the tool can confirm")
    g.add_argument("-v", "--verbose", action="store_true", default=argparse.SUPPRESS if suppress else False,
                   help="log what agent19 does to stderr")


def _unwrap_optional(annotation: Any) -> Any:
    """The type a command-line flag takes: X for ``X | None``; the list for a union with a list (MCP clients
    may send ``list[str] | str`` or ``list[str] | dict`` as the other shape, a flag takes the list)."""
    if typing.get_origin(annotation) in (typing.Union, types.UnionType):
        args = [a for a in typing.get_args(annotation) if a is not type(None)]
        if len(args) == 1:
            return args[0]
        lists = [a for a in args if typing.get_origin(a) is list]
        if lists:
            return lists[0]
    return annotation


def _add_field(parser: argparse.ArgumentParser, name: str, info: Any, positional: bool) -> None:
    extra = info.json_schema_extra if isinstance(info.json_schema_extra, dict) else {}
    flag = str(extra.get("cli") or name.replace("_", "-"))  # Field(json_schema_extra={"cli": "write"}) → --write
    annotation = _unwrap_optional(info.annotation)
    origin = typing.get_origin(annotation)
    kwargs: dict[str, Any] = {"help": info.description or ""}
    if origin is Literal:
        kwargs["choices"] = list(typing.get_args(annotation))
    elif annotation is int:
        kwargs["type"] = int
    elif annotation is float:
        kwargs["type"] = float
    if origin is list:
        kwargs["nargs"] = "+" if info.is_required() else "*"
    if positional:
        if not info.is_required() and origin is not list:
            kwargs["nargs"] = "?"
        parser.add_argument(name, metavar=flag.upper(), **kwargs)
        return
    if annotation is bool:
        parser.add_argument(f"--{flag}", action=argparse.BooleanOptionalAction,
                            default=info.default, help=kwargs["help"])
        return
    if not info.is_required() and info.default is not None and "nargs" not in kwargs:
        kwargs["help"] += f" (default: {info.default})"
    parser.add_argument(f"--{flag}", dest=name, required=info.is_required(), **kwargs)


def _add_tool_command(sub: Any, spec: ToolSpec[Any, Any], common: argparse.ArgumentParser,
                      name: str | None = None) -> argparse.ArgumentParser:
    first_line = spec.description.split("\n\n")[0].replace("\n", " ")
    epilog = "examples:\n" + "\n".join(f"  {e}" for e in spec.examples) if spec.examples else None
    if spec.mode is not AccessMode.READ_ONLY:
        epilog = (epilog + "\n\n" if epilog else "") + f"needs --mode {spec.mode.value} or stronger."
    parser = sub.add_parser(
        name or spec.command, help=spec.title, description=spec.description, epilog=epilog, parents=[common],
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.set_defaults(spec=spec, summary=first_line)
    for field_name, info in records.fields(spec.args).items():
        name = info.alias or field_name
        _add_field(parser, name, info, positional=name in spec.positional)
    parser.add_argument("--format", choices=list(dict.fromkeys(["text", "json", *spec.formats])), default="text",
                        help="output format (default text)")
    return parser


class _Parser(argparse.ArgumentParser):
    """argparse's parser (its sub-commands' too), its help and --version on stdout written whatever the output's
    encoding (ASCII stand-ins, :data:`agent19.cli_output.HELP`) and flushed: what stops it (a full disk, a reader
    gone) is main's to say, as for any output, not a traceback. No stdout at all (``>&-``): argparse's own way."""

    def _print_message(self, message: str, file: Any = None) -> None:
        if message and file is not None and file is sys.stdout:
            write(message, HELP, flush=True)
        else:
            super()._print_message(message, file)


SERVE_HELP = "run the MCP server (stdio, or --http)"


def _top_level(parser_class: Any = None) -> tuple[argparse.ArgumentParser, Any]:
    """The top-level parser (what ``agent19 --help`` says around the commands) and its commands' sub-parsers action
    (each command a ``parser_class``: by default a :class:`_Parser`)."""
    parser = _Parser(
        prog="agent19", description=DESCRIPTION, epilog=EPILOG, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--version", action="version", version=f"agent19 {agent19.__version__}")
    _common_options(parser, suppress=False)
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", parser_class=parser_class or _Parser)
    return parser, sub


class CommandNamed(Exception):
    """argparse chose a command of :func:`build_index_parser`'s: that command's own parser is to parse the line."""

    def __init__(self, command: str) -> None:
        super().__init__(command)
        self.command = command


class _CommandStub:
    """A command in :func:`build_index_parser`: argparse lists it (--help, a mistyped command's choices) from its
    summary alone; choosing it, to parse the words after it, raises :class:`CommandNamed` instead."""

    def __init__(self, command: str, **_: Any) -> None:
        self.command = command

    def parse_known_args(self, args: Any = None, namespace: Any = None) -> Any:
        raise CommandNamed(self.command)


def build_index_parser() -> argparse.ArgumentParser:
    """The top-level parser from the index of commands (:data:`agent19.tools._index.COMMANDS`), importing no tool
    module: ``agent19 --help`` (the text :func:`build_parser` prints), --version, ``agent19`` alone and a mistyped
    command end here; a command named raises :class:`CommandNamed` (main then builds its parser)."""
    from agent19.tools._index import COMMANDS

    parser, sub = _top_level(_CommandStub)
    sub.add_parser("serve", help=SERVE_HELP, command="serve")
    for name, (summary, _modules) in COMMANDS.items():
        sub.add_parser(name, help=summary, command=name)
    return parser


def tools_for(command: str) -> list[ToolSpec[Any, Any]]:
    """The tools of a top-level command: those of the modules the index names for it (``agent19 rules`` imports
    tools/lint.py only); none for ``agent19 serve`` (the server declares the tools itself)."""
    from agent19.tools._index import COMMANDS

    return [] if command == "serve" else [spec for module in COMMANDS[command][1] for spec in tools_of(module)]


def build_parser(specs: list[ToolSpec[Any, Any]] | None = None) -> argparse.ArgumentParser:
    """The whole CLI, or (``specs``) only the commands of these tools: ``agent19 --help`` lists every command."""
    from agent19.tools._index import group_summary

    parser, sub = _top_level()
    common = argparse.ArgumentParser(add_help=False)  # every command's connection and safety options
    _common_options(common, suppress=True)
    serve = sub.add_parser(
        "serve", help=SERVE_HELP, parents=[common],
        description="Run agent19 as an MCP server. stdio by default (the client starts this command); "
        "--http serves streamable HTTP at http://HOST:PORT/mcp.",
    )
    serve.add_argument("--http", action="store_true", help="serve streamable HTTP instead of stdio")
    serve.add_argument("--host", default="127.0.0.1", help="HTTP address (default 127.0.0.1, loopback only)")
    serve.add_argument("--port", type=int, default=8019, help="HTTP port (default 8019)")
    serve.add_argument("--token-file", metavar="PATH", help="HTTP: require `Authorization: Bearer <token>` with the "
                       "token on this file's first line (chmod 600); or set AGENT19_HTTP_TOKEN. Required for any "
                       "--host beyond loopback (see also AGENT19_OAUTH_ISSUER / AGENT19_OAUTH_JWKS_URL)")
    groups: dict[str, Any] = {}
    leaves: dict[str, argparse.ArgumentParser] = {}
    for spec in all_tools() if specs is None else specs:
        group, _, leaf = spec.command.partition(" ")
        if not leaf:
            if group in groups:
                raise RuntimeError(f"tool {spec.name}: declare `{group}` before the `{group} …` commands")
            leaves[group] = _add_tool_command(sub, spec, common)
            continue
        if group not in groups:  # cli="backup verify": a command group, `agent19 backup --help` lists it
            # a group may also be a command itself (`agent19 capacity` and `agent19 capacity sample`)
            parent = leaves.get(group) or sub.add_parser(group, help=group_summary(group))
            groups[group] = parent.add_subparsers(dest=f"{group}_command", metavar="COMMAND",
                                                  required=group not in leaves)
        _add_tool_command(groups[group], spec, common, name=leaf)
    return parser
