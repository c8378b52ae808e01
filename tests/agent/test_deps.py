"""Dependencies: tools taking `RunContext[Deps]` reach per-run resources; progress events."""

from __future__ import annotations

from dataclasses import dataclass, field

import anyio
import pytest

from asynclm.agent import Agent, CallProgress, RunContext, tool
from tests.agent.scripts import engine_for

pytestmark = pytest.mark.anyio


@dataclass
class Database:
    rows: dict[str, int]
    queries: list[str] = field(default_factory=list)


@tool
async def lookup(ctx: RunContext[Database], key: str) -> int:
    """Looks a key up.

    Args:
        key: The key.
    """
    ctx.deps.queries.append(f"{ctx.call_id}:{key}")
    return ctx.deps.rows[key]


@tool
def lookup_sync(ctx: RunContext[Database], key: str) -> int:
    """Looks a key up from a worker thread, reporting progress."""
    ctx.report_progress(0.5, "found the table")
    ctx.deps.queries.append(f"{ctx.call_id}:{key}")
    return ctx.deps.rows[key] * 10


SCRIPT = (
    '[CALL] a [HEAD] lookup(key="x") [END]',
    '[CALL] b [HEAD] lookup_sync(key="y") [END]',
    "[TRAP][END]",
    "[TRAP][END]",
    "done",
)


async def test_each_run_gets_its_own_dependencies() -> None:
    agent = Agent([lookup, lookup_sync], model=engine_for(*SCRIPT), deps_type=Database)
    first, second = Database({"x": 1, "y": 2}), Database({"x": 3, "y": 4})
    one = await agent.run("go", deps=first)
    two = await agent.run("go", deps=second)
    assert [c.result for c in one.calls] == [1, 20] and [c.result for c in two.calls] == [3, 40]
    assert sorted(first.queries) == ["a:x", "b:y"] and sorted(second.queries) == ["a:x", "b:y"]
    assert "ctx" not in agent.system  # the context is no parameter the model sees


async def test_progress_from_sync_and_async_tools_becomes_events() -> None:
    @tool
    async def crawl(ctx: RunContext[None], pages: int) -> str:
        """Crawls pages."""
        for page in range(1, pages + 1):
            await anyio.sleep(0.005)
            ctx.report_progress(page / pages, f"page {page}")
        return "crawled"

    script = (
        "[CALL] c [HEAD] crawl(pages=3) [END]",
        '[CALL] s [HEAD] lookup_sync(key="y") [END]',
        "[TRAP][END]",
        "[TRAP][END]",
        "ok",
    )
    agent = Agent([crawl, lookup_sync], model=engine_for(*script))
    async with agent.run_stream("go", deps=Database({"y": 1})) as run:
        progress = [e for e in [e async for e in run] if isinstance(e, CallProgress)]
    assert [(e.call_id, e.progress, e.message) for e in progress if e.call_id == "c"] == [
        ("c", 1 / 3, "page 1"),
        ("c", 2 / 3, "page 2"),
        ("c", 1.0, "page 3"),
    ]
    assert ("s", 0.5, "found the table") in [(e.call_id, e.progress, e.message) for e in progress]


async def test_a_tool_learns_how_often_it_failed() -> None:
    seen: list[int] = []

    @tool
    def flaky(ctx: RunContext[None]) -> str:
        """Fails twice."""
        seen.append(ctx.retry)
        if ctx.retry < 2:
            raise RuntimeError("not yet")
        return "finally"

    script = [f"[CALL] f{i} [HEAD] flaky() [END][TRAP][END]" for i in range(3)] + ["ok"]
    result = await Agent([flaky], model=engine_for(*script), mode="sync").run("go")
    assert seen == [0, 1, 2] and result.calls[-1].result == "finally"
