"""The command-line adapter: ``agent19 serve`` plus one command per declared tool.

Commands and their flags are derived from the tool declarations (:mod:`agent19.tools`, parsers built by
:mod:`agent19.cli_parser`), so the CLI and the MCP server always offer the same operations with the same arguments.
"""

from __future__ import annotations

import argparse
import gc
import logging
import os
import sys
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from agent19 import records
from agent19.cli_output import discard_output, print_parts
from agent19.cli_parser import CommandNamed, build_index_parser, build_parser, tools_for
from agent19.config import Settings
from agent19.errors import Agent19Error, postgres_error_text
from agent19.textsafe import visible
from agent19.tool_names import cli_names
from agent19.tools._index import TOOLS
from agent19.tools.registry import ToolContext, ToolSpec

if TYPE_CHECKING:  # a tool whose records are dataclasses runs without pydantic (agent19.records)
    from pydantic import BaseModel


def _settings(ns: argparse.Namespace) -> Settings:
    return Settings.load(
        dsn=ns.dsn, mode=ns.mode, data_dir=ns.data_dir, handoff_dir=ns.handoff_dir,
        statement_timeout=ns.statement_timeout, lock_timeout=ns.lock_timeout,
        allow_model_confirmation=getattr(ns, "allow_model_confirmation", None),
        read_dsn=getattr(ns, "read_dsn", None), allow_privileged_reads=getattr(ns, "allow_privileged_reads", None),
        allow_unreadable_code=getattr(ns, "allow_unreadable_code", None),
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
    with cli_names(TOOLS):  # a value's error names the flag to give (`--disk-size`), not the MCP argument
        args = records.validate(spec.args, values)  # the parser typed them: a dataclass is built without pydantic
    progress = _ProgressLine()
    ctx = ToolContext(settings, progress=progress if sys.stderr.isatty() else None,
                      elicit=_ask_terminal if sys.stdin.isatty() and sys.stderr.isatty() else None, streaming=True)
    try:
        with cli_names(TOOLS):  # shared messages name commands (`agent19 describe`), not MCP tools
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
    with cli_names(TOOLS):  # a streamed result (lint's) is computed as it is printed: its messages are the CLI's too
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


def _startup_parser(command: str, *, freeze: bool) -> argparse.ArgumentParser:
    """The parser of ``command``, its modules imported with the cyclic collector paused; then (once per process)
    what start-up created — classes, functions, schemas, kept until exit — is frozen out of the collector's
    generations: the command's collections then scan its own objects, not every import again (about 6 % of a
    one-statement lint's instructions; tools/bench/bench_mcp.py measures start-up). Only as the process's own
    command (``freeze``): a program calling :func:`main` keeps its objects collectable."""
    global _FROZEN
    paused = gc.isenabled()
    gc.disable()
    try:
        parser = build_parser(tools_for(command))
    finally:
        if paused:
            gc.enable()
    if freeze and not _FROZEN:
        gc.freeze()
        _FROZEN = True
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_index_parser()
    dsn = None
    try:
        try:  # --help, --version, no command or a mistyped one: answered from the index, no tool module imported
            ns = parser.parse_args(argv)  # help writes its output here: what stops it is said below
        except CommandNamed as named:  # argparse found the command: its own parser (its modules only) parses the line
            parser = _startup_parser(named.command, freeze=argv is None)
            ns = parser.parse_args(argv)
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
    except KeyboardInterrupt as exc:  # Ctrl-C: what the command's cleanup did, when it says (its notes)
        print("; ".join(["agent19: interrupted", *getattr(exc, "__notes__", [])]), file=sys.stderr)
        return 130
    except RecursionError:  # a statement's tree deeper than some step can walk (reading it says where: parse.too_deep)
        print("agent19: error: a statement is nested too deeply for agent19 to read (Python's recursion limit) - "
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
