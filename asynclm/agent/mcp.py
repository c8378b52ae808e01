"""Tools from an MCP server (Model Context Protocol), as a toolset of an agent.

`MCPServer.stdio(command, args)` starts a server process and talks to it over its standard
streams; `MCPServer.http(url)` connects to a server over streamable HTTP. The server's tools are
listed at the start of every run (a tool the server adds or removes is described to the model
as it is then) and called like any async tool: while the model keeps writing, several at once,
with the agent's timeouts, and their progress notifications become `CallProgress` events.

Needs the `mcp` package (`pip install 'asynclm[mcp]'`).
"""

from __future__ import annotations

import re
import sys
from collections.abc import AsyncIterator, Callable, Mapping, Sequence
from contextlib import AbstractAsyncContextManager, AsyncExitStack, asynccontextmanager
from types import TracebackType
from typing import Any, TextIO

from asynclm.tooling import RunContext, Tool, ToolError

__all__ = ["MCPServer"]

Transport = Callable[[], AbstractAsyncContextManager[Any]]
"""Opens the streams to a server: an async context manager yielding (read, write, ...)."""

_NOT_NAME = re.compile(r"[^A-Za-z0-9_]")


class MCPServer:
    """An MCP server's tools, listed anew for every run.

    Use `MCPServer.stdio(...)` or `MCPServer.http(...)`. The connection opens when a run (or
    `async with agent:` / `async with server:`) enters it and closes when the last one leaves.

    Args:
        transport: Opens the streams to the server.
        name: Its name (in error messages).
        prefix: Put before every tool name (to keep two servers' tools apart).
        timeout: Seconds a call may take; None: the agent's `tool_timeout`.
        requires_approval: Whether every call of its tools waits for approval.
    """

    def __init__(
        self,
        transport: Transport,
        *,
        name: str = "mcp",
        prefix: str = "",
        timeout: float | None = None,
        requires_approval: bool = False,
    ) -> None:
        self._transport = transport
        self.name = name
        self.prefix = prefix
        self.timeout = timeout
        self.requires_approval = requires_approval
        self._users = 0
        self._stack: AsyncExitStack | None = None
        self._session: Any = None

    @classmethod
    def stdio(
        cls,
        command: str,
        args: Sequence[str] = (),
        *,
        env: Mapping[str, str] | None = None,
        cwd: str | None = None,
        errlog: TextIO | None = None,
        **options: Any,
    ) -> MCPServer:
        """A server started as a process, spoken to over its stdin/stdout (its stderr goes to
        `errlog`, default ours); `options` as for `MCPServer`."""
        from mcp import StdioServerParameters
        from mcp.client.stdio import stdio_client

        params = StdioServerParameters(
            command=command, args=list(args), env=dict(env) if env else None, cwd=cwd
        )
        options.setdefault("name", command)
        return cls(lambda: stdio_client(params, errlog=errlog or sys.stderr), **options)

    @classmethod
    def http(
        cls, url: str, *, headers: Mapping[str, str] | None = None, **options: Any
    ) -> MCPServer:
        """A server reached over streamable HTTP at `url` (e.g. `http://127.0.0.1:8000/mcp`)."""
        options.setdefault("name", url)
        return cls(lambda: _http_transport(url, dict(headers or {})), **options)

    # ---- connection --------------------------------------------------------------------------
    async def __aenter__(self) -> MCPServer:
        if self._users == 0:
            from mcp import ClientSession

            stack = AsyncExitStack()
            try:
                streams = await stack.enter_async_context(self._transport())
                session = await stack.enter_async_context(ClientSession(streams[0], streams[1]))
                await session.initialize()
            except BaseException:
                await stack.aclose()
                raise
            self._stack, self._session = stack, session
        self._users += 1
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self._users -= 1
        if self._users == 0 and self._stack is not None:
            stack, self._stack, self._session = self._stack, None, None
            await stack.aclose()

    # ---- tools -------------------------------------------------------------------------------
    async def list_tools(self) -> list[Tool]:
        """The server's tools now, as `Tool`s.

        Raises:
            RuntimeError: The server is not open (enter it first).
        """
        session = self._require_session()
        listed: list[Any] = []
        cursor: str | None = None
        while True:
            page = await _list_page(session, cursor)
            listed += page.tools
            cursor = _field(page, "next_cursor", "nextCursor")
            if not cursor:
                return [self._tool(item) for item in listed]

    def _tool(self, listed: Any) -> Tool:
        remote = listed.name
        schema = _field(listed, "input_schema", "inputSchema") or {"type": "object"}

        async def call(ctx: RunContext[Any], **arguments: Any) -> Any:
            return await self.call(remote, arguments, ctx)

        doc = {
            "type": "function",
            "function": {
                "name": self.prefix + _NOT_NAME.sub("_", remote),
                "description": listed.description or "",
                "parameters": dict(schema),
            },
        }
        return Tool.from_schema(
            doc,
            call,
            timeout=self.timeout,
            takes_context=True,
            requires_approval=self.requires_approval,
        )

    async def call(
        self, name: str, arguments: dict[str, Any], ctx: RunContext[Any] | None = None
    ) -> Any:
        """Call a tool of the server by its own name; its result as text or structured data.

        Raises:
            ToolError: The server reports the call failed.
        """
        session = self._require_session()

        async def progress(done: float, total: float | None, message: str | None = None) -> None:
            if ctx is not None:
                fraction = min(1.0, max(0.0, done / total)) if total else None
                ctx.report_progress(fraction, message or "")

        result = await session.call_tool(name, arguments, progress_callback=progress)
        text = "\n".join(_content_text(item) for item in result.content)
        if _field(result, "is_error", "isError"):
            raise ToolError(text or f"{self.name}: {name} failed")
        structured = _field(result, "structured_content", "structuredContent")
        return structured if structured is not None and not text else text

    def _require_session(self) -> Any:
        if self._session is None:
            raise RuntimeError(f"MCP server {self.name!r} is not open: enter it first")
        return self._session

    def __repr__(self) -> str:
        state = "open" if self._session is not None else "closed"
        return f"MCPServer({self.name!r}, {state})"


