"""`Agent`: tools + a model + a calling mode, typed by its dependencies and its output."""

from __future__ import annotations

import functools
import weakref
from collections.abc import AsyncIterator, Callable, Iterable, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from contextlib import AsyncExitStack, asynccontextmanager
from types import MappingProxyType, TracebackType
from typing import TYPE_CHECKING, Any, Generic, cast

import anyio

from asynclm.agent.approval import Approver, deny_all
from asynclm.agent.call_blocks import CallBlocks
from asynclm.agent.chat_run import ChatRun
from asynclm.agent.constrained import Constrained, calls_grammar, constrained_kind, turn_grammar
from asynclm.agent.guard import AllOf, ForgeryGuard
from asynclm.agent.handle import RunHandle
from asynclm.agent.hooks import HookSet, RunHooks
from asynclm.agent.limits import UsageLimits
from asynclm.agent.messages import AssistantMessage, UserMessage
from asynclm.agent.modes import calling_mode
from asynclm.agent.observe import LoggingHooks
from asynclm.agent.otel import OtelHooks, otel_available
from asynclm.agent.output import OutputSpec, OutputT
from asynclm.agent.prompt_schema import agent_prompt, agent_schema
from asynclm.agent.prompting import (
    PromptPart,
    history_pieces,
    prompt_pieces,
    system_parts,
    user_pieces,
)
from asynclm.agent.result import Mode, RunResult
from asynclm.agent.run import AgentRun, stream
from asynclm.agent.spec import RunSpec
from asynclm.agent.toolset import Toolset, open_toolsets
from asynclm.backends.local import LocalContext
from asynclm.backends.protocol import BackendContext
from asynclm.backends.remote import AllRemote, RemoteBackend
from asynclm.engine.engine import Engine
from asynclm.engine.grammar import Constraint, Grammar
from asynclm.engine.sampling import Sampler
from asynclm.promptcache.cache import PromptCache
from asynclm.promptcache.schema import Schema
from asynclm.tooling import DepsT, Tool, ToolThreads, tool

if TYPE_CHECKING:
    from asynclm.agent.session import Session

__all__ = ["Agent", "History", "shared_engine"]

History = Sequence[UserMessage | AssistantMessage]

_ENGINES: dict[tuple[str, str | None], Engine] = {}
_PROMPT_CACHES: weakref.WeakKeyDictionary[Engine, PromptCache] = weakref.WeakKeyDictionary()


def shared_engine(model: str, adapter: str | None = None) -> Engine:
    """One engine per (model, adapter) in the process, shared by every agent that names it."""
    key = (model, adapter)
    if key not in _ENGINES:
        _ENGINES[key] = Engine.load(model, adapter)
    return _ENGINES[key]


