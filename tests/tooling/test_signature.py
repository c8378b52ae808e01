"""`@tool`: schemas from signatures and docstrings, definition errors reported at once."""

import threading
from typing import Annotated, Any, Literal, Optional

import pytest
from pydantic import Field

from asynclm.tooling import (
    Tool,
    ToolDefinitionError,
    parse_docstring,
    tool,
)
from tests.tooling.models import Color, Node, Point, obj


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
    assert walk.parameters == {
        **obj({"tree": {"$ref": "#/$defs/Node"}}, ["tree"]),
        "$defs": {"Node": node},
    }


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


def test_only_the_leading_text_and_the_args_section_are_read() -> None:
    summary, args = parse_docstring(
        """Looks up a word.

        Example:
            >>> lookup("x")

        Keyword Args:
            mode: Not a parameter section of ours.

        Args:
            word: The word.
        """
    )
    assert (summary, args) == ("Looks up a word.", {"word": "The word."})


def test_public_names_are_the_tool_layer_ones() -> None:
    import asynclm
    import asynclm.agent
    import asynclm.tooling

    assert asynclm.tool is asynclm.tooling.tool is asynclm.agent.tool  # the decorator
    assert asynclm.Tool is asynclm.tooling.Tool is asynclm.agent.Tool
