"""Lifecycle hooks: code of the application called as a run unfolds.

Subclass `RunHooks` and override what you need; give instances to `Agent(hooks=[...])`. Each
method is called inline in the run's event loop at the moment it describes, so keep it quick
(start a task for slow work). A hook that raises is logged and ignored: it never ends a run.

Logging (`asynclm.agent.observe.LoggingHooks`) and OpenTelemetry spans
(`asynclm.agent.otel.OtelHooks`) are hooks too.
"""

from __future__ import annotations

import itertools
import logging
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from asynclm.agent.events import (
    AgentEvent,
    ApprovalRequested,
    CallDispatched,
    CallFinished,
    CallProgress,
    CallStarted,
    InterruptInjected,
    OutputRetry,
    TrapEnded,
    TrapStarted,
)
from asynclm.agent.result import RunResult

__all__ = ["HookSet", "RunHooks", "RunInfo", "new_run_id"]

logger = logging.getLogger("asynclm.agent")

_run_ids = itertools.count(1)


def new_run_id() -> str:
    """A process-wide unique id for a run."""
    return f"run-{next(_run_ids)}"


@dataclass(frozen=True, slots=True)
class RunInfo:
    """What hooks learn of a run when it starts.

    Attributes:
        run_id: Unique in the process.
        agent: The agent's name.
        model: The model's name.
        mode: The calling mode.
        prompt: The user's message.
        tools: The names of the tools the model may call.
    """

    run_id: str
    agent: str
    model: str
    mode: str
    prompt: str
    tools: tuple[str, ...]


class RunHooks:
    """Override any of these; the defaults do nothing. `on_event` receives every event and
    calls the matching method below it."""

    def on_run_start(self, run: RunInfo) -> None:
        """The run starts (before its prompt is prefilled)."""

    def on_run_end(self, run: RunInfo, result: RunResult[Any]) -> None:
        """The run ended with a result."""

    def on_run_error(self, run: RunInfo, error: BaseException) -> None:
        """The run ended with an exception (an `OutputError`, a failing backend,
        cancellation...)."""

    def on_event(self, run: RunInfo, event: AgentEvent) -> None:
        """Every event of the run (text included), in order."""
        method = _METHODS.get(type(event))
        if method is not None:
            getattr(self, method)(run, event)

    def on_call_dispatched(self, run: RunInfo, event: CallDispatched) -> None:
        """The model closed a valid call block."""

    def on_approval_requested(self, run: RunInfo, event: ApprovalRequested) -> None:
        """A call waits for approval."""

    def on_call_start(self, run: RunInfo, event: CallStarted) -> None:
        """A tool starts running."""

    def on_call_progress(self, run: RunInfo, event: CallProgress) -> None:
        """A tool reported progress."""

    def on_call_end(self, run: RunInfo, event: CallFinished) -> None:
        """A call finished (result or error)."""

    def on_interrupt(self, run: RunInfo, event: InterruptInjected) -> None:
        """An interrupt entered the live context."""

    def on_trap_start(self, run: RunInfo, event: TrapStarted) -> None:
        """The model waits for results."""

    def on_trap_end(self, run: RunInfo, event: TrapEnded) -> None:
        """The wait is over."""

    def on_output_retry(self, run: RunInfo, event: OutputRetry) -> None:
        """A structured answer failed validation and is asked for again."""


_METHODS: dict[type, str] = {
    CallDispatched: "on_call_dispatched",
    ApprovalRequested: "on_approval_requested",
    CallStarted: "on_call_start",
    CallProgress: "on_call_progress",
    CallFinished: "on_call_end",
    InterruptInjected: "on_interrupt",
    TrapStarted: "on_trap_start",
    TrapEnded: "on_trap_end",
    OutputRetry: "on_output_retry",
}


class HookSet:
    """Several hooks called in order; a hook that raises is logged and skipped."""

    def __init__(self, hooks: Iterable[RunHooks] = ()) -> None:
        self.hooks = tuple(hooks)
        bad = [h for h in self.hooks if not isinstance(h, RunHooks)]
        if bad:
            raise ValueError(f"hooks must be RunHooks instances, got {bad!r}")

    def run_start(self, run: RunInfo) -> None:
        self._call("on_run_start", run)

    def run_end(self, run: RunInfo, result: RunResult[Any]) -> None:
        self._call("on_run_end", run, result)

    def run_error(self, run: RunInfo, error: BaseException) -> None:
        self._call("on_run_error", run, error)

    def event(self, run: RunInfo, event: AgentEvent) -> None:
        self._call("on_event", run, event)

    def _call(self, method: str, *args: Any) -> None:
        for hook in self.hooks:
            try:
                getattr(hook, method)(*args)
            except Exception:
                logger.exception("hook %s.%s failed (ignored)", type(hook).__name__, method)
