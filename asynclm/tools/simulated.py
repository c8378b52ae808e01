"""Simulated tools: any function description, a deterministic latency and result.

As in the AsyncLM paper's evaluation, a simulated call sleeps `30 + h % 471` milliseconds,
where `h` is the 32-bit FNV-1a hash of the function name, so every function has its own stable
latency between 30 and 500 ms.
"""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Callable, Mapping
from typing import Any

import anyio

from asynclm.tooling import Tool

__all__ = ["default_result", "fnv1a_32", "simulated", "simulated_latency"]

_FNV_OFFSET = 0x811C9DC5
_FNV_PRIME = 0x01000193


def fnv1a_32(text: str) -> int:
    """The 32-bit FNV-1a hash of a string's UTF-8 bytes.

    Args:
        text: The string.

    Returns:
        The hash, in [0, 2**32).
    """
    value = _FNV_OFFSET
    for byte in text.encode("utf-8"):
        value = ((value ^ byte) * _FNV_PRIME) & 0xFFFFFFFF
    return value


def simulated_latency(name: str) -> float:
    """The simulated latency of a function, in seconds: `(30 + fnv1a_32(name) % 471) / 1000`.

    Args:
        name: The function name.

    Returns:
        A latency between 0.030 and 0.500 seconds.
    """
    return (30 + fnv1a_32(name) % 471) / 1000


def simulated(
    doc: Mapping[str, Any],
    *,
    latency: float | None = None,
    result: Any = None,
    latency_scale: float = 1.0,
) -> Tool:
    """A tool that only pretends to work: it sleeps, then returns a deterministic result.

    Args:
        doc: The function description, OpenAI `{"type": "function", "function": {...}}` or
            BFCL `{"name", "description", "parameters"}` form.
        latency: Seconds each call sleeps; defaults to `simulated_latency(name)`.
        result: What each call returns; a callable is called with the arguments as
            keywords. Defaults to `{"function", "arguments", "value"}` where value is a stable
            short hash of the name and arguments.
        latency_scale: Multiplies the latency (tests use a small one).

    Returns:
        The tool (async); its `latency`, stated in its documentation, is the time each call
        sleeps.

    Raises:
        ValueError: A negative latency or scale.
        ToolDefinitionError: A malformed description.
    """
    if latency is not None and latency < 0:
        raise ValueError(f"latency must be non-negative, got {latency}")
    if latency_scale < 0:
        raise ValueError(f"latency_scale must be non-negative, got {latency_scale}")
    described = Tool.from_schema(doc)
    delay = (simulated_latency(described.name) if latency is None else latency) * latency_scale
    function = _simulated_function(described.name, delay, result)
    return dataclasses.replace(described, function=function, is_async=True, latency=delay)


def _simulated_function(name: str, delay: float, result: Any) -> Callable[..., Any]:
    async def run(**arguments: Any) -> Any:
        await anyio.sleep(delay)
        if result is None:
            return default_result(name, arguments)
        return result(**arguments) if callable(result) else result

    run.__name__ = run.__qualname__ = name.replace(".", "_")
    return run


def default_result(name: str, arguments: Mapping[str, Any]) -> dict[str, Any]:
    """The default simulated result: name, arguments and a stable hash of both.

    Args:
        name: The function name.
        arguments: The call's arguments.

    Returns:
        `{"function": name, "arguments": {...}, "value": "<8 hex digits>"}`.
    """
    key = json.dumps([name, arguments], sort_keys=True, default=str)
    return {"function": name, "arguments": dict(arguments), "value": f"{fnv1a_32(key):08x}"}
