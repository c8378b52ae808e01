"""The agent on the real SmolLM2 model (marked: run with `-m real_model`)."""

from __future__ import annotations

import pytest

from asynclm.agent import Agent
from asynclm.commands.demo import CITIES, SYSTEM, make_tools

pytestmark = [pytest.mark.real_model, pytest.mark.anyio]


@pytest.mark.parametrize("mode", ["async", "sync"])
async def test_constrained_weather_agent_on_smollm2(mode: str) -> None:
    agent = Agent(make_tools(), system=SYSTEM, constrained=True, max_calls=3, max_tokens=120)
    result = await agent.run("What is the weather in Paris, Tokyo and London?", mode=mode)
    assert 1 <= len(result.calls) <= 3
    for call in result.calls:  # the grammar admits only known tools with valid arguments
        assert call.ok and call.name == "get_weather" and call.arguments["city"] in CITIES
        assert call.injected_at is not None
        assert (
            f"[INTR] {call.id} [HEAD] {CITIES[call.arguments['city']][1]} [END]"
            in result.transcript
        )
    assert result.usage.cached_prompt_tokens > result.usage.prompt_tokens  # system prompt cached
    assert "[INTR]" not in result.output
