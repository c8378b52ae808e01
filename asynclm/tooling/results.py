"""A tool's result as bounded text for the model."""

from __future__ import annotations

import dataclasses
import json
from typing import Any

from pydantic import BaseModel

from asynclm.tooling.text import clean_text

__all__ = ["DEFAULT_MAX_RESULT_CHARS", "format_result"]

DEFAULT_MAX_RESULT_CHARS = 4000


def format_result(value: Any, max_chars: int) -> str:
    """Turns a tool result into text for the model, at most `max_chars` long.

    Strings pass as they are; bytes become their text when they are UTF-8, else a note such
    as `<binary data: 512 bytes>` (a model reads text); everything else becomes JSON (pydantic
    models and dataclasses through their fields, anything else not JSON-serialisable through
    `str`). Lone surrogates become U+FFFD. Text over the cap is cut and ends with a marker such
    as `… [truncated 12345 chars]`.

    Args:
        value: The result.
        max_chars: The cap (positive).

    Returns:
        The text.

    Raises:
        ValueError: `max_chars` is not positive.
    """
    if max_chars <= 0:
        raise ValueError(f"max_chars must be positive, got {max_chars}")
    if isinstance(value, str):
        text = value
    elif isinstance(value, (bytes, bytearray, memoryview)):
        text = _bytes_text(bytes(value))
    else:
        text = _to_json(value)
    return _truncate(clean_text(text), max_chars)


def _bytes_text(data: bytes) -> str:
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError:
        return f"<binary data: {len(data)} bytes>"


def _to_json(value: Any) -> str:
    try:
        return json.dumps(value, ensure_ascii=False, default=_json_default)
    except (TypeError, ValueError):  # circular structures, exotic keys
        return str(value)


def _json_default(value: Any) -> Any:
    if isinstance(value, BaseModel):
        return value.model_dump(mode="json")
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return dataclasses.asdict(value)
    if isinstance(value, (set, frozenset)):
        return sorted(value, key=repr)
    if isinstance(value, (bytes, bytearray, memoryview)):
        return _bytes_text(bytes(value))
    return str(value)


def _truncate(text: str, max_chars: int) -> str:
    if len(text) <= max_chars:
        return text
    keep = max_chars
    for _ in range(3):  # the marker's length depends on the count it reports
        marker = f"… [truncated {len(text) - keep} chars]"
        keep = max(0, max_chars - len(marker))
    if keep == 0:
        return text[:max_chars]
    return text[:keep] + f"… [truncated {len(text) - keep} chars]"
