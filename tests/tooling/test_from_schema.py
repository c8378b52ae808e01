"""`Tool.from_schema`: OpenAI and BFCL function descriptions."""

from typing import Any

import pytest

from asynclm.tooling import (
    Tool,
    ToolDefinitionError,
)


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
