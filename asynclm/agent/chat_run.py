"""A run through OpenAI chat tool calling: sync and sync-parallel on any served model.

The model does not write CML here: each assistant turn of `/v1/chat/completions` carries text
or tool calls. Sync mode asks for one call per turn (`parallel_tool_calls: false`) and runs it;
sync-parallel accepts every call of a turn and runs them together. Each result goes back as a
`tool` message and the model is asked again, until it answers without a call. Async mode needs
CML (a chat turn's calls arrive only when the turn ends), so it is refused here, and so are
tools that need approval (a chat run cannot hold one call while others go on).

Limits hold as in a CML run (tokens, calls, tool retries, wall time; the same finish reasons),
hooks see the same events, and the result carries the conversation's messages; earlier turns
go to the model as chat messages (the user's text, the model's answers).
"""

from __future__ import annotations

import contextlib
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

import anyio

from asynclm.agent.dispatch import interrupt_value, run_call, short
from asynclm.agent.errors import RunStateError, single_error
from asynclm.agent.events import CallDispatched, CallFinished, TextDelta
from asynclm.agent.messages import AssistantMessage, TextPart, UserMessage
from asynclm.agent.result import CallRecord, RunResult
from asynclm.agent.run_base import RunBase
from asynclm.agent.spec import RunSpec
from asynclm.backends.remote.chat import ToolCallRequest, chat_completion, tool_result, tool_spec
from asynclm.cml.tokens import format_body
from asynclm.tooling import RunContext, clean_text

if TYPE_CHECKING:
    from asynclm.backends.remote import RemoteBackend

MAX_TURNS = 32


