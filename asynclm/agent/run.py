"""One agent run: the generation loop, the model's CML as it is written, interrupts and traps.

The run drives one live context (a `BackendContext`). The model's text is fed to the streaming
CML parser as it is sampled. A completed call block is resolved and handed to the calling
mode's strategy, which starts it at once or holds it back (`asynclm.agent.modes`). A finished
call's result is injected as an `[INTR]` block into the live context at the next step where the
model is outside a CML block — the injected tokens are prefilled with that step; nothing is
recomputed. The run's trace is its one clock.
"""

from __future__ import annotations

import math

import anyio
from anyio.abc import TaskGroup

from asynclm.agent.calls import ERROR_ID, RUNTIME_IDS, USER_ID, CallTracker, Injection
from asynclm.agent.dispatch import CallRejected, interrupt_value, resolve_call, short
from asynclm.agent.events import (
    AgentEvent,
    CallDispatched,
    InterruptInjected,
    TextDelta,
)
from asynclm.agent.result import CallRecord, RunResult, Usage
from asynclm.agent.spec import RunSpec
from asynclm.backends.protocol import BackendContext
from asynclm.cml.ids import CallIds
from asynclm.cml.parser import Call, CMLParser, Malformed, Text, Trap
from asynclm.cml.tokens import format_interrupt, interrupt_pieces
from asynclm.trace import Trace

__all__ = ["AgentRun"]

_PAUSES = ("call", "trap")  # why generation stopped to wait, besides ending


