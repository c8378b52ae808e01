"""`Tool.invoke`: validation, sync and async functions, time limits, thread limits."""

import dataclasses
import threading
import time
from typing import Any

import anyio
import jsonschema
import pytest

from asynclm.cml.call import CallArgumentError
from asynclm.tooling import (
    Tool,
    ToolDefinitionError,
    ToolError,
    ToolThreads,
    ToolTimeoutError,
    tool,
)
from tests.tooling.models import Color, Point


@pytest.mark.anyio
async def test_invoke_sync_runs_in_worker_thread() -> None:
    @tool
    def where(x: int) -> tuple[int, int]:
        return x, threading.get_ident()

    value, thread = await where.invoke({"x": 4})
    assert value == 4
    assert thread != threading.get_ident()


@pytest.mark.anyio
async def test_invoke_async_and_prepare_converts_values() -> None:
    @tool
    async def paint(color: Color, at: Point, pair: tuple[int, int]) -> Any:
        return color, at, pair

    assert await paint.invoke({"color": "red", "at": {"x": 1}, "pair": (1, 2)}) == (
        Color.RED,
        Point(x=1, y=0),
        (1, 2),
    )


@pytest.mark.anyio
async def test_invoke_validation_errors_listed() -> None:
    @tool
    def f(a: int, b: str) -> None:
        return None

    with pytest.raises(CallArgumentError) as info:
        await f.invoke({"a": "one", "c": 1})
    assert str(info.value) == (
        "invalid arguments: a: Input should be a valid integer; b: Field required; "
        "c: Extra inputs are not permitted"
    )


@pytest.mark.anyio
async def test_invoke_timeout_async() -> None:
    @tool(timeout=0.05)
    async def slow() -> None:
        await anyio.sleep(10)

    start = time.monotonic()
    with pytest.raises(ToolTimeoutError, match=r"'slow' timed out after 0\.05 s"):
        await slow.invoke({})
    assert time.monotonic() - start < 2


@pytest.mark.anyio
async def test_invoke_timeout_sync_abandons_thread() -> None:
    release = threading.Event()

    @tool(timeout=0.05)
    def blocked() -> None:
        release.wait(5)

    start = time.monotonic()
    with pytest.raises(ToolTimeoutError):
        await blocked.invoke({})
    assert time.monotonic() - start < 2
    release.set()


@pytest.mark.anyio
async def test_timeout_error_from_function_is_not_ours() -> None:
    @tool(timeout=5)
    async def raises() -> None:
        raise TimeoutError("upstream")

    with pytest.raises(TimeoutError, match="upstream") as info:
        await raises.invoke({})
    assert not isinstance(info.value, ToolTimeoutError)


@pytest.mark.anyio
async def test_invoke_limiter_bounds_threads() -> None:
    lock = threading.Lock()
    running = peak = 0

    @tool
    def work() -> None:
        nonlocal running, peak
        with lock:
            running += 1
            peak = max(peak, running)
        time.sleep(0.02)
        with lock:
            running -= 1

    limiter = ToolThreads(2)
    async with anyio.create_task_group() as group:
        for _ in range(6):
            group.start_soon(lambda: work.invoke({}, limiter=limiter))
    assert peak == 2


@pytest.mark.anyio
async def test_invoke_without_function() -> None:
    made = Tool.from_schema({"name": "ghost"})
    with pytest.raises(ToolError, match="no function"):
        await made.invoke({})


def test_tool_is_frozen_and_hashable() -> None:
    @tool
    def f(a: int) -> int:
        return a

    with pytest.raises(dataclasses.FrozenInstanceError):
        f.name = "g"  # type: ignore[misc]
    assert {f: 1}[f] == 1


@pytest.mark.anyio
async def test_a_typed_tool_validates_once_with_its_model(monkeypatch: pytest.MonkeyPatch) -> None:
    @tool
    def f(n: int, color: Color) -> Any:
        return n, color

    monkeypatch.setattr(jsonschema, "Draft202012Validator", None)  # not used on a call
    assert await f.invoke({"n": 3, "color": "blue"}) == (3, Color.BLUE)
    assert f.validate({"n": 1, "color": "red"}) == {"n": 1, "color": Color.RED}


