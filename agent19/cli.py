"""The command-line adapter: ``agent19 serve`` plus one command per declared tool.

Commands and their flags are derived from the tool declarations (:mod:`agent19.tools`), so the
CLI and the MCP server always offer the same operations with the same arguments.
"""

from __future__ import annotations

import argparse
import gc
import logging
import os
import sys
import types
import typing
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any, Literal

import agent19
from agent19 import records
from agent19.cli_output import HELP, discard_output, print_parts, write
from agent19.config import AccessMode, Settings
from agent19.errors import Agent19Error, postgres_error_text
from agent19.textsafe import visible
from agent19.tools.registry import ToolContext, ToolSpec, all_tools, tools_of

if TYPE_CHECKING:  # a tool whose records are dataclasses runs without pydantic (agent19.records)
    from pydantic import BaseModel

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
configuration, 3 the database could not be reached."""


def _common_options(parser: argparse.ArgumentParser, suppress: bool) -> None:
    default = argparse.SUPPRESS if suppress else None
    g = parser.add_argument_group("connection and safety")
    g.add_argument("--dsn", default=default, help="PostgreSQL DSN or URI (env DATABASE_URL); "
                   "without one, the embedded server is used")
    g.add_argument("--read-dsn", default=default, help="DSN of a least-privilege login that user SQL reads run as "
                   "(env AGENT19_READ_DSN; `agent19 setup-role` prints the SQL that creates it)")
    g.add_argument("--allow-privileged-reads", action="store_const", const=True, default=default,
                   help="let user SQL reads run as a superuser or privileged login (env "
                   "AGENT19_ALLOW_PRIVILEGED_READS=1); risk: a view, function or cast can then reach server files, "
                   "programs and other sessions")
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


_VALUED = {"--dsn", "--read-dsn", "--mode", "--data-dir", "--handoff-dir", "--statement-timeout", "--lock-timeout"}
"""Global options that take a value (the next word is not the command)."""


def _only_tools_for(argv: Sequence[str]) -> list[ToolSpec[Any, Any]] | None:
    """The tools of the command in ``argv`` when its module is named after it (``agent19 lint`` → tools/lint.py) or
    listed in :data:`agent19.tools.COMMAND_MODULES`, so that a command imports only its own module; none for
    ``agent19 serve`` (the server declares the tools itself: no parser for the other commands is built); None (every
    tool) otherwise."""
    from agent19.tools import COMMAND_MODULES, tool_modules

    words = iter(argv)
    for word in words:
        if word in _VALUED:
            next(words, None)
        elif not word.startswith("-"):
            if word == "serve":
                return []
            module = COMMAND_MODULES.get(word, word.replace("-", "_"))
            if module not in tool_modules():
                return None
            specs = tools_of(module)
            return specs if any(s.command.partition(" ")[0] == word for s in specs) else None
    return None


class _Parser(argparse.ArgumentParser):
    """argparse's parser (its sub-commands' too), its help and --version on stdout written whatever the output's
    encoding (ASCII stand-ins, :data:`agent19.cli_output.HELP`) and flushed: what stops it (a full disk, a reader
    gone) is main's to say, as for any output, not a traceback. No stdout at all (``>&-``): argparse's own way."""

    def _print_message(self, message: str, file: Any = None) -> None:
        if message and file is not None and file is sys.stdout:
            write(message, HELP, flush=True)
        else:
            super()._print_message(message, file)


def build_parser(specs: list[ToolSpec[Any, Any]] | None = None) -> argparse.ArgumentParser:
    """The whole CLI, or (``specs``) only the commands of these tools: ``agent19 --help`` lists every command."""
    common = argparse.ArgumentParser(add_help=False)
    _common_options(common, suppress=True)
    parser = _Parser(
        prog="agent19", description=DESCRIPTION, epilog=EPILOG, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--version", action="version", version=f"agent19 {agent19.__version__}")
    _common_options(parser, suppress=False)
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    serve = sub.add_parser(
        "serve", help="run the MCP server (stdio, or --http)", parents=[common],
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
            parent = leaves.get(group) or sub.add_parser(group, help=f"{group} commands (agent19 {group} --help)")
            groups[group] = parent.add_subparsers(dest=f"{group}_command", metavar="COMMAND",
                                                  required=group not in leaves)
        _add_tool_command(groups[group], spec, common, name=leaf)
    return parser


def _settings(ns: argparse.Namespace) -> Settings:
    return Settings.load(
        dsn=ns.dsn, mode=ns.mode, data_dir=ns.data_dir, handoff_dir=ns.handoff_dir,
        statement_timeout=ns.statement_timeout, lock_timeout=ns.lock_timeout,
        allow_model_confirmation=getattr(ns, "allow_model_confirmation", None),
        read_dsn=getattr(ns, "read_dsn", None), allow_privileged_reads=getattr(ns, "allow_privileged_reads", None),
    )


def _ask_terminal(message: str, schema: type[BaseModel]) -> BaseModel | None:
    """Ask the person at the terminal for each field of ``schema``; None when they give nothing."""
    print(message, file=sys.stderr)
    values = {}
    for name, info in records.fields(schema).items():
        try:
            answer = input(f"{info.description or name}: ")
        except EOFError:
            return None
        if not answer.strip():
            return None
        values[name] = answer
    try:
        return records.validate(schema, values)  # type: ignore[no-any-return]
    except Exception as exc:
        if records.is_validation_error(exc):
            return None
        raise


_ask_terminal.channel = "terminal"  # type: ignore[attr-defined]  # the audit log names who confirmed


class _ProgressLine:
    """One progress line on stderr, rewritten in place; ended with a newline when the work ends."""

    def __init__(self) -> None:
        self.shown = False

    def __call__(self, done: float, total: float | None, message: str | None) -> None:
        share = f" {done / total:.0%}" if total else ""
        # the message may name tables or values from the database: only agent19's own escape rewrites the line
        print(f"\r\033[Kagent19:{share} {visible(message or '')}".rstrip(), end="", file=sys.stderr, flush=True)
        self.shown = True

    def end(self) -> None:
        if self.shown:
            print(file=sys.stderr)


def _run_tool(spec: ToolSpec[Any, Any], ns: argparse.Namespace, settings: Settings) -> int:
    values = {
        (info.alias or name): getattr(ns, info.alias or name)
        for name, info in records.fields(spec.args).items()
        if getattr(ns, info.alias or name, None) is not None
    }
    args = records.validate(spec.args, values)  # the parser typed them: a dataclass is built without pydantic
    progress = _ProgressLine()
    ctx = ToolContext(settings, progress=progress if sys.stderr.isatty() else None,
                      elicit=_ask_terminal if sys.stdin.isatty() and sys.stderr.isatty() else None, streaming=True)
    try:
        result = spec.run(ctx, args)
    except Agent19Error as exc:  # stopped before it had a result: a format that can say so still writes a document
        if ns.format in spec.error_formats:
            try:
                print_parts(spec.error_formats[ns.format](exc), ns.format)  # raises exc after the document
            except Agent19Error as unwritten:
                if unwritten is not exc:  # the document could not be written (a full disk): said, then exc itself
                    print(f"agent19: error: {unwritten}", file=sys.stderr)
        raise
    finally:
        progress.end()
        if "db" in ctx.__dict__:  # opened (ToolContext.db is a cached property): `agent19 lint` never opens one
            ctx.db.close()
    print_parts(spec.render_parts(result, ns.format), ns.format)
    return spec.exit_code(result) if spec.exit_code else 0


def _swallowed(ns: argparse.Namespace) -> str | None:
    """A list option written before the positional arguments takes them as its own values
    (`lint --assume x file.sql`): say so instead of running without the files."""
    spec = getattr(ns, "spec", None)
    if spec is None or not any(getattr(ns, p, None) in (None, []) for p in spec.positional):
        return None
    for name, info in records.fields(spec.args).items():
        values = getattr(ns, info.alias or name, None)
        if name in spec.positional or not isinstance(values, list):
            continue
        paths = [v for v in values if isinstance(v, str) and os.path.exists(v)]
        if paths:
            extra = info.json_schema_extra if isinstance(info.json_schema_extra, dict) else {}
            flag = "--" + str(extra.get("cli") or (info.alias or name).replace("_", "-"))
            return (f"{flag} took {paths[0]!r} as one of its values (a list option takes every value after it): "
                    f"put {flag} after the {' / '.join(p.upper() for p in spec.positional)} argument(s), or end its "
                    "values with --")
    return None


_FROZEN = False


def _startup_parser(argv: Sequence[str], *, freeze: bool) -> argparse.ArgumentParser:
    """The parser, its command's modules imported with the cyclic collector paused; then (once per process) what
    start-up created — classes, functions, schemas, kept until exit — is frozen out of the collector's generations:
    the command's collections then scan its own objects, not every import again (about 6 % of a one-statement
    lint's instructions; tools/bench/bench_mcp.py measures start-up). Only as the process's own command
    (``freeze``): a program calling :func:`main` keeps its objects collectable."""
    global _FROZEN
    paused = gc.isenabled()
    gc.disable()
    try:
        parser = build_parser(_only_tools_for(argv))
    finally:
        if paused:
            gc.enable()
    if freeze and not _FROZEN:
        gc.freeze()
        _FROZEN = True
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = _startup_parser(sys.argv[1:] if argv is None else argv, freeze=argv is None)
    dsn = None
    try:
        ns = parser.parse_args(argv)  # --help writes its output here: what stops it is said below
        if (swallowed := _swallowed(ns)) is not None:
            parser.error(swallowed)
        logging.basicConfig(level=logging.INFO if ns.verbose else logging.WARNING, stream=sys.stderr,
                            format="agent19: %(message)s")
        if ns.command is None:
            parser.print_help()
            return 2
        dsn = ns.dsn
        settings = _settings(ns)
        if ns.command == "serve":
            from agent19.server import serve

            serve(settings, http=ns.http, host=ns.host, port=ns.port, token_file=ns.token_file)
            return 0
        return _run_tool(ns.spec, ns, settings)
    except Agent19Error as exc:
        from agent19.db.redact import redact_text

        print(f"agent19: error: {redact_text(str(exc), dsn)}", file=sys.stderr)
        from agent19.errors import DatabaseUnavailable

        return 3 if isinstance(exc, DatabaseUnavailable) else exc.exit_code
    except BrokenPipeError:  # `agent19 … | head`: the reader has what it wanted; no traceback
        discard_output()  # the final flush must not fail again
        return 141  # as a program killed by SIGPIPE
    except KeyboardInterrupt:
        print("agent19: interrupted", file=sys.stderr)
        return 130
    except RecursionError:  # a statement's tree deeper than some step can walk (reading it says where: parse.too_deep)
        print("agent19: error: a statement is nested too deeply for agent19 to read (Python's recursion limit) — "
              "split the expression (e.g. a long chain of + or AND into parts), or check that statement by hand",
              file=sys.stderr)
        return 2
    except Exception as exc:
        if records.is_validation_error(exc):  # pydantic's, when it judged the arguments (or settings of a tool)
            print(f"agent19: error: invalid arguments: {exc}", file=sys.stderr)
            return 2
        psycopg = sys.modules.get("psycopg")  # loaded by any command that reached a database
        if psycopg is None or not isinstance(exc, psycopg.Error):  # a bug: its traceback, and not 1 ("found problems")
            import traceback

            traceback.print_exc()
            print("agent19: error: an unexpected error stopped the command (traceback above): please report it",
                  file=sys.stderr)
            return 2
        from agent19.db.redact import redact_text

        print(f"agent19: error: PostgreSQL: {redact_text(postgres_error_text(exc), dsn)}", file=sys.stderr)
        return 1
