"""`describe_tool`: the compact documentation the model reads."""

from typing import Annotated, Any, Literal

import pytest
from pydantic import Field

from asynclm.tooling import Tool, describe_tool, tool, type_text
from tests.tooling.models import Color, Node, Point


def test_a_typed_tool_reads_like_a_python_signature() -> None:
    @tool(latency=0.4512)
    def get_weather(
        city: str,
        unit: Literal["c", "f"] = "c",
        days: Annotated[int, Field(ge=1, le=7)] = 1,
        tags: list[str] | None = None,
    ) -> str:
        """Current weather for a city.

        Args:
            city: The city's name,
                in English.
            days: How many days to forecast.
        """
        return ""

    assert describe_tool(get_weather) == (
        'get_weather(city: str, unit: "c" | "f" = "c", days: int = 1, '
        "tags: list[str] | None = None)  # takes about 0.45 s\n"
        "  Current weather for a city.\n"
        "  city: The city's name, in English.\n"
        "  days: How many days to forecast. [>= 1, <= 7]"
    )


def test_a_bfcl_function_without_defaults() -> None:
    doc = {
        "name": "spotify.play",
        "description": "Play specific tracks from a given artist.",
        "parameters": {
            "type": "dict",
            "properties": {
                "artist": {"type": "string", "description": "The artist."},
                "duration": {"type": "integer", "description": "Minutes."},
                "shuffle": {"type": "boolean"},
            },
            "required": ["artist", "duration"],
        },
    }
    assert describe_tool(Tool.from_schema(doc)) == (
        "spotify.play(artist: str, duration: int, shuffle: bool = None)\n"
        "  Play specific tracks from a given artist.\n"
        "  artist: The artist.\n"
        "  duration: Minutes."
    )


def test_nested_objects_fall_back_to_compact_json() -> None:
    @tool
    def route(start: Point, stops: list[Point] | None = None) -> None:
        """Plans a route."""

    point = '{"properties":{"x":{"type":"integer"},"y":{"default":0,"type":"integer"}},'
    point += '"required":["x"],"type":"object"}'
    assert describe_tool(route) == (
        "route(start: dict, stops: dict = None)\n"
        "  Plans a route.\n"
        f"  start: schema: {point}\n"
        f'  stops: schema: {{"anyOf":[{{"items":{point},"type":"array"}},{{"type":"null"}}]}}'
    )


def test_recursive_models_come_with_their_definitions() -> None:
    @tool
    def walk(tree: Node) -> None:
        """Walks a tree."""

    lines = describe_tool(walk).splitlines()
    assert lines[2] == '  tree: schema: {"$ref":"#/$defs/Node"}'
    assert lines[3].startswith('  $defs: {"Node":{"properties":{"value":{"type":"integer"}')


def test_a_tool_without_parameters_or_description_is_one_line() -> None:
    assert describe_tool(Tool.from_schema({"name": "ping"})) == "ping()"


@pytest.mark.parametrize(
    ("schema", "text"),
    [
        ({"type": "string"}, "str"),
        ({"type": "integer"}, "int"),
        ({"type": "number"}, "float"),
        ({"type": "boolean"}, "bool"),
        ({}, "Any"),
        ({"type": ["string", "null"]}, "str | None"),
        ({"anyOf": [{"type": "integer"}, {"type": "null"}]}, "int | None"),
        ({"enum": ["a", "b"]}, '"a" | "b"'),
        ({"enum": [1, None]}, "1 | None"),
        ({"const": "x"}, '"x"'),
        ({"type": "array"}, "list"),
        ({"type": "array", "items": {"type": "string"}}, "list[str]"),
        (
            {"type": "array", "prefixItems": [{"type": "integer"}, {"type": "string"}]},
            "tuple[int, str]",
        ),
        ({"type": "object"}, "dict"),
        ({"type": "object", "additionalProperties": {"type": "number"}}, "dict[str, float]"),
        ({"type": "object", "properties": {"a": {}}}, None),
        ({"$ref": "#/$defs/Node"}, None),
        ({"type": "array", "items": {"type": "object", "properties": {"a": {}}}}, None),
    ],
)
def test_type_text(schema: dict[str, Any], text: str | None) -> None:
    assert type_text(schema) == text


def test_enums_and_formats() -> None:
    @tool
    def f(color: Color, when: Annotated[str, Field(pattern=r"^\d+$")] = "1") -> None:
        """F."""

    assert describe_tool(f) == (
        'f(color: "red" | "blue", when: str = "1")\n  F.\n  when: [pattern ^\\d+$]'
    )
