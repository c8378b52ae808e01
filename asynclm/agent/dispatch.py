"""Turning a parsed call block into a validated call, running it, and wording its result."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import anyio

from asynclm.agent.result import CallRecord
from asynclm.agent.tool import Tool, ToolError
from asynclm.cml.call import CallArgumentError, CallSyntaxError, bind_arguments, parse_call

MAX_ERROR_CHARS = 300


class CallRejected(ValueError):
    """A call block that cannot run: unknown tool, bad syntax, invalid arguments, duplicate id."""


def resolve_call(
    tools: Mapping[str, Tool], call_id: str, body: str, seen_ids: set[str]
) -> tuple[Tool, dict[str, Any]]:
    """The tool and validated arguments of a call block, or `CallRejected` with a short reason."""
    if call_id in seen_ids:
        raise CallRejected(f"duplicate call id {call_id!r}; use a new id")
    try:
        parsed = parse_call(body)
    except CallSyntaxError as e:
        raise CallRejected(f"malformed call: {e}") from None
    tool = tools.get(parsed.name)
    if tool is None:
        known = ", ".join(sorted(tools)) or "none"
        raise CallRejected(f"unknown tool {parsed.name!r}; available: {known}")
    try:
        arguments = bind_arguments(parsed, tool.parameters)
    except CallArgumentError as e:
        raise CallRejected(f"invalid arguments for {tool.name}: {e}") from None
    return tool, arguments


async def execute(
    tool: Tool,
    record: CallRecord,
    *,
    clock: Any,
    limiter: anyio.CapacityLimiter,
    timeout: float | None,
) -> None:
    """Run one call and fill its record (result text or error). Never raises but cancellation."""
    record.started_at = clock()
    try:
        if timeout is not None and tool.timeout is None:
            with anyio.fail_after(timeout):
                value = await tool.invoke(record.arguments, limiter=limiter)
        else:
            value = await tool.invoke(record.arguments, limiter=limiter)
        record.result = value
        record.result_text = tool.format_result(value)
    except TimeoutError:
        limit = tool.timeout if tool.timeout is not None else timeout
        record.error = f"{tool.name} timed out after {limit:g} s"
    except (ToolError, CallArgumentError) as e:
        record.error = short(str(e))
    except Exception as e:  # a failing tool is reported to the model, not raised
        record.error = short(f"{type(e).__name__}: {e}")
    finally:
        record.finished_at = clock()


def short(text: str, limit: int = MAX_ERROR_CHARS) -> str:
    text = " ".join(text.split())
    return text if len(text) <= limit else text[: limit - 1] + "…"


def interrupt_value(record: CallRecord) -> str:
    """The text the model sees for a finished call."""
    if record.error is not None:
        return f"error: {record.error}"
    return record.result_text or ""
