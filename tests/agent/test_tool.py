"""Tests for the tool definition layer: schemas, definition errors, invoke, format_result."""

import dataclasses
import enum
import threading
import time
from typing import Annotated, Any, Literal, Optional

import anyio
import pytest
from pydantic import BaseModel, Field

from asynclm.agent.tool import (
    Tool,
    ToolDefinitionError,
    ToolError,
    ToolTimeoutError,
    format_result,
    parse_docstring,
    tool,
)
from asynclm.cml.call import CallArgumentError


class Color(enum.Enum):
    RED = "red"
    BLUE = "blue"


class Point(BaseModel):
    x: int
    y: int = 0


class Node(BaseModel):
    value: int
    children: list["Node"] = []


def obj(properties: dict[str, Any], required: list[str]) -> dict[str, Any]:
    """The parameter schema `@tool` produces."""
    return {
        "type": "object",
        "properties": properties,
        "required": required,
        "additionalProperties": False,
    }


# --- schema generation -------------------------------------------------------------------------


def test_schema_from_hints_and_docstring() -> None:
    @tool
    def get_weather(city: str, days: int = 1) -> dict:
        """Current weather for a city.

        Args:
            city: The city's name,
                in English.
            days (int): How many days to forecast.

        Returns:
            The forecast.
        """
        return {}

    assert get_weather.openai_schema() == {
        "type": "function",
        "function": {
            "name": "get_weather",
            "description": "Current weather for a city.",
            "parameters": obj(
                {
                    "city": {"type": "string", "description": "The city's name, in English."},
                    "days": {
                        "type": "integer",
                        "default": 1,
                        "description": "How many days to forecast.",
                    },
                },
                ["city"],
            ),
        },
    }
    assert get_weather.is_async is False


def test_schema_scalars_without_docstring() -> None:
    @tool
    def f(a: str, b: int, c: float, d: bool, e: Any, f: None = None) -> None:
        return None

    assert f.description == ""
    assert f.parameters == obj(
        {
            "a": {"type": "string"},
            "b": {"type": "integer"},
            "c": {"type": "number"},
            "d": {"type": "boolean"},
            "e": {},
            "f": {"type": "null", "default": None},
        },
        ["a", "b", "c", "d", "e"],
    )


def test_schema_literal_enum_optional() -> None:
    @tool
    async def paint(
        unit: Literal["c", "f"],
        color: Color,
        note: Optional[str] = None,  # noqa: UP045 (the old spelling, on purpose)
        size: int | None = 3,
    ) -> None:
        """Paints."""

    assert paint.is_async is True
    assert paint.parameters == obj(
        {
            "unit": {"type": "string", "enum": ["c", "f"]},
            "color": {"type": "string", "enum": ["red", "blue"]},
            "note": {"anyOf": [{"type": "string"}, {"type": "null"}], "default": None},
            "size": {"anyOf": [{"type": "integer"}, {"type": "null"}], "default": 3},
        },
        ["unit", "color"],
    )


def test_schema_containers_and_nested_models() -> None:
    @tool
    def route(
        stops: list[str], weights: dict[str, float], start: Point, pair: tuple[int, str]
    ) -> None:
        """Plans a route."""

    assert route.parameters == obj(
        {
            "stops": {"type": "array", "items": {"type": "string"}},
            "weights": {"type": "object", "additionalProperties": {"type": "number"}},
            "start": {
                "type": "object",
                "properties": {"x": {"type": "integer"}, "y": {"type": "integer", "default": 0}},
                "required": ["x"],
            },
            "pair": {
                "type": "array",
                "prefixItems": [{"type": "integer"}, {"type": "string"}],
                "minItems": 2,
                "maxItems": 2,
            },
        },
        ["stops", "weights", "start", "pair"],
    )


