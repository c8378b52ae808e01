"""`Agent`: tools + a model + a calling mode."""

from __future__ import annotations

import hashlib
import weakref
from collections.abc import AsyncIterator, Callable, Iterable
from contextlib import asynccontextmanager
from typing import Any

import anyio

from asynclm.agent.guard import AllOf, ForgeryGuard
from asynclm.agent.prompting import system_modules
from asynclm.agent.result import MODES, Mode, RunResult, Usage
from asynclm.agent.run import AgentRun
from asynclm.agent.tool import Tool, tool
from asynclm.engine.context import Context
from asynclm.engine.engine import Engine
from asynclm.engine.grammar import Constraint
from asynclm.engine.sampling import Sampler
from asynclm.promptcache.cache import PromptCache
from asynclm.promptcache.schema import Module, Prompt, Schema, Select, User

_ENGINES: dict[tuple[str, str | None], Engine] = {}
_PROMPT_CACHES: weakref.WeakKeyDictionary[Engine, PromptCache] = weakref.WeakKeyDictionary()


def shared_engine(model: str, adapter: str | None = None) -> Engine:
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
        adapter: a LoRA adapter folder for `model`.
        system: instructions placed before the protocol and tool documentation.
        sampler: decoding (default greedy).
        max_tokens: the most tokens the model may write in one run.
        tool_timeout: seconds before a call is abandoned and reported as an error (a tool's own
            timeout wins).
        max_tool_threads: concurrent sync tools (they run in worker threads).
        example: include a worked CML example in the system prompt (helps untuned models).
        constraint: an extra decoding constraint factory (called once per run).
        constrained: make the model write its turn through a grammar: call blocks of known
            tools with well-typed arguments, a trap, then the answer (for untuned models).
    """

    def __init__(
        self,
        tools: Iterable[Tool | Callable[..., Any]] = (),
        *,
        mode: Mode = "async",
        model: str | Engine = "smollm2-135m",
        adapter: str | None = None,
        system: str | None = None,
        sampler: Sampler | None = None,
        max_tokens: int = 512,
        tool_timeout: float | None = 60.0,
        max_tool_threads: int = 16,
        example: bool = True,
        constraint: Callable[[Agent], Any] | None = None,
        constrained: bool = False,
        max_calls: int | None = None,
    ) -> None:
        if mode not in MODES:
            raise ValueError(f"mode must be one of {MODES}, got {mode!r}")
        if max_tokens < 1:
            raise ValueError(f"max_tokens must be >= 1, got {max_tokens}")
        built = [t if isinstance(t, Tool) else tool(t) for t in tools]
        names = [t.name for t in built]
        duplicates = sorted({n for n in names if names.count(n) > 1})
        if duplicates:
            raise ValueError(f"two tools share the name(s) {duplicates}")
        self.tools: dict[str, Tool] = {t.name: t for t in built}
        self.mode: Mode = mode
        self._model = model
        self._adapter = adapter
        self._engine: Engine | None = model if isinstance(model, Engine) else None
        self._system_parts = system_modules(built, system, example=example)
        self.system = "".join(text for _, text in self._system_parts)
        self.sampler = sampler or Sampler()
        self.max_tokens = max_tokens
        self.tool_timeout = tool_timeout
        self._limiter = anyio.CapacityLimiter(max_tool_threads)
        self._extra_constraint = constraint
        self.constrained = constrained
        self.max_calls = max_calls

    # ---- model -------------------------------------------------------------------------------
    @property
    def engine(self) -> Engine:
        if self._engine is None:
            assert isinstance(self._model, str)  # an Engine was stored in __init__
            self._engine = shared_engine(self._model, self._adapter)
        return self._engine

    def _make_constraint(self) -> Any:
        """The run's decoding constraint: the forgery guard (it also masks an `[INTR]` special
        token), plus the turn grammar and any user constraint."""
        engine = self.engine
        constraints: list[Constraint] = [ForgeryGuard(engine.tokenizer)]
        if self.constrained:
            from asynclm.agent.constrained import turn_grammar

            constraints.append(
                engine.grammar(
                    ebnf=turn_grammar(self.tools.values(), max_calls=self.max_calls)
                ).matcher()
            )
        if self._extra_constraint is not None:
            constraints.append(self._extra_constraint(self))
        return AllOf(constraints)

    # ---- the system prompt: Prompt Cache modules -------------------------------------------
    @property
    def prompt_cache(self) -> PromptCache:
        """The engine's Prompt Cache (shared by every agent on the engine)."""
        engine = self.engine
        cache = _PROMPT_CACHES.get(engine)
        if cache is None:
            cache = _PROMPT_CACHES[engine] = PromptCache(engine)
        return cache

    def _schema(self) -> tuple[str, list[Select]]:
        """Register the system prompt (once per cache) as a prefix-encoded PML schema."""
        parts = self._system_parts
        digest = hashlib.sha256(repr(parts).encode()).hexdigest()[:16]
        name = f"agent-{digest}"
        cache = self.prompt_cache
        if name not in cache.schemas:
            # The role's opening goes into the first module and its closing into a last one, so
            # that a module's K/V depends only on what comes before it (prefix reuse across
            # agents whose prompts share a beginning).
            chat = self.engine.tokenizer.chat
            texts = [text for _, text in parts]
            texts[0] = chat.begin + chat.role_prefix("system") + texts[0]
            modules = [Module(part, [text]) for (part, _), text in zip(parts, texts, strict=True)]
            modules.append(Module("system.end", [chat.role_suffix("system")]))
            cache.register(Schema(name, modules, encoding="prefix"))
        return name, [Select(part) for part, _ in parts] + [Select("system.end")]

    async def warm(self) -> None:
        """Compute the system prompt's K/V now (runs reuse it; nothing is recomputed)."""
        name, selections = self._schema()
        ctx = await self.prompt_cache.context(Prompt(name, selections))
        ctx.release()

    @asynccontextmanager
    async def _context_for(self, prompt: str, usage: Usage) -> AsyncIterator[Context]:
        name, selections = self._schema()
        ctx = await self.prompt_cache.context(Prompt(name, selections, [User([prompt])]))
        try:
            usage.cached_prompt_tokens = ctx.num_cached
            ctx.assistant()
            usage.prompt_tokens = ctx.num_tokens - ctx.num_cached
            yield ctx
        finally:
            ctx.release()

    # ---- running -----------------------------------------------------------------------------
    async def run(self, prompt: str, *, mode: Mode | None = None) -> RunResult:
        """Run the agent on a prompt to completion."""
        return await AgentRun(self, prompt, self._mode(mode)).execute()

    def run_sync(self, prompt: str, *, mode: Mode | None = None) -> RunResult:
        """`run` for synchronous code (starts an event loop)."""
        return anyio.run(lambda: self.run(prompt, mode=mode))

    @asynccontextmanager
    async def run_stream(self, prompt: str, *, mode: Mode | None = None) -> AsyncIterator[AgentRun]:
        """Run in the background; iterate the yielded run for events, `run.result` at the end.

        Leaving the block early cancels the run and its tools.
        """
        run = AgentRun(self, prompt, self._mode(mode))
        async with anyio.create_task_group() as tg:
            tg.start_soon(run.execute)
            try:
                yield run
            finally:
                if run._result is None:
                    tg.cancel_scope.cancel()

    def _mode(self, mode: Mode | None) -> Mode:
        mode = mode or self.mode
        if mode not in MODES:
            raise ValueError(f"mode must be one of {MODES}, got {mode!r}")
        return mode
