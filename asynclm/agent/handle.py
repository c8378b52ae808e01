"""`RunHandle`: a run in progress, as `Agent.run_stream` yields it.

The local engine and `openai:URL` backends run CML (`AgentRun`); an `openai-chat:URL` backend
runs OpenAI tool calling (`ChatRun`). Both are handles: iterate one for its events, interrupt
it, decide calls waiting for approval, read its result at the end.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Protocol

from asynclm.agent.events import AgentEvent
from asynclm.agent.output import OutputT
from asynclm.agent.result import RunResult

__all__ = ["RunHandle"]


class RunHandle(Protocol[OutputT]):
    """A run in progress (an `AgentRun`, or a `ChatRun` on an OpenAI chat backend)."""

    def __aiter__(self) -> AsyncIterator[AgentEvent]:
        """The run's events, as they happen."""
        ...

    async def interrupt(self, text: str) -> None:
        """Add a user message to the running run."""
        ...

    def approve(self, call_id: str) -> None:
        """Let a call waiting for approval run."""
        ...

    def deny(self, call_id: str, reason: str = "") -> None:
        """Refuse a call waiting for approval."""
        ...

    @property
    def done(self) -> bool:
        """Whether the run has finished (with a result or an error)."""
        ...

    @property
    def result(self) -> RunResult[OutputT]:
        """The outcome, once the run has finished with one."""
        ...

    async def execute(self) -> RunResult[OutputT]:
        """Run to the end and return the result."""
        ...
