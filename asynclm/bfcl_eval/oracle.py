"""The oracle: a scripted model that writes a task's ground-truth calls as a tuned model would.

It writes every call that is ready (its chain's previous result is in), the one with the most
estimated latency left on its chain first (the AsyncLM model learns to dispatch the longest
call first), waits with a trap when nothing is ready, and answers once every result is in. It
runs on the real engine (`asynclm.backends.scripted`), at a chosen token rate, so the runtime's
latency is measured apart from any model's quality.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from asynclm.bfcl_eval.tasks import ExpectedCall, Task

__all__ = ["ANSWER", "NO_CALL_ANSWER", "Oracle", "call_block"]

ANSWER = " All requested calls are done."
NO_CALL_ANSWER = " None of the functions fits this request."


def call_block(call: ExpectedCall) -> str:
    """The CML block the oracle writes for a call."""
    from asynclm.cml.tokens import format_call

    return format_call(call.call_id, call.name, call.arguments)


class Oracle:
    """The scripted model's policy, switched from task to task by `use` (one run at a time)."""

    def __init__(self) -> None:
        self._task: Task | None = None
        self._blocks: dict[str, str] = {}
        self._left: dict[str, float] = {}

    def use(self, task: Task, latency: Mapping[str, float]) -> None:
        """Play `task` from now on; `latency` is each function's estimated seconds."""
        self._task = task
        self._blocks = {c.call_id: call_block(c) for c in task.calls}
        self._left = {
            call.call_id: sum(latency.get(c.name, 0.0) for c in chain[k:])
            for chain in task.chains
            for k, call in enumerate(chain)
        }

    def answer(self) -> str:
        """The closing text the oracle writes for the current task."""
        return ANSWER if self._task and self._task.chains else NO_CALL_ANSWER

    def __call__(self, state: Any) -> str:
        """The next chunk to write, given the scripted model's `TurnState`."""
        task = self._task
        if task is None:
            return ""
        done = {i.id for i in state.interrupts}
        ready = [
            chain[k]
            for chain in task.chains
            for k in range(len(chain))
            if self._blocks[chain[k].call_id] not in state.written
            and (k == 0 or chain[k - 1].call_id in done)
        ]
        if ready:
            return self._blocks[max(ready, key=lambda c: self._left[c.call_id]).call_id]
        if any(c.call_id not in done for c in task.calls):
            from asynclm.cml.tokens import format_trap

            return format_trap()
        return self.answer() if self.answer() not in state.written else ""
