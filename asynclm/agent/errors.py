"""The errors an agent run raises to its caller."""

from __future__ import annotations

import sys
from typing import TYPE_CHECKING, Any

if sys.version_info < (3, 11):  # pragma: no cover - the backport anyio depends on
    from exceptiongroup import BaseExceptionGroup

if TYPE_CHECKING:
    from asynclm.agent.result import RunResult

__all__ = ["AgentError", "OutputError", "RunStateError", "single_error"]


class AgentError(Exception):
    """Base class of the errors the agent runtime raises."""


class OutputError(AgentError):
    """A run of an agent with an `output_type` ended without a valid output: its answers kept
    failing validation (after the allowed retries), or a limit ended the run first.

    Attributes:
        reason: "validation", or the finish reason that ended the run ("length", "time",
            "max_calls", "tool_retries", "stalled").
        result: The run's outcome with the answer's raw text as its output (calls, usage,
            transcript and trace included).
    """

    def __init__(self, message: str, *, reason: str, result: RunResult[Any]) -> None:
        super().__init__(message)
        self.reason = reason
        self.result = result


class RunStateError(AgentError, RuntimeError):
    """A run was asked for something its state does not allow (its result before it has
    finished, an interrupt after it has)."""


def single_error(error: BaseException) -> BaseException:
    """The one exception inside (nested) exception groups of one, or `error` itself: a run's
    task groups wrap what fails inside them, its caller gets the failure as itself."""
    while isinstance(error, BaseExceptionGroup) and len(error.exceptions) == 1:
        error = error.exceptions[0]
    return error
