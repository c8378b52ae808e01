"""The public API as type checkers see it: `make typecheck` runs mypy on this file.

Nothing here runs; each `assert_type` fails the type check if the inferred type differs, and
each `# type: ignore[...]` marks a misuse the checker must report (unused ignores are errors
for this package, see pyproject.toml).
"""

from __future__ import annotations

from dataclasses import dataclass

from pydantic import BaseModel
from typing_extensions import assert_type

from asynclm import (
    Agent,
    AssistantMessage,
    RunContext,
    RunResult,
    Session,
    Tool,
    UsageLimits,
    UserMessage,
    messages_from_json,
    tool,
)
from asynclm.agent import RunHandle


class Weather(BaseModel):
    city: str
    temp: float


@dataclass
class Deps:
    api_key: str


@tool
async def get_weather(ctx: RunContext[Deps], city: str) -> str:
    """Current weather."""
    assert_type(ctx.deps, Deps)
    return ctx.deps.api_key + city


async def typed_runs() -> None:
    assert_type(get_weather, Tool)

    plain = Agent([get_weather])
    assert_type(plain, Agent[None, str])
    assert_type((await plain.run("hi")).output, str)

    typed = Agent([get_weather], deps_type=Deps, output_type=Weather)
    assert_type(typed, Agent[Deps, Weather])
    result = await typed.run("Weather in Paris?", deps=Deps("k"), limits=UsageLimits(max_calls=3))
    assert_type(result, RunResult[Weather])
    assert_type(result.output, Weather)
    assert_type(result.output.temp, float)
    assert_type(result.messages, tuple[UserMessage | AssistantMessage, ...])
    await typed.run("x", deps="not deps")  # type: ignore[arg-type]

    async with typed.run_stream("Weather?", deps=Deps("k")) as run:
        assert_type(run, RunHandle[Weather])
        async for _event in run:
            run.approve("c1")
        assert_type(run.result.output, Weather)

    session = typed.session()
    assert_type(session, Session[Deps, Weather])
    assert_type((await session.run("again", deps=Deps("k"))).output, Weather)
    follow = await typed.run("more", deps=Deps("k"), message_history=messages_from_json("[]"))
    assert_type(follow.output, Weather)


def sync_runs() -> None:
    answer = Agent(output_type=int).run_sync("How many?")
    assert_type(answer.output, int)
    assert_type(Agent(deps_type=Deps).run_sync("hi", deps=Deps("k")).output, str)
