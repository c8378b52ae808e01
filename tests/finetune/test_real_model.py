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


# What the shipped adapter is known not to do reliably yet (issue 8 stays open until it does):
# measured on its held-out evaluation (call_exact_match 0.458, result_use 0.458 over 72 runs).
UNDERTRAINED = pytest.mark.xfail(
    reason="the shipped adapter (787 steps, 1.37 epochs) does not yet copy every result in "
    "async mode or match unseen tools' calls reliably; see docs/FINETUNE.md",
    strict=False,
)


def _weather_run(engine, mode, constrained=None):
    from asynclm.agent import Agent

    tools, results = weather_tools()
    agent = Agent(tools, model=engine, mode=mode, max_tokens=160, constrained=constrained,
                  system="You are a weather assistant. Look up every city the user names, "
                  "then answer briefly.")  # fmt: skip
    return agent.run_sync("What is the weather in Paris, Tokyo and London right now?"), results


@pytest.mark.parametrize("mode", ["async", "sync"])
@pytest.mark.parametrize("constrained", [None, "calls"])
def test_the_adapter_calls_every_city(engine, mode, constrained):
    """Unconstrained: well-formed CML without a grammar. With the call-block grammar (the
    markers are the adapter's special tokens): the same calls, the turn still the model's."""
    result, _ = _weather_run(engine, mode, constrained)
    assert not result.errors
    assert sorted(c.arguments["city"] for c in result.calls) == ["London", "Paris", "Tokyo"]
    assert result.finish_reason == "eos"
    assert result.output  # it answers


# sync is deterministic (generation pauses at each call); in async a result may arrive
# mid-answer, which the shipped adapter does not yet always handle
@pytest.mark.parametrize("mode", [pytest.param("async", marks=UNDERTRAINED), "sync"])
def test_the_adapter_reports_every_result(engine, mode):
    # the values each tool returned (its temperature); the wording around them is the model's
    # own ("sunny" may come back as "the sun is shining")
    result, results = _weather_run(engine, mode)
    for text in results.values():
        degrees = text.split(", ")[1].split()[0]
        assert degrees in result.output, (degrees, result.output)


@pytest.fixture(scope="module")
def held_out(engine):
    from asynclm.finetune.evaluate import EvalConfig, evaluate

    return evaluate(engine, EvalConfig(tasks=4, modes=("async",), latency_scale=0.2))


def test_held_out_tools_get_well_formed_calls(held_out):
    assert held_out["cml_wellformed"] >= 0.75


@UNDERTRAINED
def test_held_out_tools_are_called_right(held_out):
    assert held_out["call_exact_match"] >= 0.5