def test_schema_recursive_model_keeps_defs() -> None:
    @tool
    def walk(tree: Node) -> None:
        """Walks a tree."""

    node = {
        "type": "object",
        "properties": {
            "value": {"type": "integer"},
            "children": {"type": "array", "items": {"$ref": "#/$defs/Node"}, "default": []},
        },
        "required": ["value"],
    }
    assert walk.parameters == {**obj({"tree": {"$ref": "#/$defs/Node"}}, ["tree"]), "$defs": {
        "Node": node
    }}  # fmt: skip


def test_schema_constraints_and_reserved_names() -> None:
    @tool
    def f(
        title: Annotated[int, Field(ge=0, le=10)],
        json: str = "x",
        model_config: str = "y",
        _hidden: int = 0,
    ) -> None:
        """Tricky names: pydantic reserves some of them; ours are plain parameters.

        Args:
            title: A property named like a JSON Schema keyword.
        """

    assert f.parameters == obj(
        {
            "title": {
                "type": "integer",
                "minimum": 0,
                "maximum": 10,
                "description": "A property named like a JSON Schema keyword.",
            },
            "json": {"type": "string", "default": "x"},
            "model_config": {"type": "string", "default": "y"},
            "_hidden": {"type": "integer", "default": 0},
        },
        ["title"],
    )


def test_schema_string_annotations_resolve() -> None:
    def f(point: "Point", color: "Color | None" = None) -> None:
        """Uses string annotations."""

    made = tool(f)
    assert made.parameters["properties"]["point"]["type"] == "object"
    assert made.parameters["properties"]["color"]["anyOf"][0]["enum"] == ["red", "blue"]


def test_decorator_options() -> None:
    @tool(name="lookup", description="Looks things up.", timeout=2.5, max_result_chars=100)
    def f(q: str) -> str:
        """Ignored summary."""
        return q

    assert (f.name, f.description, f.timeout, f.max_result_chars) == (
        "lookup",
        "Looks things up.",
        2.5,
        100,
    )
    assert f("direct") == "direct"  # a Tool still calls like its function


def test_multi_paragraph_description() -> None:
    summary, args = parse_docstring(
        """Summary line.

        Second paragraph
        wraps here.

        Args:
            a: First.
            b (list[int]): Second,
                continued.
            *args: Star.

        Raises:
            ValueError: not an argument.
        """
    )
    assert summary == "Summary line.\nSecond paragraph wraps here."
    assert args == {"a": "First.", "b": "Second, continued.", "*args": "Star."}


def test_all_definition_problems_reported_at_once() -> None:
    def bad(a, b: "Undefined", c: threading.Lock, d: int = "x", /, *rest: int, **kw: int):  # type: ignore[name-defined]  # noqa: F821
        """Bad.

        Args:
            ghost: Not a parameter.
        """

    with pytest.raises(ToolDefinitionError) as info:
        tool(name="not valid")(bad)
    problems = info.value.problems
    text = str(info.value)
    for expected in (
        "tool name 'not valid' is not a Python identifier",
        "'Undefined'",
        "parameter 'c': unsupported type",
        "*rest is not supported",
        "**kw is not supported",
        "'ghost', which is not in the signature",
        "positional-only",
    ):
        assert expected in text
    assert len(problems) >= 7
    assert isinstance(info.value, ValueError)


def test_definition_problems_keyword_parameters() -> None:
    def bad(*, a, b: int = "x", c: list[int] = "no") -> None:
        """Bad defaults."""

    with pytest.raises(ToolDefinitionError) as info:
        tool(bad)
    assert info.value.problems == [
        "parameter 'a' has no type annotation",
        "parameter 'b': default 'x' is not a valid int",
        "parameter 'c': default 'no' is not a valid list[int]",
    ]


