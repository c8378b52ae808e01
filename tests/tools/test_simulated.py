"""Simulated tools: deterministic latency and result from a function description."""

import time

import pytest

from asynclm.cml.call import CallArgumentError
from asynclm.tooling import ToolDefinitionError
from asynclm.tools.simulated import fnv1a_32, simulated, simulated_latency

BFCL_DOC = {
    "name": "math.factorial",
    "description": "Factorial of a number.",
    "parameters": {
        "type": "dict",
        "properties": {"n": {"type": "integer"}, "scale": {"type": "float"}},
        "required": ["n"],
    },
}
OPENAI_DOC = {
    "type": "function",
    "function": {
        "name": "get_weather",
        "description": "Weather.",
        "parameters": {
            "type": "object",
            "properties": {"city": {"type": "string"}},
            "required": ["city"],
        },
    },
}


@pytest.mark.parametrize(
    ("text", "value"),
    [("", 0x811C9DC5), ("a", 0xE40C292C), ("foobar", 0xBF9CF968)],
)
def test_fnv1a_32_reference_values(text: str, value: int) -> None:
    assert fnv1a_32(text) == value


def test_latency_formula_and_range() -> None:
    names = [f"tool_{i}" for i in range(500)] + ["get_weather", "math.factorial", "é"]
    latencies = [simulated_latency(name) for name in names]
    assert all(0.030 <= latency <= 0.500 for latency in latencies)
    assert len(set(latencies)) > 200  # spread over the range
    assert simulated_latency("get_weather") == (30 + fnv1a_32("get_weather") % 471) / 1000
    assert simulated_latency("get_weather") == simulated_latency("get_weather")


@pytest.mark.anyio
async def test_bfcl_doc_deterministic_result() -> None:
    tool = simulated(BFCL_DOC, latency_scale=0.01)
    assert tool.name == "math.factorial"
    assert tool.is_async
    assert tool.parameters["properties"]["scale"] == {"type": "number"}
    first = await tool.invoke({"n": 5})
    assert first == {"function": "math.factorial", "arguments": {"n": 5}, "value": first["value"]}
    assert len(first["value"]) == 8
    assert await simulated(BFCL_DOC, latency_scale=0).invoke({"n": 5}) == first
    assert (await tool.invoke({"n": 6}))["value"] != first["value"]


@pytest.mark.anyio
async def test_openai_doc_and_validation() -> None:
    tool = simulated(OPENAI_DOC, latency=0)
    assert tool.openai_schema() == OPENAI_DOC
    assert (await tool.invoke({"city": "Paris"}))["arguments"] == {"city": "Paris"}
    with pytest.raises(CallArgumentError):
        await tool.invoke({"city": 3})


@pytest.mark.anyio
async def test_latency_is_slept_and_scaled() -> None:
    tool = simulated(OPENAI_DOC, latency_scale=0.1)
    expected = simulated_latency("get_weather") * 0.1
    assert tool.latency == expected  # stated in the tool's documentation
    assert simulated(OPENAI_DOC, latency=0.3).latency == 0.3
    start = time.monotonic()
    await tool.invoke({"city": "Paris"})
    elapsed = time.monotonic() - start
    assert expected <= elapsed < expected + 0.5
    start = time.monotonic()
    await simulated(OPENAI_DOC, latency=0.02).invoke({"city": "Paris"})
    assert 0.02 <= time.monotonic() - start < 0.5


@pytest.mark.anyio
async def test_fixed_and_callable_results() -> None:
    fixed = simulated(OPENAI_DOC, latency=0, result={"temp": 21})
    assert await fixed.invoke({"city": "Paris"}) == {"temp": 21}
    computed = simulated(OPENAI_DOC, latency=0, result=lambda city: city.upper())
    assert await computed.invoke({"city": "Paris"}) == "PARIS"


def test_bad_inputs() -> None:
    with pytest.raises(ValueError, match="latency"):
        simulated(OPENAI_DOC, latency=-1)
    with pytest.raises(ValueError, match="latency_scale"):
        simulated(OPENAI_DOC, latency_scale=-1)
    with pytest.raises(ToolDefinitionError):
        simulated({"description": "no name"})
