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
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from pydantic import BaseModel

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


@dataclass(frozen=True)
class PathPolicy:
    """Where an MCP client's path arguments may point (see the module docstring)."""

    roots: tuple[Path, ...]
    denied: tuple[Path, ...]

    @classmethod
    def for_mcp(cls, settings: Settings, env: Mapping[str, str] | None = None) -> PathPolicy:
        env = os.environ if env is None else env
        extra = [p for p in env.get(ENV, "").split(os.pathsep) if p.strip()]
        roots = [_real(Path.cwd()), _real(settings.handoff_dir), *(_real(p) for p in extra)]
        return cls(roots=tuple(dict.fromkeys(roots)), denied=(_real(settings.data_dir),))

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

    def admit(self, tool: str, args: BaseModel) -> None:
        """Refuse ``args`` when one of ``tool``'s path arguments points outside the policy."""
        for field, use in PATH_ARGS.get(tool, {}).items():
            value = getattr(args, field, None)
            for item in value if isinstance(value, list) else [value]:
                if not isinstance(item, str) or not item.strip():
                    continue
                if use == "read_or_json" and item.lstrip().startswith(("{", "[")):
                    continue
                self.check(item, field)
