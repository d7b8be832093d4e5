"""Tool arguments that name files or directories, and which of them an MCP client may use.

At a terminal the person typing the command names the files: the CLI reads and writes where it is told.
Over MCP the arguments come from a model, which a prompt injection may steer: a path argument must not
make agent19 a file-reading oracle (``lint_migration {"paths": ["/etc/shadow"]}`` would return the file
as statements) nor a writer of arbitrary files. So over MCP every path argument must lie, once ``..``
and symbolic links are resolved, under one of:

* the server's working directory (the project it was started in),
* the handoff directory (``--handoff-dir`` / ``AGENT19_HANDOFF_DIR``),
* a directory the operator lists in ``AGENT19_MCP_PATHS`` (``os.pathsep``-separated, e.g.
  ``/srv/migrations:/var/backups/pg``; ``/`` lifts the restriction),

and never under agent19's data directory (the embedded server, the confirmation key), whatever the list
says. The check runs in the registry before any tool code (:func:`agent19.tools.registry.tool`), for the
arguments declared in :data:`PATH_ARGS`; ``tests/test_followup_path_policy.py`` walks the registry and
fails on a path-looking argument that is not declared here (or in :data:`NOT_PATHS`, with the reason).
"""

from __future__ import annotations

import os
from collections.abc import Callable, Mapping
from functools import cached_property
from pathlib import Path
from typing import Any, Literal

from agent19 import records
from agent19.config import Settings
from agent19.errors import InputError

PathUse = Literal["read", "write", "read_or_json"]
"""read: a file or directory read; write: a file or directory written; read_or_json: a path, or the JSON
text itself (a value starting with ``{`` or ``[`` is text, not a path)."""

PATH_ARGS: dict[str, dict[str, PathUse]] = {
    "lint_migration": {"paths": "read", "config": "read"},
    "plan_migration": {"file": "read", "dry_run_result": "read_or_json"},
    "generate_runbook": {"file": "read", "dry_run_result": "read_or_json", "backup_verify_result": "read_or_json",
                         "write_dir": "write"},
    "test_migration": {"files": "read", "down_files": "read"},
    "verify_rollback": {"up": "read", "down": "read"},
    "etl_run": {"pipeline": "read"},
    "data_quality": {"file": "read"},
    "health_check": {"config": "read"},
    "replication_status": {"config": "read"},
    "verify_backup": {"from_path": "read", "work_dir": "write", "archive_dir": "read"},
    "backup_status": {"pgbackrest_info": "read_or_json", "walg_backup_list": "read_or_json",
                      "backup_dir": "read", "archive_dir": "read"},
    "restore_runbook": {"verify_result": "read_or_json", "write_dir": "write"},
    "zero_downtime_pattern": {"write_to": "write"},
    "prisma_schema": {"output": "write"},
    "pgbouncer_config": {"write": "write"},
    "cdc_debezium": {"write_to": "write"},
}

TEXT_INPUTS: dict[str, tuple[str, ...]] = {
    "lint_migration": ("paths",), "plan_migration": ("file",), "generate_runbook": ("file",),
    "test_migration": ("files", "down_files"), "verify_rollback": ("up", "down"),
    "etl_run": ("pipeline",), "data_quality": ("file",),
}
"""Path arguments whose files a tool reads whole as its input (migrations, pipelines, checks): over MCP they
count, with the arguments' own text, against the per-call input limit (a directory: its ``.sql`` files, as
:mod:`agent19.migrate.layouts.files` finds them). Backups, archives and written paths are not input text."""

NOT_PATHS: dict[tuple[str, str], str] = {
    ("restore_runbook", "archive_dir"): "only written into the runbook's restore_command, never opened",
    ("restore_runbook", "backup_dir"): "only written into the runbook's commands, never opened",
    ("data_quality", "checks"): "the checks file's content, not a path",
    ("etl_run", "pipeline_toml"): "the pipeline's TOML, not a path",
}

ENV = "AGENT19_MCP_PATHS"


def _real(path: Path | str) -> Path:
    return Path(os.path.realpath(os.path.expanduser(str(path))))


