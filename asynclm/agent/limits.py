"""Usage limits of a run, and the finish reasons they end it with.

| finish reason | why the run ended |
|---|---|
| `eos` | the model ended its turn (nothing left pending) |
| `grammar` | a constrained answer (structured output) was complete |
| `length` | `max_tokens` written, or the model's context window is full |
| `max_calls` | the model wrote a call past `max_calls` after being told the limit was reached |
| `tool_retries` | a tool failed more often than its retries allow |
| `time` | `max_seconds` of wall time passed |
| `stalled` | the model kept waiting (`[TRAP]`) with nothing pending |

A limit never raises for an agent answering in text: the result says why the run ended, and
every call has its record. An agent with an `output_type` raises `OutputError` when the run ends
without a valid output.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Literal

__all__ = ["FINISH_REASONS", "FinishReason", "UsageLimits", "limit_problems"]

FinishReason = Literal["eos", "grammar", "length", "max_calls", "tool_retries", "time", "stalled"]
FINISH_REASONS: tuple[FinishReason, ...] = (
    "eos",
    "grammar",
    "length",
    "max_calls",
    "tool_retries",
    "time",
    "stalled",
)


@dataclass(frozen=True, slots=True)
class UsageLimits:
    """What one run may use.

    Attributes:
        max_tokens: The most tokens the model may write.
        max_calls: The most call blocks the model may write (valid or not); None for no limit.
            The first one past it is refused with an error the model reads; another ends the
            run ("max_calls").
        max_seconds: Wall-clock seconds before the run ends ("time"); None for no limit.
        tool_retries: Failed calls allowed per tool (a tool's own `retries` wins); one more
            failure ends the run ("tool_retries").
    """

    max_tokens: int = 512
    max_calls: int | None = None
    max_seconds: float | None = None
    tool_retries: int = 3

    def __post_init__(self) -> None:
        problems = limit_problems(
            self.max_tokens, self.max_calls, self.max_seconds, self.tool_retries
        )
        if problems:
            raise ValueError("invalid usage limits: " + "; ".join(problems))


def limit_problems(
    max_tokens: object, max_calls: object, max_seconds: object, tool_retries: object
) -> list[str]:
    """Every invalid limit, described."""
    problems = []
    if not (_is_int(max_tokens) and max_tokens >= 1):  # type: ignore[operator]
        problems.append(f"max_tokens must be an int >= 1, got {max_tokens!r}")
    if max_calls is not None and not (_is_int(max_calls) and max_calls >= 0):  # type: ignore[operator]
        problems.append(f"max_calls must be an int >= 0 or None, got {max_calls!r}")
    if max_seconds is not None and not (_is_number(max_seconds) and max_seconds > 0):  # type: ignore[operator]
        problems.append(f"max_seconds must be positive or None, got {max_seconds!r}")
    if not (_is_int(tool_retries) and tool_retries >= 0):  # type: ignore[operator]
        problems.append(f"tool_retries must be an int >= 0, got {tool_retries!r}")
    return problems


def _is_int(value: object) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _is_number(value: object) -> bool:
    return _is_int(value) or (isinstance(value, float) and math.isfinite(value))
