"""Calling modes and run specifications: chosen and checked once, when a run is specified."""

from __future__ import annotations

import pytest

from asynclm.agent import (
    Agent,
    AsyncMode,
    RunSpec,
    SyncMode,
    SyncParallelMode,
    calling_mode,
)
from asynclm.tooling import ToolThreads
from tests.agent.scripts import engine_for, sleeper


def test_each_mode_has_one_strategy() -> None:
    assert isinstance(calling_mode("async"), AsyncMode)
    assert isinstance(calling_mode("sync-parallel"), SyncParallelMode)
    assert isinstance(calling_mode("sync"), SyncMode)
    assert calling_mode(SyncMode()) == SyncMode()
    assert [m.pauses_after_rejection for m in (AsyncMode(), SyncParallelMode(), SyncMode())] == [
        False,
        False,
        True,
    ]
    for bad in ("turbo", None, 3):
        with pytest.raises(ValueError, match="mode must be one of"):
            calling_mode(bad)  # type: ignore[arg-type]


@pytest.mark.anyio
async def test_an_agent_specifies_its_runs() -> None:
    slow = sleeper("slow", 0.0)
    agent = Agent([slow], model=engine_for("ok"), mode="sync", max_tokens=7, tool_timeout=3.0)
    spec = agent.run_spec()
    assert (spec.mode, spec.max_tokens, spec.tool_timeout) == (SyncMode(), 7, 3.0)
    assert dict(spec.tools) == {"slow": slow}
    assert isinstance(agent.run_spec("async").mode, AsyncMode)
    assert agent.run_spec().mode == SyncMode()  # the agent's own mode is unchanged
    with pytest.raises(TypeError):
        spec.tools["other"] = slow  # type: ignore[index]
    with pytest.raises(ValueError, match="mode must be one of"):
        await agent.run("go", mode="turbo")  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("settings", "message"),
    [
        ({"max_tokens": 0}, "max_tokens must be an int >= 1"),
        ({"tool_timeout": -1}, "tool_timeout must be positive"),
        ({"tool_timeout": 0}, "tool_timeout must be positive"),
        ({"max_tool_threads": 0}, "max_tool_threads must be >= 1"),
        ({"mode": "turbo"}, "mode must be one of"),
    ],
)
def test_bad_settings_are_refused_when_the_agent_is_made(settings: dict, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        Agent(model=engine_for("ok"), **settings)


def test_a_run_specification_lists_every_problem() -> None:
    slow = sleeper("slow", 0.0)
    agent = Agent([slow], model=engine_for("ok"))
    with pytest.raises(ValueError) as info:
        RunSpec(
            tools={"wrong": slow},
            mode=AsyncMode(),
            sampler=agent.sampler,
            open_context=agent.open_context,
            make_constraint=agent.make_constraint,
            tool_threads=ToolThreads(1),
            max_tokens=0,
            max_empty_traps=0,
        )
    message = str(info.value)
    for expected in ("keyed by their names", "max_tokens", "max_empty_traps"):
        assert expected in message
