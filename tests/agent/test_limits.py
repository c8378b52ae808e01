"""Limits that hold: calls, tool retries, wall time, tokens, the model's window; finish reasons."""

from __future__ import annotations

import dataclasses
import time

import pytest

from asynclm.agent import Agent, UsageLimits, tool
from asynclm.backends.scripted import ScriptedModel, actions, replay
from asynclm.engine.engine import Engine
from asynclm.engine.loader import default_tokenizer
from tests.agent.scripts import engine_for, sleeper

pytestmark = pytest.mark.anyio


def calls(n: int) -> tuple[str, ...]:
    return tuple(f"[CALL] c{i} [HEAD] slow(x={i}) [END]" for i in range(n))


async def test_max_calls_holds_without_a_grammar() -> None:
    slow = sleeper("slow", 0.0)
    # the model is told once that the limit is reached; it calls again: the run ends
    agent = Agent([slow], model=engine_for(*calls(6), "[TRAP][END]", "end"), max_calls=2)
    result = await agent.run("go")
    assert result.finish_reason == "max_calls"
    assert [c.ok for c in result.calls] == [True, True, False, False]
    assert "call limit reached (2 calls)" in (result.calls[2].error or "")
    assert "[INTR] c2 [HEAD] error: call limit reached" in result.transcript


async def test_a_model_that_obeys_the_call_limit_answers() -> None:
    slow = sleeper("slow", 0.0)
    script = (*calls(3), "[TRAP][END]", "Done with two.")
    result = await Agent([slow], model=engine_for(*script), max_calls=2).run("go")
    assert result.finish_reason == "eos" and result.output == "Done with two."
    assert [c.ok for c in result.calls] == [True, True, False]


async def test_a_failing_tool_ends_the_run_after_its_retries() -> None:
    @tool(retries=1)
    def broken() -> str:
        """Always fails."""
        raise ValueError("no")

    script = [f"[CALL] b{i} [HEAD] broken() [END][TRAP][END]" for i in range(10)]
    result = await Agent([broken], model=engine_for(*script), mode="sync").run("go")
    assert result.finish_reason == "tool_retries" and len(result.calls) == 2
    default = dataclasses.replace(broken, retries=None)  # the agent's tool_retries then
    agent = Agent([default], model=engine_for(*script), mode="sync", tool_retries=3)
    assert len((await agent.run("go")).calls) == 4


async def test_wall_time_ends_the_run_and_cancels_its_calls() -> None:
    slow = sleeper("slow", 30.0)
    agent = Agent([slow], model=engine_for("[CALL] a [HEAD] slow() [END]", "[TRAP][END]", "x"))
    start = time.monotonic()
    result = await agent.run("go", limits=UsageLimits(max_seconds=0.3))
    assert time.monotonic() - start < 5
    assert result.finish_reason == "time"
    (call,) = result.calls
    assert not call.ok and call.cancelled and call.finished_at is not None


async def test_the_token_budget_ends_the_run_with_its_records() -> None:
    slow = sleeper("slow", 5.0)
    result = await Agent([slow], model=engine_for(*calls(1), "x" * 200), max_tokens=30).run("go")
    assert result.finish_reason == "length" and result.usage.generated_tokens == 30
    assert result.calls[0].cancelled and not result.calls[0].ok  # cut off, not "ok"


async def test_a_context_past_the_models_window_ends_with_length() -> None:
    tokenizer = default_tokenizer()
    slow = sleeper("slow", 0.0, result="y " * 300)  # results that do not all fit the window
    model = ScriptedModel(tokenizer, actions(*calls(3), "[TRAP][END]", "z"), max_position=900)
    engine = Engine(model, tokenizer, name="window", num_pages=512)
    agent = Agent([slow], model=engine, max_tokens=4000, example=False)
    result = await agent.run("go")
    assert result.finish_reason == "length"
    assert any("do not fit the model's window" in error for error in result.errors)
    assert len(result.calls) == 3 and all(c.finished_at is not None for c in result.calls)
    # and generation itself stops at the window's end
    writer = Engine(
        ScriptedModel(tokenizer, replay("w " * 500), max_position=300),
        tokenizer,
        name="window2",
        num_pages=512,
    )
    written = await Agent(model=writer, max_tokens=4000).run("go")
    assert written.finish_reason == "length" and written.usage.generated_tokens < 300


async def test_waiting_for_nothing_ends_as_stalled() -> None:
    result = await Agent(model=engine_for(*["[TRAP][END]"] * 10)).run("go")
    assert result.finish_reason == "stalled"


def test_limits_are_checked() -> None:
    with pytest.raises(ValueError) as info:
        UsageLimits(max_tokens=0, max_calls=-1, max_seconds=0, tool_retries=-2)
    for expected in ("max_tokens", "max_calls", "max_seconds", "tool_retries"):
        assert expected in str(info.value)
    with pytest.raises(ValueError, match="max_seconds"):
        Agent(model=engine_for("x"), max_seconds=float("nan"))