class ChatRun(RunBase):
    """A run whose model calls tools through the OpenAI chat API.

    Args:
        spec: The run specification (tools, mode, sampler, limits).
        backend: The server (its client and model name).
        system: The system message (instructions; the tools travel as `tools`).
        prompt: The user's message.
        deps: What tools taking a `RunContext` receive.
        history: The conversation before this turn.

    Raises:
        ValueError: The mode is async, or a tool needs approval.
        TypeError: `prompt` is not a string.
    """

    def __init__(
        self,
        spec: RunSpec,
        backend: RemoteBackend,
        system: str | None,
        prompt: str,
        *,
        deps: Any = None,
        history: Sequence[UserMessage | AssistantMessage] = (),
    ) -> None:
        _check_chat_run(spec, prompt)
        super().__init__(spec, prompt, history, "agent-chat")
        self.backend = backend
        self.deps = deps
        self.output = ""
        self._messages: list[dict[str, Any]] = [
            *([{"role": "system", "content": system}] if system else []),
            *_chat_history(self.history),
            {"role": "user", "content": self.prompt},
        ]
        self._tools = [tool_spec(t.name, t.description, t.parameters) for t in spec.tools.values()]
        self._result: RunResult[Any] | None = None
        self._finished = False

    async def interrupt(self, text: str) -> None:
        """Add a user message; it goes to the model with the next request.

        Raises:
            TypeError: `text` is not a string.
            RunStateError: The run has finished.
        """
        if not isinstance(text, str):
            raise TypeError(f"an interrupt is a string, got {type(text).__name__}")
        if self._finished:
            raise RunStateError("the run has finished: interrupt() only reaches a running run")
        self._messages.append({"role": "user", "content": clean_text(text)})

    def approve(self, call_id: str) -> None:
        """No call of a chat run waits for approval (its tools may not need it).

        Raises:
            RunStateError: Always.
        """
        raise RunStateError(f"no call {call_id!r} waits for approval in a chat run")

    def deny(self, call_id: str, reason: str = "") -> None:
        """No call of a chat run waits for approval (its tools may not need it).

        Raises:
            RunStateError: Always.
        """
        raise RunStateError(f"no call {call_id!r} waits for approval in a chat run")

    @property
    def done(self) -> bool:
        """Whether the run has finished (with a result or an error)."""
        return self._finished

    @property
    def result(self) -> RunResult[Any]:
        """The outcome; available once the run has finished with one.

        Raises:
            RunStateError: The run has not finished, or it failed.
        """
        if self._result is None:
            state = "failed" if self._finished else "has not finished"
            raise RunStateError(f"the run {state}: it has no result")
        return self._result

    async def execute(self) -> RunResult[Any]:
        """Run to the end and return the result.

        Raises:
            RemoteError: The server failed (after the retries that were safe).
        """
        self.spec.hooks.run_start(self.info)
        try:
            with anyio.move_on_after(self.spec.max_seconds) as clock:
                reason = await self._turns()
            self._result = self._make_result("time" if clock.cancelled_caught else reason)
        except BaseException as exc:
            error = single_error(exc)
            self.spec.hooks.run_error(self.info, error)
            if error is exc:
                raise
            raise error from exc
        finally:
            self._finished = True
            self._end_events()
        self.spec.hooks.run_end(self.info, self._result)
        return self._result

    async def _turns(self) -> str:
        await self.backend.connect()
        for _ in range(MAX_TURNS):
            remaining = self.spec.max_tokens - self.usage.generated_tokens
            if remaining <= 0:
                return "length"
            reply = await self._ask(remaining)
            if not reply.tool_calls:
                return "eos" if reply.finish_reason in (None, "stop") else "length"
            if self._too_many_calls(len(reply.tool_calls)):
                return "max_calls"
            await self._run_calls(reply.tool_calls)
            if self._retries_spent():
                return "tool_retries"
        return "length"

    def _too_many_calls(self, new_calls: int) -> bool:
        limit = self.spec.max_calls
        if limit is None or len(self.calls) + new_calls <= limit:
            return False
        self.errors.append(f"the run's limit of {limit} calls was reached")
        return True

    def _retries_spent(self) -> bool:
        failed: dict[str, int] = {}
        for record in self.calls:
            if record.error is not None:
                failed[record.name] = failed.get(record.name, 0) + 1
        spent = [name for name, n in failed.items() if n > self.spec.retries_of(name)]
        if spent:
            self.errors.append(f"tool {spent[0]!r} failed more often than its retries allow")
        return bool(spent)

    def _make_result(self, reason: str) -> RunResult[Any]:
        output = self.output.strip()
        turn = AssistantMessage((TextPart(output),) if output else ())
        new = (UserMessage(self.prompt), turn)
        return RunResult(
            output=output,
            calls=tuple(self.calls),
            timeline=self.trace,
            usage=self.usage,
            mode=self.mode,
            elapsed=self.trace.now(),
            finish_reason=reason,
            transcript="",
            errors=tuple(self.errors),
            text=output,
            messages=self.history + new,
            new_messages=new,
        )

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
            self._emit(TextDelta(reply.content, self.trace.now()))
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
        record = CallRecord(
            request.id, request.name, request.arguments, _body(request), dispatched_at=now
        )
        error = request.error
        if error is None and request.name not in self.spec.tools:
            error = (
                f"unknown tool {request.name!r}; available: {', '.join(sorted(self.spec.tools))}"
            )
        if error is not None:
            record.error, record.finished_at = short(error), now
            self.errors.append(error)
        self.calls.append(record)
        self.usage.calls += 1
        self._emit(CallDispatched(request.id, request.name, request.arguments, now))
        return record

    async def _run(self, request: ToolCallRequest, record: CallRecord) -> None:
        tool = self.spec.tools[request.name]
        lane = f"tool:{record.name}#{record.id}"
        context = RunContext(self.deps, call_id=record.id, tool_name=tool.name, prompt=self.prompt)
        with self.trace.span(record.name, category="call", lane=lane, call_id=record.id):
            await run_call(
                tool,
                record,
                clock=self.trace.now,
                limiter=self.spec.tool_threads,
                timeout=self.spec.tool_timeout,
                context=context,
            )
        self._emit(
            CallFinished(
                record.id, record.name, record.ok, interrupt_value(record), self.trace.now()
            )
        )


def _check_chat_run(spec: RunSpec, prompt: object) -> None:
    if not isinstance(prompt, str):
        raise TypeError(f"the prompt must be a string, got {type(prompt).__name__}")
    if spec.mode.name == "async":
        raise ValueError(
            "async mode needs CML (the model keeps writing while calls run); OpenAI tool "
            "calling gives the calls only at the end of a turn: use sync or sync-parallel, "
            "or an exported CML model over openai:URL"
        )
    gated = [name for name, tool in spec.tools.items() if tool.requires_approval]
    if gated:
        raise ValueError(
            f"tools needing approval ({', '.join(gated)}) run only in CML runs (openai:URL or "
            "the local engine): a chat run cannot hold one call while the others go on"
        )


def _chat_history(history: Sequence[UserMessage | AssistantMessage]) -> list[dict[str, str]]:
    """Earlier turns as chat messages: the user's text, the model's answer."""
    return [
        {"role": "user", "content": m.content}
        if isinstance(m, UserMessage)
        else {"role": "assistant", "content": m.answer}
        for m in history
    ]


def _body(request: ToolCallRequest) -> str:
    """The call as a CML call body, `f(x=1)`, as a local run records it; the server's raw text
    where it is not a valid call (bad JSON, a name or key that is not an identifier)."""
    if request.error is None:
        with contextlib.suppress(ValueError):
            return format_body(request.name, request.arguments)
    return f"{request.name}({request.raw_arguments})"
