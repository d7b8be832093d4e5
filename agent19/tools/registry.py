"""Declare a tool once; it becomes an MCP tool (server.py) and a CLI command (cli.py).

A tool is a plain function ``run(ctx, args) -> Result`` over records: pydantic models, or plain dataclasses
(:mod:`agent19.records`; a tool whose records are dataclasses runs at the CLI without importing pydantic). The
adapters derive everything else from the declaration: the MCP input/output schemas and annotations, the CLI's
flags and ``--help``, the text rendering.

    @tool(name="describe_database", cli="describe", args=DescribeArgs, mode=AccessMode.READ_ONLY)
    def describe_database(ctx: ToolContext, args: DescribeArgs) -> DatabaseDescription: ...
"""

from __future__ import annotations

import inspect
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from functools import cached_property
from typing import TYPE_CHECKING, Any, Generic, TypeVar

from agent19 import records
from agent19.config import AccessMode, Settings
from agent19.sizes import characters
from agent19.textsafe import printable

if TYPE_CHECKING:  # imported where used: a command that never opens a database does not load the driver
    from pydantic import BaseModel

    from agent19.db.connection import Database
    from agent19.db.models import SchemaSnapshot
    from agent19.tools.paths import PathPolicy

A = TypeVar("A")
R = TypeVar("R")

ProgressFn = Callable[[float, float | None, str | None], None]
ElicitFn = Callable[[str, "type[BaseModel]"], "BaseModel | None"]
"""Ask the human (not the model) for input matching a flat pydantic model; None when declined."""


class ToolContext:
    """What a tool may use: the settings, the database (opened lazily), progress reporting, and
    — when the client can ask its human (MCP elicitation, a terminal) — :attr:`elicit`."""

    def __init__(self, settings: Settings, database: Database | None = None, progress: ProgressFn | None = None,
                 elicit: ElicitFn | None = None, path_policy: PathPolicy | None = None, streaming: bool = False):
        self.settings = settings
        self.streaming = streaming
        """The caller renders the result once, in order, as it comes (the CLI): a tool may return a result whose
        renderers read it as it is computed (``agent19 lint`` prints each statement's report as it is linted)."""
        self.path_policy = path_policy
        """Where path arguments may point (MCP); None: anywhere (the CLI: a person names the files)."""
        self._database = database
        self._progress = progress
        self.elicit: ElicitFn | None = elicit
        """None when the client cannot ask a human: tools then fall back to a two-step flow."""

    @cached_property
    def db(self) -> Database:
        from agent19.db.connection import Database

        return self._database or Database(self.settings)

    def live_catalog(self) -> SchemaSnapshot | None:
        """The catalog snapshot when a database is configured (--dsn / DATABASE_URL), else None.

        For tools that work without a database and only get better with one: they never start the
        embedded server for it.
        """
        if self.settings.dsn_value() is None:
            return None
        from agent19.db.catalog import snapshot

        with self.db.read() as conn:
            return snapshot(conn)

    def live_catalog_or_why(self) -> tuple[SchemaSnapshot | None, str | None]:
        """:meth:`live_catalog`, or ``(None, why)`` when the configured database cannot be used (down,
        refused, no privilege): for tools that still work on the SQL alone and must say so, not fail.
        For these advisory tools a snapshot read in the last seconds is reused (:mod:`agent19.db.catalog_cache`)."""
        dsn = self.settings.dsn_value()
        if dsn is None:
            return None, None  # no database configured: nothing to load (the driver neither)
        import psycopg

        from agent19.db.catalog_cache import cached_snapshot
        from agent19.errors import DatabaseUnavailable

        try:
            return cached_snapshot(dsn, self.settings.mode, self._fresh_catalog), None
        except (DatabaseUnavailable, psycopg.Error) as exc:
            lines = str(exc).strip().splitlines()
            return None, self.db.redact(lines[0] if lines else type(exc).__name__)

    def _fresh_catalog(self) -> SchemaSnapshot:
        snapshot = self.live_catalog()
        assert snapshot is not None  # called only with a database configured
        return snapshot

    def progress(self, done: float, total: float | None = None, message: str | None = None) -> None:
        if self._progress is not None:
            self._progress(done, total, message)


