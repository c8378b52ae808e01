"""A run through OpenAI chat tool calling: sync and sync-parallel on any served model.

The model does not write CML here: each assistant turn of `/v1/chat/completions` carries text
or tool calls. Sync mode asks for one call per turn (`parallel_tool_calls: false`) and runs it;
sync-parallel accepts every call of a turn and runs them together. Each result goes back as a
`tool` message and the model is asked again, until it answers without a call. Async mode needs
CML (a chat turn's calls arrive only when the turn ends), so it is refused here.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

import anyio

from asynclm.agent.dispatch import interrupt_value, run_call, short
from asynclm.agent.events import AgentEvent, CallDispatched, CallFinished, TextDelta
from asynclm.agent.result import CallRecord, RunResult, Usage
from asynclm.agent.spec import RunSpec
from asynclm.backends.remote.chat import ToolCallRequest, chat_completion, tool_result, tool_spec
from asynclm.trace import Trace

if TYPE_CHECKING:
    from asynclm.backends.remote import RemoteBackend

MAX_TURNS = 32


class ChatRun:
    """A run whose model calls tools through the OpenAI chat API.

    Args:
        spec: The run specification (tools, mode, sampler, limits).
        backend: The server (its client and model name).
        system: The system message (instructions; the tools travel as `tools`).
        prompt: The user's message.
    """

    def __init__(self, spec: RunSpec, backend: RemoteBackend, system: str | None, prompt: str):
        if spec.mode.name == "async":
            raise ValueError(
                "async mode needs CML (the model keeps writing while calls run); OpenAI tool "
                "calling gives the calls only at the end of a turn: use sync or sync-parallel, "
                "or an exported CML model over openai:URL"
            )
        self.spec = spec
        self.backend = backend
        self.prompt = prompt
        self.mode = spec.mode.name
        self.trace = Trace(f"agent-chat-{self.mode}")
        self.usage = Usage()
        self.calls: list[CallRecord] = []
        self.errors: list[str] = []
        self.output = ""
        self._messages: list[dict[str, Any]] = [
            *([{"role": "system", "content": system}] if system else []),
            {"role": "user", "content": prompt},
        ]
        self._tools = [tool_spec(t.name, t.description, t.parameters) for t in spec.tools.values()]
        self._events_send, self._events = anyio.create_memory_object_stream[AgentEvent](math.inf)
        self._result: RunResult | None = None

    def __aiter__(self) -> ChatRun:
        return self

    async def __anext__(self) -> AgentEvent:
        try:
            return await self._events.receive()
        except anyio.EndOfStream:
            raise StopAsyncIteration from None

    async def interrupt(self, text: str) -> None:
        """Add a user message; it goes to the model with the next request."""
        self._messages.append({"role": "user", "content": text})

    @property
    def done(self) -> bool:
        """Whether the run has finished (its `result` is available)."""
        return self._result is not None

    @property
    def result(self) -> RunResult:
        if self._result is None:
            raise RuntimeError("the run has not finished")
        return self._result

    async def execute(self) -> RunResult:
        """Run to the end and return the result."""
        reason = "length"
        try:
            await self.backend.connect()
            for _ in range(MAX_TURNS):
                remaining = self.spec.max_tokens - self.usage.generated_tokens
                if remaining <= 0:
                    break
                reply = await self._ask(remaining)
                if not reply.tool_calls:
                    reason = "eos" if reply.finish_reason in (None, "stop") else "length"
                    break
                await self._run_calls(reply.tool_calls)
        finally:
            self._events_send.close()
        self._result = RunResult(
            output=self.output.strip(),
            calls=tuple(self.calls),
            timeline=self.trace,
            usage=self.usage,
            mode=self.mode,
            elapsed=self.trace.now(),
            finish_reason=reason,
            transcript="",
            errors=tuple(self.errors),
        )
        return self._result

    async def _ask(self, max_tokens: int) -> Any:
        with self.trace.span("generate", category="decode"):
            reply = await chat_completion(
                self.backend.client,
                self._messages,
                self._tools,
                model=self.backend.model,
                parallel=self.mode == "sync-parallel",
                sampler=self.spec.sampler,
                max_tokens=max_tokens,
            )
        self.usage.prompt_tokens = int(reply.usage.get("prompt_tokens", 0))
        self.usage.generated_tokens += int(reply.usage.get("completion_tokens", 0))
        self._messages.append(reply.message)
        if reply.content:
            self.output += reply.content
            self._events_send.send_nowait(TextDelta(reply.content, self.trace.now()))
        return reply

    async def _run_calls(self, requests: Sequence[ToolCallRequest]) -> None:
        records = [self._record(r) for r in requests]
        runnable = [(r, rec) for r, rec in zip(requests, records, strict=True) if rec.error is None]
        if self.mode == "sync":
            for request, record in runnable:
                await self._run(request, record)
        else:
            async with anyio.create_task_group() as tg:
                for request, record in runnable:
                    tg.start_soon(self._run, request, record)
        for request, record in zip(requests, records, strict=True):
            self._messages.append(tool_result(request.id, interrupt_value(record)))
            record.injected_at = self.trace.now()

    def _record(self, request: ToolCallRequest) -> CallRecord:
        now = self.trace.now()
        body = f"{request.name}({request.raw_arguments})"
        record = CallRecord(request.id, request.name, request.arguments, body, dispatched_at=now)
        error = request.error
        if error is None and request.name not in self.spec.tools:
            error = (
                f"unknown tool {request.name!r}; available: {', '.join(sorted(self.spec.tools))}"
            )
        if error is not None:
            record.error, record.finished_at = short(error), now
            self.errors.append(error)
        self.calls.append(record)
        self._events_send.send_nowait(
            CallDispatched(request.id, request.name, request.arguments, now)
        )
        return record

    async def _run(self, request: ToolCallRequest, record: CallRecord) -> None:
        tool = self.spec.tools[request.name]
        lane = f"tool:{record.name}#{record.id}"
        with self.trace.span(record.name, category="call", lane=lane, call_id=record.id):
            await run_call(
                tool,
                record,
                clock=self.trace.now,
                limiter=self.spec.tool_threads,
                timeout=self.spec.tool_timeout,
            )
        self._events_send.send_nowait(
            CallFinished(
                record.id, record.name, record.ok, interrupt_value(record), self.trace.now()
            )
        )
