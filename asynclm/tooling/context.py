"""`RunContext`: what a tool that asks for it learns of the run that called it.

A tool whose first parameter is annotated `RunContext[Deps]` receives one per call: the run's
dependencies (a database handle, an HTTP client... passed to `agent.run(..., deps=...)`), the
call's id, how often the tool already failed in this run, and a way to report progress. The
parameter is not part of the tool's JSON schema: the model never sees it.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Generic, get_origin

from typing_extensions import TypeVar

__all__ = ["DepsT", "ProgressReporter", "RunContext", "is_run_context"]

DepsT = TypeVar("DepsT", default=None)

ProgressReporter = Callable[[float | None, str], None]
"""`report(progress, message)`: called by `RunContext.report_progress` (from any thread)."""


@dataclass(frozen=True, slots=True)
class RunContext(Generic[DepsT]):
    """The run a tool call belongs to.

    Attributes:
        deps: The run's dependencies (`agent.run(..., deps=...)`; None when none were given).
        call_id: The id of this call (as the model wrote it).
        tool_name: The tool's name.
        prompt: The user's message the run answers.
        retry: How many earlier calls of this tool failed in this run (0 on the first try).
    """

    deps: DepsT
    call_id: str = ""
    tool_name: str = ""
    prompt: str = ""
    retry: int = 0
    reporter: ProgressReporter | None = field(default=None, repr=False, compare=False)

    def report_progress(self, progress: float | None = None, message: str = "") -> None:
        """Tell the application how far the call has got (a `CallProgress` event; the model
        does not see it). Callable from async tools and from sync tools' worker threads.

        Args:
            progress: A fraction in [0, 1], or None when unknown.
            message: What is happening, for people.

        Raises:
            ValueError: `progress` is outside [0, 1].
        """
        if progress is not None and not 0.0 <= progress <= 1.0:
            raise ValueError(f"progress must lie in [0, 1] or be None, got {progress!r}")
        if self.reporter is not None:
            self.reporter(progress, message)


def is_run_context(annotation: Any) -> bool:
    """Whether a parameter annotation asks for a `RunContext` (`RunContext` or
    `RunContext[...]`, or such a string when the name cannot be resolved)."""
    if isinstance(annotation, str):
        return annotation.replace(" ", "").split("[", 1)[0].endswith("RunContext")
    return annotation is RunContext or get_origin(annotation) is RunContext