class Agent(Generic[DepsT, OutputT]):
    """An LLM agent whose tool calls run asynchronously.

    `Agent[Deps, Output]`: `Deps` is what `run(..., deps=...)` hands to tools taking a
    `RunContext[Deps]`; `Output` is the type of `result.output` (`str` unless `output_type`
    is given). Both are inferred from `deps_type` and `output_type`.

    Args:
        tools: `Tool`s, or plain functions (wrapped with `@tool`), in a list.
        mode: "async" (calls run while the model writes; results arrive as interrupts),
            "sync-parallel" (calls run together when the model waits) or "sync" (generation
            pauses at each call until its result is in).
        model: A model preset or path (loaded once per process), or an `Engine`.
        adapter: A LoRA adapter folder for `model`; "auto" (the default): the CML adapter
            shipped for the preset (SmolLM2), if any; None: the plain model.
        system: Instructions placed before the protocol and tool documentation.
        output_type: The type of the answer (a pydantic model, a dataclass, `int`...): stated
            to the model as a JSON schema, written under its grammar, validated by pydantic.
        output_retries: Invalid answers the model may correct (each error goes back to it).
        deps_type: The type of the run's dependencies (for type checkers only).
        toolsets: Sources of tools listed anew for every run (e.g. `MCPServer`s).
        sampler: Decoding (default greedy).
        max_tokens: The most tokens the model may write in one run.
        max_calls: The most call blocks in one run (see `UsageLimits`); with
            `constrained="turn"`, also the most calls the grammar admits.
        max_seconds: Wall-time limit of one run.
        tool_retries: Failed calls allowed per tool in one run (a tool's own `retries` wins).
        tool_timeout: Seconds before a call is abandoned and reported as an error (a tool's own
            timeout wins); None for no limit.
        max_tool_threads: Worker threads of sync tools, abandoned ones included (a thread
            whose call timed out keeps its slot until the function returns; calls beyond the
            cap wait for a slot within their own timeout).
        example: Include a worked CML example in the system prompt (helps untuned models).
        constraint: An extra decoding constraint factory (called once per run).
        constrained: Hold the model to a grammar. `"turn"` (or True): its whole turn — call
            blocks of known tools with well-typed arguments, a trap, then the answer (for
            untuned models). `"calls"`: only the call blocks it opens — a known tool, each
            parameter at most once, required ones present, literals of the declared types —
            while it decides freely when to call, wait and answer (for fine-tuned models).
        hooks: Lifecycle hooks (`RunHooks`), called as runs unfold.
        instrument: OpenTelemetry spans per run and call (default: when `opentelemetry-api`
            is installed).
        name: The agent's name in logs and spans.
        backend: Where the model runs instead of the local engine: `openai:URL` (an
            OpenAI-compatible server streaming `/v1/completions`, all modes; an interrupt
            aborts and resubmits the stream), `openai-chat:URL` (OpenAI tool calling, sync and
            sync-parallel, any served model), or a `RemoteBackend`. See docs/SCALE.md. A
            remote model cannot take a grammar: no `constrained`, no `output_type`.

    Raises:
        TypeError: `tools` is not a list of functions and tools, or `model` not a name or an
            `Engine`.
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
        output_type: type[OutputT] = str,  # type: ignore[assignment]
        output_retries: int = 1,
        deps_type: type[DepsT] = type(None),  # type: ignore[assignment]
        toolsets: Sequence[Toolset] = (),
        sampler: Sampler | None = None,
        max_tokens: int = 512,
        max_calls: int | None = None,
        max_seconds: float | None = None,
        tool_retries: int = 3,
        tool_timeout: float | None = 60.0,
        max_tool_threads: int = 16,
        example: bool = True,
        constraint: Callable[[Agent[Any, Any]], Constraint] | None = None,
        constrained: bool | Constrained | None = False,
        hooks: Sequence[RunHooks] = (),
        instrument: bool | None = None,
        name: str = "agent",
        backend: str | RemoteBackend | None = None,
    ) -> None:
        if not isinstance(model, (str, Engine)):
            raise TypeError(
                f"model must be a preset name, a local path or an Engine, got {model!r}"
            )
        if not isinstance(max_tool_threads, int) or max_tool_threads < 1:
            raise ValueError(f"max_tool_threads must be >= 1, got {max_tool_threads!r}")
        self._tools: dict[str, Tool] = {}
        for made in _tool_list(tools):
            self.add_tool(made)
        self.toolsets: tuple[Toolset, ...] = _toolset_list(toolsets)
        self.name = name
        self.mode: Mode = calling_mode(mode).name
        self.sampler = sampler or Sampler()
        self.limits = UsageLimits(max_tokens, max_calls, max_seconds, tool_retries)
        self.max_tokens = max_tokens
        self.tool_timeout = tool_timeout
        self.constrained: Constrained | None = constrained_kind(constrained)
        self.max_calls = max_calls
        self.output_type = output_type
        self.output = None if output_type is str else OutputSpec.of(output_type, output_retries)
        self.deps_type = deps_type
        self._instructions = system
        self._example = example
        self._model = model
        self._adapter = adapter
        self._engine: Engine | None = model if isinstance(model, Engine) else None
        self._extra_constraint = constraint
        self.backend = RemoteBackend(backend) if isinstance(backend, str) else backend
        _check_backend(self.backend, constrained=self.constrained, output_type=output_type)
        self._threads = ToolThreads(max_tool_threads)
        observers: list[RunHooks] = [LoggingHooks(), *hooks]
        if instrument or (instrument is None and otel_available()):
            observers.append(OtelHooks(max_tokens=max_tokens))
        self._hooks = HookSet(observers)
        self._schemas: dict[tuple[PromptPart, ...], Schema] = {}
        self._spec(tuple(self._tools.values()), self.mode, self.limits, compile=False)  # checks

    # ---- tools -------------------------------------------------------------------------------
    @property
    def tools(self) -> Mapping[str, Tool]:
        """The agent's own tools, by name (read-only; see `add_tool`, `remove_tool`)."""
        return MappingProxyType(self._tools)

    def add_tool(self, new: Tool | Callable[..., Any]) -> Tool:
        """Add a tool (a function is wrapped with `@tool`); the next run describes it.

        Raises:
            ValueError: A tool of that name exists.
        """
        made = new if isinstance(new, Tool) else tool(new)
        if made.name in self._tools:
            raise ValueError(f"two tools share the name(s) [{made.name!r}]")
        self._tools[made.name] = made
        return made

    def remove_tool(self, name: str) -> Tool:
        """Remove a tool by name; the next run no longer describes it.

        Raises:
            KeyError: No tool has that name.
        """
        if name not in self._tools:
            raise KeyError(f"no tool named {name!r}; tools: {sorted(self._tools)}")
        return self._tools.pop(name)

    @property
    def system_parts(self) -> list[PromptPart]:
        """The system prompt's parts for the agent's own tools."""
        return self._system_parts(tuple(self._tools.values()))

    @property
    def system(self) -> str:
        """The system prompt's text for the agent's own tools."""
        return "".join(part.text for part in self.system_parts)

    def _system_parts(self, tools: Sequence[Tool]) -> list[PromptPart]:
        schema = self.output.schema if self.output is not None else None
        return system_parts(tools, self._instructions, example=self._example, output_schema=schema)

    # ---- model -------------------------------------------------------------------------------
    @property
    def engine(self) -> Engine:
        """The agent's engine (the model is loaded on first use, once per process)."""
        if self._engine is None:  # `model` named a preset or path (an Engine is set at once)
            self._engine = shared_engine(cast(str, self._model), self._adapter)
        return self._engine

    @property
    def model_name(self) -> str:
        """The model's name, as given or as the engine calls it (a backend's: its URL)."""
        if self.backend is not None:
            return self.backend.base_url
        return self._model if isinstance(self._model, str) else self._model.name

    @property
    def keeps_kv(self) -> bool:
        """Whether sessions keep the conversation's K/V (the local engine's exports; a remote
        backend's session sends the history again)."""
        return self.backend is None

    def make_constraint(self, tools: Sequence[Tool] | None = None) -> AllOf | AllRemote:
        """A run's decoding constraint: the forgery guard (the model can never write `[INTR]`),
        plus the turn's or the call blocks' grammar when `constrained`, plus the agent's own
        constraint."""
        if self.backend is not None:  # request fields: the guard as a logit bias
            extra: list[Any] = [self._extra_constraint(self)] if self._extra_constraint else []
            return AllRemote([self.backend.forgery_guard(), *extra])
        engine = self.engine
        constraints: list[Constraint] = [ForgeryGuard(engine.tokenizer)]
        listed = self._tools.values() if tools is None else tools
        if self.constrained == "turn":
            grammar = turn_grammar(listed, max_calls=self.max_calls)
            constraints.append(engine.grammar(ebnf=grammar).matcher())
        elif self.constrained == "calls":
            block = calls_grammar(listed)
            if block is not None:  # no tools: every call is unknown, the runtime says so
                constraints.append(CallBlocks(engine.grammar(ebnf=block), engine.tokenizer))
        if self._extra_constraint is not None:
            constraints.append(self._extra_constraint(self))
        return AllOf(constraints)

    def _answer_grammar(self) -> Grammar | None:
        if self.output is None:
            return None
        return self.engine.grammar(json_schema=self.output.schema)

    # ---- the prompt: system parts as Prompt Cache modules --------------------------------------
    @property
    def prompt_cache(self) -> PromptCache:
        """The engine's Prompt Cache (shared by every agent on the engine)."""
        engine = self.engine
        cache = _PROMPT_CACHES.get(engine)
        if cache is None:
            cache = _PROMPT_CACHES[engine] = PromptCache(engine)
        return cache

    def prompt_schema(self, tools: Sequence[Tool] | None = None) -> Schema:
        """The system prompt's PML schema, registered with the Prompt Cache (once per cache)."""
        parts = tuple(self._system_parts(tuple(self._tools.values()) if tools is None else tools))
        schema = self._schemas.get(parts)
        if schema is None:
            schema = self._schemas[parts] = agent_schema(self.engine.tokenizer.chat, parts)
        cache = self.prompt_cache
        if schema.name not in cache.schemas:
            cache.register(schema)
        return schema

    async def warm(self) -> None:
        """Compute the system prompt's K/V now (runs reuse it; nothing is recomputed)."""
        if self.backend is not None:  # the server's prefix cache keeps it after a first run
            await self.backend.connect()
            return
        ctx = await self.prompt_cache.context(agent_prompt(self.prompt_schema()))
        ctx.release()

    @asynccontextmanager
    async def open_context(
        self, prompt: str, *, history: History = (), tools: Sequence[Tool] | None = None
    ) -> AsyncIterator[BackendContext]:
        """A context holding the agent's prompt for `prompt`, ready for the assistant's turn.

        The system prompt's K/V come from the Prompt Cache; the history and the user's turn
        are appended, pending (each piece of `prompt_pieces` encoded on its own). The context
        is released when the block exits.
        """
        if self.backend is not None:  # the same pieces, on the server
            listed = tuple(self._tools.values()) if tools is None else tools
            parts = self._system_parts(listed)
            pieces = functools.partial(prompt_pieces, parts=parts, user=prompt, history=history)
            async with self.backend.open_pieces(pieces) as remote:
                yield remote
            return
        ctx = await self.prompt_cache.context(agent_prompt(self.prompt_schema(tools)))
        try:
            chat = ctx.tokenizer.chat
            for piece in history_pieces(chat, history) + user_pieces(chat, prompt):
                ctx.append(piece.text, special=piece.special)
            yield LocalContext(ctx, self.engine.config.max_position)
        finally:
            ctx.release()

    # ---- running -----------------------------------------------------------------------------
    def run_spec(
        self,
        mode: Mode | None = None,
        *,
        tools: Sequence[Tool] | None = None,
        limits: UsageLimits | None = None,
        history: History = (),
    ) -> RunSpec:
        """The specification of a run of this agent.

        Args:
            mode: The calling mode (default: the agent's).
            tools: The tools of the run (default: the agent's own).
            limits: The run's usage limits (default: the agent's).
            history: The conversation before the run, put in its context.

        Raises:
            ValueError: If `mode` names no mode.
        """
        listed = tuple(self._tools.values()) if tools is None else tuple(tools)
        return self._spec(listed, mode or self.mode, limits or self.limits, tuple(history))

    def _spec(
        self,
        tools: tuple[Tool, ...],
        mode: Mode,
        limits: UsageLimits,
        history: History = (),
        *,
        compile: bool = True,
    ) -> RunSpec:
        _check_names(tools)
        grammar = self._answer_grammar() if compile else None  # compiled before the run starts
        return RunSpec(
            tools={t.name: t for t in tools},
            mode=calling_mode(mode),
            sampler=self.sampler,
            open_context=functools.partial(self.open_context, history=history, tools=tools),
            make_constraint=functools.partial(self.make_constraint, tools),
            tool_threads=self._threads,
            tool_timeout=self.tool_timeout,
            output=self.output,
            make_answer_constraint=self._answer_factory(grammar),
            hooks=self._hooks,
            agent_name=self.name,
            model_name=self.model_name,
        ).with_limits(limits)

    def _answer_factory(self, grammar: Grammar | None) -> Callable[[], AllOf] | None:
        if grammar is None:
            return None
        tokenizer = self.engine.tokenizer
        return lambda: AllOf([ForgeryGuard(tokenizer), grammar.matcher()])

    async def run(
        self,
        prompt: str,
        *,
        deps: DepsT = None,  # type: ignore[assignment]
        mode: Mode | None = None,
        message_history: History = (),
        limits: UsageLimits | None = None,
        approver: Approver | None = None,
    ) -> RunResult[OutputT]:
        """Run the agent on a prompt to completion.

        Args:
            prompt: The user's message.
            deps: Handed to tools taking a `RunContext[Deps]`.
            mode: The calling mode of this run (default: the agent's).
            message_history: Earlier turns (`result.messages` of a previous run): they are
                prefilled before the prompt (see `session` to keep their K/V instead).
            limits: This run's usage limits (default: the agent's).
            approver: Decides calls of tools that `requires_approval` (default: deny them;
                with `run_stream` the application may decide instead).

        Raises:
            OutputError: An agent with an `output_type` got no valid output.
            TypeError: `prompt` is not a string.
        """
        async with self.open_toolsets() as extra:
            spec = self._run_spec(mode, extra, limits, message_history)
            run = self.new_run(
                spec, prompt, deps=deps, history=message_history, approver=approver or deny_all
            )
            return await run.execute()

    def run_sync(
        self,
        prompt: str,
        *,
        deps: DepsT = None,  # type: ignore[assignment]
        mode: Mode | None = None,
        message_history: History = (),
        limits: UsageLimits | None = None,
        approver: Approver | None = None,
    ) -> RunResult[OutputT]:
        """`run` for synchronous code. It starts an event loop; called where one already runs
        (a notebook), it runs in a worker thread with its own loop — `await agent.run(...)`
        is better there."""
        call = functools.partial(
            self.run,
            prompt,
            deps=deps,
            mode=mode,
            message_history=message_history,
            limits=limits,
            approver=approver,
        )
        if not _in_event_loop():
            return anyio.run(call)
        with ThreadPoolExecutor(1, thread_name_prefix="asynclm-run-sync") as pool:
            return pool.submit(anyio.run, call).result()

    @asynccontextmanager
    async def run_stream(
        self,
        prompt: str,
        *,
        deps: DepsT = None,  # type: ignore[assignment]
        mode: Mode | None = None,
        message_history: History = (),
        limits: UsageLimits | None = None,
        approver: Approver | None = None,
    ) -> AsyncIterator[RunHandle[OutputT]]:
        """Run in the background; iterate the yielded run for events, `run.result` at the end.

        Calls needing approval wait for `run.approve(id)` / `run.deny(id)` unless an
        `approver` is given. Leaving the block early cancels the run and its tools. A failure
        of the run is raised as itself when the block exits.
        """
        async with self.open_toolsets() as extra:
            spec = self._run_spec(mode, extra, limits, message_history)
            run = self.new_run(spec, prompt, deps=deps, history=message_history, approver=approver)
            async with stream(run):
                yield run

    def new_run(
        self,
        spec: RunSpec,
        prompt: str,
        *,
        deps: Any = None,
        history: History = (),
        approver: Approver | None = None,
    ) -> RunHandle[OutputT]:
        """A run of `spec` (not started): CML (`AgentRun`), or OpenAI tool calling (`ChatRun`)
        on an `openai-chat:` backend."""
        if self.backend is not None and self.backend.protocol == "chat":
            chat = ChatRun(
                spec, self.backend, self._instructions, prompt, deps=deps, history=history
            )
            return cast(RunHandle[OutputT], chat)  # no output_type with a backend: OutputT is str
        return AgentRun(spec, prompt, deps=deps, history=history, approver=approver)

    def session(self, messages: History = ()) -> Session[DepsT, OutputT]:
        """A conversation that keeps its K/V between turns (see `Session`)."""
        from asynclm.agent.session import Session

        return Session(self, messages)

    def _run_spec(
        self, mode: Mode | None, extra: Sequence[Tool], limits: UsageLimits | None, history: History
    ) -> RunSpec:
        return self.run_spec(mode, tools=self.all_tools(extra), limits=limits, history=history)

    def all_tools(self, extra: Sequence[Tool] = ()) -> tuple[Tool, ...]:
        """The agent's own tools, then `extra` (what its toolsets list)."""
        return (*self._tools.values(), *extra)

    @asynccontextmanager
    async def open_toolsets(self) -> AsyncIterator[list[Tool]]:
        """Enter the agent's toolsets for the block; yields the tools they list now."""
        async with AsyncExitStack() as stack:
            yield await open_toolsets(stack, self.toolsets)

    async def __aenter__(self) -> Agent[DepsT, OutputT]:
        """Open the agent's toolsets (MCP servers...) for every run until the block exits."""
        self._stack = AsyncExitStack()
        await open_toolsets(self._stack, self.toolsets)
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self._stack.aclose()

    def __repr__(self) -> str:
        return f"Agent({self.name!r}, mode={self.mode!r}, tools={list(self._tools)})"