def _within(path: Path, root: Path) -> bool:
    return path == root or path.is_relative_to(root)


class PathPolicy:
    """Where an MCP client's path arguments may point (see the module docstring).

    The directories are resolved (``realpath``: a system call per path component) when a path argument is
    first checked, not when the policy is made: the server makes one per call, and most calls name no path."""

    def __init__(self, roots: Callable[[], list[Path]], denied: Callable[[], list[Path]]) -> None:
        self._roots, self._denied = roots, denied

    @cached_property
    def roots(self) -> tuple[Path, ...]:
        return tuple(dict.fromkeys(self._roots()))

    @cached_property
    def denied(self) -> tuple[Path, ...]:
        return tuple(self._denied())

    @classmethod
    def for_mcp(cls, settings: Settings, env: Mapping[str, str] | None = None) -> PathPolicy:
        env = os.environ if env is None else env
        extra = [p for p in env.get(ENV, "").split(os.pathsep) if p.strip()]
        return cls(roots=lambda: [_real(Path.cwd()), _real(settings.handoff_dir), *(_real(p) for p in extra)],
                   denied=lambda: [_real(settings.data_dir)])

    def check(self, value: str, what: str) -> None:
        real = _real(value)
        if any(_within(real, d) for d in self.denied):
            raise InputError(f"{what} {value!r} is inside agent19's data directory, which MCP clients may not use",
                             "name a file of the project instead")
        if not any(_within(real, r) for r in self.roots):
            raise InputError(
                f"{what} {value!r} is outside the directories this MCP server may use: "
                + ", ".join(str(r) for r in self.roots),
                f"use a path under one of them, or the operator lists more directories in {ENV} "
                f"(separated by '{os.pathsep}') when starting `agent19 serve`")

    def admit(self, tool: str, args: Any) -> None:
        """Refuse ``args`` when one of ``tool``'s path arguments points outside the policy."""
        for field, use in PATH_ARGS.get(tool, {}).items():
            value = getattr(args, field, None)
            for item in value if isinstance(value, list) else [value]:
                if not isinstance(item, str) or not item.strip():
                    continue
                if use == "read_or_json" and item.lstrip().startswith(("{", "[")):
                    continue
                self.check(item, field)
        self._within_input_limit(tool, args)

    def _within_input_limit(self, tool: str, args: Any) -> None:
        """Refuse a call whose named input files, with its own text, exceed the per-call limit: a path is no way
        around the limit on text (a 5 MB migration's whole result is hundreds of MB in the server)."""
        from agent19.sizes import characters
        from agent19.tools.registry import MAX_ARGUMENT_CHARACTERS

        named = [item for field in TEXT_INPUTS.get(tool, ()) for item in _as_list(getattr(args, field, None))]
        if not named:
            return
        limit = MAX_ARGUMENT_CHARACTERS
        size = characters(records.values(args))
        for item in named:
            size += _input_bytes(_real(item), limit - size + 1)
            if size > limit:
                raise InputError(
                    f"{tool}: the files named ({', '.join(map(repr, named))}) and the arguments hold more than "
                    f"{limit:,} characters; at most {limit:,} are accepted per call over MCP",
                    "split the migration into files of a few MB and call once per file, or run it at a terminal "
                    "(e.g. `agent19 lint FILE`, which reads any size as a stream); nothing was run")


def _as_list(value: object) -> list[str]:
    return [v for v in (value if isinstance(value, list) else [value]) if isinstance(v, str) and v.strip()]


def _input_bytes(path: Path, enough: int) -> int:
    """Bytes of the file at ``path``, or of the ``.sql`` files under a directory (not in dot-directories);
    stops counting past ``enough``. A path that does not exist counts 0: the tool says what is wrong with it."""
    try:
        if path.is_file():
            return path.stat().st_size
        total = 0
        for root, dirs, files in os.walk(path):
            dirs[:] = [d for d in dirs if not d.startswith(".")]
            for name in files:
                if name.lower().endswith(".sql"):
                    total += os.stat(os.path.join(root, name)).st_size
                    if total > enough:
                        return total
        return total
    except OSError:
        return 0
