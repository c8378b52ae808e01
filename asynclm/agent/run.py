"""One agent run: the generation loop, call dispatch, interrupts and traps.

The run drives a live context. The model's text is fed to the streaming CML parser as it is
sampled. A completed call block is validated and handed to its tool on a task of the run's task
group (async mode: at once, generation goes on; sync: generation pauses until the result is in;
sync-parallel: calls wait for the model's trap, then run together). A finished call's result is
injected as an `[INTR]` block into the live context at the next step where the model is outside
a CML block — the injected tokens are prefilled with that step; nothing is recomputed.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass
from typing import TYPE_CHECKING

import anyio
from anyio.abc import TaskGroup

from asynclm.agent.dispatch import CallRejected, execute, interrupt_value, resolve_call, short
from asynclm.agent.events import (
    AgentEvent,
    CallDispatched,
    CallFinished,
    InterruptInjected,
    TextDelta,
    TrapEnded,
    TrapStarted,
)
from asynclm.agent.result import CallRecord, Mode, RunResult, Usage
from asynclm.agent.trace import Trace
from asynclm.cml.parser import Call, CMLParser, Malformed, Text, Trap
from asynclm.cml.tokens import format_interrupt

if TYPE_CHECKING:
    from asynclm.agent.agent import Agent
    from asynclm.agent.tool import Tool
    from asynclm.engine.context import Context

USER_ID = "user"
_MAX_EMPTY_TRAPS = 3


@dataclass(frozen=True, slots=True)
class Injection:
    call_id: str
    value: str
    record: CallRecord | None = None


class AgentRun:
    """A run in progress. Iterate it for events; `await interrupt(text)` to add a message."""

    def __init__(self, agent: Agent, prompt: str, mode: Mode) -> None:
        self.agent = agent
        self.prompt = prompt
        self.mode = mode
        self._constraint = agent._make_constraint()
        self.trace = Trace(f"agent-{mode}")
        self.usage = Usage()
        self.calls: list[CallRecord] = []
        self.output = ""
        self.transcript = ""
        self.errors: list[str] = []
        self._parser = CMLParser()
        self._pending: dict[str, CallRecord] = {}
        self._collected: list[tuple[Tool, CallRecord]] = []
        self._ready: list[Injection] = []
        self._seen_ids: set[str] = set()
        self._remaining = agent.max_tokens
        self._empty_traps = 0
        self._inbox_send, self._inbox = anyio.create_memory_object_stream[Injection](math.inf)
        self._events_send, self._events = anyio.create_memory_object_stream[AgentEvent](math.inf)
        self._ctx: Context | None = None
        self._started = time.perf_counter()
        self._result: RunResult | None = None

    # ---- public ------------------------------------------------------------------------------
    async def interrupt(self, text: str) -> None:
        """Inject a user message into the live generation (when the model is outside a block)."""
        await self._inbox_send.send(Injection(USER_ID, text))

    def __aiter__(self) -> AgentRun:
        return self

    async def __anext__(self) -> AgentEvent:
        try:
            return await self._events.receive()
        except anyio.EndOfStream:
            raise StopAsyncIteration from None

    @property
    def result(self) -> RunResult:
        if self._result is None:
            raise RuntimeError("the run has not finished")
        return self._result

    # ---- the run -----------------------------------------------------------------------------
    async def execute(self) -> RunResult:
        try:
            async with self.agent._context_for(self.prompt, self.usage) as ctx:
                self._ctx = ctx
                async with anyio.create_task_group() as tg:
                    reason = await self._drive(tg)
                    tg.cancel_scope.cancel()  # tools still running are not needed any more
            self._finish_text()
        finally:
            self._events_send.close()
            self._inbox_send.close()
        self._result = RunResult(
            output=self.output.strip(),
            calls=tuple(self.calls),
            timeline=self.trace,
            usage=self.usage,
            mode=self.mode,
            elapsed=self._now(),
            finish_reason=reason,
            transcript=self.transcript,
            errors=tuple(self.errors),
        )
        return self._result

    async def _drive(self, tg: TaskGroup) -> str:
        while True:
            reason = await self._generate(tg)
            if reason in ("call", "trap"):
                await self._wait_and_inject(tg)
                continue
            if self._remaining > 0 and self._outstanding():
                if reason == "eos":
                    self._drop_last_token()  # the model ended its turn with calls in flight
                await self._wait_and_inject(tg)
                continue
            return reason

    async def _generate(self, tg: TaskGroup) -> str:
        assert self._ctx is not None  # set by execute() before driving
        if self._remaining <= 0:
            return "length"
        gen = self._ctx.generate(
            self.agent.sampler, max_tokens=self._remaining, constrain=self._constraint
        )
        span = self.trace.begin("generate", category="decode")
        steps = 0
        try:
            async for step in gen:
                steps += 1
                self._remaining -= 1
                self.usage.generated_tokens += 1
                if step.finish_reason == "eos":
                    break
                pause = self._on_text(step.text, tg)
                if pause is not None:
                    gen.stop()
                    return pause
                self._collect_ready()
                self._inject_if_safe()
            return gen.finish_reason or "length"
        finally:
            self.trace.end(span, tokens=steps)

    # ---- parser events -----------------------------------------------------------------------
    def _on_text(self, text: str, tg: TaskGroup) -> str | None:
        self.transcript += text
        pause = None
        for event in self._parser.feed(text):
            if isinstance(event, Text):
                self._emit_text(event.raw)
            elif isinstance(event, Call):
                pause = self._on_call(event, tg) or pause
            elif isinstance(event, Trap):
                self.trace.instant("trap", category="trap")
                pause = "trap"
            elif isinstance(event, Malformed):
                self._reject("error", f"malformed block ({event.reason})")
        return pause

    def _emit_text(self, text: str) -> None:
        self.output += text
        self._events_send.send_nowait(TextDelta(text, self._now()))

    def _on_call(self, event: Call, tg: TaskGroup) -> str | None:
        try:
            tool, arguments = resolve_call(self.agent.tools, event.id, event.body, self._seen_ids)
        except CallRejected as e:
            self._reject(event.id, str(e), body=event.body)
            return "call" if self.mode == "sync" else None
        self._seen_ids.add(event.id)
        record = CallRecord(event.id, tool.name, arguments, event.body, dispatched_at=self._now())
        self.calls.append(record)
        self.trace.instant("dispatch", category="call", call_id=event.id, tool=tool.name)
        self._events_send.send_nowait(
            CallDispatched(event.id, tool.name, arguments, record.dispatched_at)
        )
        if self.mode == "sync-parallel":
            self._collected.append((tool, record))
            return None
        self._start(tg, tool, record)
        return "call" if self.mode == "sync" else None

    def _reject(self, call_id: str, reason: str, body: str = "") -> None:
        now = self._now()
        self._seen_ids.add(call_id)
        record = CallRecord(
            call_id, "", {}, body, dispatched_at=now, finished_at=now, error=short(reason)
        )
        self.calls.append(record)
        self.errors.append(reason)
        self._ready.append(Injection(call_id, interrupt_value(record), record))

    def _start(self, tg: TaskGroup, tool: Tool, record: CallRecord) -> None:
        self._pending[record.id] = record
        tg.start_soon(self._run_tool, tool, record, name=f"tool {record.name}#{record.id}")

    async def _run_tool(self, tool: Tool, record: CallRecord) -> None:
        lane = f"tool:{record.name}#{record.id}"
        with self.trace.span(record.name, category="call", lane=lane, call_id=record.id):
            await execute(
                tool,
                record,
                clock=self._now,
                limiter=self.agent._limiter,
                timeout=self.agent.tool_timeout,
            )
        text = interrupt_value(record)
        self._events_send.send_nowait(
            CallFinished(record.id, record.name, record.ok, text, self._now())
        )
        await self._inbox_send.send(Injection(record.id, text, record))

    # ---- waiting and injecting ---------------------------------------------------------------
    async def _wait_and_inject(self, tg: TaskGroup) -> None:
        """At a trap, a sync pause or an early end: wait for what the mode requires, inject it."""
        for tool, record in self._collected:  # sync-parallel: the batch runs now
            self._start(tg, tool, record)
        self._collected.clear()
        self._collect_ready()
        must_wait = bool(self._pending) and (self.mode != "async" or not self._ready)
        if must_wait:
            await self._wait(all_pending=self.mode != "async")
        if self._ready:
            self._empty_traps = 0
            self._inject(self._ready)
            self._ready = []
        elif not must_wait:  # a trap with nothing in flight: the model just goes on
            self._empty_traps += 1
            if self._empty_traps >= _MAX_EMPTY_TRAPS:
                self._remaining = 0  # it keeps waiting for nothing: end the run

    async def _wait(self, *, all_pending: bool) -> None:
        span = self.trace.begin("trap", category="trap", pending=len(self._pending))
        self._events_send.send_nowait(TrapStarted(tuple(self._pending), self._now()))
        try:
            while self._pending:
                self._receive(await self._inbox.receive())
                self._collect_ready()
                if not all_pending:
                    break
        finally:
            self.trace.end(span)
            self._events_send.send_nowait(TrapEnded(self._now()))

    def _collect_ready(self) -> None:
        while True:
            try:
                self._receive(self._inbox.receive_nowait())
            except anyio.WouldBlock:
                return

    def _receive(self, item: Injection) -> None:
        self._pending.pop(item.call_id, None)
        self._ready.append(item)

    def _inject_if_safe(self) -> None:
        if self._ready and self._parser.safe_to_inject:
            self._inject(self._ready)
            self._ready = []

    def _inject(self, items: list[Injection]) -> None:
        assert self._ctx is not None  # injections happen only while the context is live
        started = time.perf_counter()
        text = "".join(format_interrupt(i.call_id, i.value) for i in items)
        tokens = self.agent.engine.tokenizer.encode(text)
        self._ctx.append(tokens)
        self.transcript += text
        now = self._now()
        self.usage.injected_tokens += len(tokens)
        self.usage.interrupts += len(items)
        reset = getattr(self._constraint, "reset", None)
        if reset is not None:
            reset()
        for item in items:
            if item.record is not None:
                item.record.injected_at = now
            self.trace.instant(
                "interrupt", category="interrupt", call_id=item.call_id, tokens=len(tokens)
            )
            self._events_send.send_nowait(
                InterruptInjected(item.call_id, item.value, len(tokens), now)
            )
        self.usage.inject_seconds += time.perf_counter() - started

    # ---- helpers -----------------------------------------------------------------------------
    def _outstanding(self) -> bool:
        return bool(self._pending or self._collected or self._ready)

    def _drop_last_token(self) -> None:
        assert self._ctx is not None  # called from the live loop
        self._ctx.truncate(self._ctx.num_tokens - 1)

    def _finish_text(self) -> None:
        for event in self._parser.close():
            if isinstance(event, Text):
                self._emit_text(event.raw)
            elif isinstance(event, Malformed):
                self.errors.append(f"malformed block at the end ({event.reason})")

    def _now(self) -> float:
        return time.perf_counter() - self._started
