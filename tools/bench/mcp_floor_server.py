#!/usr/bin/env python3
"""The floor of ``agent19 serve``'s start-up: the official MCP SDK serving one trivial tool over stdio.

bench_mcp.py starts this beside ``agent19 serve`` and times both until they answer tools/list: what agent19
adds to the SDK's own start-up is the difference. Not a test, not part of agent19.
"""

from mcp.server.mcpserver import MCPServer

server: MCPServer = MCPServer(name="floor")


@server.tool()
def echo(text: str) -> str:
    """Return the text."""
    return text


if __name__ == "__main__":
    server.run("stdio")
