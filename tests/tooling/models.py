"""Types shared by the tool tests."""

import enum
from typing import Any

from pydantic import BaseModel


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
