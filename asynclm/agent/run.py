"""One agent run: the generation loop, the model's CML as it is written, interrupts and traps.

The run drives one live context (a `BackendContext`). The model's text is fed to the streaming
CML parser as it is sampled. A completed call block is resolved and handed to the calling
mode's strategy, which starts it at once or holds it back (`asynclm.agent.modes`). A finished
call's result is injected as an `[INTR]` block into the live context at the next step where the
model is outside a CML block — the injected tokens are prefilled with that step; nothing is
recomputed. The run's trace is its one clock.

Limits end a run with a finish reason (`asynclm.agent.limits`); every call gets a record, and a
run never dies of an internal error: what fails inside is recorded, and what reaches the caller
is one exception, never a group.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager
from typing import Any, Generic, Protocol, TypeVar, cast

import anyio
from anyio.abc import TaskGroup

from asynclm.agent.approval import Approvals, Approver, Decision
from asynclm.agent.calls import (
    ERROR_ID,
    OUTPUT_ID,
    RUNTIME_IDS,
    USER_ID,
    CallEnv,
    CallTracker,
    Injection,
)
from asynclm.agent.dispatch import CallRejected, interrupt_value, resolve_call, short
from asynclm.agent.errors import RunStateError, single_error
from asynclm.agent.events import (
    CallDispatched,
    InterruptInjected,
    OutputRetry,
    TextDelta,
)
from asynclm.agent.messages import AssistantMessage, UserMessage
from asynclm.agent.outcome import RunRecord, make_result
from asynclm.agent.output import OutputInvalid, OutputSpec, OutputT, starts_answer
from asynclm.agent.result import CANCELLED, CallRecord, RunResult
from asynclm.agent.run_base import RunBase
from asynclm.agent.spec import RunSpec
from asynclm.backends.protocol import BackendContext, ContextWindowError
from asynclm.cml.ids import CallIds
from asynclm.cml.parser import Call, CMLParser, Malformed, Text, Trap
from asynclm.cml.tokens import format_interrupt, interrupt_pieces
from asynclm.tooling import clean_text

__all__ = ["AgentRun", "stream"]

_PAUSES = ("call", "trap")  # why generation stopped to wait, besides ending
_ANSWER = "answer"  # the model started a structured answer


class AgentRun(RunBase, Generic[OutputT]):
    """A run in progress. Iterate it for events; `await interrupt(text)` to add a message.

    Args:
        spec: What the run needs (tools, mode, sampler, context and constraint factories...).
        prompt: The user's message.
        deps: The dependencies tools taking a `RunContext` receive.
        history: The conversation before this turn (already in the context `spec` opens);
            the result's `messages` start with it.
        approver: Decides calls needing approval; None: the application decides them with
            `approve` / `deny`.

    Raises:
        TypeError: `prompt` is not a string.
    """

    def __init__(
        self,
        spec: RunSpec,
        prompt: str,
        *,
        deps: Any = None,
        history: Sequence[UserMessage | AssistantMessage] = (),
        approver: Approver | None = None,
    ) -> None:
        if not isinstance(prompt, str):
            raise TypeError(f"the prompt must be a string, got {type(prompt).__name__}")
        self._constraint = spec.make_constraint()  # before the clock starts (grammars compile)
        super().__init__(spec, prompt, history, "agent")
        self.transcript = ""
        self.first_token_at: float | None = None
        self._approvals = Approvals()
        env = CallEnv(deps, self.prompt, self._approvals, approver)
        self._tracker = CallTracker(
            self.trace, self._emit, threads=spec.tool_threads, timeout=spec.tool_timeout, env=env
        )
        self._parser = CMLParser(call_ids=CallIds(reserved=RUNTIME_IDS))
        self._remaining = spec.max_tokens
        self._empty_traps = 0
        self._stalled = False
        self._window_full = False
        self._calls_refused = 0
        self._segment = ""  # what the model wrote since its last block or interrupt
        self._answer: tuple[Any] | None = None  # the validated structured output, once there is one
        self._answer_text = ""  # the text of the last structured answer
        self._state = "new"
        self._result: RunResult[OutputT] | None = None

    # ---- public ------------------------------------------------------------------------------
    async def interrupt(self, text: str) -> None:
        """Inject a user message into the live generation (when the model is outside a block).

        Raises:
            TypeError: `text` is not a string.
            RunStateError: The run has finished.
        """
        if not isinstance(text, str):
            raise TypeError(f"an interrupt is a string, got {type(text).__name__}")
        if self._state == "done":
            raise RunStateError("the run has finished: interrupt() only reaches a running run")
        await self._tracker.send(Injection(USER_ID, clean_text(text)))

    def approve(self, call_id: str) -> None:
        """Let a call waiting for approval run (see `ApprovalRequested`).

        Raises:
            RunStateError: No call with this id waits for approval.
        """
        self._approvals.decide(call_id, Decision(True))

    def deny(self, call_id: str, reason: str = "") -> None:
        """Refuse a call waiting for approval; the model reads "denied: <reason>".

        Raises:
            RunStateError: No call with this id waits for approval.
        """
        self._approvals.decide(call_id, Decision(False, clean_text(reason)))

    @property
    def done(self) -> bool:
        """Whether the run has finished (with a result or an error)."""
        return self._state == "done"

    @property
    def result(self) -> RunResult[OutputT]:
        """The outcome; available once the run has finished with one.

        Raises:
            RunStateError: The run has not finished, or it failed.
        """
        if self._result is None:
            state = "failed" if self._state == "done" else "has not finished"
            raise RunStateError(f"the run {state}: it has no result")
        return self._result

    # ---- the run -----------------------------------------------------------------------------
    async def execute(self) -> RunResult[OutputT]:
        """Run to the end and return the result (also kept as `result`).

        Raises:
            OutputError: An agent with an `output_type` got no valid output.
            RunStateError: The run was executed before.
        """
        if self._state != "new":
            raise RunStateError("a run executes once: start a new one")
        self._state = "running"
        self.spec.hooks.run_start(self.info)
        try:
            self._result = await self._execute()
        except BaseException as exc:
            error = single_error(exc)
            self.spec.hooks.run_error(self.info, error)
            if error is exc:
                raise
            raise error from exc
        finally:
            self._state = "done"
        self.spec.hooks.run_end(self.info, self._result)
        return self._result

    async def _execute(self) -> RunResult[OutputT]:
        reason = "length"
        try:
            async with self.spec.open_context(self.prompt) as ctx:
                self.usage.cached_prompt_tokens = ctx.num_cached
                self.usage.prompt_tokens = ctx.num_tokens - ctx.num_cached
                async with anyio.create_task_group() as tg:
                    with anyio.move_on_after(self.spec.max_seconds) as clock:
                        reason = await self._drive(ctx, tg)
                    if clock.cancelled_caught:
                        reason = "time"
                    tg.cancel_scope.cancel()  # tools still running are not needed any more
            self._finish_text()
        finally:
            self._close()
        return self._make_result(reason)

    async def _drive(self, ctx: BackendContext, tg: TaskGroup) -> str:
        reason = "length"
        while self._limit_reason() is None:
            reason = await self._generate(ctx, tg)
            if self._limit_reason() is not None:
                break
            if reason in _PAUSES:
                await self._pause(ctx, tg)
                continue
            if reason not in ("eos", _ANSWER):
                return reason
            self._tracker.collect()
            ended = self._tracker.outstanding and self._remaining > 0
            output = self.spec.output
            if output is None and not ended:
                return reason
            if output is not None and not ended and self._accept_written(output):
                return reason  # the model wrote a valid answer already (e.g. after a preamble)
            ctx.truncate(ctx.num_tokens - 1)  # the turn's end, or an answer's first token
            self._constraint.rollback(1)  # a grammar that took the turn's end runs on
            if ended:  # the model ended its turn with calls in flight: wait, then go on
                await self._pause(ctx, tg)
                continue
            if output is None:
                continue
            reason = await self._write_answer(ctx, output)
            self._tracker.collect()
            if not (self._tracker.ready and self._remaining > 0):
                return reason
            self._inject(ctx, self._tracker.take_ready())  # a user message came in meanwhile
        return self._limit_reason() or reason

    async def _generate(self, ctx: BackendContext, tg: TaskGroup) -> str:
        if self._remaining <= 0 or self._window_full:
            return "length"
        gen = ctx.generate(
            self.spec.sampler, max_tokens=self._remaining, constrain=self._constraint
        )
        span = self.trace.begin("generate", category="decode")
        steps = 0
        try:
            async for step in gen:
                steps += 1
                self._count_token()
                if step.finish_reason == "eos":
                    break
                if self._starts_answer(step.text):
                    gen.stop()
                    return _ANSWER
                pause = self._on_text(step.text, tg)
                if pause is not None or self._limit_reason() is not None:
                    gen.stop()
                    return pause or "limit"
                self._tracker.collect()
                if self._parser.safe_to_inject and not self._inject(
                    ctx, self._tracker.take_ready()
                ):
                    gen.stop()
                    return "length"
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
        self._stalled = self._empty_traps >= self.spec.max_empty_traps

    def _limit_reason(self) -> str | None:
        if self._stalled:
            return "stalled"
        if self._calls_refused > 1:
            return "max_calls"
        if any(n > self.spec.retries_of(name) for name, n in self._tracker.failures.items()):
            return "tool_retries"
        return "length" if self._window_full else None

    def _count_token(self) -> None:
        if self.first_token_at is None:
            self.first_token_at = self.trace.now()
        self._remaining -= 1
        self.usage.generated_tokens += 1

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
                self._segment = ""
                self.trace.instant("trap", category="trap")
                pause = "trap"
            elif isinstance(event, Malformed):
                self._segment = ""
                self._reject(ERROR_ID, f"malformed block ({event.reason})")
        return pause

    def _emit_text(self, text: str) -> None:
        self._segment += text
        self._emit(TextDelta(text, self.trace.now()))

    def _starts_answer(self, text: str) -> bool:
        """Whether this token begins a structured answer (nothing pending, outside blocks)."""
        if self.spec.output is None or self._segment.strip() or not self._parser.safe_to_inject:
            return False
        self._tracker.collect()
        return not self._tracker.outstanding and starts_answer(self._segment + text)

    def _on_call(self, event: Call, tg: TaskGroup) -> str | None:
        self._segment = ""
        self.usage.calls += 1
        limit = self.spec.max_calls
        if limit is not None and self.usage.calls > limit:
            self._calls_refused += 1
            message = f"call limit reached ({limit} calls): answer with what you have"
            self._reject(event.id, message, body=event.body)
            return "call" if self.spec.mode.pauses_after_rejection else None
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
        self.errors.append(short(reason))
        self._tracker.add_ready(Injection(call_id, interrupt_value(record), record))

    def _finish_text(self) -> None:
        for event in self._parser.close():
            if isinstance(event, Text):
                self._emit_text(event.raw)
            elif isinstance(event, Malformed):
                self.errors.append(f"malformed block at the end ({event.reason})")

    # ---- a structured answer -----------------------------------------------------------------
    async def _write_answer(self, ctx: BackendContext, output: OutputSpec[Any]) -> str:
        """Write the answer under its grammar and validate it; a failure goes back to the
        model, a bounded number of times. Returns the finish reason."""
        reason = "length"
        for attempt in range(output.retries + 1):
            text, reason = await self._generate_answer(ctx)
            self._answer_text = text
            if reason not in ("eos", "grammar"):
                return reason  # cut off by a limit
            if reason == "eos":  # the turn's end token: not part of the answer
                ctx.truncate(ctx.num_tokens - 1)
            try:
                self._answer = (output.parse(text),)
                return reason
            except OutputInvalid as exc:
                self.errors.append(str(exc))
                if attempt < output.retries:
                    self._emit(OutputRetry(attempt + 1, str(exc), self.trace.now()))
                    self._inject(ctx, [Injection(OUTPUT_ID, f"error: {exc}")])
        return reason

    def _accept_written(self, output: OutputSpec[Any]) -> bool:
        """Whether the text since the last block ends with a valid answer (kept as it is)."""
        start = self._segment.find("{")
        if start < 0:
            return False
        try:
            self._answer = (output.parse(self._segment[start:]),)
        except OutputInvalid:
            return False
        self._answer_text = self._segment[start:]
        return True

    async def _generate_answer(self, ctx: BackendContext) -> tuple[str, str]:
        if self._remaining <= 0 or self._window_full:
            return "", "length"
        factory = self.spec.make_answer_constraint
        constraint = factory() if factory is not None else self._constraint
        gen = ctx.generate(self.spec.sampler, max_tokens=self._remaining, constrain=constraint)
        text = ""
        with self.trace.span("answer", category="decode"):
            async for step in gen:
                self._count_token()
                if step.finish_reason == "eos":
                    break
                text += step.text
                self.transcript += step.text
                self._emit(TextDelta(step.text, self.trace.now()))
        return text, gen.finish_reason or "length"

    # ---- injecting ---------------------------------------------------------------------------
    def _inject(self, ctx: BackendContext, items: list[Injection]) -> bool:
        """Append interrupts to the live context; False if they do not fit its window."""
        if not items:
            return True
        started = self.trace.now()
        text = "".join(format_interrupt(i.call_id, i.value) for i in items)
        pieces = [p for i in items for p in interrupt_pieces(i.call_id, i.value)]
        tokens = [
            t for piece, special in pieces for t in ctx.tokenizer.encode(piece, special=special)
        ]
        try:
            ctx.append(tokens)
        except ContextWindowError as exc:
            self._window_full = True
            self.errors.append(str(exc))
            return False
        self.transcript += text
        self._segment = ""
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
        return True

    # ---- helpers -----------------------------------------------------------------------------
    def _close(self) -> None:
        now = self.trace.now()
        for record in self._tracker.unfinished():  # cut off by the end of the run
            if record.finished_at is None:
                record.error, record.finished_at = record.error or CANCELLED, now
        self._end_events()
        self._tracker.close()

    def _make_result(self, reason: str) -> RunResult[OutputT]:
        record = RunRecord(
            self.prompt,
            self.history,
            self.transcript,
            self._answer_text,
            self._answer,
            structured=self.spec.output is not None,
        )
        result = make_result(
            record,
            reason=reason,
            calls=self.calls,
            trace=self.trace,
            usage=self.usage,
            mode=self.mode,
            errors=self.errors,
            first_token_at=self.first_token_at,
        )
        return cast(RunResult[OutputT], result)


class _Executable(Protocol):
    @property
    def done(self) -> bool: ...

    async def execute(self) -> Any: ...


RunT = TypeVar("RunT", bound=_Executable)


@asynccontextmanager
async def stream(run: RunT) -> AsyncIterator[RunT]:
    """Execute `run` in the background for the block (iterate it for its events); leaving the
    block early cancels it. Its failure is raised as itself when the block exits."""
    try:
        async with anyio.create_task_group() as tg:
            tg.start_soon(run.execute)
            try:
                yield run
            finally:
                if not run.done:
                    tg.cancel_scope.cancel()
    except BaseException as exc:
        error = single_error(exc)
        if error is exc:
            raise
        raise error from exc
