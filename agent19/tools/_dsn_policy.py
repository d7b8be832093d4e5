"""Over MCP the caller is a model: a database it names by a literal DSN could be any server it wants the data
sent to (exfiltration). There, the other database of a data-moving tool (an ETL pipeline's source or
destination, a CDC destination) must be named as ``env:VAR``: a variable the person who started the server
set. The CLI (a person typing the command) keeps literal DSNs."""

from __future__ import annotations

from agent19.errors import InputError
from agent19.tools.registry import ToolContext


def require_env_dsn(ctx: ToolContext, value: str | None, what: str) -> None:
    """Refuse a literal DSN for ``what`` when the caller is an MCP client (``ctx.path_policy`` is set)."""
    if ctx.path_policy is None or value is None or value.startswith("env:"):
        return
    raise InputError(f"refused over MCP: {what} is a literal DSN; a model must not choose where data is read "
                     "from or sent to (nothing was read or written)",
                     f"have the person running `agent19 serve` export the DSN in a variable and give {what} "
                     "as env:VAR (e.g. env:WAREHOUSE_URL); or run `agent19 etl run` / `agent19 cdc run` yourself")
