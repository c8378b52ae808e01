"""Standard `logging` records of agent runs (logger `asynclm.agent`).

| level | record |
|---|---|
| INFO | a run starts; a run ends (finish reason, seconds, tokens, calls); a call succeeds |
| WARNING | a call fails (tool error, timeout, refusal); an answer fails validation; a run fails |
| DEBUG | calls dispatched and started, approvals asked, interrupts injected, traps |

Each record carries `run_id` (and `call_id` for call records) as extra attributes.
"""

from __future__ import annotations

import logging
from typing import Any

import anyio

from asynclm.agent.events import (
    ApprovalRequested,
    CallDispatched,
    CallFinished,
    CallStarted,
    InterruptInjected,
    OutputRetry,
    TrapStarted,
)
from asynclm.agent.hooks import RunHooks, RunInfo
from asynclm.agent.result import RunResult

__all__ = ["LoggingHooks"]


class LoggingHooks(RunHooks):
    """Writes the records above to a logger.

    Args:
        logger: Where to write (default: `logging.getLogger("asynclm.agent")`).
    """

    def __init__(self, logger: logging.Logger | None = None) -> None:
        self.logger = logger or logging.getLogger("asynclm.agent")

    def on_run_start(self, run: RunInfo) -> None:
        self.logger.info(
            "%s started: %s mode, model %s, %d tools, prompt of %d chars",
            run.run_id,
            run.mode,
            run.model,
            len(run.tools),
            len(run.prompt),
            extra={"run_id": run.run_id},
        )

    def on_run_end(self, run: RunInfo, result: RunResult[Any]) -> None:
        failed = sum(1 for call in result.calls if not call.ok)
        self.logger.info(
            "%s finished (%s) in %.3f s: %d tokens written, %d prompt tokens (%d cached), "
            "%d calls (%d failed), %d interrupts",
            run.run_id,
            result.finish_reason,
            result.elapsed,
            result.usage.generated_tokens,
            result.usage.prompt_tokens,
            result.usage.cached_prompt_tokens,
            len(result.calls),
            failed,
            result.usage.interrupts,
            extra={"run_id": run.run_id},
        )

    def on_run_error(self, run: RunInfo, error: BaseException) -> None:
        if isinstance(error, anyio.get_cancelled_exc_class()):
            self.logger.debug("%s cancelled", run.run_id, extra={"run_id": run.run_id})
            return
        self.logger.warning(
            "%s failed: %s: %s",
            run.run_id,
            type(error).__name__,
            error,
            extra={"run_id": run.run_id},
        )

    def on_call_dispatched(self, run: RunInfo, event: CallDispatched) -> None:
        self._debug(run, event.call_id, "call %s dispatched: %s(%s)", event.name, event.arguments)

    def on_approval_requested(self, run: RunInfo, event: ApprovalRequested) -> None:
        self._debug(run, event.call_id, "call %s waits for approval: %s", event.name)

    def on_call_start(self, run: RunInfo, event: CallStarted) -> None:
        self._debug(run, event.call_id, "call %s started: %s", event.name)

    def on_call_end(self, run: RunInfo, event: CallFinished) -> None:
        level = logging.INFO if event.ok else logging.WARNING
        outcome = "returned" if event.ok else "failed"
        self.logger.log(
            level,
            "%s: call %s %s %s after %.3f s: %.200s",
            run.run_id,
            event.call_id,
            event.name,
            outcome,
            event.t,
            event.text,
            extra={"run_id": run.run_id, "call_id": event.call_id},
        )

    def on_interrupt(self, run: RunInfo, event: InterruptInjected) -> None:
        self._debug(run, event.call_id, "interrupt %s injected: %d tokens", event.num_tokens)

    def on_trap_start(self, run: RunInfo, event: TrapStarted) -> None:
        self.logger.debug(
            "%s: waits for %s", run.run_id, ", ".join(event.pending), extra={"run_id": run.run_id}
        )

    def on_output_retry(self, run: RunInfo, event: OutputRetry) -> None:
        self.logger.warning(
            "%s: answer %d rejected: %s",
            run.run_id,
            event.attempt,
            event.error,
            extra={"run_id": run.run_id},
        )

    def _debug(self, run: RunInfo, call_id: str, message: str, *args: Any) -> None:
        if self.logger.isEnabledFor(logging.DEBUG):
            self.logger.debug(
                "%s: " + message,
                run.run_id,
                call_id,
                *args,
                extra={"run_id": run.run_id, "call_id": call_id},
            )
