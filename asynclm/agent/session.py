"""A conversation that keeps its K/V between turns: a follow-up prefills only the new message.

After each turn the session closes the assistant's turn in the live context, computes what is
pending and saves the context's K/V as an engine export (`ctx.save`). The next turn opens that
export (`Context.open`: the pages are shared, nothing is recomputed) and appends only the new
user message. `agent.run(prompt, message_history=...)` — what a hosted API must do — prefills
the whole history again instead.

A turn that fails leaves the session as it was (its messages and its K/V). An agent whose
contexts are not the local engine's (a remote backend) cannot keep K/V: its session sends the
history again each turn, as `message_history` does. When the agent's
tools change between turns the system prompt changes with them: that turn replays the
conversation once under the new prompt. `fork()` branches a conversation (the branches share
their common pages, copy-on-write).
"""

from __future__ import annotations

import itertools
import os
import weakref
from collections.abc import AsyncIterator, Sequence
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from dataclasses import dataclass, replace
from types import TracebackType
from typing import Any, Generic, Protocol, cast

from asynclm.agent.approval import Approver, deny_all
from asynclm.agent.handle import RunHandle
from asynclm.agent.limits import UsageLimits
from asynclm.agent.messages import AssistantMessage, UserMessage
from asynclm.agent.output import OutputT
from asynclm.agent.prompting import user_pieces
from asynclm.agent.result import Mode, RunResult
from asynclm.agent.run import stream
from asynclm.agent.spec import RunSpec
from asynclm.backends.local import LocalContext
from asynclm.backends.protocol import BackendContext
from asynclm.engine.context import Context
from asynclm.engine.engine import Engine
from asynclm.promptcache.schema import Schema
from asynclm.tooling import DepsT, Tool

__all__ = ["KeptKV", "Session", "SessionAgent"]

_export_ids = itertools.count(1)

History = Sequence[UserMessage | AssistantMessage]


class SessionAgent(Protocol):
    """What a session needs of its agent (an `Agent` is one)."""

    @property
    def engine(self) -> Engine: ...

    @property
    def keeps_kv(self) -> bool:
        """Whether its contexts are the local engine's (whose K/V a session can keep)."""
        ...

    def open_toolsets(self) -> AbstractAsyncContextManager[list[Tool]]: ...

    def all_tools(self, extra: Sequence[Tool] = ()) -> tuple[Tool, ...]: ...

    def run_spec(
        self,
        mode: Mode | None = None,
        *,
        tools: Sequence[Tool] | None = None,
        limits: UsageLimits | None = None,
        history: History = (),
    ) -> RunSpec: ...

    def prompt_schema(self, tools: Sequence[Tool] | None = None) -> Schema: ...

    def new_run(
        self,
        spec: RunSpec,
        prompt: str,
        *,
        deps: Any = None,
        history: History = (),
        approver: Approver | None = None,
    ) -> RunHandle[Any]: ...

    def open_context(
        self, prompt: str, *, history: History = (), tools: Sequence[Tool] | None = None
    ) -> AbstractAsyncContextManager[BackendContext]: ...


def _export_name() -> str:
    return f"asynclm.session.{os.getpid()}.{next(_export_ids)}"


@dataclass(slots=True)
class KeptKV:
    """The export holding a conversation's K/V (dropped when its session goes away)."""

    engine: Engine | None = None
    name: str | None = None  # the committed export: the system prompt and every turn so far
    schema: str = ""  # the name of the system prompt's schema in it
    pending: str | None = None  # saved by a turn that has not returned yet
    pending_schema: str = ""

    def has(self) -> bool:
        return (
            self.engine is not None and self.name is not None and self.engine.has_export(self.name)
        )

    def drop(self, name: str | None) -> None:
        if self.engine is not None and name is not None and self.engine.has_export(name):
            self.engine.drop_export(name)

    def drop_all(self) -> None:
        self.drop(self.pending)
        self.drop(self.name)
        self.name = self.pending = None


