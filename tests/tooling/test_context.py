"""Tools that take a `RunContext`: left out of the schema, passed by the runtime."""

from __future__ import annotations

import threading
from dataclasses import dataclass
from typing import TYPE_CHECKING

import pytest

from asynclm.tooling import RunContext, ToolDefinitionError, tool

if TYPE_CHECKING:
    from tests.tooling.models import Point

pytestmark = pytest.mark.anyio


@dataclass
class Deps:
    prefix: str


@tool
async def greet(ctx: RunContext[Deps], name: str) -> str:
    """Greets someone.

    Args:
        name: Who.
    """
    return f"{ctx.deps.prefix} {name} ({ctx.call_id})"


@tool
def greet_sync(ctx: RunContext[Deps], name: str) -> str:
    """Greets someone, from a worker thread."""
    ctx.report_progress(0.5, "half way")
    return f"{ctx.deps.prefix} {name} on {threading.current_thread().name != 'MainThread'}"


def test_the_context_is_not_part_of_the_schema() -> None:
    for made in (greet, greet_sync):
        assert made.takes_context
        assert list(made.parameters["properties"]) == ["name"]
        assert made.parameters["required"] == ["name"]


async def test_async_and_sync_tools_receive_the_context() -> None:
    seen: list[tuple[float | None, str]] = []
    ctx = RunContext(Deps("Hello"), call_id="c1", reporter=lambda p, m: seen.append((p, m)))
    assert await greet.invoke({"name": "Ada"}, context=ctx) == "Hello Ada (c1)"
    assert await greet_sync.invoke({"name": "Bob"}, context=ctx) == "Hello Bob on True"
    assert seen == [(0.5, "half way")]


async def test_a_context_tool_called_outside_a_run_gets_an_empty_context() -> None:
    @tool
    def which(ctx: RunContext, n: int) -> object:
        return ctx.deps, ctx.tool_name, n

    assert await which.invoke({"n": 1}) == (None, "which", 1)


def test_a_string_annotation_of_a_type_checking_import_still_counts() -> None:
    # `Point` is imported for type checking only: the annotation cannot be resolved.
    def f(ctx: RunContext[Point], n: int) -> int:
        return n

    assert tool(f).takes_context and list(tool(f).parameters["properties"]) == ["n"]


def test_a_context_anywhere_but_first_and_generators_are_refused() -> None:
    def late(n: int, ctx: RunContext[Deps]) -> int:
        return n

    def numbers(n: int):  # type: ignore[no-untyped-def]
        yield n

    async def stream(n: int):  # type: ignore[no-untyped-def]
        yield n

    with pytest.raises(ToolDefinitionError, match="RunContext parameter must be the first"):
        tool(late)
    for function in (numbers, stream):
        with pytest.raises(ToolDefinitionError, match="a generator cannot be a tool"):
            tool(function)


async def test_progress_must_be_a_fraction() -> None:
    with pytest.raises(ValueError, match=r"progress must lie in \[0, 1\]"):
        RunContext(None).report_progress(1.5)
