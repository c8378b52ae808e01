"""`Agent`: tools + a model + a calling mode."""

from __future__ import annotations

import sys
import weakref
from collections.abc import AsyncIterator, Callable, Iterable, Iterator
from contextlib import asynccontextmanager, contextmanager
from dataclasses import replace
from functools import partial
from typing import Any, cast

import anyio

if sys.version_info < (3, 11):  # pragma: no cover - the backport anyio depends on
    from exceptiongroup import BaseExceptionGroup

from asynclm.agent.chat_run import ChatRun
from asynclm.agent.constrained import turn_grammar
from asynclm.agent.guard import AllOf, ForgeryGuard
from asynclm.agent.modes import calling_mode
from asynclm.agent.prompt_schema import agent_prompt, agent_schema
from asynclm.agent.prompting import PromptPart, prompt_pieces, system_parts
from asynclm.agent.result import Mode, RunResult
from asynclm.agent.run import AgentRun
from asynclm.agent.spec import RunSpec
from asynclm.backends.local import LocalContext
from asynclm.backends.protocol import BackendContext
from asynclm.backends.remote import AllRemote, RemoteBackend
from asynclm.engine.engine import Engine
from asynclm.engine.grammar import Constraint
from asynclm.engine.sampling import Sampler
from asynclm.promptcache.cache import PromptCache
from asynclm.promptcache.schema import Schema
from asynclm.tooling import Tool, tool

_ENGINES: dict[tuple[str, str | None], Engine] = {}
_PROMPT_CACHES: weakref.WeakKeyDictionary[Engine, PromptCache] = weakref.WeakKeyDictionary()


def shared_engine(model: str, adapter: str | None = "auto") -> Engine:
    """One engine per (model, adapter) in the process, shared by every agent that names it."""
    key = (model, adapter)
    if key not in _ENGINES:
        _ENGINES[key] = Engine.load(model, adapter)
    return _ENGINES[key]