def test_tool_fields_validated() -> None:
    with pytest.raises(ToolDefinitionError) as info:
        Tool(name="1x", description="", parameters={"type": "string"}, timeout=-1)
    text = str(info.value)
    assert "'1x'" in text
    assert "object schema" in text
    assert "timeout must be positive" in text
    with pytest.raises(ToolDefinitionError, match="not in properties"):
        Tool("t", "", {"type": "object", "properties": {}, "required": ["x"]})
    with pytest.raises(ToolDefinitionError, match="not a valid JSON schema"):
        Tool("t", "", {"type": "object", "properties": {"x": {"type": 5}}})


# --- from_schema -------------------------------------------------------------------------------


def test_from_schema_openai_form() -> None:
    doc = {
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
    made = Tool.from_schema(doc, timeout=3.0)
    assert made.openai_schema() == doc
    assert (made.function, made.timeout) == (None, 3.0)


def test_from_schema_bfcl_form_is_normalized() -> None:
    async def fn(**kwargs: Any) -> Any:
        return kwargs

    doc = {
        "name": "math.hypot",
        "description": "Hypotenuse.",
        "parameters": {
            "type": "dict",
            "properties": {
                "sides": {"type": "tuple", "items": {"type": "float"}},
                "extra": {"type": "any"},
            },
            "required": ["sides"],
        },
    }
    made = Tool.from_schema(doc, fn)
    assert made.name == "math.hypot"
    assert made.is_async is True
    assert made.parameters == {
        "type": "object",
        "properties": {
            "sides": {"type": "array", "items": {"type": "number"}},
            "extra": {},
        },
        "required": ["sides"],
    }


def test_from_schema_reports_problems() -> None:
    with pytest.raises(ToolDefinitionError) as info:
        Tool.from_schema({"description": 3, "parameters": "nope"})
    assert len(info.value.problems) == 3
    with pytest.raises(ToolDefinitionError, match="not a \\(dotted\\) Python identifier"):
        Tool.from_schema({"name": "bad name"})


def test_from_schema_without_parameters() -> None:
    made = Tool.from_schema({"name": "ping"})
    assert made.parameters == {"type": "object", "properties": {}}


# --- invoke ------------------------------------------------------------------------------------


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
    message = str(info.value)
    assert "'b' is a required property" in message
    assert "'one' is not of type 'integer'" in message
    assert "'c'" in message


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

    limiter = anyio.CapacityLimiter(2)
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


# --- format_result -----------------------------------------------------------------------------


@dataclasses.dataclass
class Pair:
    a: int
    b: str


@pytest.mark.parametrize(
    ("value", "text"),
    [
        ("plain text", "plain text"),
        ({"a": [1, 2.5, None, True]}, '{"a": [1, 2.5, null, true]}'),
        (42, "42"),
        (None, "null"),
        (False, "false"),
        ({"é": "ü"}, '{"é": "ü"}'),
        ({"p": Point(x=1)}, '{"p": {"x": 1, "y": 0}}'),
        (Pair(1, "x"), '{"a": 1, "b": "x"}'),
        ({"s": {3, 1}}, '{"s": [1, 3]}'),
        ({"obj": Color.RED}, '{"obj": "Color.RED"}'),
    ],
)
def test_format_result(value: Any, text: str) -> None:
    assert format_result(value, 1000) == text


def test_format_result_circular_falls_back_to_str() -> None:
    value: list[Any] = [1]
    value.append(value)
    assert format_result(value, 100) == "[1, [...]]"


def test_format_result_truncation() -> None:
    text = format_result("x" * 20_000, 100)
    assert len(text) <= 100
    assert text.endswith("… [truncated 19925 chars]")
    assert text.startswith("x" * 75)
    assert len(format_result("y" * 100, 100)) == 100  # exactly at the cap: untouched
    assert format_result("z" * 50, 5) == "zzzzz"  # no room for the marker
    with pytest.raises(ValueError):
        format_result("x", 0)


def test_tool_format_result_uses_its_cap() -> None:
    @tool(max_result_chars=30)
    def f() -> None:
        return None

    assert len(f.format_result(list(range(100)))) <= 30
