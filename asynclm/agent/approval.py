"""Human approval of tool calls: only the call waits, the run goes on.

A tool marked `requires_approval` does not run when the model dispatches it: its call waits for
a decision while generation and the other calls go on (in async mode the model keeps writing;
a trap waits for this call like any pending one). The decision comes from the run's approver
(`Agent.run(..., approver=...)`), or from the application through `run.approve(call_id)` /
`run.deny(call_id, reason)` after an `ApprovalRequested` event of `run_stream`. A denied call
becomes an error interrupt the model reads ("denied: <reason>").
"""

from __future__ import annotations

import inspect
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

import anyio

from asynclm.agent.errors import RunStateError
from asynclm.agent.result import CallRecord

__all__ = ["Approvals", "Approver", "Decision", "deny_all"]

Approver = Callable[[CallRecord], "Awaitable[bool | str] | bool | str"]
"""Decides a call waiting for approval: True approves it; False, or a string giving the reason,
denies it. May be async."""


@dataclass(frozen=True, slots=True)
class Decision:
    """An approval decision."""

    approved: bool
    reason: str = ""


def deny_all(record: CallRecord) -> str:
    """The approver of runs nobody can answer (`Agent.run` without `approver=`)."""
    return "nobody can approve calls in this run (give Agent.run an approver=)"


class Approvals:
    """The decisions a run's calls wait for, by call id."""

    def __init__(self) -> None:
        self._waiting: dict[str, anyio.Event] = {}
        self._decisions: dict[str, Decision] = {}

    @property
    def waiting(self) -> tuple[str, ...]:
        """Ids of the calls waiting for a decision."""
        return tuple(self._waiting)

    def request(self, call_id: str) -> None:
        """A call starts waiting (before the application learns of it)."""
        self._waiting[call_id] = anyio.Event()

    def decide(self, call_id: str, decision: Decision) -> None:
        """Decide a waiting call.

        Raises:
            RunStateError: No call with this id waits for approval.
        """
        event = self._waiting.get(call_id)
        if event is None:
            waiting = ", ".join(self._waiting) or "none"
            raise RunStateError(f"no call {call_id!r} waits for approval (waiting: {waiting})")
        self._decisions[call_id] = decision
        event.set()

    async def wait(self, call_id: str, approver: Approver | None, record: CallRecord) -> Decision:
        """The decision on a requested call: the approver's, or the application's."""
        try:
            if approver is not None:
                return await _ask(approver, record)
            await self._waiting[call_id].wait()
            return self._decisions.pop(call_id)
        finally:
            self._waiting.pop(call_id, None)


async def _ask(approver: Approver, record: CallRecord) -> Decision:
    try:
        answer = approver(record)
        if inspect.isawaitable(answer):
            answer = await answer
    except Exception as exc:  # an approver that fails denies
        return Decision(False, f"the approver failed ({type(exc).__name__}: {exc})")
    if answer is True:
        return Decision(True)
    return Decision(False, answer if isinstance(answer, str) else "")