class Session(Generic[DepsT, OutputT]):
    """A conversation with an agent (make one with `agent.session()`).

    Args:
        agent: The agent (on the local engine).
        messages: Earlier turns to start from (replayed once, at the first turn).
        kv: The K/V of `messages` to continue from (`fork` gives one); None: replay them.

    Attributes:
        messages: The conversation so far (`result.messages` of the last turn).
    """

    def __init__(
        self,
        agent: SessionAgent,
        messages: History = (),
        *,
        kv: KeptKV | None = None,
    ) -> None:
        self.agent = agent
        self.messages: list[UserMessage | AssistantMessage] = list(messages)
        self._kept = kv or KeptKV()
        self._finalizer = weakref.finalize(self, self._kept.drop_all)

    @property
    def keeps_kv(self) -> bool:
        """Whether the conversation's K/V is kept (the next turn prefills only its message)."""
        return self._kept.has()

    async def run(
        self,
        prompt: str,
        *,
        deps: DepsT = None,  # type: ignore[assignment]
        mode: Mode | None = None,
        limits: UsageLimits | None = None,
        approver: Approver | None = None,
    ) -> RunResult[OutputT]:
        """The next turn: run the agent on `prompt` after the conversation so far.

        Raises:
            OutputError: An agent with an `output_type` got no valid output (the session is
                left as it was).
        """
        async with self.agent.open_toolsets() as extra:
            run = self._new_run(prompt, extra, deps, mode, limits, approver or deny_all)
            try:
                result = await run.execute()
            except BaseException:
                self._rollback()
                raise
        return self._commit(result)

    @asynccontextmanager
    async def run_stream(
        self,
        prompt: str,
        *,
        deps: DepsT = None,  # type: ignore[assignment]
        mode: Mode | None = None,
        limits: UsageLimits | None = None,
        approver: Approver | None = None,
    ) -> AsyncIterator[RunHandle[OutputT]]:
        """The next turn, streamed (as `Agent.run_stream`); the session moves on when the run
        has finished with a result."""
        async with self.agent.open_toolsets() as extra:
            run = self._new_run(prompt, extra, deps, mode, limits, approver)
            try:
                async with stream(run):
                    yield run
            except BaseException:
                self._rollback()
                raise
        if run.done:
            self._commit(run.result)
        else:
            self._rollback()

    def fork(self) -> Session[DepsT, OutputT]:
        """A new session with this conversation; the two share its K/V pages (copy-on-write)."""
        kept = self._kept
        if not kept.has() or kept.engine is None or kept.name is None:
            return Session(self.agent, self.messages)
        name = _export_name()
        ctx = Context.open(kept.engine, kept.name)
        try:
            ctx.save(name)
        finally:
            ctx.release()
        return Session(self.agent, self.messages, kv=KeptKV(kept.engine, name, kept.schema))

    def close(self) -> None:
        """Free the conversation's K/V (its messages stay; a next turn replays them)."""
        self._kept.drop_all()

    async def __aenter__(self) -> Session[DepsT, OutputT]:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    # ---- turns -------------------------------------------------------------------------------
    def _new_run(
        self,
        prompt: str,
        extra: Sequence[Tool],
        deps: Any,
        mode: Mode | None,
        limits: UsageLimits | None,
        approver: Approver | None,
    ) -> RunHandle[OutputT]:
        tools = self.agent.all_tools(extra)
        spec = self.agent.run_spec(mode, tools=tools, limits=limits, history=self.messages)
        spec = replace(spec, open_context=lambda text: self._open_context(text, tools))
        run = self.agent.new_run(spec, prompt, deps=deps, history=self.messages, approver=approver)
        return cast(RunHandle[OutputT], run)

    @asynccontextmanager
    async def _open_context(
        self, prompt: str, tools: Sequence[Tool]
    ) -> AsyncIterator[BackendContext]:
        if not self.agent.keeps_kv:  # e.g. a remote backend: the history is sent again
            async with self.agent.open_context(prompt, history=self.messages, tools=tools) as any_:
                yield any_
            return
        schema = self.agent.prompt_schema(tools).name
        if self._kept.has() and self._kept.schema == schema and self._kept.name is not None:
            ctx = Context.open(self.agent.engine, self._kept.name)
            try:
                for piece in user_pieces(ctx.tokenizer.chat, prompt):
                    ctx.append(piece.text, special=piece.special)
                yield LocalContext(ctx, self.agent.engine.config.max_position)
                await self._save(ctx, schema)
            finally:
                ctx.release()
            return
        async with self.agent.open_context(prompt, history=self.messages, tools=tools) as local:
            yield local
            if isinstance(local, LocalContext):
                await self._save(local.context, schema)

    async def _save(self, ctx: Context, schema: str) -> None:
        """Close the assistant's turn, compute what is pending, export the K/V."""
        tokenizer = ctx.tokenizer
        closing = tokenizer.chat.role_suffix("assistant")
        last = ctx.tokens[-1:]
        if last and last[0] in tokenizer.eos_token_ids:  # the turn ended with its end token
            ended = tokenizer.decode(last)
            closing = closing[len(ended) :] if closing.startswith(ended) else closing
        if closing:
            ctx.append(closing, special=True)  # the template's text
        await ctx.flush()
        name = _export_name()
        ctx.save(name)
        self._kept.engine, self._kept.pending = self.agent.engine, name
        self._kept.pending_schema = schema

    def _commit(self, result: RunResult[OutputT]) -> RunResult[OutputT]:
        self.messages = list(result.messages)
        kept = self._kept
        if kept.pending is not None:
            kept.drop(kept.name)
            kept.name, kept.schema, kept.pending = kept.pending, kept.pending_schema, None
        return result

    def _rollback(self) -> None:
        self._kept.drop(self._kept.pending)
        self._kept.pending = None

    def __repr__(self) -> str:
        kv = "kept" if self.keeps_kv else "not kept"
        return f"Session({len(self.messages)} messages, K/V {kv})"
