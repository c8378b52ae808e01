"""A parsed call block made into a call, the call run, and its result worded for the model."""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping
from typing import Any

import anyio

from asynclm.agent.result import CANCELLED, CallRecord
from asynclm.cml.call import CallArgumentError, CallSyntaxError, bind_arguments, parse_call
from asynclm.tooling import RunContext, Tool, ToolError, ToolThreads, clean_text

MAX_ERROR_CHARS = 300

SPONTANEOUS_CANCEL = (
    "CancelledError: the tool was cancelled from inside (it awaited something that was "
    "cancelled), not by the run"
)


class CallRejected(ValueError):
    """A call block that cannot run: bad syntax, unknown tool, unknown or surplus arguments."""


def resolve_call(tools: Mapping[str, Tool], body: str) -> tuple[Tool, dict[str, Any]]:
    """The tool of a call block and its arguments by name (validated when the call runs).

    Raises:
        CallRejected: With a short reason fit for the model.
    """
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


async def run_call(
    tool: Tool,
    record: CallRecord,
    *,
    clock: Callable[[], float],
    limiter: ToolThreads,
    timeout: float | None,
    context: RunContext[Any] | None = None,
) -> None:
    """Run one call and fill its record (result text or error). Never raises but cancellation.

    A tool that raises `CancelledError` itself, while the run is not cancelling it, has failed
    like any other tool; cancellation by the run is recorded ("cancelled: ...") and goes on.

    Args:
        tool: The tool.
        record: The call; its times, result and error are filled in.
        clock: The run's clock (seconds since the run started).
        limiter: Caps the sync tools' threads (abandoned ones included).
        timeout: The limit for a tool without its own timeout.
        context: What a tool taking a `RunContext` receives.
    """
    record.started_at = clock()
    try:
        value = await tool.invoke(
            record.arguments, limiter=limiter, timeout=timeout, context=context
        )
        record.result = value
        record.result_text = tool.format_result(value)
    except (ToolError, CallArgumentError) as e:  # timeouts are ToolErrors too
        record.error = short(_text_of(e))
    except Exception as e:  # a failing tool is reported to the model, not raised
        record.error = short(f"{type(e).__name__}: {_text_of(e)}")
    except anyio.get_cancelled_exc_class():
        if anyio.current_effective_deadline() == -math.inf:  # the run is cancelling us
            record.error = CANCELLED
            raise
        record.error = SPONTANEOUS_CANCEL
    finally:
        record.finished_at = clock()


def _text_of(error: BaseException) -> str:
    try:
        return str(error)
    except Exception:  # an exception whose __str__ fails
        return f"<{type(error).__name__} without a readable message>"


def short(text: str, limit: int = MAX_ERROR_CHARS) -> str:
    """`text` on one line, cut to `limit` characters (lone surrogates replaced)."""
    text = " ".join(clean_text(text).split())
    return text if len(text) <= limit else text[: limit - 1] + "…"


def interrupt_value(record: CallRecord) -> str:
    """The text the model sees for a finished call."""
    if record.error is not None:
        return f"error: {record.error}"
    return record.result_text or ""
