"""What every run has, whichever way its model calls tools (CML or a server's tool calling).

Its identity for hooks and spans (`info`), one clock (`trace`), usage, call records, errors,
and the stream of events that iterating the run yields.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Self

import anyio

from asynclm.agent.events import AgentEvent
from asynclm.agent.hooks import RunInfo, new_run_id
from asynclm.agent.messages import AssistantMessage, UserMessage
from asynclm.agent.result import CallRecord, Usage
from asynclm.agent.spec import RunSpec
from asynclm.tooling import clean_text
from asynclm.trace import Trace


class RunBase:
    """The state every run keeps, and its event stream.

    Args:
        spec: The run specification.
        prompt: The user's message (cleaned of what text cannot carry).
        history: The conversation before this turn.
        trace_name: The trace's name; the mode is appended.

    Raises:
        TypeError: `prompt` is not a string.
    """

    def __init__(
        self,
        spec: RunSpec,
        prompt: str,
        history: Sequence[UserMessage | AssistantMessage],
        trace_name: str,
    ) -> None:
        if not isinstance(prompt, str):
            raise TypeError(f"the prompt must be a string, got {type(prompt).__name__}")
        self.spec = spec
        self.prompt = clean_text(prompt)
        self.history = tuple(history)
        self.mode = spec.mode.name
        self.info = RunInfo(
            new_run_id(),
            spec.agent_name,
            spec.model_name,
            self.mode,
            self.prompt,
            tuple(spec.tools),
        )
        self.trace = Trace(f"{trace_name}-{self.mode}")
        self.usage = Usage()
        self.calls: list[CallRecord] = []
        self.errors: list[str] = []
        self._events_send, self._events = anyio.create_memory_object_stream[AgentEvent](math.inf)

    def __aiter__(self) -> Self:
        return self

    async def __anext__(self) -> AgentEvent:
        try:
            return await self._events.receive()
        except anyio.EndOfStream:
            raise StopAsyncIteration from None

    def _emit(self, event: AgentEvent) -> None:
        """Send an event to the run's iterator and its hooks (dropped once the run is over)."""
        try:
            self._events_send.send_nowait(event)
        except (anyio.ClosedResourceError, anyio.BrokenResourceError):
            return  # the run is over (e.g. progress from an abandoned thread)
        self.spec.hooks.event(self.info, event)

    def _end_events(self) -> None:
        """No more events: the iterator stops once it has read those sent."""
        self._events_send.close()