class AgentRun:
    """A run in progress. Iterate it for events; `await interrupt(text)` to add a message.

    Args:
        spec: What the run needs (tools, mode, sampler, context and constraint factories...).
        prompt: The user's message.
    """

    def __init__(self, spec: RunSpec, prompt: str) -> None:
        self._constraint = spec.make_constraint()  # before the clock starts (grammars compile)
        self.spec = spec
        self.prompt = prompt
        self.mode = spec.mode.name
        self.trace = Trace(f"agent-{self.mode}")
        self.usage = Usage()
        self.calls: list[CallRecord] = []
        self.output = ""
        self.transcript = ""
        self.errors: list[str] = []
        self._events_send, self._events = anyio.create_memory_object_stream[AgentEvent](math.inf)
        self._tracker = CallTracker(
            self.trace, self._emit, threads=spec.tool_threads, timeout=spec.tool_timeout
        )
        self._parser = CMLParser(call_ids=CallIds(reserved=RUNTIME_IDS))
        self._remaining = spec.max_tokens
        self._empty_traps = 0
        self._result: RunResult | None = None

    # ---- public ------------------------------------------------------------------------------
    async def interrupt(self, text: str) -> None:
        """Inject a user message into the live generation (when the model is outside a block)."""
        await self._tracker.send(Injection(USER_ID, text))

    def __aiter__(self) -> AgentRun:
        return self

    async def __anext__(self) -> AgentEvent:
        try:
            return await self._events.receive()
        except anyio.EndOfStream:
            raise StopAsyncIteration from None

    @property
    def done(self) -> bool:
        """Whether the run has finished (its `result` is available)."""
        return self._result is not None

    @property
    def result(self) -> RunResult:
        """The outcome; available once the run has finished."""
        if self._result is None:
            raise RuntimeError("the run has not finished")
        return self._result

    # ---- the run -----------------------------------------------------------------------------
    async def execute(self) -> RunResult:
        """Run to the end and return the result (also kept as `result`)."""
        try:
            async with self.spec.open_context(self.prompt) as ctx:
                self.usage.cached_prompt_tokens = ctx.num_cached
                self.usage.prompt_tokens = ctx.num_tokens - ctx.num_cached
                async with anyio.create_task_group() as tg:
                    reason = await self._drive(ctx, tg)
                    tg.cancel_scope.cancel()  # tools still running are not needed any more
            self._finish_text()
        finally:
            self._events_send.close()
            self._tracker.close()
        self._result = self._make_result(reason)
        return self._result

    async def _drive(self, ctx: BackendContext, tg: TaskGroup) -> str:
        while True:
            reason = await self._generate(ctx, tg)
            if reason in _PAUSES:
                await self._pause(ctx, tg)
                continue
            if self._remaining > 0 and self._tracker.outstanding:
                if reason == "eos":  # the model ended its turn with calls in flight
                    ctx.truncate(ctx.num_tokens - 1)
                await self._pause(ctx, tg)
                continue
            return reason

    async def _generate(self, ctx: BackendContext, tg: TaskGroup) -> str:
        if self._remaining <= 0:
            return "length"
        gen = ctx.generate(
            self.spec.sampler, max_tokens=self._remaining, constrain=self._constraint
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
                self._tracker.collect()
                if self._parser.safe_to_inject:
                    self._inject(ctx, self._tracker.take_ready())
            return gen.finish_reason or "length"
        finally:
            self.trace.end(span, tokens=steps)

    async def _pause(self, ctx: BackendContext, tg: TaskGroup) -> None:
        """At a trap, a sync pause or an early end: wait as the mode says, then inject."""
        await self.spec.mode.wait(self._tracker, tg)
        ready = self._tracker.take_ready()
        if ready:
            self._empty_traps = 0
            self._inject(ctx, ready)
            return
        self._empty_traps += 1  # a trap with nothing in flight: the model just goes on
        if self._empty_traps >= self.spec.max_empty_traps:
            self._remaining = 0  # it keeps waiting for nothing: end the run

    # ---- the model's text ----------------------------------------------------------------------
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
                self._reject(ERROR_ID, f"malformed block ({event.reason})")
        return pause

    def _emit_text(self, text: str) -> None:
        self.output += text
        self._emit(TextDelta(text, self.trace.now()))

    def _on_call(self, event: Call, tg: TaskGroup) -> str | None:
        try:
            tool, arguments = resolve_call(self.spec.tools, event.body)
        except CallRejected as e:
            self._reject(event.id, str(e), body=event.body)
            return "call" if self.spec.mode.pauses_after_rejection else None
        now = self.trace.now()
        record = CallRecord(event.id, tool.name, arguments, event.body, dispatched_at=now)
        self.calls.append(record)
        self.trace.instant("dispatch", category="call", call_id=event.id, tool=tool.name)
        self._emit(CallDispatched(event.id, tool.name, arguments, now))
        return "call" if self.spec.mode.dispatch(self._tracker, tg, tool, record) else None

    def _reject(self, call_id: str, reason: str, body: str = "") -> None:
        now = self.trace.now()
        record = CallRecord(
            call_id, "", {}, body, dispatched_at=now, finished_at=now, error=short(reason)
        )
        self.calls.append(record)
        self.errors.append(reason)
        self._tracker.add_ready(Injection(call_id, interrupt_value(record), record))

    def _finish_text(self) -> None:
        for event in self._parser.close():
            if isinstance(event, Text):
                self._emit_text(event.raw)
            elif isinstance(event, Malformed):
                self.errors.append(f"malformed block at the end ({event.reason})")

    # ---- injecting ---------------------------------------------------------------------------
    def _inject(self, ctx: BackendContext, items: list[Injection]) -> None:
        if not items:
            return
        started = self.trace.now()
        text = "".join(format_interrupt(i.call_id, i.value) for i in items)
        pieces = [p for i in items for p in interrupt_pieces(i.call_id, i.value)]
        tokens = [
            t for piece, special in pieces for t in ctx.tokenizer.encode(piece, special=special)
        ]
        ctx.append(tokens)
        self.transcript += text
        self._constraint.reset()
        now = self.trace.now()
        self.usage.injected_tokens += len(tokens)
        self.usage.interrupts += len(items)
        for item in items:
            if item.record is not None:
                item.record.injected_at = now
            self.trace.instant(
                "interrupt", category="interrupt", call_id=item.call_id, tokens=len(tokens)
            )
            self._emit(InterruptInjected(item.call_id, item.value, len(tokens), now))
        self.usage.inject_seconds += self.trace.now() - started

    # ---- helpers -----------------------------------------------------------------------------
    def _emit(self, event: AgentEvent) -> None:
        self._events_send.send_nowait(event)

    def _make_result(self, reason: str) -> RunResult:
        return RunResult(
            output=self.output.strip(),
            calls=tuple(self.calls),
            timeline=self.trace,
            usage=self.usage,
            mode=self.mode,
            elapsed=self.trace.now(),
            finish_reason=reason,
            transcript=self.transcript,
            errors=tuple(self.errors),
        )
