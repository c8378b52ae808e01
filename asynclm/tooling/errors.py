"""The errors of the tool layer."""

from __future__ import annotations

from asynclm.cml.call import CallArgumentError

__all__ = ["CallArgumentError", "ToolDefinitionError", "ToolError", "ToolTimeoutError"]


class ToolError(Exception):
    """Base class of every error raised by the tool layer."""


class ToolDefinitionError(ToolError, ValueError):
    """A tool cannot be defined; the message lists every problem found, one per line."""

    def __init__(self, subject: str, problems: list[str]) -> None:
        self.subject = subject
        self.problems = list(problems)
        lines = "\n".join(f"  - {problem}" for problem in self.problems)
        super().__init__(f"cannot define tool {subject}:\n{lines}")


class ToolTimeoutError(ToolError, TimeoutError):
    """A tool call ran past its timeout."""

    def __init__(self, name: str, timeout: float, detail: str = "") -> None:
        self.name = name
        self.timeout = timeout
        super().__init__(f"tool {name!r} timed out after {timeout:g} s{detail}")