@pytest.mark.anyio
async def test_json_types_are_kept_strictly() -> None:
    @tool
    def f(n: int, x: float = 0.0, flag: bool = False) -> Any:
        return n, x, flag

    assert await f.invoke({"n": 2, "x": 3}) == (2, 3.0, False)  # an int is a valid number
    for wrong in ({"n": "3"}, {"n": True}, {"n": 1, "flag": "yes"}, {"n": 1, "x": "1.5"}):
        with pytest.raises(CallArgumentError, match="invalid arguments: "):
            await f.invoke(wrong)


@pytest.mark.anyio
async def test_a_schema_tool_validates_with_its_json_schema() -> None:
    async def run(**kwargs: Any) -> Any:
        return kwargs

    doc = {"name": "f", "parameters": {"type": "dict", "properties": {"k": {"type": "integer"}}}}
    made = Tool.from_schema(doc, run)
    assert await made.invoke({"k": 1}) == {"k": 1}
    with pytest.raises(CallArgumentError, match="k: 'one' is not of type 'integer'"):
        await made.invoke({"k": "one"})


@pytest.mark.anyio
async def test_non_json_arguments_are_refused_clearly() -> None:
    @tool
    def f(n: int) -> int:
        return n

    with pytest.raises(CallArgumentError, match="not JSON values"):
        await f.invoke({"n": object()})


@pytest.mark.anyio
async def test_the_default_timeout_applies_to_tools_without_their_own() -> None:
    @tool
    async def slow() -> None:
        await anyio.sleep(10)

    @tool(timeout=0.05)
    async def own() -> None:
        await anyio.sleep(10)

    with pytest.raises(ToolTimeoutError, match=r"'slow' timed out after 0\.05 s"):
        await slow.invoke({}, timeout=0.05)
    with pytest.raises(ToolTimeoutError, match=r"after 0\.05 s"):  # its own limit wins
        await own.invoke({}, timeout=30)
    with pytest.raises(ValueError, match="timeout must be positive"):
        await slow.invoke({}, timeout=0)


def test_latency_is_part_of_the_description() -> None:
    @tool(latency=0.25)
    def f() -> None:
        return None

    assert f.latency == 0.25
    doc = {"name": "g", "description": "G."}
    assert Tool.from_schema(doc, latency=1.5).latency == 1.5
    assert Tool.from_schema(doc).latency is None
    for bad in (-1.0, float("nan"), float("inf")):
        with pytest.raises(ToolDefinitionError, match="latency must be a non-negative"):
            Tool.from_schema(doc, latency=bad)


@pytest.mark.anyio
async def test_a_replaced_schema_gets_its_own_validator() -> None:
    @tool
    def f(n: int) -> Any:
        return n

    assert f.validator is not None and f.validator.schema == f.parameters
    same = dataclasses.replace(f, timeout=5.0)
    assert same.validator is f.validator  # the pydantic model still fits its parameters
    loose = {"type": "object", "properties": {"n": {"type": "string"}}}
    other = dataclasses.replace(f, parameters=loose)
    assert await other.invoke({"n": "x"}) == "x"  # validated by the new schema, not the model
    with pytest.raises(CallArgumentError, match="n: 1 is not of type 'string'"):
        await other.invoke({"n": 1})


def test_a_validator_must_say_what_it_validates() -> None:
    with pytest.raises(ToolDefinitionError, match="validator needs the `schema`"):
        Tool("t", "", {"type": "object"}, validator=lambda arguments: arguments)  # type: ignore[arg-type]


@pytest.mark.anyio
async def test_a_returned_generator_is_an_error_and_a_returned_coroutine_is_awaited() -> None:
    async def later() -> str:
        return "awaited"

    @tool
    def gives_coroutine() -> Any:
        return later()

    @tool
    def gives_generator() -> Any:
        return (i for i in range(3))

    assert await gives_coroutine.invoke({}) == "awaited"
    with pytest.raises(ToolError, match="returned a generator"):
        await gives_generator.invoke({})