@dataclass(frozen=True)
class ToolSpec(Generic[A, R]):
    name: str
    title: str
    description: str
    args: type[A]
    result: type[R]
    run: Callable[[ToolContext, A], R]
    mode: AccessMode = AccessMode.READ_ONLY
    """The weakest access mode in which the tool works at all."""
    read_only: bool = True
    catalog_only: bool = False
    """Every session the tool uses searches ``pg_catalog, pg_temp`` only (``catalog_first.catalog_only``):
    for a tool that reads the server's catalog and statistics, names what it shows schema-qualified itself, and
    resolves no name of the user's through the login's search_path and runs no user SQL. No overload anyone makes
    on that path is then what its queries call, and a database where an untrusted one exists is not refused. What a
    path does not cover (a relation read at a fixed name, code the planner runs on a table it scans) is handled
    where it is read."""
    destructive: bool = False
    idempotent: bool = True
    cli: str | None = None
    """CLI command name (defaults to the tool name with dashes)."""
    positional: tuple[str, ...] = ()
    """Argument fields the CLI takes as positional arguments, in order."""
    render_text: Callable[[R], str | Iterable[str]] | None = None
    """The text format: the text, or its parts in order (printed as they come)."""
    examples: tuple[str, ...] = field(default=())
    """CLI examples shown in ``--help``."""
    exit_code: Callable[[R], int] | None = None
    """The CLI's exit status for a result (default 0), e.g. 1 when a lint found errors."""
    formats: dict[str, Callable[[R], str | Iterable[str]]] = field(default_factory=dict)
    """Extra CLI output formats beside text and json, e.g. ``{"sarif": to_sarif}``, or the tool's own json (the same
    text as the default's): text, or its parts in order (a large result printed without building it whole)."""
    error_formats: dict[str, Callable[[Exception], Iterable[str]]] = field(default_factory=dict)
    """Formats whose document can say that an error stopped the run before it had a result (a file that does not
    parse): the CLI writes it (its parts end by raising the error again), so that the saved output is still a
    document its reader parses; in any other format nothing is written. E.g. lint's JSON with an ``error``."""
    module: str = ""
    """The module that declared it."""
    briefs: dict[str, str | dict[str, Any]] = field(default_factory=dict)
    """Parameter texts for tools/list (agent19.tools._schema): ``""`` when the name and type say enough, a
    schema to list instead of the full one; a parameter not named here gets its description's first clause."""

    @property
    def command(self) -> str:
        return self.cli or self.name.replace("_", "-")

    def render(self, result: R, fmt: str) -> str:
        return "".join(self.render_parts(result, fmt))

    def render_parts(self, result: R, fmt: str) -> Iterable[str]:
        """:meth:`render`'s text in parts, to print as they come (one part unless the format writes several)."""
        if fmt in self.formats:
            out = self.formats[fmt](result)
            return (out,) if isinstance(out, str) else out
        if fmt == "json" or self.render_text is None:
            # pydantic's JSON writer turns NaN and ±Infinity (a measured max() can be one) into null:
            # json.dumps would print the bare words NaN / Infinity, which are not JSON
            return (records.dump_json(result),)
        # values from a database are data: an escape sequence in one must not drive the terminal (agent19.textsafe)
        text = self.render_text(result)
        return (printable(text),) if isinstance(text, str) else (printable(part) for part in text)


REGISTRY: dict[str, ToolSpec[Any, Any]] = {}


def tool(
    *,
    name: str,
    title: str,
    args: type[A],
    result: type[R],
    **options: Any,
) -> Callable[[Callable[[ToolContext, A], R]], Callable[[ToolContext, A], R]]:
    """Register ``run`` as a tool; its docstring is the description an LLM reads."""

    def decorator(run: Callable[[ToolContext, A], R]) -> Callable[[ToolContext, A], R]:
        if name in REGISTRY:
            raise ValueError(f"tool {name!r} is declared twice")
        description = inspect.cleandoc(run.__doc__ or "")
        _forbid_unknown_fields(args)
        if stale := set(options.get("briefs", {})) - set(accepted_fields(args)):
            raise ValueError(f"tool {name!r}: briefs for parameters it does not have: {sorted(stale)}")

        def guarded(ctx: ToolContext, arguments: A) -> R:
            from agent19.safety import gate

            _within_size_limit(name, arguments)
            gate.admit_args(ctx.settings.mode, arguments)  # the choke point, before any tool code runs
            if ctx.path_policy is not None:
                ctx.path_policy.admit(name, arguments)
            if not options.get("catalog_only"):
                return run(ctx, arguments)
            from agent19.db.catalog_first import catalog_only

            with catalog_only():
                return run(ctx, arguments)

        REGISTRY[name] = ToolSpec(name=name, title=title, description=description, args=args, result=result,
                                  run=guarded, module=run.__module__, **options)
        return run

    return decorator


MAX_ARGUMENT_CHARACTERS = 8_000_000
"""Text a call may carry in all its arguments together (a 5 MB migration fits); larger input is refused before
any tool code runs, saying what to do instead."""


def _within_size_limit(tool_name: str, arguments: Any) -> None:
    from agent19.errors import InputError

    size = characters(records.values(arguments))
    if size > MAX_ARGUMENT_CHARACTERS:
        raise InputError(f"{tool_name}: the arguments hold {size:,} characters; at most "
                         f"{MAX_ARGUMENT_CHARACTERS:,} are accepted per call",
                         "split the input (e.g. one migration file of a few MB per call), or run it at a terminal "
                         "(`agent19 lint FILE` reads any size as a stream); nothing was run")


def _forbid_unknown_fields(args: type[Any]) -> None:
    """Every tool's arguments reject a field they do not declare (a misspelt or invented argument must
    fail, not be ignored: ``index_health {"table": ...}`` would otherwise report on every table). A dataclass
    says so in the configuration pydantic reads from it (a dict: pydantic is not imported for it)."""
    if not hasattr(args, "model_config"):
        config = getattr(args, "__pydantic_config__", {})
        if config.get("extra") != "forbid":
            args.__pydantic_config__ = {**config, "extra": "forbid"}  # type: ignore[attr-defined]
    elif args.model_config.get("extra") != "forbid":
        args.model_config["extra"] = "forbid"
        args.model_rebuild(force=True)


def accepted_fields(args: type[Any]) -> list[str]:
    """The argument names a tool accepts (aliases where declared), for error messages."""
    return [info.alias or name for name, info in records.fields(args).items()]


def all_tools() -> list[ToolSpec[Any, Any]]:
    """Every declared tool (imports every tool module), in one order whatever imported them first: by module (as
    :func:`agent19.tools.tool_modules` lists them), then as each module declares them."""
    from agent19.tools import load_all, tool_modules

    load_all()
    rank = {f"agent19.tools.{module}": i for i, module in enumerate(tool_modules())}
    return sorted(REGISTRY.values(), key=lambda spec: rank.get(spec.module, len(rank)))


def tools_of(module: str) -> list[ToolSpec[Any, Any]]:
    """The tools declared by one module of :mod:`agent19.tools` (imports that module only), in order."""
    import importlib

    importlib.import_module(f"agent19.tools.{module}")
    return [spec for spec in REGISTRY.values() if spec.module == f"agent19.tools.{module}"]
