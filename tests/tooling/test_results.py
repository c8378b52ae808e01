"""`format_result`: any result as bounded text for the model."""

import dataclasses
from typing import Any

import pytest

from asynclm.tooling import (
    format_result,
    tool,
)
from tests.tooling.models import Color, Point


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


def test_bytes_become_text_or_a_note() -> None:
    assert format_result("héllo".encode(), 100) == "héllo"
    assert format_result(b"\xff\x00\xfe", 100) == "<binary data: 3 bytes>"
    assert format_result({"raw": b"\x80"}, 100) == '{"raw": "<binary data: 1 bytes>"}'


def test_lone_surrogates_become_replacement_characters() -> None:
    assert format_result("a\ud800b", 100) == "a\ufffdb"
    assert format_result(["\udfff"], 100) == '["\ufffd"]'
