"""Toolsets: tools that come from elsewhere and may change between runs.

An agent's own tools are fixed by the application (`Agent(tools=...)`, `add_tool`,
`remove_tool`); a toolset — an MCP server, say — lists its tools itself. Every run lists the
current tools of every toolset and describes all of them to the model, so a tool added or
removed between runs is always described as it is.

A toolset is an async context manager (entered around each run, or once around many with
`async with agent:`) with `list_tools()`.
"""

from __future__ import annotations

from collections.abc import Sequence
from contextlib import AsyncExitStack
from types import TracebackType
from typing import Protocol, runtime_checkable

from asynclm.tooling import Tool

__all__ = ["Toolset", "open_toolsets"]


@runtime_checkable
class Toolset(Protocol):
    """A source of tools, listed anew for every run."""

    async def __aenter__(self) -> object: ...

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> bool | None: ...

    async def list_tools(self) -> Sequence[Tool]:
        """The tools it offers now."""
        ...


async def open_toolsets(stack: AsyncExitStack, toolsets: Sequence[Toolset]) -> list[Tool]:
    """Enter every toolset on `stack` and list their tools, in order."""
    tools: list[Tool] = []
    for toolset in toolsets:
        await stack.enter_async_context(toolset)
        tools += await toolset.list_tools()
    return tools