async def _list_page(session: Any, cursor: str | None) -> Any:
    if cursor is None:
        return await session.list_tools()
    try:  # mcp 2
        from mcp.types import PaginatedRequestParams

        return await session.list_tools(params=PaginatedRequestParams(cursor=cursor))
    except ImportError:  # mcp 1
        return await session.list_tools(cursor=cursor)


def _field(item: Any, name: str, legacy: str) -> Any:
    """A field of an MCP object, by its mcp 2 name or its mcp 1 (camelCase) one."""
    return getattr(item, name, getattr(item, legacy, None))


def _content_text(item: Any) -> str:
    kind = getattr(item, "type", "")
    if kind == "text":
        return str(item.text)
    if kind in ("image", "audio"):
        return f"<{kind}: {_field(item, 'mime_type', 'mimeType')}>"
    resource = getattr(item, "resource", None)
    if resource is not None:
        return str(getattr(resource, "text", None) or getattr(resource, "uri", ""))
    return f"<{kind or type(item).__name__}>"


@asynccontextmanager
async def _http_transport(url: str, headers: dict[str, str]) -> AsyncIterator[Any]:
    try:  # mcp 2: the client's headers go on its HTTP client
        from mcp.client.streamable_http import streamable_http_client
    except ImportError:  # mcp 1
        from mcp.client.streamable_http import streamablehttp_client  # type: ignore[attr-defined]

        async with streamablehttp_client(url, headers=headers or None) as streams:
            yield streams
        return
    if not headers:
        async with streamable_http_client(url) as streams:
            yield streams
        return
    import httpx2

    timeout = httpx2.Timeout(30.0, read=300.0)
    async with (
        httpx2.AsyncClient(headers=headers, timeout=timeout) as client,
        streamable_http_client(url, http_client=client) as streams,
    ):
        yield streams
