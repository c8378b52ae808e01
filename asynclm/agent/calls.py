"""The calls of one run: running them, waiting for them, and the interrupts they produce.

Each call runs on a task of the run's task group (after its approval, for a tool that needs
one). When it finishes, its result (or error) becomes an `Injection` in the run's inbox, as does
a user message sent with `AgentRun.interrupt`; the run moves them to `ready` and injects them
when the model is outside a CML block.
"""

from __future__ import annotations

import contextlib
import math
import threading
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import anyio
import anyio.from_thread
from anyio.abc import TaskGroup

from asynclm.agent.approval import Approvals, Approver
from asynclm.agent.dispatch import interrupt_value, run_call
from asynclm.agent.events import (
    AgentEvent,
    ApprovalRequested,
    CallFinished,
    CallProgress,
    CallStarted,
    TrapEnded,
    TrapStarted,
)
from asynclm.agent.messages import ERROR_ID, OUTPUT_ID, RUNTIME_IDS, USER_ID
from asynclm.agent.result import CANCELLED, CallRecord
from asynclm.tooling import RunContext, Tool, ToolThreads
from asynclm.trace import Trace

__all__ = [
    "ERROR_ID",
    "OUTPUT_ID",
    "RUNTIME_IDS",
    "USER_ID",
    "CallEnv",
    "CallTracker",
    "Injection",
]


@dataclass(frozen=True, slots=True)
class Injection:
    """An interrupt to inject: a call's result or error, or a user message."""

    call_id: str
    value: str
    record: CallRecord | None = None


@dataclass(frozen=True, slots=True)
class CallEnv:
    """What the run's calls share: the run's dependencies and prompt, approvals.

    Attributes:
        deps: Given to tools taking a `RunContext`.
        prompt: The user's message.
        approvals: The decisions calls needing approval wait for.
        approver: Decides those calls (None: the application does, with `run.approve`).
    """

    deps: Any = None
    prompt: str = ""
    approvals: Approvals = field(default_factory=Approvals)
    approver: Approver | None = None


class CallTracker:
    """The run's calls in flight, calls held back for later, and interrupts ready to inject.

    Args:
        trace: The run's trace, which is also its clock.
        emit: Sends an event to the run's event stream.
        threads: Caps the sync tools' worker threads.
        timeout: The limit for a tool without its own timeout; None for no limit.
        env: What the calls share.
    """

    def __init__(
        self,
        trace: Trace,
        emit: Callable[[AgentEvent], None],
        *,
        threads: ToolThreads,
        timeout: float | None,
        env: CallEnv | None = None,
    ) -> None:
        self._threads = threads
        self._timeout = timeout
        self._trace = trace
        self._emit = emit
        self._env = env or CallEnv()
        self._loop_thread = threading.get_ident()
        self.pending: dict[str, CallRecord] = {}
        self.ready: list[Injection] = []
        self.failures: Counter[str] = Counter()  # failed calls per tool name
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
        if tool.requires_approval:  # registered before the application can hear of it
            self._env.approvals.request(record.id)
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
        if not tool.requires_approval or await self._approved(tool, record):
            await self._execute(tool, record)  # (a denied call is not a failure of its tool)
        text = interrupt_value(record)
        self._emit(CallFinished(record.id, record.name, record.ok, text, self._trace.now()))
        await self._send.send(Injection(record.id, text, record))

    async def _execute(self, tool: Tool, record: CallRecord) -> None:
        self._emit(CallStarted(record.id, record.name, self._trace.now()))
        lane = f"tool:{record.name}#{record.id}"
        with self._trace.span(record.name, category="call", lane=lane, call_id=record.id):
            await run_call(
                tool,
                record,
                clock=self._trace.now,
                limiter=self._threads,
                timeout=self._timeout,
                context=self._context(tool, record) if tool.takes_context else None,
            )
        if record.error is not None:
            self.failures[tool.name] += 1

    async def _approved(self, tool: Tool, record: CallRecord) -> bool:
        self._emit(ApprovalRequested(record.id, tool.name, record.arguments, self._trace.now()))
        try:
            decision = await self._env.approvals.wait(record.id, self._env.approver, record)
        except anyio.get_cancelled_exc_class():
            record.error, record.finished_at = CANCELLED, self._trace.now()
            raise
        if not decision.approved:
            now = self._trace.now()
            reason = decision.reason or "the user said no"
            record.error, record.started_at, record.finished_at = f"denied: {reason}", now, now
        return decision.approved

    def _context(self, tool: Tool, record: CallRecord) -> RunContext[Any]:
        def report(progress: float | None, message: str) -> None:
            event = CallProgress(record.id, record.name, progress, message, self._trace.now())
            if threading.get_ident() == self._loop_thread:
                self._emit(event)
                return
            # From a sync tool's worker thread; when the run is over (an abandoned thread) the
            # loop may be gone: nobody listens then.
            with contextlib.suppress(RuntimeError):
                anyio.from_thread.run_sync(self._emit, event)

        return RunContext(
            self._env.deps,
            call_id=record.id,
            tool_name=tool.name,
            prompt=self._env.prompt,
            retry=self.failures[tool.name],
            reporter=report,
        )

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

    def unfinished(self) -> list[CallRecord]:
        """Calls held back or still running (at the end of a run: cut off by it)."""
        return [record for _, record in self._deferred] + list(self.pending.values())

    def close(self) -> None:
        """No more interrupts can be sent (the run is over)."""
        self._send.close()

    def _receive(self, item: Injection) -> None:
        self.pending.pop(item.call_id, None)
        self.ready.append(item)