def _tool_list(tools: object) -> list[Tool]:
    if isinstance(tools, str):
        raise TypeError(
            f"tools must be a list of functions or Tools, got the string {tools!r}; for a ready "
            "tool import it (from asynclm.tools import calculator) and pass [calculator]"
        )
    if isinstance(tools, Tool) or callable(tools) or not isinstance(tools, Iterable):
        raise TypeError(
            f"tools must be a list of functions or Tools, got {type(tools).__name__} {tools!r}: "
            "write Agent([f]) for one tool"
        )
    items = list(tools)
    bad = [t for t in items if not (isinstance(t, Tool) or callable(t))]
    if bad:
        raise TypeError(f"tools must be functions or Tools; these are not: {bad!r}")
    return [t if isinstance(t, Tool) else tool(t) for t in items]


def _toolset_list(toolsets: Sequence[Toolset]) -> tuple[Toolset, ...]:
    bad = [t for t in toolsets if not isinstance(t, Toolset)]
    if bad:
        raise TypeError(f"toolsets must have list_tools() and be async context managers: {bad!r}")
    return tuple(toolsets)


def _check_backend(
    backend: RemoteBackend | None, *, constrained: Constrained | None, output_type: type
) -> None:
    if backend is None:
        return
    if constrained:
        raise ValueError(
            f"constrained={constrained!r} needs the local engine (a grammar on the logits)"
        )
    if output_type is not str:
        raise ValueError(
            "output_type needs the local engine (its grammar writes the answer): with a remote "
            "backend, ask for JSON in the instructions and validate result.output yourself"
        )


def _check_names(tools: Sequence[Tool]) -> None:
    names = [t.name for t in tools]
    duplicates = sorted({n for n in names if names.count(n) > 1})
    if duplicates:
        raise ValueError(f"two tools share the name(s) {duplicates}")


def _in_event_loop() -> bool:
    try:
        anyio.get_current_task()
    except RuntimeError:  # anyio's NoEventLoopError
        return False
    return True
