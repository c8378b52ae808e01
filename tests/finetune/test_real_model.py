"""The shipped adapter on the real SmolLM2-135M: CML without a grammar (marked: slow)."""

import anyio
import pytest

from asynclm.finetune.pipeline import ADAPTER_NAME, shipped_root

pytestmark = pytest.mark.real_model

ADAPTER = shipped_root() / ADAPTER_NAME


@pytest.fixture(scope="module")
def engine():
    if not (ADAPTER / "adapter_config.json").exists():
        pytest.skip("no shipped adapter")
    from asynclm.engine.engine import Engine

    return Engine.load("smollm2-135m", adapter=ADAPTER)


def weather_tools():
    from typing import Literal

    from asynclm.tooling import tool

    results = {"Paris": "sunny, 21 C", "Tokyo": "light rain, 17 C", "London": "cloudy, 15 C"}

    @tool(latency=0.3)
    async def get_weather(city: Literal["Paris", "Tokyo", "London"]) -> str:
        """Current weather in a city."""
        await anyio.sleep(0.3)
        return results[city]

    return [get_weather], results


@pytest.mark.parametrize("mode", ["async", "sync"])
def test_the_adapter_calls_every_city_and_reports_the_results_unconstrained(engine, mode):
    from asynclm.agent import Agent

    tools, results = weather_tools()
    agent = Agent(tools, model=engine, mode=mode, max_tokens=160,
                  system="You are a weather assistant. Look up every city the user names, "
                  "then answer briefly.")  # fmt: skip
    result = agent.run_sync("What is the weather in Paris, Tokyo and London right now?")
    assert not result.errors
    assert sorted(c.arguments["city"] for c in result.calls) == ["London", "Paris", "Tokyo"]
    assert result.finish_reason == "eos"
    for text in results.values():
        assert text.split(",")[0] in result.output


def test_held_out_tools_are_called_right(engine):
    from asynclm.finetune.evaluate import EvalConfig, evaluate

    report = evaluate(engine, EvalConfig(tasks=4, modes=("async",), latency_scale=0.2))
    assert report["cml_wellformed"] >= 0.75
    assert report["call_exact_match"] >= 0.5
