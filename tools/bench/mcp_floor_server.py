#!/usr/bin/env python3
"""The floor of ``agent19 serve``'s start-up: the official MCP SDK serving one trivial tool over stdio.

bench_mcp.py starts this beside ``agent19 serve`` and times both until they answer tools/list: what agent19
adds to the SDK's own start-up is the difference. With a PORT argument it serves streamable HTTP on 127.0.0.1:PORT
instead (the floor of bench_mcp.py's session churn). Not a test, not part of agent19.
"""

import sys

from mcp.server.mcpserver import MCPServer

server: MCPServer = MCPServer(name="floor")


@server.tool()
def echo(text: str) -> str:
    """Return the text."""
    return text


if __name__ == "__main__":
    if len(sys.argv) > 1:  # a port: streamable HTTP on loopback, the floor of bench_mcp.py's session churn
        server.run("streamable-http", host="127.0.0.1", port=int(sys.argv[1]))
    else:
        server.run("stdio")
