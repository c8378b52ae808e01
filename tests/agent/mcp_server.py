"""A small real MCP server for the tests: `python mcp_server.py stdio` or `... http PORT`."""

from __future__ import annotations

import sys

import anyio

try:  # mcp 2
    from mcp.server.mcpserver import Context, MCPServer
except ImportError:  # mcp 1
    from mcp.server.fastmcp import Context
    from mcp.server.fastmcp import FastMCP as MCPServer

server = MCPServer("asynclm-test-tools")


@server.tool()
def add(a: int, b: int) -> int:
    """Adds two integers."""
    return a + b


@server.tool()
async def slow_echo(text: str, seconds: float = 0.3) -> str:
    """Waits, then returns the text."""
    await anyio.sleep(seconds)
    return f"echo: {text}"


@server.tool(name="get-weather")
def get_weather(city: str) -> str:
    """Current weather for a city (its name has a dash, which is not a Python name)."""
    return f"sunny in {city}"


@server.tool()
def broken() -> str:
    """Always fails."""
    raise ValueError("the server's tool is broken")


@server.tool()
async def count(steps: int, ctx: Context) -> str:
    """Counts, reporting progress."""
    for step in range(1, steps + 1):
        await ctx.report_progress(step, steps, f"step {step}")
        await anyio.sleep(0.01)
    return f"counted to {steps}"


if __name__ == "__main__":
    if sys.argv[1:2] == ["http"]:
        server.run("streamable-http", host="127.0.0.1", port=int(sys.argv[2]))
    else:
        server.run()