class Agent:
    """An LLM agent whose tool calls run asynchronously.

    Args:
        tools: `Tool`s, or plain functions (wrapped with `@tool`).
        mode: "async" (calls run while the model writes; results arrive as interrupts),
            "sync-parallel" (calls run together when the model waits) or "sync" (generation
            pauses at each call until its result is in).
        model: a model preset or path (loaded once per process), or an `Engine`.
        adapter: a LoRA adapter folder for `model`; "auto" (the default): the CML adapter
            shipped for the preset (SmolLM2), if any; None: the plain model.
        system: instructions placed before the protocol and tool documentation.
        sampler: decoding (default greedy).
        max_tokens: the most tokens the model may write in one run.
        tool_timeout: seconds before a call is abandoned and reported as an error (a tool's own
            timeout wins); None for no limit.
        max_tool_threads: concurrent sync tools (they run in worker threads).
        example: include a worked CML example in the system prompt (helps untuned models).
        constraint: an extra decoding constraint factory (called once per run).
        constrained: make the model write its turn through a grammar: call blocks of known
            tools with well-typed arguments, a trap, then the answer (for untuned models).
        max_calls: with `constrained`, the most calls the grammar admits in a turn.
        backend: where the model runs instead of the local engine: `openai:URL` (an
            OpenAI-compatible server streaming `/v1/completions`, all modes; an interrupt
            aborts and resubmits the stream), `openai-chat:URL` (OpenAI tool calling, sync and
            sync-parallel, any served model), or a `RemoteBackend`. See docs/SCALE.md.

    Raises:
        ValueError: A setting is invalid (all problems of the run settings listed at once).
    """

    def __init__(
        self,
        tools: Iterable[Tool | Callable[..., Any]] = (),
        *,
        mode: Mode = "async",
        model: str | Engine = "smollm2-135m",
        adapter: str | None = "auto",
        system: str | None = None,
        sampler: Sampler | None = None,
        max_tokens: int = 512,
        tool_timeout: float | None = 60.0,
        max_tool_threads: int = 16,
        example: bool = True,
        constraint: Callable[[Agent], Constraint] | None = None,
        constrained: bool = False,
        max_calls: int | None = None,
        backend: str | RemoteBackend | None = None,
    ) -> None:
        if max_tool_threads < 1:
            raise ValueError(f"max_tool_threads must be >= 1, got {max_tool_threads}")
        built = [t if isinstance(t, Tool) else tool(t) for t in tools]
        names = [t.name for t in built]
        duplicates = sorted({n for n in names if names.count(n) > 1})
        if duplicates:
            raise ValueError(f"two tools share the name(s) {duplicates}")
        self.tools: dict[str, Tool] = {t.name: t for t in built}
        self.system_parts: list[PromptPart] = system_parts(built, system, example=example)
        self.system = "".join(part.text for part in self.system_parts)
        self.sampler = sampler or Sampler()
        self.max_tokens = max_tokens
        self.tool_timeout = tool_timeout
        self.constrained = constrained
        self.max_calls = max_calls
        self._model = model
        self._adapter = adapter
        self._engine: Engine | None = model if isinstance(model, Engine) else None
        self._extra_constraint = constraint
        self._schema: Schema | None = None
        self.backend = RemoteBackend(backend) if isinstance(backend, str) else backend
        if self.backend is not None and constrained:
            raise ValueError("constrained=True needs the local engine (a grammar on the logits)")
        self._instructions = system
        self._spec = RunSpec(
            tools=self.tools,
            mode=calling_mode(mode),
            sampler=self.sampler,
            open_context=self.open_context,
            make_constraint=self.make_constraint,
            tool_threads=anyio.CapacityLimiter(max_tool_threads),
            max_tokens=max_tokens,
            tool_timeout=tool_timeout,
        )
        self.mode: Mode = self._spec.mode.name

    # ---- model -------------------------------------------------------------------------------
    @property
    def engine(self) -> Engine:
        """The agent's engine (the model is loaded on first use, once per process)."""
        if self._engine is None:  # `model` named a preset or path (an Engine is set at once)
            self._engine = shared_engine(cast(str, self._model), self._adapter)
        return self._engine

    def make_constraint(self) -> AllOf | AllRemote:
        """A run's decoding constraint: the forgery guard (the model can never write `[INTR]`),
        plus the turn grammar when `constrained`, plus the agent's own constraint."""
        if self.backend is not None:  # request fields: the guard as a logit bias
            extra: list[Any] = [self._extra_constraint(self)] if self._extra_constraint else []
            return AllRemote([self.backend.forgery_guard(), *extra])
        engine = self.engine
        constraints: list[Constraint] = [ForgeryGuard(engine.tokenizer)]
        if self.constrained:
            grammar = turn_grammar(self.tools.values(), max_calls=self.max_calls)
            constraints.append(engine.grammar(ebnf=grammar).matcher())
        if self._extra_constraint is not None:
            constraints.append(self._extra_constraint(self))
        return AllOf(constraints)

    # ---- the prompt: system parts as Prompt Cache modules --------------------------------------
    @property
    def prompt_cache(self) -> PromptCache:
        """The engine's Prompt Cache (shared by every agent on the engine)."""
        engine = self.engine
        cache = _PROMPT_CACHES.get(engine)
        if cache is None:
            cache = _PROMPT_CACHES[engine] = PromptCache(engine)
        return cache

    def prompt_schema(self) -> Schema:
        """The system prompt's PML schema, registered with the Prompt Cache (once per cache)."""
        if self._schema is None:
            self._schema = agent_schema(self.engine.tokenizer.chat, self.system_parts)
        cache = self.prompt_cache
        if self._schema.name not in cache.schemas:
            cache.register(self._schema)
        return self._schema

    async def warm(self) -> None:
        """Compute the system prompt's K/V now (runs reuse it; nothing is recomputed)."""
        if self.backend is not None:  # the server's prefix cache keeps it after a first run
            await self.backend.connect()
            return
        ctx = await self.prompt_cache.context(agent_prompt(self.prompt_schema()))
        ctx.release()

    @asynccontextmanager
    async def open_context(self, prompt: str) -> AsyncIterator[BackendContext]:
        """A context holding the agent's prompt for `prompt`, ready for the assistant's turn.

        The system prompt's K/V come from the Prompt Cache; only the user's turn is pending.
        The context is released when the block exits.
        """
        if self.backend is not None:  # the same prompt pieces, on the server
            pieces = partial(prompt_pieces, parts=self.system_parts, user=prompt)
            async with self.backend.open_pieces(pieces) as remote:
                yield remote
            return
        ctx = await self.prompt_cache.context(agent_prompt(self.prompt_schema(), prompt))
        try:
            ctx.assistant()
            yield LocalContext(ctx)
        finally:
            ctx.release()

    # ---- running -----------------------------------------------------------------------------
    def run_spec(self, mode: Mode | None = None) -> RunSpec:
        """The specification of a run of this agent (in `mode`, or the agent's own).

        Raises:
            ValueError: If `mode` names no mode.
        """
        return self._spec if mode is None else replace(self._spec, mode=calling_mode(mode))

    async def run(self, prompt: str, *, mode: Mode | None = None) -> RunResult:
        """Run the agent on a prompt to completion.

        Raises:
            RemoteError: a remote backend failed (after the retries that were safe).
        """
        with _one_error():
            return await self._new_run(prompt, mode).execute()

    def run_sync(self, prompt: str, *, mode: Mode | None = None) -> RunResult:
        """`run` for synchronous code (starts an event loop)."""
        return anyio.run(lambda: self.run(prompt, mode=mode))

    @asynccontextmanager
    async def run_stream(
        self, prompt: str, *, mode: Mode | None = None
    ) -> AsyncIterator[AgentRun | ChatRun]:
        """Run in the background; iterate the yielded run for events, `run.result` at the end.

        Leaving the block early cancels the run and its tools.
        """
        run = self._new_run(prompt, mode)
        with _one_error():
            async with anyio.create_task_group() as tg:
                tg.start_soon(run.execute)
                try:
                    yield run
                finally:
                    if not run.done:
                        tg.cancel_scope.cancel()

    def _new_run(self, prompt: str, mode: Mode | None) -> AgentRun | ChatRun:
        if self.backend is not None and self.backend.protocol == "chat":
            return ChatRun(self.run_spec(mode), self.backend, self._instructions, prompt)
        return AgentRun(self.run_spec(mode), prompt)


@contextmanager
def _one_error() -> Iterator[None]:
    """A run's task groups wrap its failure in exception groups: one failure is raised as
    itself (a `RemoteError`, say), so callers can catch it by type."""
    try:
        yield
    except BaseExceptionGroup as group:
        leaves = _leaves(group)
        if len(leaves) == 1 and isinstance(leaves[0], Exception):
            raise leaves[0] from group
        raise


def _leaves(error: BaseException) -> list[BaseException]:
    if isinstance(error, BaseExceptionGroup):
        return [leaf for inner in error.exceptions for leaf in _leaves(inner)]
    return [error]
