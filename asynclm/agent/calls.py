"""The calls of one run: running them, waiting for them, and the interrupts they produce.

Each call runs on a task of the run's task group. When it finishes, its result (or error)
becomes an `Injection` in the run's inbox, as does a user message sent with
`AgentRun.interrupt`; the run moves them to `ready` and injects them when the model is
outside a CML block.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass

import anyio
from anyio.abc import TaskGroup

from asynclm.agent.dispatch import interrupt_value, run_call
from asynclm.agent.events import AgentEvent, CallFinished, TrapEnded, TrapStarted
from asynclm.agent.result import CallRecord
from asynclm.tooling import Tool
from asynclm.trace import Trace

__all__ = ["ERROR_ID", "RUNTIME_IDS", "USER_ID", "CallTracker", "Injection"]

USER_ID = "user"  # the id of user interrupts
ERROR_ID = "error"  # the id of errors not tied to a call (a malformed block)
RUNTIME_IDS = (USER_ID, ERROR_ID)  # reserved: the model may not name a call so


@dataclass(frozen=True, slots=True)
class Injection:
    """An interrupt to inject: a call's result or error, or a user message."""

    call_id: str
    value: str
    record: CallRecord | None = None


class CallTracker:
    """The run's calls in flight, calls held back for later, and interrupts ready to inject.

    Args:
        trace: The run's trace, which is also its clock.
        emit: Sends an event to the run's event stream.
        threads: Caps the sync tools running in worker threads.
        timeout: The limit for a tool without its own timeout; None for no limit.
    """

    def __init__(
        self,
        trace: Trace,
        emit: Callable[[AgentEvent], None],
        *,
        threads: anyio.CapacityLimiter,
        timeout: float | None,
    ) -> None:
        self._threads = threads
        self._timeout = timeout
        self._trace = trace
        self._emit = emit
        self.pending: dict[str, CallRecord] = {}
        self.ready: list[Injection] = []
        self._deferred: list[tuple[Tool, CallRecord]] = []
        self._send, self._inbox = anyio.create_memory_object_stream[Injection](math.inf)

    @property
    def outstanding(self) -> bool:
        """Whether anything is still to come or to inject."""
        return bool(self.pending or self._deferred or self.ready)

    # ---- running ------------------------------------------------------------------------------
    def start(self, tg: TaskGroup, tool: Tool, record: CallRecord) -> None:
        """Run a call now, on a task of `tg`."""
        self.pending[record.id] = record
        tg.start_soon(self._run, tool, record, name=f"tool {record.name}#{record.id}")

    def defer(self, tool: Tool, record: CallRecord) -> None:
        """Hold a call back until `start_deferred`."""
        self._deferred.append((tool, record))

    def start_deferred(self, tg: TaskGroup) -> None:
        """Run every held-back call now, together."""
        for tool, record in self._deferred:
            self.start(tg, tool, record)
        self._deferred.clear()

    async def _run(self, tool: Tool, record: CallRecord) -> None:
        lane = f"tool:{record.name}#{record.id}"
        with self._trace.span(record.name, category="call", lane=lane, call_id=record.id):
            await run_call(
                tool,
                record,
                clock=self._trace.now,
                limiter=self._threads,
                timeout=self._timeout,
            )
        text = interrupt_value(record)
        self._emit(CallFinished(record.id, record.name, record.ok, text, self._trace.now()))
        await self._send.send(Injection(record.id, text, record))

    # ---- interrupts ---------------------------------------------------------------------------
    async def send(self, injection: Injection) -> None:
        """Queue an interrupt from outside the run (a user message)."""
        await self._send.send(injection)

    def add_ready(self, injection: Injection) -> None:
        """An interrupt the run produced itself (a rejected call): ready at once."""
        self.ready.append(injection)

    def collect(self) -> None:
        """Move every interrupt that has arrived to `ready`, without waiting."""
        while True:
            try:
                self._receive(self._inbox.receive_nowait())
            except anyio.WouldBlock:
                return

    async def wait(self, *, all_pending: bool) -> None:
        """Wait for the next pending call's result (or every one's), recorded as a trap."""
        span = self._trace.begin("trap", category="trap", pending=len(self.pending))
        self._emit(TrapStarted(tuple(self.pending), self._trace.now()))
        try:
            while self.pending:
                self._receive(await self._inbox.receive())
                self.collect()
                if not all_pending:
                    break
        finally:
            self._trace.end(span)
            self._emit(TrapEnded(self._trace.now()))

    def take_ready(self) -> list[Injection]:
        """The ready interrupts, in arrival order; `ready` is empty afterwards."""
        ready, self.ready = self.ready, []
        return ready

    def close(self) -> None:
        """No more interrupts can be sent (the run is over)."""
        self._send.close()

    def _receive(self, item: Injection) -> None:
        self.pending.pop(item.call_id, None)
        self.ready.append(item)
